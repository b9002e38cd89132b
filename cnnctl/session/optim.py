"""Optimizer, training loss and batch mixing from the config (the lr schedule itself is
`cnnctl.engine.schedule`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def train_loss_fn(loss: str, label_smoothing: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training criterion (mean over the batch)."""
    if loss == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if loss == "nll":
        hard = nn.NLLLoss()

        def nll(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            if targets.is_floating_point():  # soft targets (mixup / cutmix)
                return -(targets * outputs).sum(dim=1).mean()
            out: torch.Tensor = hard(outputs, targets)
            return out

        return nll

    def bce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs.squeeze(1), targets.to(outputs.dtype))

    return bce


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
