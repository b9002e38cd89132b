"""What differs between classification tasks: outputs, loss, decision rule, metrics, columns.

A task is registered here by name with two constructors: one for training (from the loss
and `model.log_softmax` the config names) and one for what a checkpoint or an export
sidecar recorded. Only `single_label` exists; multi-label is a new module plus two lines in
each table below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnctl.tasks import single_label
from cnnctl.tasks.base import Accumulator, Task

DEFAULT = single_label.NAME

# name → (loss, log_softmax) → the task a new run trains
FOR_TRAINING: dict[str, Callable[[str, bool], Task]] = {
    single_label.NAME: lambda loss, log_softmax: single_label.SingleLabel(
        single_label.output_kind(loss, log_softmax)
    ),
}
# name → a checkpoint's or sidecar's metadata → the task it was trained for
FROM_RECORD: dict[str, Callable[[Mapping[str, Any]], Task]] = {
    single_label.NAME: lambda meta: single_label.SingleLabel(str(meta["output_kind"])),
}


def for_training(loss: str, log_softmax: bool, name: str = DEFAULT) -> Task:
    """The task a run trains: `name` (a config's task) with the outputs its loss implies."""
    return FOR_TRAINING[name](loss, log_softmax)


def from_record(meta: Mapping[str, Any]) -> Task:
    """The task a checkpoint or export sidecar was made for (one from before tasks: single_label).

    The record has been checked (`artifacts.checkpoint.metadata_problem`) before it gets here."""
    return FROM_RECORD[str(meta.get("task", DEFAULT))](meta)


__all__ = ["DEFAULT", "Accumulator", "Task", "for_training", "from_record"]
