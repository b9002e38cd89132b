"""Temperature scaling (Guo et al., 2017): one positive number T that divides the network's
outputs before they become probabilities, fitted on a labelled split by minimising its
negative log-likelihood. Decisions do not change (argmax and the sign of a logit are kept;
multi-label thresholds are moved with T), only how sure the probabilities say they are.

The fit is Newton's method on s = 1/T, where the NLL is convex. Each step needs only three
sums over the split (the NLL and its first two derivatives in s, from the task's
`calibration_terms`), so under DDP every rank holds its own shard of outputs and one
all-reduce per step makes the fit global and identical on every rank.

The expected calibration error (ECE) uses 15 equal-width confidence bins: the mean over
images of |accuracy - confidence| within each image's bin. Single-label: the confidence of the
predicted class and whether it is right; multi-label: every (image, label) probability and
whether the label is present.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ECE_BINS = 15
T_RANGE = (0.05, 20.0)  # the temperatures a fit may return
NEWTON_STEPS = 50

Terms = Callable[[float], torch.Tensor]  # s -> float64 [NLL, dNLL/ds, d2NLL/ds2], summed over the split


def reliability(confidence: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """(3, ECE_BINS) sums per confidence bin: count, summed confidence, summed correctness
    (float64, on the inputs' device)."""
    confidence = confidence.detach().double().flatten()
    bins = (confidence * ECE_BINS).long().clamp(0, ECE_BINS - 1)
    sums = torch.zeros(3, ECE_BINS, dtype=torch.float64, device=confidence.device)
    sums[0].index_add_(0, bins, torch.ones_like(confidence))
    sums[1].index_add_(0, bins, confidence)
    sums[2].index_add_(0, bins, correct.detach().double().flatten())
    return sums


def ece(sums: torch.Tensor) -> float:
    """The expected calibration error from `reliability` sums (0 for an empty split)."""
    count, confidence, correct = sums.double().cpu()
    total = float(count.sum())
    return float((confidence - correct).abs().sum()) / total if total else 0.0


def fit_temperature(terms: Terms) -> float:
    """The temperature minimising the NLL whose sums `terms(s)` gives, s = 1/T, within T_RANGE.

    Damped Newton from s = 1 (T = 1): a step that does not lower the NLL is halved, a
    non-positive curvature falls back to a gradient step. Deterministic, so every DDP rank
    (whose `terms` all-reduce) takes the same steps."""
    low, high = 1 / T_RANGE[1], 1 / T_RANGE[0]
    s = 1.0
    value, slope, curve = (float(v) for v in terms(s))
    if not math.isfinite(value):
        return 1.0
    for _ in range(NEWTON_STEPS):
        step = slope / curve if curve > 1e-12 else slope / max(abs(value), 1.0)
        moved = False
        for _ in range(30):  # backtracking: halve until the NLL does not rise
            candidate = min(max(s - step, low), high)
            if candidate == s:
                break
            new_value, new_slope, new_curve = (float(v) for v in terms(candidate))
            if math.isfinite(new_value) and new_value <= value:
                s, value, slope, curve, moved = candidate, new_value, new_slope, new_curve, True
                break
            step /= 2
        if not moved or abs(step) < 1e-7 * s:
            break
    return 1 / s


def ce_terms(outputs: torch.Tensor, targets: torch.Tensor, s: float) -> torch.Tensor:
    """Softmax cross-entropy of s * outputs: [sum NLL, its s-derivative, second derivative].
    `outputs` (N, K) logits (or log-probabilities: the same family), `targets` (N,) classes."""
    z = outputs.double().clamp(min=-1e4)
    log_p = torch.log_softmax(s * z, dim=1)
    p = log_p.exp()
    mean_z = (p * z).sum(dim=1)
    z_true = z.gather(1, targets.long()[:, None]).squeeze(1)
    nll = -log_p.gather(1, targets.long()[:, None]).squeeze(1)
    variance = ((p * z * z).sum(dim=1) - mean_z**2).clamp(min=0)
    return torch.stack([nll.sum(), (mean_z - z_true).sum(), variance.sum()])


def bce_terms(outputs: torch.Tensor, targets: torch.Tensor, s: float) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(s * outputs) against `targets` (same shape, in [0, 1]),
    averaged over any label dimension and summed over rows, with its two s-derivatives."""
    z = outputs.double()
    y = targets.double().reshape(z.shape)
    a = s * z
    sigma = torch.sigmoid(a)
    nll = torch.nn.functional.softplus(a) - y * a
    first = (sigma - y) * z
    second = sigma * (1 - sigma) * z * z
    if z.dim() == 2:
        nll, first, second = nll.mean(dim=1), first.mean(dim=1), second.mean(dim=1)
    return torch.stack([nll.sum(), first.sum(), second.sum()])


def move_threshold(threshold: float, old: float, new: float) -> float:
    """The probability threshold that decides sigmoid(z / new) as `threshold` decided
    sigmoid(z / old): the same logit cut, in the new temperature's probabilities."""
    if not 0 < threshold < 1 or old == new:
        return threshold
    t = threshold
    logit = math.log(t / (1 - t)) * old / new
    return 1 / (1 + math.exp(-logit))
