"""Multi-label metrics accumulated batch by batch, from sums only (so DDP reduces them with one
all-reduce, as the single-label ones): per label a histogram of the predicted probability for
its positive and its negative images, and the counts the decision thresholds give.

From the histograms: average precision per label (the step-wise area under the PR curve, as
scikit-learn's `average_precision_score` computes it, on probabilities rounded down to
1/BINS) and the threshold that maximises F1 per label (`train.threshold: auto`). From the
counts at the thresholds: precision / recall / F1 per label, micro and macro F1, exact match
(all labels of an image right) and Hamming loss (the share of wrong label decisions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cnnctl.tasks import calibration
from cnnctl.tasks.curves import BINS, average_precision, histogram, macro, pr_curve, roc_auc, roc_curve

DEFAULT_THRESHOLD = 0.5  # a label with no positive (or no negative) image to tune on


@dataclass
class MultiLabelResult:
    """Metrics of one pass over a split. `per_label` rows: label, support, precision, recall,
    f1, ap (None without positives), roc_auc (None without positives or negatives), threshold."""

    loss: float
    map: float  # mean AP over the labels that have a positive image
    micro_f1: float
    macro_f1: float
    exact_match: float
    hamming_loss: float
    per_label: list[dict[str, Any]]
    classes: list[str]
    count: int
    best_thresholds: list[float]  # per label, the threshold with the best F1 on this split
    curves: list[tuple[list[float], list[float]]]  # per label: (recall, precision) points, for plots
    roc_auc: float | None = None  # mean ROC AUC over the labels that have it
    roc: list[tuple[list[float], list[float]]] | None = None  # per label: (fpr, tpr) points
    # (3, calibration.ECE_BINS) over every (image, label) probability: count, summed
    # probability, summed presence of the label
    reliability: torch.Tensor | None = None
    tta: dict[str, Any] | None = None  # evaluate --tta: the views and the metrics with them

    @property
    def ece(self) -> float | None:
        """The expected calibration error of the label probabilities (15 bins)."""
        return None if self.reliability is None else calibration.ece(self.reliability)

    @property
    def accuracy(self) -> float:
        """What metrics.csv's acc columns and train.monitor: val_acc read: exact match."""
        return self.exact_match

    def ranking(self) -> dict[str, tuple[list[tuple[list[float], list[float]]], list[float | None]]]:
        """For plots: kind ("pr", "roc") -> (per label curve points, per label score)."""
        return {
            "pr": (self.curves, [r["ap"] for r in self.per_label]),
            "roc": (self.roc or [([], [])] * len(self.classes), [r["roc_auc"] for r in self.per_label]),
        }

    def to_plain(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "nll": self.loss,
            "ece": self.ece,
            "map": self.map,
            "roc_auc": self.roc_auc,
            "micro_f1": self.micro_f1,
            "macro_f1": self.macro_f1,
            "exact_match": self.exact_match,
            "hamming_loss": self.hamming_loss,
            "count": self.count,
            "classes": list(self.classes),
            "per_label": self.per_label,
            **({"tta": self.tta} if self.tta is not None else {}),
        }


