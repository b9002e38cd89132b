"""Ranking curves from per-bin counts: for one class (or label), a histogram of the predicted
probability over its positive images and one over its negative images (bin = probability x
BINS, rounded down). From these two histograms alone: average precision (the PR AUC), the PR
curve, ROC AUC and the ROC curve, so every metric here is a sum that DDP reduces with one
all-reduce. Ties are what scikit-learn gets on probabilities rounded down to 1/BINS.
"""

from __future__ import annotations

import torch

BINS = 1000  # probability resolution of the histograms (AP, AUC and thresholds to within 1e-3)


def average_precision(positives: torch.Tensor, negatives: torch.Tensor) -> float | None:
    """AP from per-bin counts of positive and negative images (bin = probability x BINS):
    sum over thresholds, highest first, of (recall step) x precision; None without positives."""
    total = float(positives.sum())
    if total == 0:
        return None
    tp = positives.flip(0).cumsum(0)  # images at or above each bin, highest bin first
    fp = negatives.flip(0).cumsum(0)
    step = positives.flip(0) > 0
    precision = tp[step] / (tp[step] + fp[step])
    recall_gain = positives.flip(0)[step] / total
    return float((precision * recall_gain).sum())


def pr_curve(positives: torch.Tensor, negatives: torch.Tensor) -> tuple[list[float], list[float]]:
    """(recall, precision) at each bin edge that changes the decisions, highest threshold first
    (empty without positives)."""
    total = float(positives.sum())
    if total == 0:
        return [], []
    tp = positives.flip(0).cumsum(0)
    fp = negatives.flip(0).cumsum(0)
    step = (positives.flip(0) + negatives.flip(0)) > 0
    recall = (tp[step] / total).tolist()
    precision = (tp[step] / (tp[step] + fp[step]).clamp(min=1)).tolist()
    return recall, precision


def roc_auc(positives: torch.Tensor, negatives: torch.Tensor) -> float | None:
    """The area under the ROC curve: the chance a positive scores above a negative, ties counted
    half (scikit-learn's `roc_auc_score` on the binned scores); None without positives or
    without negatives."""
    n_pos, n_neg = float(positives.sum()), float(negatives.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    below = negatives.cumsum(0) - negatives  # negatives in lower bins
    wins = (positives.double() * (below.double() + 0.5 * negatives.double())).sum()
    return float(wins) / (n_pos * n_neg)


def roc_curve(positives: torch.Tensor, negatives: torch.Tensor) -> tuple[list[float], list[float]]:
    """(false positive rate, true positive rate) from (0, 0) through each bin edge that changes
    the decisions, highest threshold first (empty without positives or without negatives)."""
    n_pos, n_neg = float(positives.sum()), float(negatives.sum())
    if n_pos == 0 or n_neg == 0:
        return [], []
    step = (positives.flip(0) + negatives.flip(0)) > 0
    tpr = (positives.flip(0).cumsum(0)[step] / n_pos).tolist()
    fpr = (negatives.flip(0).cumsum(0)[step] / n_neg).tolist()
    return [0.0, *fpr], [0.0, *tpr]


def histogram(probs: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(2, K, BINS) counts: [negative, positive] x class x probability bin, for (N, K)
    probabilities and (N, K) booleans saying which class each image has. On probs' device."""
    k = probs.shape[1]
    bins = (probs.detach().float() * BINS).long().clamp(0, BINS - 1)
    offsets = torch.arange(k, device=probs.device) * BINS
    flat = truth.long() * (k * BINS) + offsets + bins
    return torch.bincount(flat.flatten(), minlength=2 * k * BINS).reshape(2, k, BINS)


def macro(values: list[float | None]) -> float | None:
    """The mean of the defined values (None where none is)."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None
