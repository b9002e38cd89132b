"""Single-label classification metrics accumulated batch by batch: loss, accuracy, top-k,
confusion matrix, the most confidently wrong samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnctl.tasks import calibration, curves


@dataclass
class EvalResult:
    """Metrics of one pass over a split. `confusion[t, p]` counts true t predicted as p."""

    loss: float
    accuracy: float
    topk: dict[int, float]
    confusion: torch.Tensor
    classes: list[str]
    count: int
    # The most confidently wrong samples, most confident first: {index, true, predicted,
    # confidence}; index is the position in the evaluated split (kept only when asked).
    wrong: list[dict[str, Any]] = field(default_factory=list)
    # (2, K, curves.BINS) one-vs-rest probability histograms: [negative, positive] x class x bin
    hist: torch.Tensor | None = None
    # (3, calibration.ECE_BINS) per confidence bin: images, summed confidence, summed correct
    reliability: torch.Tensor | None = None
    tta: dict[str, Any] | None = None  # evaluate --tta: the views and the metrics with them

    @property
    def ece(self) -> float | None:
        """The expected calibration error of the top-class probability (15 bins)."""
        return None if self.reliability is None else calibration.ece(self.reliability)

    def per_class(self) -> list[dict[str, Any]]:
        """Support, correct, accuracy (= recall), precision, F1 and the one-vs-rest ROC AUC and
        PR AUC (average precision; None where the class has no positive or no negative image)
        for every class."""
        cm = self.confusion.to(torch.float64)
        correct = cm.diag()
        support = cm.sum(dim=1)
        predicted = cm.sum(dim=0)
        rows = []
        for i, name in enumerate(self.classes):
            recall = float(correct[i] / support[i]) if support[i] else 0.0
            precision = float(correct[i] / predicted[i]) if predicted[i] else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append(
                {
                    "class": name,
                    "support": int(support[i]),
                    "correct": int(correct[i]),
                    "accuracy": recall,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                    "roc_auc": self._ranked(curves.roc_auc, i),
                    "pr_auc": self._ranked(curves.average_precision, i),
                }
            )
        return rows

    def _ranked(self, metric: Any, i: int) -> Any:
        return None if self.hist is None else metric(self.hist[1, i], self.hist[0, i])

    def roc_curves(self) -> list[tuple[list[float], list[float]]]:
        """Per class, one-vs-rest (false positive rate, true positive rate) points."""
        return [self._ranked(curves.roc_curve, i) or ([], []) for i in range(len(self.classes))]

    def pr_curves(self) -> list[tuple[list[float], list[float]]]:
        """Per class, one-vs-rest (recall, precision) points."""
        return [self._ranked(curves.pr_curve, i) or ([], []) for i in range(len(self.classes))]

    def ranking(self) -> dict[str, tuple[list[tuple[list[float], list[float]]], list[float | None]]]:
        """For plots: kind ("pr", "roc") -> (per class curve points, per class score)."""
        rows = self.per_class()
        return {
            "pr": (self.pr_curves(), [r["pr_auc"] for r in rows]),
            "roc": (self.roc_curves(), [r["roc_auc"] for r in rows]),
        }

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes present in the split (scikit-learn's definition)."""
        rows = [r for r in self.per_class() if r["support"]]
        return sum(r["recall"] for r in rows) / len(rows) if rows else 0.0

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes that are in the split or predicted (scikit-learn's labels)."""
        predicted = self.confusion.sum(dim=0).tolist()
        rows = [r for i, r in enumerate(self.per_class()) if r["support"] or predicted[i]]
        return sum(r["f1"] for r in rows) / len(rows) if rows else 0.0

    def to_plain(self) -> dict[str, Any]:
        rows = self.per_class()
        return {
            "loss": self.loss,
            "nll": self.loss,
            "ece": self.ece,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "topk": {str(k): v for k, v in self.topk.items()},
            "roc_auc": curves.macro([r["roc_auc"] for r in rows]),
            "pr_auc": curves.macro([r["pr_auc"] for r in rows]),
            "count": self.count,
            "classes": list(self.classes),
            "per_class": rows,
            "confusion_matrix": self.confusion.tolist(),
            "most_confident_errors": self.wrong,
            **({"tta": self.tta} if self.tta is not None else {}),
        }


@dataclass
class MetricAccumulator:
    """Sums on the device; one host sync at `result()`."""

    classes: list[str]
    topk: tuple[int, ...] = (1,)
    loss_sum: torch.Tensor | float = 0.0
    count: int = 0
    confusion: torch.Tensor | None = None
    topk_hits: dict[int, torch.Tensor | int] = field(default_factory=dict)
    keep_wrong: int = 0  # how many confidently wrong samples to remember (costs a sync per batch)
    wrong: list[tuple[float, int, int, int]] = field(default_factory=list)
    hist: torch.Tensor | None = None  # see EvalResult.hist
    reliability: torch.Tensor | None = None  # see EvalResult.reliability

    def update(self, probs: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor) -> None:
        k = len(self.classes)
        predicted = probs.argmax(dim=1)
        if self.keep_wrong:
            self._track_wrong(probs, predicted, targets)
        flat = targets * k + predicted
        counts = torch.bincount(flat, minlength=k * k).reshape(k, k)
        self.confusion = counts if self.confusion is None else self.confusion + counts
        truth = targets[:, None] == torch.arange(k, device=targets.device)
        hist = curves.histogram(probs, truth)
        self.hist = hist if self.hist is None else self.hist + hist
        sums = calibration.reliability(probs.max(dim=1).values, predicted == targets)
        self.reliability = sums if self.reliability is None else self.reliability + sums
        self.loss_sum = self.loss_sum + loss_sum.detach()
        self.count += int(targets.numel())
        for top in self.topk:
            if top >= k:
                continue
            best = probs.topk(top, dim=1).indices
            hits = (best == targets[:, None]).any(dim=1).sum()
            self.topk_hits[top] = self.topk_hits.get(top, 0) + hits

    def _track_wrong(self, probs: torch.Tensor, predicted: torch.Tensor, targets: torch.Tensor) -> None:
        confidence = probs.max(dim=1).values
        miss = (predicted != targets).nonzero().flatten()
        if miss.numel():
            best = confidence[miss].topk(min(self.keep_wrong, miss.numel())).indices
            for i in miss[best].tolist():
                self.wrong.append((float(confidence[i]), self.count + i, int(targets[i]), int(predicted[i])))
            self.wrong = sorted(self.wrong, key=lambda w: (-w[0], w[1]))[: self.keep_wrong]

    def all_reduce(self, reduce: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> None:
        """Sum the counts over processes (`reduce` sums a tensor in place across ranks), so every
        rank's `result()` is the global one. Packed into one float64 tensor: one collective."""
        k = len(self.classes)
        confusion = self.confusion if self.confusion is not None else torch.zeros(k, k, dtype=torch.long)
        hist = self.hist if self.hist is not None else torch.zeros(2, k, curves.BINS, dtype=torch.long)
        sums = self.reliability if self.reliability is not None else torch.zeros(3, calibration.ECE_BINS)
        tops = [t for t in self.topk if 1 < t < k]
        packed = torch.cat(
            [
                torch.tensor([float(self.loss_sum), float(self.count)], dtype=torch.float64),
                torch.tensor([float(self.topk_hits.get(t, 0)) for t in tops], dtype=torch.float64),
                sums.detach().cpu().flatten().to(torch.float64),
                confusion.detach().cpu().flatten().to(torch.float64),
                hist.detach().cpu().flatten().to(torch.float64),
            ]
        ).to(device)
        packed = reduce(packed).cpu()
        self.loss_sum, self.count = float(packed[0]), int(packed[1])
        for i, t in enumerate(tops):
            self.topk_hits[t] = int(packed[2 + i])
        start = 2 + len(tops)
        self.reliability = packed[start : start + sums.numel()].reshape(sums.shape)
        rest = packed[start + sums.numel() :].round().long()
        self.confusion = rest[: k * k].reshape(k, k)
        self.hist = rest[k * k :].reshape(hist.shape)

    def result(self) -> EvalResult:
        k = len(self.classes)
        confusion = (
            self.confusion.cpu() if self.confusion is not None else torch.zeros(k, k, dtype=torch.long)
        )
        n = max(self.count, 1)
        accuracy = float(confusion.diag().sum()) / n
        # top-k for k >= the class count is trivially 1.0: reported only for k = 1.
        topk = {1: accuracy}
        for top in self.topk:
            if 1 < top < k:
                topk[top] = float(self.topk_hits.get(top, 0)) / n
        return EvalResult(
            loss=float(self.loss_sum) / n,
            accuracy=accuracy,
            topk=topk,
            confusion=confusion,
            classes=list(self.classes),
            count=self.count,
            hist=(self.hist if self.hist is not None else torch.zeros(2, k, curves.BINS)).cpu().double(),
            reliability=None if self.reliability is None else self.reliability.cpu().double(),
            wrong=[
                {"index": i, "true": self.classes[t], "predicted": self.classes[p], "confidence": c}
                for c, i, t, p in self.wrong
            ],
        )
