"""Single-label classification: each image is exactly one of the classes.

The network's outputs are one of three kinds (`output_kind`, stored in every checkpoint and
export sidecar): logits (softmax gives the probabilities), log-probabilities (a network
ending in LogSoftmax, trained with `nll`), or one binary logit (two classes trained with
`bce_with_logits`: sigmoid gives the second class's probability). The decision is the most
probable class; the val/test loss is the summed negative log-likelihood of the true class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cnnctl.tasks import calibration
from cnnctl.tasks.metrics import MetricAccumulator

NAME = "single_label"
# What a model's outputs mean; decides the loss used for validation and the probabilities.
LOGITS, LOG_PROBS, BINARY_LOGIT = "logits", "log_probs", "binary_logit"
OUTPUT_KINDS = (LOGITS, LOG_PROBS, BINARY_LOGIT)
# What predict reports per image: (label, its probability, the top-k (class, probability) pairs)
Decision = tuple[str, float, list[tuple[str, float]]]


def output_kind(loss: str, log_softmax: bool) -> str:
    """The output kind a training loss and `model.log_softmax` give the network."""
    if loss == "bce_with_logits":
        return BINARY_LOGIT
    return LOG_PROBS if log_softmax else LOGITS


@dataclass(frozen=True)
class SingleLabel:
    """The single-label task for networks whose outputs are of `output_kind`, read at
    `temperature` (outputs divided by it before the softmax or sigmoid: calibration)."""

    output_kind: str = LOGITS
    name: str = NAME
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise ValueError(f"output kind {self.output_kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature {self.temperature!r} must be a positive number")

    def with_temperature(self, temperature: float, keep_decisions: bool = True) -> SingleLabel:
        """The task at another temperature (no decision of a single-label task depends on it)."""
        return SingleLabel(self.output_kind, self.name, round(float(temperature), 6))

    def _scaled(self, outputs: torch.Tensor) -> torch.Tensor:
        """Float outputs divided by the temperature (log-probabilities renormalised); as they
        are at temperature 1."""
        outputs = outputs.float()
        if self.temperature == 1.0:
            return outputs
        if self.output_kind == LOG_PROBS:
            return torch.log_softmax(outputs / self.temperature, dim=1)
        return outputs / self.temperature

    def calibration_terms(self, outputs: torch.Tensor, targets: torch.Tensor, s: float) -> torch.Tensor:
        """The val NLL of raw `outputs` scaled by s = 1/T and its two s-derivatives (summed)."""
        if self.output_kind == BINARY_LOGIT:
            return calibration.bce_terms(outputs.squeeze(1), targets, s)
        return calibration.ce_terms(outputs, targets, s)

    def tuned(self, result: Any) -> SingleLabel:
        """Nothing is chosen on val for a single-label task: itself."""
        return self

    def record(self) -> dict[str, Any]:
        """What a checkpoint and an export sidecar store of the task (`from_record` reads it)."""
        return {"task": self.name, "output_kind": self.output_kind, "temperature": self.temperature}

    def num_outputs(self, num_classes: int) -> int:
        return 1 if self.output_kind == BINARY_LOGIT else num_classes

    def problem(self, loss: str, num_classes: int) -> str | None:
        """Why `loss` cannot train this task on `num_classes` classes (the config key first), or None."""
        if loss == "bce_with_logits" and num_classes != 2:
            return f"train.loss: bce_with_logits needs 2 classes, the data has {num_classes}"
        return None

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities from raw model outputs (at the task's temperature)."""
        outputs = self._scaled(outputs)
        if self.output_kind == BINARY_LOGIT:
            p = torch.sigmoid(outputs.squeeze(1))
            return torch.stack([1 - p, p], dim=1)
        if self.output_kind == LOG_PROBS:
            return outputs.exp()
        return outputs.softmax(dim=1)

    def predicted(self, outputs: torch.Tensor) -> torch.Tensor:
        """The predicted class of each row of raw outputs."""
        if self.output_kind == BINARY_LOGIT:
            return (outputs.squeeze(1) > 0).long()
        return outputs.argmax(dim=1)

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """How many rows are decided right (a 0-d tensor, on the outputs' device)."""
        return (self.predicted(outputs) == targets).sum()

    def decide(self, probs: torch.Tensor, classes: list[str], k: int) -> list[Decision]:
        """Per row of (N, classes) probabilities: the label, its probability and the k most
        probable (class, probability) pairs, most probable first."""
        top_p, top_i = probs.topk(k, dim=1)
        rows: list[Decision] = []
        for ps, cs in zip(top_p.tolist(), top_i.tolist(), strict=True):
            pairs = [(classes[c], float(p)) for c, p in zip(cs, ps, strict=True)]
            rows.append((pairs[0][0], pairs[0][1], pairs))
        return rows

    def eval_loss_sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of the targets (no smoothing, at the task's
        temperature): the val/test loss."""
        outputs = self._scaled(outputs)
        if self.output_kind == BINARY_LOGIT:
            return F.binary_cross_entropy_with_logits(outputs.squeeze(1), targets.float(), reduction="sum")
        if self.output_kind == LOG_PROBS:
            return F.nll_loss(outputs, targets, reduction="sum")
        return F.cross_entropy(outputs, targets, reduction="sum")

    def probs_loss_sum(self, probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed NLL of the targets under (N, classes) probabilities (TTA's averaged ones)."""
        picked = probs.float().gather(1, targets.long()[:, None]).squeeze(1)
        return -picked.clamp(min=1e-12).log().sum()

    def metrics(self, classes: list[str], topk: tuple[int, ...], keep_wrong: int = 0) -> MetricAccumulator:
        return MetricAccumulator(classes, topk, keep_wrong=keep_wrong)

    def prediction_columns(self, topk: int) -> list[str]:
        """path, label, probability (+ top{i}_label / top{i}_probability for topk > 1), error."""
        columns = ["path", "label", "probability"]
        if topk > 1:
            for i in range(1, topk + 1):
                columns += [f"top{i}_label", f"top{i}_probability"]
        return [*columns, "error"]

    def prediction_record(self, prediction: Any, topk: int) -> dict[str, Any]:
        """One prediction file row: `prediction` has path, label, probability, topk, error."""
        record: dict[str, Any] = {
            "path": prediction.path,
            "label": prediction.label,
            "probability": prediction.probability,
        }
        if topk > 1:
            for i in range(topk):
                label, prob = prediction.topk[i] if i < len(prediction.topk) else ("", None)
                record[f"top{i + 1}_label"] = label
                record[f"top{i + 1}_probability"] = prob
        record["error"] = prediction.error
        return record

    def describe_outputs(self) -> str:
        """How an exported model's outputs become probabilities (the sidecar's `to_probabilities`)."""
        scaled = f" / {self.temperature:g}" if self.temperature != 1.0 else ""
        if self.output_kind == BINARY_LOGIT:
            return f"p = sigmoid(output[:, 0]{scaled}) is the probability of classes[1]; 1 - p of classes[0]"
        if self.output_kind == LOG_PROBS:
            if scaled:
                return f"softmax(output{scaled}, dim=1): the outputs are log-probabilities"
            return "exp(output): the outputs are log-probabilities"
        return f"softmax(output{scaled}, dim=1): the outputs are logits"
