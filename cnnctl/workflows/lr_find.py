"""`cnnctl lr-find`: the learning-rate range test on a config, and its plot."""

from __future__ import annotations

from pathlib import Path

from cnnctl.config import RunConfig
from cnnctl.engine.lr_range import BETA, LRFindResult
from cnnctl.runtime.interrupt import StopSignals
from cnnctl.session.lr import find_lr


def lr_find(
    cfg: RunConfig,
    start: float,
    end: float,
    steps: int,
    plot: Path | None,
    title: str = "",
    signals: StopSignals | None = None,
) -> tuple[LRFindResult, Path | None]:
    """The range test's result and, unless `plot` is None, the loss-vs-lr PNG written there."""
    result = find_lr(cfg, start, end, steps, signals=signals)
    if plot is None:
        return result, None
    from cnnctl.report import plots

    drawn = plots.lr_range(
        result.lrs,
        result.raw_losses,
        result.losses,
        result.lowest_index,
        result.suggested_lr,
        plot,
        title,
        BETA,
    )
    return result, drawn
