"""The task seam: what a classification task decides, as one object.

Everything that differs between single-label and multi-label classification goes through
a `Task`: how the network's outputs read (and how many there are), how they become
probabilities and decisions, the val/test loss, the metrics accumulated over a split and
the columns a prediction file gets. The engine, the session, export and predict call these
methods and never look at an output kind themselves, so a new task is a new module plus a
registration in `cnnctl.tasks`.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Accumulator(Protocol):
    """A split's metrics, summed batch by batch on the device (one host sync at `result`)."""

    def update(self, probs: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor) -> None: ...
    def all_reduce(self, reduce: Any, device: torch.device) -> None: ...
    def result(self) -> Any: ...


class Task(Protocol):
    """One classification task with its output kind fixed (what best.pt records)."""

    @property
    def name(self) -> str:
        """The registry name (a config's `task`, once it has one)."""

    @property
    def output_kind(self) -> str:
        """What a checkpoint and an export sidecar store as `output_kind`."""

    def tuned(self, result: Any) -> Task:
        """The task as best.pt records it after a val pass that gave `result` (multi_label with
        train.threshold: auto: that pass's best-F1 thresholds; otherwise itself)."""

    def record(self) -> dict[str, Any]:
        """What a checkpoint and an export sidecar store: task, output_kind and the task's own keys."""

    @property
    def temperature(self) -> float:
        """What the outputs are divided by before they become probabilities (1: uncalibrated)."""

    def with_temperature(self, temperature: float, keep_decisions: bool = True) -> Task:
        """The same task read at another temperature; with `keep_decisions`, deciding as before
        (multi_label moves its thresholds), else keeping its thresholds as probabilities."""

    def calibration_terms(self, outputs: torch.Tensor, targets: torch.Tensor, s: float) -> torch.Tensor:
        """float64 [NLL, dNLL/ds, d2NLL/ds2] of raw outputs scaled by s, summed over rows."""

    def num_outputs(self, num_classes: int) -> int: ...
    def problem(self, loss: str, num_classes: int) -> str | None: ...
    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor: ...
    def predicted(self, outputs: torch.Tensor) -> torch.Tensor: ...
    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...
    def decide(self, probs: torch.Tensor, classes: list[str], k: int) -> list[Any]: ...
    def eval_loss_sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...
    def probs_loss_sum(self, probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...
    def metrics(self, classes: list[str], topk: tuple[int, ...], keep_wrong: int = 0) -> Accumulator: ...
    def prediction_columns(self, topk: int) -> list[str]: ...
    def prediction_record(self, prediction: Any, topk: int) -> dict[str, Any]: ...
    def describe_outputs(self) -> str: ...
