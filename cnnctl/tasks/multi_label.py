"""Multi-label classification: each image has any number of the labels (none included).

The network has one logit per label; sigmoid gives each label's probability independently
and a label is predicted when its probability reaches that label's threshold (0.5 until
`train.threshold` chooses them on val). The val/test loss is the binary cross entropy of
every label decision, averaged over the labels and summed over images, so it reads like
the single-label loss per image. Targets are multi-hot (N, labels) float tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cnnctl.tasks import calibration
from cnnctl.tasks.multi_label_metrics import DEFAULT_THRESHOLD, MultiLabelAccumulator

NAME = "multi_label"
OUTPUT_KIND = "logits"  # one logit per label (the checkpoint's `output_kind`; `task` tells them apart)
LOSSES = ("bce_with_logits", "focal")
SEPARATOR = "|"


@dataclass(frozen=True)
class MultiLabel:
    """The multi-label task over `classes` (its labels), deciding at `thresholds` (one per
    label, on the probabilities at `temperature`: the logits divided by it, calibration)."""

    classes: tuple[str, ...]
    thresholds: tuple[float, ...] | None = None  # None: DEFAULT_THRESHOLD for every label
    separator: str = SEPARATOR  # joins the predicted labels in a prediction file's `labels`
    tune: bool = False  # train.threshold: auto: `tuned` takes each val pass's best-F1 thresholds
    name: str = NAME
    output_kind: str = OUTPUT_KIND
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.thresholds is not None and len(self.thresholds) != len(self.classes):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.classes)} labels")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature {self.temperature!r} must be a positive number")

    def with_thresholds(self, thresholds: Sequence[float]) -> MultiLabel:
        rounded = tuple(round(float(t), 6) for t in thresholds)
        return MultiLabel(self.classes, rounded, self.separator, self.tune, temperature=self.temperature)

    def with_temperature(self, temperature: float, keep_decisions: bool = True) -> MultiLabel:
        """The task at a new temperature; with `keep_decisions` its thresholds move so that no
        decision changes (thresholds chosen on val: train.threshold auto), else they stay the
        probabilities they are (a threshold the config fixed)."""
        new = round(float(temperature), 6)
        old_cuts = self.thresholds or (DEFAULT_THRESHOLD,) * len(self.classes)
        if not keep_decisions:
            return MultiLabel(self.classes, tuple(old_cuts), self.separator, self.tune, temperature=new)
        moved = tuple(round(calibration.move_threshold(t, self.temperature, new), 6) for t in old_cuts)
        return MultiLabel(self.classes, moved, self.separator, self.tune, temperature=new)

    def calibration_terms(self, outputs: torch.Tensor, targets: torch.Tensor, s: float) -> torch.Tensor:
        """The val loss (BCE averaged over labels) of raw `outputs` scaled by s = 1/T, and its
        two s-derivatives, summed over images."""
        return calibration.bce_terms(outputs, targets, s)

    def tuned(self, result: Any) -> MultiLabel:
        """The task best.pt records after a val pass with `result` (a MultiLabelResult): its
        best-F1 thresholds with train.threshold: auto, else the thresholds as they are."""
        return self.with_thresholds(result.best_thresholds) if self.tune else self

    def record(self) -> dict[str, Any]:
        """What a checkpoint and an export sidecar store of the task (`from_record` reads it)."""
        thresholds = list(self.thresholds or (DEFAULT_THRESHOLD,) * len(self.classes))
        return {
            "task": self.name,
            "output_kind": self.output_kind,
            "thresholds": thresholds,
            "label_separator": self.separator,
            "temperature": self.temperature,
        }

    def cutoffs(self, device: torch.device | None = None) -> torch.Tensor:
        values = self.thresholds or (DEFAULT_THRESHOLD,) * len(self.classes)
        return torch.tensor(values, dtype=torch.float32, device=device)

    def num_outputs(self, num_classes: int) -> int:
        return num_classes

    def problem(self, loss: str, num_classes: int) -> str | None:
        if loss not in LOSSES:
            return f"train.loss: {loss} is single-label; task multi_label trains with {' or '.join(LOSSES)}"
        if num_classes < 2:
            return f"task multi_label needs at least 2 labels, the data has {num_classes}"
        return None

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, labels) independent probabilities (at the task's temperature)."""
        return self._scaled(outputs).sigmoid()

    def _scaled(self, outputs: torch.Tensor) -> torch.Tensor:
        outputs = outputs.float()
        return outputs if self.temperature == 1.0 else outputs / self.temperature

    def predicted(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, labels) multi-hot decisions (1.0 where the label is predicted)."""
        return (self.probabilities(outputs) >= self.cutoffs(outputs.device)).float()

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Images with every label decided right (exact match; soft targets read at 0.5)."""
        return (self.predicted(outputs) == (targets > 0.5).float()).all(dim=1).sum()

    def decide(self, probs: torch.Tensor, classes: list[str], k: int) -> list[Any]:
        """Per row: the predicted labels joined by the separator, None (no single probability),
        and every (label, probability) pair in label order (the prediction file's p_ columns)."""
        decided = probs >= self.cutoffs(probs.device)
        rows = []
        for p, d in zip(probs.tolist(), decided.tolist(), strict=True):
            chosen = [name for name, on in zip(classes, d, strict=True) if on]
            rows.append((self.separator.join(chosen), None, list(zip(classes, p, strict=True))))
        return rows

    def eval_loss_sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per = F.binary_cross_entropy_with_logits(self._scaled(outputs), targets.float(), reduction="none")
        return per.mean(dim=1).sum()

    def probs_loss_sum(self, probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The val loss (BCE averaged over labels, summed over images) of given probabilities."""
        p = probs.float().clamp(1e-12, 1 - 1e-12)
        per = F.binary_cross_entropy(p, targets.float(), reduction="none")
        return per.mean(dim=1).sum()

    def metrics(
        self, classes: list[str], topk: tuple[int, ...], keep_wrong: int = 0
    ) -> MultiLabelAccumulator:
        return MultiLabelAccumulator(classes, self.thresholds)

    def prediction_columns(self, topk: int) -> list[str]:
        """path, labels (joined by the separator), p_<label> for every label, error."""
        return ["path", "labels", *(f"p_{name}" for name in self.classes), "error"]

    def prediction_record(self, prediction: Any, topk: int) -> dict[str, Any]:
        record: dict[str, Any] = {"path": prediction.path, "labels": prediction.label}
        probabilities = dict(prediction.topk)
        for name in self.classes:
            record[f"p_{name}"] = probabilities.get(name)
        record["error"] = prediction.error
        return record

    def describe_outputs(self) -> str:
        scaled = f" / {self.temperature:g}" if self.temperature != 1.0 else ""
        return f"sigmoid(output{scaled}): each label's probability, independently; predicted at its threshold"
