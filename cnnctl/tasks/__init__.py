"""What differs between classification tasks: outputs, loss, decision rule, metrics, columns.

A task is registered here by name with two constructors: one for training (from the loss,
`model.log_softmax` and the class names) and one for what a checkpoint or an export sidecar
recorded. `single_label` is what every config trains today; `multi_label` (its own module,
two lines below) is built and tested at this seam, and joins the config with `task:`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cnnctl.tasks import multi_label, single_label
from cnnctl.tasks.base import Accumulator, Task

DEFAULT = single_label.NAME

# name → (loss, log_softmax, classes) → the task a new run trains
FOR_TRAINING: dict[str, Callable[[str, bool, Sequence[str]], Task]] = {
    single_label.NAME: lambda loss, log_softmax, classes: single_label.SingleLabel(
        single_label.output_kind(loss, log_softmax)
    ),
    multi_label.NAME: lambda loss, log_softmax, classes: multi_label.MultiLabel(tuple(classes)),
}
# name → a checkpoint's or sidecar's metadata → the task it was trained for
FROM_RECORD: dict[str, Callable[[Mapping[str, Any]], Task]] = {
    single_label.NAME: lambda meta: single_label.SingleLabel(
        str(meta["output_kind"]), temperature=float(meta.get("temperature", 1.0))
    ),
    multi_label.NAME: lambda meta: multi_label.MultiLabel(
        tuple(meta["classes"]),
        tuple(meta["thresholds"]) if meta.get("thresholds") is not None else None,
        str(meta.get("label_separator", multi_label.SEPARATOR)),
        temperature=float(meta.get("temperature", 1.0)),
    ),
}


def for_training(loss: str, log_softmax: bool, name: str = DEFAULT, classes: Sequence[str] = ()) -> Task:
    """The task a run trains: `name` (a config's task) with the outputs its loss implies."""
    return FOR_TRAINING[name](loss, log_softmax, classes)


def from_record(meta: Mapping[str, Any]) -> Task:
    """The task a checkpoint or export sidecar was made for (one from before tasks: single_label).

    The record has been checked (`artifacts.checkpoint.metadata_problem`) before it gets here."""
    return FROM_RECORD[str(meta.get("task", DEFAULT))](meta)


def pooled(accumulators: Sequence[Accumulator]) -> Any:
    """One result over every accumulator's samples (cv's folds, each decided by its own
    model): their sums added, as an all-reduce adds the ranks' of a DDP job."""
    import torch

    cpu = torch.device("cpu")
    packs: list[torch.Tensor] = []

    def keep(packed: torch.Tensor) -> torch.Tensor:
        packs.append(packed.clone())
        return packed

    for accumulator in accumulators:
        accumulator.all_reduce(keep, cpu)
    total = torch.stack(packs).sum(dim=0)
    last = accumulators[-1]
    last.all_reduce(lambda packed: total.clone(), cpu)
    return last.result()


__all__ = ["DEFAULT", "Accumulator", "Task", "for_training", "from_record", "pooled"]
