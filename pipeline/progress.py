"""Progress reporting shared by the CLI (tqdm bars) and the site (job rows)."""

from __future__ import annotations

from typing import Protocol


class ProgressCallback(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...


def no_progress(stage: str, done: int, total: int) -> None:
    """A progress callback that ignores every report."""


def tqdm_progress(unit: str = "chunk") -> ProgressCallback:
    """A callback drawing one tqdm bar per stage on stderr, counting ``unit``s."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit=unit, leave=True)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return report