class MultiLabelAccumulator:
    """Sums on the device; one host sync at `result()`."""

    def __init__(self, classes: list[str], thresholds: Sequence[float] | None = None):
        k = len(classes)
        self.classes = classes
        self.thresholds = torch.tensor(
            list(thresholds) if thresholds is not None else [DEFAULT_THRESHOLD] * k, dtype=torch.float32
        )
        self.hist = torch.zeros(2, k, BINS, dtype=torch.float64)  # [negative, positive] x label x bin
        self.counts = torch.zeros(3, k, dtype=torch.float64)  # tp, fp, fn per label at the thresholds
        self.exact = torch.zeros((), dtype=torch.float64)
        self.reliability = torch.zeros(3, calibration.ECE_BINS, dtype=torch.float64)
        self.loss_sum = torch.zeros((), dtype=torch.float64)
        self.count = 0

    def update(self, probs: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor) -> None:
        """`probs` (N, K) in [0, 1], `targets` (N, K) multi-hot."""
        probs, truth = probs.detach().float().cpu(), targets.detach().cpu() > 0.5
        self.hist += histogram(probs, truth)
        self.reliability += calibration.reliability(probs, truth)
        decided = probs >= self.thresholds
        self.counts[0] += (decided & truth).sum(dim=0)
        self.counts[1] += (decided & ~truth).sum(dim=0)
        self.counts[2] += (~decided & truth).sum(dim=0)
        self.exact += (decided == truth).all(dim=1).sum()
        self.loss_sum += float(loss_sum.detach())
        self.count += int(truth.shape[0])

    def all_reduce(self, reduce: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> None:
        """Sum every count over processes (`reduce` sums a tensor in place): one collective."""
        parts = [
            self.hist.flatten(),
            self.counts.flatten(),
            self.reliability.flatten(),
            self.exact.reshape(1),
            self.loss_sum.reshape(1),
        ]
        sizes = [p.numel() for p in parts]
        packed = reduce(
            torch.cat([*parts, torch.tensor([float(self.count)], dtype=torch.float64)]).to(device)
        )
        pieces = packed.cpu().split([*sizes, 1])
        self.hist = pieces[0].reshape(self.hist.shape)
        self.counts = pieces[1].reshape(self.counts.shape)
        self.reliability = pieces[2].reshape(self.reliability.shape)
        self.exact, self.loss_sum, self.count = pieces[3][0], pieces[4][0], int(pieces[5][0])

    def best_thresholds(self) -> list[float]:
        """Per label, the threshold (a bin edge) whose decisions have the highest F1 on what was
        accumulated; DEFAULT_THRESHOLD for a label without positives or without negatives."""
        return [_best_threshold(self.hist[1, i], self.hist[0, i]) for i in range(len(self.classes))]

    def result(self) -> MultiLabelResult:
        n, k = max(self.count, 1), len(self.classes)
        tp, fp, fn = self.counts
        rows: list[dict[str, Any]] = []
        aps: list[float] = []
        for i, name in enumerate(self.classes):
            ap = average_precision(self.hist[1, i], self.hist[0, i])
            precision, recall, f1 = _prf(float(tp[i]), float(fp[i]), float(fn[i]))
            support = int(self.hist[1, i].sum())
            threshold = round(float(self.thresholds[i]), 6)  # as given, not float32's neighbour
            if ap is not None:
                aps.append(ap)
            rows.append(
                {"label": name, "support": support, "precision": precision, "recall": recall,
                 "f1": f1, "ap": ap, "roc_auc": roc_auc(self.hist[1, i], self.hist[0, i]),
                 "threshold": threshold}
            )  # fmt: skip
        micro = _prf(float(tp.sum()), float(fp.sum()), float(fn.sum()))[2]
        wrong = float(fp.sum() + fn.sum())
        return MultiLabelResult(
            loss=float(self.loss_sum) / n,
            map=sum(aps) / len(aps) if aps else 0.0,
            micro_f1=micro,
            macro_f1=sum(float(r["f1"]) for r in rows) / k if k else 0.0,
            exact_match=float(self.exact) / n,
            hamming_loss=wrong / (n * k) if k else 0.0,
            per_label=rows,
            classes=list(self.classes),
            count=self.count,
            best_thresholds=self.best_thresholds(),
            curves=[pr_curve(self.hist[1, i], self.hist[0, i]) for i in range(k)],
            roc_auc=macro([r["roc_auc"] for r in rows]),
            roc=[roc_curve(self.hist[1, i], self.hist[0, i]) for i in range(k)],
            reliability=self.reliability.clone(),
        )


def _best_threshold(positives: torch.Tensor, negatives: torch.Tensor) -> float:
    if float(positives.sum()) == 0 or float(negatives.sum()) == 0:
        return DEFAULT_THRESHOLD
    tp = positives.flip(0).cumsum(0)  # deciding positive from this bin up
    fp = negatives.flip(0).cumsum(0)
    fn = float(positives.sum()) - tp
    f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1e-12)
    best = int(torch.argmax(f1))  # the first (highest threshold) among equals
    return (BINS - 1 - best) / BINS


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
