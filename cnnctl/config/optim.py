"""`optimizer` and `scheduler`: the torch optimizer and the learning-rate schedule. Keys named
after a torch argument default to torch's value for the chosen optimizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cnnctl.config.base import KeyError_, Section, allowed_range, short_repr
from cnnctl.config.limits import MAX_EPOCHS, MAX_LR

# Each key named after a torch argument defaults to torch's value for the chosen optimizer
# (torch.optim.RMSprop's lr is 0.01, AdamW's weight_decay 0.01); TORCH_DEFAULTS (torch_defaults.py) lists
# them and a test compares them with the installed torch.
_OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "rmsprop": {"lr": 0.01},
    "adamw": {"weight_decay": 0.01},
}


class OptimizerConfig(Section):
    """The optimizer (torch.optim). Every key defaults to torch's own default for the chosen
    optimizer: `optimizer: {name: sgd, lr: 0.1}` is `torch.optim.SGD(params, lr=0.1)`, without
    momentum. `weight_decay` is the L2 penalty (decoupled for adamw)."""

    selector = "name"
    applies_to = {
        "momentum": ("sgd", "rmsprop"),
        "nesterov": ("sgd",),
        "betas": ("adam", "adamw"),
    }

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("adam", description="Optimizer.")
    lr: float | Literal["auto"] = Field(
        1e-3,
        description="Learning rate (peak lr for schedules); torch's default: 0.001, rmsprop 0.01; "
        "auto = run `cnnctl lr-find`'s range test before training and train with its suggestion "
        "(stored in the run's config.yaml).",
        json_schema_extra=allowed_range("0 < x <= 1e30, or auto"),
    )

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0 < value <= MAX_LR:
            raise ValueError(f"got {value!r}; the learning rate must be > 0 and at most {MAX_LR:g} (or auto)")
        return value

    weight_decay: float = Field(
        0.0,
        ge=0,
        le=1,
        description="L2 penalty (decoupled for adamw); torch's default: 0, adamw 0.01.",
    )
    momentum: float = Field(
        0.0, ge=0, lt=1, description="sgd, rmsprop: momentum (torch's default 0: none; e.g. 0.9)."
    )
    nesterov: bool = Field(False, description="sgd: Nesterov momentum (needs momentum > 0).")
    betas: list[float] = Field(
        [0.9, 0.999],
        min_length=2,
        max_length=2,
        description="adam, adamw: (beta1, beta2).",
        json_schema_extra=allowed_range("two values, each 0 ≤ x < 1"),
    )
    backbone_lr_mult: float = Field(
        1.0, gt=0, le=1, description="torchvision models: backbone lr = lr x this (the head gets lr)."
    )

    @model_validator(mode="before")
    @classmethod
    def _torch_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {**_OPTIMIZER_DEFAULTS.get(str(data.get("name", "adam")), {}), **data}
        return data

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: list[float]) -> list[float]:
        if any(not 0 <= beta < 1 for beta in value):
            raise ValueError(f"got {short_repr(value)}; each beta must be in [0, 1)")
        return value

    @model_validator(mode="after")
    def _nesterov(self) -> OptimizerConfig:
        if self.name == "sgd" and self.nesterov and not self.momentum > 0:
            raise KeyError_(
                "nesterov",
                "needs optimizer.momentum > 0 (torch.optim.SGD refuses Nesterov without momentum); "
                "set e.g. momentum: 0.9",
            )
        return self


class SchedulerConfig(Section):
    """Learning-rate schedule. step/cosine/onecycle update every batch; plateau every epoch."""

    selector = "name"
    applies_to = {
        "step_size": ("step",),
        "gamma": ("step",),
        "min_lr": ("cosine",),
        "factor": ("plateau",),
        "patience": ("plateau",),
        "pct_start": ("onecycle",),
    }

    name: Literal["none", "step", "cosine", "plateau", "onecycle"] = Field("none", description="Schedule.")
    warmup_epochs: float = Field(
        0.0,
        ge=0,
        le=MAX_EPOCHS,
        description="Linear warmup from lr/100 over this many epochs, per optimizer step (any schedule).",
    )
    step_size: int = Field(10, ge=1, le=MAX_EPOCHS, description="step: epochs between lr drops.")
    gamma: float = Field(0.1, gt=0, le=1, description="step: lr multiplier at each drop.")
    min_lr: float = Field(
        0.0,
        ge=0,
        description="cosine: final lr (torch's eta_min).",
        json_schema_extra=allowed_range("0 ≤ x ≤ optimizer.lr"),
    )
    factor: float = Field(0.1, gt=0, lt=1, description="plateau: lr multiplier on a plateau.")
    patience: int = Field(
        10,
        ge=0,
        le=MAX_EPOCHS,
        description="plateau: epochs without val-loss improvement before the lr drops (torch's 10).",
    )
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: share of steps spent increasing the lr.")
