"""What a finished training run draws and writes besides its checkpoints: the plots and
report.html. Each is a view of the run: a failure is a warning, never a failed run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnctl.engine.state import FitState
from cnnctl.session.build import Session


def train_plots(
    run: Session,
    run_dir: Path,
    state: FitState,
    result: Any,
    split: str,
    say: Callable[[str], None],
) -> None:
    """curves.png, and of best.pt on `split` the PR and ROC curves and (single-label) the
    confusion matrix; a plot that cannot be drawn is a warning, never a failed run."""
    from cnnctl.report import plots

    try:
        plots.curves(state.history, state.best_epoch, run_dir / "plots" / "curves.png")
        if result is not None:
            for kind, (points, scores) in result.ranking().items():
                out = run_dir / "plots" / f"{kind}_{split}.png"
                plots.ranking_curves(kind, points, result.classes, scores, out, f"best.pt, {split}")
            if result.reliability is not None:
                out = run_dir / "plots" / f"reliability_{split}.png"
                plots.reliability(result.reliability.tolist(), out, f"best.pt, {split}", result.ece)
        if result is not None and not hasattr(result, "per_label"):
            plots.confusion(
                result.confusion.tolist(),
                run.splits.classes,
                run_dir / "plots" / f"confusion_{split}.png",
                title=f"best.pt, {split}",
            )
        say(f"plots in {run_dir / 'plots'}")
    except Exception as err:  # noqa: BLE001 - plots are a convenience, the run is done
        logging.getLogger("cnnctl").warning(f"plots not drawn: {err.__class__.__name__}: {err}")


def write_run_report(
    run: Session, run_dir: Path, summary: dict[str, Any], say: Callable[[str], None]
) -> None:
    """report.html (output.report); like a plot, a report that cannot be written is a warning."""
    from cnnctl.session.run_report import write_report

    try:
        path, seconds = write_report(run_dir, summary=summary, device=str(run.device))
        say(f"report {path} ({seconds:.1f}s)")
    except Exception as err:  # noqa: BLE001 - the run is done; the report is a view of it
        logging.getLogger("cnnctl").warning(f"report not written: {err.__class__.__name__}: {err}")
