"""`cnnctl calibrate`: refit a checkpoint's temperature on a labelled set and write the result
as a new checkpoint (the old one is replaced only when asked, and atomically).

The set is the checkpoint's own val split by default, or `--data`: an image folder, or a
config whose split (`--split`) is used. "Before" is the checkpoint as it was (its stored
temperature, 1 for one never calibrated), "after" the refitted one, both on that set.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from cnnctl.artifacts.loaded import load_model
from cnnctl.artifacts.outputs import claim_output, is_checkpoint
from cnnctl.config import validate
from cnnctl.core.errors import ConfigError, RunFailed
from cnnctl.session.calibrate import calibrate, rewrite_with
from cnnctl.session.eval_data import eval_batches, eval_dataset


def default_out(checkpoint: Path) -> Path:
    """`<run>/best.calibrated.pt` for a run dir, else `<stem>.calibrated.pt` beside the file."""
    source = checkpoint / "best.pt" if checkpoint.is_dir() else checkpoint
    return source.with_name(f"{source.name.split('.')[0] or 'model'}.calibrated.pt")


def claim_checkpoint(target: Path, source: Path, force: bool) -> Path:
    """Where the calibrated checkpoint may go: anywhere new; over a checkpoint (the source
    included) only with `force`; over anything else as any output."""
    if target.is_dir():
        raise ConfigError(f"--out {target}: is a folder; give a file name")
    if target.suffix != ".pt":
        raise ConfigError(f"--out {target}: a checkpoint's name ends in .pt")
    replaces = target.exists() and (_same(target, source) or is_checkpoint(target))
    if replaces and not force:
        which = "the checkpoint being calibrated" if _same(target, source) else "a cnnctl checkpoint"
        raise ConfigError(f"--out {target}: is {which}; add --force to replace it, or write somewhere else")
    return target if replaces else claim_output(target, force=force, option="--out")


def _same(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def calibrate_checkpoint(
    checkpoint: Path,
    data: Path | None = None,
    split: str = "val",
    out: Path | None = None,
    *,
    force: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Fit, write, and return the record: checkpoint, out, calibrated_on, temperature_before,
    temperature, ece_before, ece_after, nll_before, nll_after, images."""
    source = checkpoint / "best.pt" if checkpoint.is_dir() else checkpoint
    target = claim_checkpoint(out or default_out(checkpoint), source, force)
    loaded = load_model(source, device)
    cfg = validate(loaded.checkpoint["config"], f"{source} (stored config)")
    dataset, what = eval_dataset(loaded, cfg, data, split)
    if len(dataset) == 0:
        raise ConfigError(f"{what}: no images to calibrate on")
    before = loaded.stepper.task
    keep = cfg.train.threshold == "auto"  # multi_label thresholds chosen on val move with T
    task, record = calibrate(
        loaded.stepper,
        eval_batches(loaded, cfg, dataset, batch_size),
        loaded.classes,
        before,
        keep_decisions=keep,
    )
    if not math.isfinite(record["nll_after"]):
        raise RunFailed(f"{source}: the model's outputs on {what} are not finite; nothing was written")
    record = {**record, "calibrated_on": what}
    rewrite_with(target, loaded.checkpoint, task, record)
    return {
        "checkpoint": str(source),
        "out": str(target),
        "temperature_before": before.temperature,
        **record,
    }
