"""A checkpoint's predictions on the images it did not train on, one row per image with every
class's probability: `cnnctl cv`'s out-of-fold predictions, and the metrics over them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnctl.artifacts.loaded import LoadedModel
from cnnctl.config import RunConfig
from cnnctl.data import LabelledDataset
from cnnctl.session.eval_data import eval_batches
from cnnctl.tasks import Accumulator

TOPK = (1, 5)


@dataclass
class HeldOut:
    rows: list[dict[str, Any]]  # image, label, predicted, p_<class>... (the model's classes)
    metrics: Accumulator  # over the rows (`result()`; `tasks.pooled` adds several)


def held_out(loaded: LoadedModel, cfg: RunConfig, dataset: LabelledDataset, ids: list[str]) -> HeldOut:
    """Score `dataset` (its samples named by `ids`, in order) with the checkpoint's task: its
    temperature, its thresholds."""
    stepper, classes = loaded.stepper, loaded.classes
    task = stepper.task
    outputs, targets = stepper.outputs(eval_batches(loaded, cfg, dataset, None))
    accumulator = task.metrics(classes, TOPK)
    if len(outputs) == 0:
        return HeldOut([], accumulator)
    probs = task.probabilities(outputs)
    accumulator.update(probs, targets, task.eval_loss_sum(outputs, targets))
    separator = cfg.label_separator()
    decided = task.decide(probs, classes, 1)
    rows = []
    for name, target, decision, row in zip(ids, targets.tolist(), decided, probs.tolist(), strict=True):
        if separator is None:
            label = classes[int(target)]
        else:
            label = separator.join(c for c, on in zip(classes, target, strict=True) if on > 0.5)
        rows.append(
            {"image": name, "label": label, "predicted": decision[0]}
            | {f"p_{c}": float(p) for c, p in zip(classes, row, strict=True)}
        )
    return HeldOut(rows, accumulator)
