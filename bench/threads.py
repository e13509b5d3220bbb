"""Torch's OpenMP threads on a shared machine: spinning against sleeping waits.

    .venv/bin/python bench/threads.py [--steps 10] [--patch 84] [--width 4]

Times U-Net training steps (valid-convolution U-Net of depth 2, batch of two cubic patches) in
fresh processes: with all cores' threads spinning while they wait (``OMP_WAIT_POLICY=ACTIVE``),
sleeping (``PASSIVE``, what :mod:`pipeline` sets unless told otherwise) and one thread; each
alone, then beside one process that keeps a core busy with convolutions (a Celery worker shares
its machine with the web server, another run, a test suite). Prints seconds per step and the
ratio to the sleeping threads measured alone in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

STEP = """
import sys, time, torch
from pipeline.unet import UNet, UNetConfig
threads, patch, width, steps = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
net = UNet(UNetConfig(width=width, depth=2)).to(memory_format=torch.channels_last_3d)
optimiser = torch.optim.Adam(net.parameters(), 1e-3)
x = torch.randn(2, 1, patch, patch, patch).to(memory_format=torch.channels_last_3d)
def step():
    out = net(x)
    loss = sum(o.mean() for o in out.values()) if isinstance(out, dict) else out.mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
for _ in range(2):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - start) / steps)
"""

# The other process: one thread of 3D convolutions without end (another run's training).
BUSY = """
import torch
torch.set_num_threads(1)
conv, x = torch.nn.Conv3d(4, 4, 3), torch.randn(1, 4, 48, 48, 48)
while True:
    conv(x)
"""


def seconds_per_step(policy: str, threads: int, args: argparse.Namespace) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", STEP, str(threads), str(args.patch), str(args.width),
               str(args.steps)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--patch", type=int, default=84)
    parser.add_argument("--width", type=int, default=4)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    variants = [("spinning", "ACTIVE", cores), ("sleeping", "PASSIVE", cores), ("one thread",
                "PASSIVE", 1)]  # fmt: skip
    rows: list[tuple[str, str, float]] = []
    for beside in ("alone", "beside a busy process"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if beside != "alone" else None
        try:
            time.sleep(0.5)
            for name, policy, threads in variants:
                rows.append((beside, f"{name} ({threads} thread{'s' * (threads > 1)})",
                             seconds_per_step(policy, threads, args)))  # fmt: skip
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    baseline = rows[1][2]
    print(f"U-Net width {args.width}, two {args.patch}^3 patches per step, {cores} cores")
    print(f"{'':24} {'threads':28} {'s/step':>7} {'x sleeping alone':>17}")
    for beside, name, seconds in rows:
        print(f"{beside:24} {name:28} {seconds:7.2f} {seconds / baseline:17.2f}")


if __name__ == "__main__":
    main()
