"""Optimizer, training loss and batch mixing from the config (the lr schedule itself is
`cnnctl.engine.schedule`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnctl.config import OptimizerConfig
from cnnctl.core.errors import ConfigError


def build_optimizer(
    cfg: OptimizerConfig, params: Iterable[Any], device: torch.device
) -> torch.optim.Optimizer:
    """The configured optimizer; `foreach` kernels where the device has them.

    `params` is parameters or param-group dicts (a group's own `lr` overrides cfg.lr). Every
    group exists from the start, so the schedule (LambdaLR keeps one base lr per group)
    scales each group from its own lr; parameters that do not train yet (requires_grad
    False, no gradient) sit in their group untouched: torch optimizers skip them.
    """
    if cfg.lr == "auto":  # resolved to a number before (workflows.resolve_auto_lr)
        raise ConfigError("optimizer.lr: auto must be resolved by the lr-find sweep before training")
    params = list(params)
    common: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, momentum=cfg.momentum, nesterov=cfg.nesterov, foreach=True, **common)
    if cfg.name == "adam":
        return torch.optim.Adam(params, betas=(cfg.betas[0], cfg.betas[1]), foreach=True, **common)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, betas=(cfg.betas[0], cfg.betas[1]), foreach=True, **common)
    return torch.optim.RMSprop(params, momentum=cfg.momentum, foreach=True, **common)


def train_loss_fn(
    loss: str,
    label_smoothing: float,
    weights: torch.Tensor | None = None,
    focal_gamma: float = 2.0,
    multi_label: bool = False,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training criterion: a mean over the batch, weighted per class by `weights` (a
    weighted mean, as torch's CrossEntropyLoss(weight=...) takes it). Targets are class
    indices, or soft (N, classes) targets from MixUp / CutMix. With `multi_label`, targets are
    multi-hot (N, labels) and `weights` scale each label's positive term (`multi_label_loss`)."""
    if multi_label:
        return functools.partial(
            multi_label_loss, gamma=focal_gamma if loss == "focal" else 0.0, pos_weight=weights
        )
    if loss == "cross_entropy":
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)
    if loss == "nll":
        return _nll(weights)
    if loss == "focal":
        return functools.partial(focal_loss, gamma=focal_gamma, weights=weights)

    def bce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per = F.binary_cross_entropy_with_logits(
            outputs.squeeze(1), targets.to(outputs.dtype), reduction="none"
        )
        if weights is None:
            return per.mean()
        w = weights.to(per.dtype)[targets.long()]
        return (per * w).sum() / w.sum()

    return bce


def _nll(weights: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    hard = nn.NLLLoss(weight=weights)

    def nll(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.is_floating_point():  # soft targets (mixup / cutmix)
            scaled = targets if weights is None else targets * weights.to(targets.dtype)
            return -(scaled * outputs).sum(dim=1).mean()
        out: torch.Tensor = hard(outputs, targets)
        return out

    return nll


def focal_loss(
    outputs: torch.Tensor, targets: torch.Tensor, gamma: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax focal loss: -(1 - p_c)^gamma log p_c for the true class c (soft targets: summed
    over classes by their share), weighted per class; equal to cross entropy at gamma 0."""
    logp = outputs.float().log_softmax(dim=1)
    soft = targets.float() if targets.is_floating_point() else F.one_hot(targets, logp.shape[1]).float()
    per = -(soft * (1 - logp.exp()).clamp(min=0).pow(gamma) * logp)
    share = soft if weights is None else soft * weights.to(logp.dtype)
    if weights is not None:
        per = per * weights.to(logp.dtype)
    return per.sum() / share.sum().clamp(min=torch.finfo(logp.dtype).tiny)


def multi_label_loss(
    outputs: torch.Tensor, targets: torch.Tensor, gamma: float = 0.0, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross entropy of every label decision, averaged over labels and images; each
    label's positive term scaled by `pos_weight` (as BCEWithLogitsLoss takes it). With
    `gamma` > 0, sigmoid focal loss: each term scaled by (1 - p_t)^gamma, p_t the probability
    given to the right decision (Lin et al. 2017, without the alpha; weights do that here)."""
    logits, truth = outputs.float(), targets.float()
    per = F.binary_cross_entropy_with_logits(logits, truth, reduction="none", pos_weight=pos_weight)
    if gamma:
        p = logits.sigmoid()
        p_t = p * truth + (1 - p) * (1 - truth)
        per = per * (1 - p_t).clamp(min=0).pow(gamma)
    return per.mean()


def class_weights_for(
    spec: str | list[float] | dict[str, float], labels: Sequence[int] | torch.Tensor, classes: list[str]
) -> torch.Tensor | None:
    """train.class_weights as a (classes,) tensor, or None for none: `auto` is N / (K x n_c) on
    the train labels (mean weight 1 per image), and for multi-hot (N, labels) targets each
    label's negatives / positives (torch's pos_weight); a list is in class order; a mapping
    names classes (the others weigh 1)."""
    k = len(classes)
    if spec == "none":
        return None
    if spec == "auto" and isinstance(labels, torch.Tensor) and labels.dim() == 2:  # multi-hot
        positives = (labels > 0.5).sum(dim=0).double()
        return ((len(labels) - positives) / positives.clamp(min=1)).clamp(min=1e-3).float()
    if spec == "auto":
        counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=k).double()
        return (len(labels) / (k * counts.clamp(min=1))).float()
    if isinstance(spec, list):
        if len(spec) != k:
            raise ConfigError(f"train.class_weights: {len(spec)} weights for {k} classes ({classes[:10]})")
        return torch.tensor(spec, dtype=torch.float32)
    assert isinstance(spec, dict)
    unknown = sorted(set(spec) - set(classes))
    if unknown:
        raise ConfigError(f"train.class_weights: {unknown[:5]} not among the classes {classes[:10]}")
    return torch.tensor([float(spec.get(name, 1.0)) for name in classes], dtype=torch.float32)


def batch_mixer(mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> Callable[..., Any] | None:
    """train.mixup_alpha / train.cutmix_alpha: torchvision v2 MixUp / CutMix on a batch (one of
    the two at random when both are set); labels become soft one-hot targets. None when off."""
    if not mixup_alpha and not cutmix_alpha:
        return None
    from torchvision.transforms import v2

    mixers: list[Any] = []
    if mixup_alpha:
        mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha:
        mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    mixer: Callable[..., Any] = mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)
    return mixer
