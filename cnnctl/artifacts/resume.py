"""A run to continue: what its last.pt holds, and putting it back.

`ResumePoint` is a run dir with its loaded last.pt; `restore` puts the model, optimizer,
schedule, scaler and EMA state back into a built stepper; the run id and the data
fingerprint tell a run's own files from copied-in ones and changed data.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.core.errors import CheckpointError, DataError
from cnnctl.data import Splits
from cnnctl.engine.state import FitState
from cnnctl.engine.stepper import Stepper


@dataclass
class ResumePoint:
    """A run to continue: its directory and its last.pt (loaded on the CPU)."""

    run_dir: Path
    checkpoint: dict[str, Any]
    force: bool = False  # --force: also continue on data that changed since the run started

    @property
    def epoch(self) -> int:
        return int(self.checkpoint["train_state"]["epoch"])


def restore(
    resume: ResumePoint, model: torch.nn.Module, stepper: Stepper, run_id: str, write: bool = True
) -> FitState:
    """Put last.pt's model, optimizer, schedule and scaler state back; return the fit state.

    If the previous process died between writing last.pt and best.pt, best.pt is older
    than the best epoch last.pt records, and last.pt's weights are the best ones: best.pt
    is rewritten from them.
    """
    data = resume.checkpoint
    with unusable(resume.run_dir / "last.pt"):
        model.load_state_dict(data["model"])
        assert stepper.optimizer is not None and stepper.schedule is not None
        stepper.optimizer.load_state_dict(data["optimizer"])
        stepper.schedule.load_state_dict(data["schedule"])
        stepper.scaler.load_state_dict(data["scaler"])
        if stepper.ema is not None and "ema" in data:
            stepper.ema.load_state_dict(data["ema"])
        state = FitState(**data["train_state"])
        if not (isinstance(state.epoch, int) and state.epoch >= 1 and len(state.history) == state.epoch):
            raise ValueError(f"train_state.epoch {state.epoch!r} does not match its history")
    best = resume.run_dir / "best.pt"
    best_epoch = load_own_checkpoint(best, run_id)["epoch"] if write and best.is_file() else state.best_epoch
    if write and state.best_epoch and best_epoch != state.best_epoch:
        if state.best_epoch != state.epoch:
            raise CheckpointError(
                f"{best}: holds epoch {best_epoch} but the run's best is epoch {state.best_epoch}, "
                "and last.pt cannot replace it; start a new run"
            )
        lean = {k: v for k, v in data.items() if k not in ckpt.RESUME_KEYS}
        if state.history[-1].get("weights") == "ema" and "ema" in data:  # the EMA weights had won
            lean["model"] = {k[7:]: v for k, v in data["ema"].items() if k.startswith("module.")}
            lean["weights"] = "ema"
        ckpt.save_atomic(lean, best)
    return state


@contextlib.contextmanager
def unusable(path: Path) -> Iterator[None]:
    """A last.pt whose training state cannot be put back (crafted or damaged) is one line."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path}: its training state cannot be restored ({reason}); start a new run"
        ) from None


def load_own_checkpoint(path: Path, run_id: str) -> dict[str, Any]:
    """A checkpoint of the run whose id is `run_id` (a run of a cnnctl before run ids has
    none: anything goes); one copied in from another run is refused."""
    data = ckpt.load_checkpoint(path)
    if run_id and data.get("run_id") != run_id:
        raise CheckpointError(
            f"{path}: belongs to another run (run id {data.get('run_id') or 'none'}, this run's is "
            f"{run_id}); put this run's own file back, or start a new run"
        )
    return data


def own_run_id(resume: ResumePoint, write: bool) -> str:
    """The resumed run's id: its marker's and last.pt's must agree ("" for a run from before run
    ids: nothing to check)."""
    from cnnctl.artifacts.rundir import run_id

    marked, stored = run_id(resume.run_dir), resume.checkpoint.get("run_id")
    if marked and stored and marked != stored:
        raise CheckpointError(
            f"{resume.run_dir / 'last.pt'}: belongs to another run (run id {stored}, the folder's is "
            f"{marked}); put this run's own last.pt back, or start a new run"
        )
    return str(marked or stored or "")


def data_fingerprint(splits: Splits) -> dict[str, Any]:
    """What a resume compares to know the data is the run's: the size of each split and, for
    file-based sources, a digest of which files are in which split."""
    import hashlib

    sizes = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test or ())}
    digest = None
    if splits.files:
        h = hashlib.sha256()
        for name in sorted(splits.files):
            h.update(
                name.encode()
                + b"\0"
                + "\0".join(sorted(splits.files[name])).encode("utf-8", "surrogateescape")
            )
        digest = h.hexdigest()
    return {**sizes, "files_sha256": digest}


def check_same_data(resume: ResumePoint, now: dict[str, Any]) -> None:
    """Refuse (or with --force, say) a resume whose data differs from the run's at its start."""
    then = resume.checkpoint.get("data")
    if not isinstance(then, dict) or then == now:
        return
    counts = ", ".join(
        f"{name} {then.get(name)} → {now[name]}"
        for name in ("train", "val", "test")
        if then.get(name) != now[name]
    )
    what = counts or "the same counts, but other files"
    if not resume.force:
        raise DataError(
            f"{resume.run_dir}: the data changed since the run started ({what} images); resume with "
            "--force to continue on the data as it is now, or start a new run"
        )
    logging.getLogger("cnnctl").warning(
        f"the data changed since the run started ({what} images); --force: continuing"
    )
