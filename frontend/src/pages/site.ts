// Every page's script (base.html): dates the server wrote ({% when %}) in the reader's locale
// and time zone, as the page scripts write theirs; a message a script kept for this page.
import { showFlash } from "../lib/flash";
import { formatTimes } from "../lib/format";

formatTimes(document);
showFlash(document);
