// @vitest-environment happy-dom
import { afterEach, describe, expect, it, vi } from "vitest";

import {
  ProposalQueue,
  ProposalsFailed,
  clickObject,
  decodeRle,
  pollProposals,
  proposalBboxMask,
  proposalBoxMask,
  provenanceField,
  startProposals,
  type Proposal,
} from "../src/annotation_task/assist";
import { clickSummary } from "../src/annotation_task/assist_panel";
import { proposalProvenance } from "../src/label_editor/editor";
import { ApiError } from "../src/lib/api";
import { scriptFetch } from "./helpers";

function proposal(id: string, bbox: number[], rle: number[], voxels = 0): Proposal {
  return { id, bbox, rle, voxels, score: 0.5, source: "watershed" };
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("run lengths", () => {
  it("decodes runs of 1s and refuses runs outside the bbox", () => {
    expect(Array.from(decodeRle([1, 2, 5, 1], 7))).toEqual([0, 1, 1, 0, 0, 1, 0]);
    expect(Array.from(decodeRle([], 3))).toEqual([0, 0, 0]);
    expect(() => decodeRle([6, 2], 7)).toThrow(/outside/);
    expect(() => decodeRle([1], 7)).toThrow(/pairs/);
  });

  it("pastes a proposal at its bbox in a box-local mask, C order (z, y, x)", () => {
    // bbox z 1..2, y 1..3, x 2..4 in a 2 x 3 x 4 box: voxels (1,1,2) (1,1,3) and (1,2,3).
    const p = proposal("a", [1, 1, 2, 2, 3, 4], [0, 2, 3, 1], 3);
    expect(Array.from(proposalBboxMask(p))).toEqual([1, 1, 0, 1]);
    const box = proposalBoxMask(p, [2, 3, 4]);
    const on = [...box.keys()].filter((i) => box[i] === 1);
    const at = (z: number, y: number, x: number): number => (z * 3 + y) * 4 + x;
    expect(on).toEqual([at(1, 1, 2), at(1, 1, 3), at(1, 2, 3)]);
    expect(() => proposalBoxMask(p, [1, 3, 4])).toThrow(/outside the box/);
    expect(() => proposalBboxMask(proposal("e", [0, 0, 0, 0, 1, 1], []))).toThrow(/empty/);
  });
});

describe("provenance", () => {
  it("records how an object was made, as the labels save's form field", () => {
    const p = proposal("job1-1", [0, 0, 0, 1, 1, 1], [0, 1], 1);
    const field = provenanceField(
      new Map([
        [3, proposalProvenance(p, "proposal")],
        [7, { source: "manual" as const }],
        [9, proposalProvenance({ ...p, source: "model", model: "model v2" }, "click")],
      ]),
    );
    expect(JSON.parse(field)).toEqual({
      "3": { source: "proposal", proposal_source: "watershed" },
      "7": { source: "manual" },
      "9": { source: "click", proposal_source: "model", model: "model v2" },
    });
    expect(() => provenanceField(new Map([[0, { source: "manual" as const }]]))).toThrow();
  });
});

describe("a click's answer", () => {
  it("says what grew the object: the model version, or the watershed", () => {
    const p = proposal("c", [0, 0, 0, 1, 1, 2], [0, 2], 2);
    expect(clickSummary(p)).toBe("Object of 2 voxels (watershed)");
    expect(clickSummary({ ...p, source: "model", model: "model v3" })).toBe(
      "Object of 2 voxels (model v3)",
    );
  });
});

describe("the proposal queue", () => {
  const three = [
    proposal("p1", [0, 0, 0, 1, 1, 1], [0, 1]),
    proposal("p2", [0, 0, 0, 1, 1, 1], [0, 1]),
    proposal("p3", [0, 0, 0, 1, 1, 1], [0, 1]),
  ];

  it("accepts, rejects and skips, counting each", () => {
    const queue = new ProposalQueue(three);
    expect(queue.current?.id).toBe("p1");
    expect(queue.accept()?.id).toBe("p1");
    expect(queue.current?.id).toBe("p2");
    expect(queue.next()?.id).toBe("p3"); // p2 left for later
    expect(queue.reject()?.id).toBe("p3");
    expect(queue.current?.id).toBe("p2"); // wraps round to the skipped one
    expect(queue.counts).toEqual({ total: 3, accepted: 1, rejected: 1, pending: 1 });
    expect(queue.accept()?.id).toBe("p2");
    expect(queue.current).toBeUndefined();
    expect(queue.accept()).toBeUndefined();
    expect(queue.next()).toBeUndefined();
    expect(queue.counts).toEqual({ total: 3, accepted: 2, rejected: 1, pending: 0 });
    expect(queue.decision("p3")).toBe("rejected");
  });

  it("adds new proposals once, and shows them when all were decided", () => {
    const queue = new ProposalQueue([three[0]!]);
    queue.reject();
    expect(queue.current).toBeUndefined();
    queue.add(three);
    expect(queue.counts.total).toBe(3);
    expect(queue.current?.id).toBe("p2");
  });
});

describe("the client", () => {
  it("posts a click and returns the proposal", async () => {
    const p = proposal("click-1", [0, 0, 0, 1, 1, 1], [0, 1], 1);
    const sent = scriptFetch([{ status: 200, body: { proposal: p, reason: "found" } }]);
    const answer = await clickObject(7, 1, 2, 3);
    expect(answer.proposal).toEqual(p);
    expect(sent[0]?.method).toBe("POST");
    expect(sent[0]?.url).toBe("/api/v1/annotation/assignments/7/assist/click/");
    expect(sent[0]?.body).toEqual({ z: 1, y: 2, x: 3 });
  });

  it("passes the server's refusal on", async () => {
    scriptFetch([{ status: 403, body: { message: "Only the annotator" } }]);
    await expect(startProposals(7)).rejects.toThrow(ApiError);
  });

  it("polls with progress until the job is done", async () => {
    const job = { id: 3, message: "", proposals: [] as Proposal[] };
    const p = proposal("job3-1", [0, 0, 0, 1, 1, 1], [0, 1], 1);
    scriptFetch([
      { status: 200, body: { ...job, state: "queued", progress: 0 } },
      { status: 200, body: { ...job, state: "running", progress: 0.5, message: "propose" } },
      { status: 200, body: { ...job, state: "done", progress: 1, proposals: [p] } },
    ]);
    const seen: number[] = [];
    const waits: number[] = [];
    const found = await pollProposals(7, {
      onProgress: (progress) => seen.push(progress),
      intervalMs: 5,
      wait: async (ms) => {
        waits.push(ms);
      },
    });
    expect(found).toEqual([p]);
    expect(seen).toEqual([0, 0.5, 1]);
    expect(waits).toEqual([5, 5]);
  });

  it("reports a failed job and a missing one", async () => {
    scriptFetch([
      {
        status: 200,
        body: { id: 1, state: "failed", progress: 0, message: "box outside", proposals: [] },
      },
      { status: 404, body: { message: "No proposals" } },
    ]);
    await expect(pollProposals(7, { wait: async () => {} })).rejects.toThrow(
      new ProposalsFailed("box outside"),
    );
    await expect(pollProposals(7, { wait: async () => {} })).rejects.toThrow(ProposalsFailed);
  });
});
