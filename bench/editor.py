"""Painting editor responsiveness on a 256^3 box in real Chromium: time per stroke event and
slice-switch key-to-frame latency, each against a baseline measured in the same page.

    .venv/bin/python bench/editor.py [--box 256]

Runs the speed test of ``tests/browser/test_label_editor.py`` (``TEST`` below) with
``ANNOTOME_BENCH_BOX`` voxels a side (the live test server, a synthetic nuclei image of one
task box, a painted campaign) and prints its figures:

- stroke event: from each mousemove's timestamp to the end of the page's handling (paint the
  discs, redraw the changed rectangle of the xy canvas), p50/p95 over 8 drags of 40 moves
  (radius 4, then 12); the frame gaps while painting against the idle page's;
- slice switch: from the F/D keydown's timestamp to the second animation frame after it (the
  frame showing the new slice), median/p95 of 60, against the same for a key the editor ignores
  (an empty key-to-frame round trip). Goal (issue 10): the next slice within 50 ms.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST = (
    "tests/browser/test_label_editor.py::"
    "test_editor_draws_strokes_and_switches_slices_at_screen_rate"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--box", type=int, default=256, help="voxels per side of the task box")
    args = parser.parse_args()
    env = {**os.environ, "ANNOTOME_BENCH_BOX": str(args.box)}
    command = [sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"]
    out = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    figures = [line for line in out.stdout.splitlines() if line.startswith("editor ")]
    for line in figures:
        print(line)
    if out.returncode != 0 or not figures:
        print(out.stdout[-4000:], out.stderr[-2000:], sep="\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
