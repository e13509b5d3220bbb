"""Task page with 2,000 points: time to open (viewer ready with every point loaded) and time to
save after moving one point, in real Chromium against the site, printed.

    .venv/bin/python bench/annotate_page.py [--loads 3]

Runs the 2,000-point test of ``tests/browser/test_annotation_task.py``
(the live test server, the nuclei test dataset, a task box of 32^3 voxels holding 2,000 points
saved through the service) with ``ANNOTOME_BENCH_LOADS`` loads and prints its figures: the open
time from navigation start to ``viewer.isReady()`` with the 2,000 points in the layer (medians),
and the save time from the change to the server's answer (the page's 250 ms quiet-time delay
is skipped: the benchmark flushes at once) with the POST round trip alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "ANNOTOME_BENCH_LOADS": str(args.loads)}
    test = (
        "tests/browser/test_annotation_task.py::"
        "test_a_task_with_2000_points_opens_and_saves_smoothly"
    )
    command = [sys.executable, "-m", "pytest", test, "-q", "-s", "-p", "no:cacheprovider"]
    out = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    figures = [line for line in out.stdout.splitlines() if line.startswith("2,000-point")]
    for line in figures:
        print(line)
    if out.returncode != 0 or not figures:
        print(out.stdout[-4000:], out.stderr[-2000:], sep="\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
