"""The learning-rate schedule as the training loop steps it: per optimizer step (warmup,
step, cosine, onecycle) and, for plateau, once per epoch on the val loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from cnnctl.config import SchedulerConfig


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
