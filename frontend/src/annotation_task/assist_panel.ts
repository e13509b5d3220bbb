// The assistance on the Paint tab: Alt+click in a slice asks assist/click/ for the object under
// the click and shows it as a proposal; "Propose all" runs the box's propose-all job with a live
// progress bar, then walks its proposals one by one (Enter accepts, Esc rejects, each accepted
// one is painted as a new object with its provenance; "Skip" leaves one for later).

import { type Proposal as EditorProposal, proposalVoxels } from "../label_editor/proposal";
import { type Proposal, ProposalQueue, clickObject, pollProposals, startProposals } from "./assist";
import type { PaintHooks } from "./paint";

export interface AssistPanel {
  /** The proposals of the last propose-all job still to decide (none before one ran). */
  queue(): ProposalQueue | null;
  /** Runs propose-all and shows its first proposal (what the button does). */
  proposeAll(): Promise<void>;
}

function asEditorProposal(p: Proposal): EditorProposal {
  return p as unknown as EditorProposal; // same contract; the schema types bbox as number[]
}

/** What a click proposed and what grew it: "Object of 812 voxels (model v3)". */
export function clickSummary(p: Proposal): string {
  return `Object of ${p.voxels} voxels (${p.model ?? p.source})`;
}

/** Proposals mostly painted already (e.g. an object accepted from a click) are not asked
 * about again. */
export const PAINTED_ALREADY = 0.5;

export function mountAssist(
  root: HTMLElement,
  paint: PaintHooks,
  assignmentId: number,
  editable: boolean,
): AssistPanel {
  const button = root.querySelector<HTMLButtonElement>("[data-assist=propose]")!;
  const skip = root.querySelector<HTMLButtonElement>("[data-assist=skip]")!;
  const bar = root.querySelector<HTMLProgressElement>("[data-assist=progress]")!;
  const status = root.querySelector<HTMLElement>("[data-assist=status]")!;
  let queue: ProposalQueue | null = null;
  // What the last propose-all job said ("6 objects proposed (model v1)."), kept in front of the
  // queue's counts so the source stays readable while the annotator works through them.
  let proposed = "";
  button.disabled = !editable;
  skip.disabled = true;

  function say(text: string): void {
    status.textContent = text;
  }

  function showCounts(): void {
    if (!queue) return;
    const c = queue.counts;
    say(
      (proposed ? `${proposed} ` : "") +
        `${c.accepted} accepted, ${c.rejected} rejected, ${c.pending} to decide of ${c.total}` +
        (c.pending ? " · Enter accepts, Esc rejects" : ""),
    );
    skip.disabled = c.pending < 2;
  }

  function showCurrent(): void {
    const next = queue?.current;
    if (next) paint.showProposal(asEditorProposal(next));
    showCounts();
  }

  paint.editor.onAssistClick = (z, y, x) => {
    if (!editable) return;
    say(`Growing an object from z ${z} y ${y} x ${x}…`);
    clickObject(assignmentId, z, y, x)
      .then((result) => {
        if (result.proposal) {
          paint.showProposal(asEditorProposal(result.proposal));
          say(`${clickSummary(result.proposal)}: Enter accepts, Esc rejects.`);
        } else {
          say(result.reason || "No object found at the click.");
        }
      })
      .catch((e: unknown) => say(e instanceof Error ? e.message : String(e)));
  };

  paint.editor.onProposalDone = (accepted, p) => {
    if (!queue || queue.current?.id !== p.id) {
      say(accepted ? "Object added." : "Proposal dropped.");
      return;
    }
    if (accepted) queue.accept();
    else queue.reject();
    showCurrent();
  };

  async function proposeAll(): Promise<void> {
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    say("Proposing objects in the box…");
    try {
      await startProposals(assignmentId);
      const proposals = await pollProposals(assignmentId, {
        onProgress: (progress, message) => {
          bar.value = progress;
          proposed = message;
          say(
            `Proposing objects: ${Math.round(progress * 100)} %${message ? ` · ${message}` : ""}`,
          );
        },
      });
      const data = paint.editor.volume.data;
      const fresh = proposals.filter((p) => {
        const { indices } = proposalVoxels(asEditorProposal(p), paint.editor.volume);
        let painted = 0;
        for (let i = 0; i < indices.length; i++) if (data[indices[i]!]) painted++;
        return painted < PAINTED_ALREADY * indices.length;
      });
      queue = new ProposalQueue(fresh);
      bar.value = 1;
      const known = proposals.length - fresh.length;
      if (!fresh.length)
        say(
          proposals.length
            ? `${proposed} Every object found is painted already.`
            : proposed || "No objects found.",
        );
      else showCurrent();
      if (known) status.textContent += ` (${known} already painted, left out)`;
    } catch (e) {
      say(e instanceof Error ? e.message : String(e));
    } finally {
      button.disabled = !editable;
      bar.hidden = true;
    }
  }

  button.addEventListener("click", () => void proposeAll());
  skip.addEventListener("click", () => {
    if (!queue) return;
    queue.next();
    showCurrent();
  });

  return { queue: () => queue, proposeAll };
}
