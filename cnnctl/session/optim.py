"""Optimizer, learning-rate schedule and loss from the config."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnctl.config import OptimizerConfig, SchedulerConfig
from cnnctl.core.errors import ConfigError

# What a model's outputs mean; decides the loss used for validation and the probabilities.
LOGITS, LOG_PROBS, BINARY_LOGIT = "logits", "log_probs", "binary_logit"


def output_kind(loss: str, log_softmax: bool) -> str:
    if loss == "bce_with_logits":
        return BINARY_LOGIT
    return LOG_PROBS if log_softmax else LOGITS


def num_outputs(kind: str, num_classes: int) -> int:
    return 1 if kind == BINARY_LOGIT else num_classes


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


class Schedule:
    """A learning-rate schedule that knows when it steps.

    step, cosine and onecycle are functions of the optimizer step (so warmup and cosine are
    smooth within an epoch: one step per batch, or per `train.accumulate` batches); plateau
    steps once per epoch on the val loss, after its linear warmup (if any) has run per step.
    """

    def __init__(
        self, cfg: SchedulerConfig, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
    ):
        self.name = cfg.name
        self.optimizer = optimizer
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self.per_step: torch.optim.lr_scheduler.LambdaLR | None = None
        self.warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
        if cfg.name != "none" or cfg.warmup_epochs:
            factor = lr_factor(cfg, epochs, steps_per_epoch, optimizer.param_groups[0]["lr"])
            self.per_step = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        if cfg.name == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=cfg.factor, patience=cfg.patience
            )

    @property
    def warming_up(self) -> bool:
        return self.per_step is not None and self.per_step.last_epoch < self.warmup_steps

    def step_batch(self) -> None:
        # With plateau, the per-step part is the warmup alone: once it is over, only the
        # plateau rule changes the lr (a LambdaLR step would undo its reductions).
        if self.per_step is not None and (self.plateau is None or self.warming_up):
            self.per_step.step()

    def step_epoch(self, val_loss: float) -> None:
        if self.plateau is not None and not self.warming_up:
            self.plateau.step(val_loss)

    @property
    def lr(self) -> float:
        """The first group's lr (the head's, for torchvision models)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "per_step": self.per_step.state_dict() if self.per_step is not None else None,
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.per_step is not None and state.get("per_step"):
            self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])


def lr_factor(
    cfg: SchedulerConfig, epochs: int, steps_per_epoch: int, base_lr: float
) -> Callable[[int], float]:
    """step → multiplier of the base lr, warmup included (linear from 1% of the base lr)."""
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total, round(cfg.warmup_epochs * steps_per_epoch))
    min_ratio = cfg.min_lr / base_lr if base_lr else 0.0

    def after_warmup(step: int) -> float:
        if cfg.name == "step":
            return cfg.gamma ** (step // (cfg.step_size * steps_per_epoch))
        if cfg.name == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if cfg.name == "onecycle":
            return _one_cycle(step, total, cfg.pct_start)
        return 1.0

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        return after_warmup(step)

    return factor


def _one_cycle(step: int, total: int, pct_start: float) -> float:
    """Cosine up from lr/25 to lr over pct_start of the steps, then cosine down to lr/1e4."""
    peak = max(1, round(total * pct_start))
    start, end = 1 / 25, 1 / 25 / 1e4
    if step < peak:
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / peak))
    progress = min(1.0, (step - peak) / max(1, total - peak))
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))


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


def eval_loss_sum(outputs: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Summed negative log-likelihood of the targets (no smoothing): the val/test loss."""
    outputs = outputs.float()
    if kind == BINARY_LOGIT:
        return F.binary_cross_entropy_with_logits(outputs.squeeze(1), targets.float(), reduction="sum")
    if kind == LOG_PROBS:
        return F.nll_loss(outputs, targets, reduction="sum")
    return F.cross_entropy(outputs, targets, reduction="sum")


def probabilities(outputs: torch.Tensor, kind: str) -> torch.Tensor:
    """(N, classes) probabilities from raw model outputs."""
    outputs = outputs.float()
    if kind == BINARY_LOGIT:
        p = torch.sigmoid(outputs.squeeze(1))
        return torch.stack([1 - p, p], dim=1)
    if kind == LOG_PROBS:
        return outputs.exp()
    return outputs.softmax(dim=1)
