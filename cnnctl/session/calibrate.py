"""Calibration of a trained model: the temperature fitted on a labelled split's outputs, the
ECE and NLL before and after, and best.pt rewritten with it (atomically, by rank 0).

Used at the end of `cnnctl train` (train.calibrate) and by `cnnctl calibrate`, which refits a
checkpoint on another labelled set and writes a new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.data import Batches
from cnnctl.engine.stepper import Stepper
from cnnctl.runtime.distributed import Dist
from cnnctl.tasks import Task
from cnnctl.tasks.calibration import fit_temperature


def calibrate(
    stepper: Stepper,
    batches: Batches,
    classes: list[str],
    before: Task,
    dist: Dist | None = None,
    keep_decisions: bool = True,
) -> tuple[Task, dict[str, Any]]:
    """The temperature minimising the NLL of the stepper's model on `batches`; returns the
    calibrated task and the plain record {temperature, ece_before, ece_after, nll_before,
    nll_after, images}, "before" being `before` (the task as it was: uncalibrated after
    training). `keep_decisions`: see `Task.with_temperature`. Every rank of a DDP job calls it
    and gets the same result."""
    dist = dist or Dist()
    outputs, targets = stepper.outputs(batches)

    def terms(s: float) -> torch.Tensor:
        local = (
            before.calibration_terms(outputs, targets, s)
            if len(outputs)
            else torch.zeros(3, dtype=torch.float64)
        )
        return _summed(local, stepper.device, dist)

    after = before.with_temperature(fit_temperature(terms), keep_decisions)
    was = _assess(before, outputs, targets, classes, stepper.device, dist)
    now = _assess(after, outputs, targets, classes, stepper.device, dist)
    record = {
        "temperature": after.temperature,
        "ece_before": was.ece,
        "ece_after": now.ece,
        "nll_before": was.loss,
        "nll_after": now.loss,
        "images": now.count,
    }
    return after, record


def _summed(local: torch.Tensor, device: torch.device, dist: Dist) -> torch.Tensor:
    if not dist.enabled:
        return local
    return dist.all_reduce_(local.to(device)).cpu()


def _assess(
    task: Task,
    outputs: torch.Tensor,
    targets: torch.Tensor,
    classes: list[str],
    device: torch.device,
    dist: Dist,
) -> Any:
    """The task's metrics over stored outputs (loss = NLL at the task's temperature, ece)."""
    acc = task.metrics(classes, (1,))
    if len(outputs):
        acc.update(task.probabilities(outputs), targets, task.eval_loss_sum(outputs, targets))
    if dist.enabled:
        acc.all_reduce(dist.all_reduce_, device)
    return acc.result()


def rewrite_with(path: Path, data: dict[str, Any], task: Task, calibration: dict[str, Any]) -> None:
    """Write checkpoint `data` back to `path` (atomically) with `task`'s record (its
    temperature, multi_label's moved thresholds), the format version that record needs and
    the `calibration` record."""
    record = task.record()
    ckpt.save_atomic(
        {**data, **record, "format_version": ckpt.format_version(record), "calibration": calibration}, path
    )
