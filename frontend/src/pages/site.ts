// Every page's script (base.html): dates the server wrote ({% when %}) in the reader's locale
// and time zone, as the page scripts write theirs.
import { formatTimes } from "../lib/format";

formatTimes(document);
