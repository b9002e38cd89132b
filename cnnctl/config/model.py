"""`model`: which network to build (small_cnn, mlp, or a torchvision classifier), with the
defaults each family implies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cnnctl.config.base import Section, allowed_range, short_repr
from cnnctl.config.limits import MAX_LAYERS, MAX_PARAMETERS, MAX_WIDTH


def _check_widths(value: list[int]) -> list[int]:
    if any(not 1 <= v <= MAX_WIDTH for v in value):
        raise ValueError(f"got {short_repr(value)}; every width must be 1-{MAX_WIDTH}")
    return value


_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "small_cnn": {"hidden": [1024], "dropout": 0.5},
    "mlp": {"hidden": [128, 64], "dropout": 0.0},
}


class HeadConfig(Section):
    """The new classifier put on a torchvision backbone."""

    hidden: list[int] = Field(
        [],
        max_length=MAX_LAYERS,
        description="Hidden widths before the output layer; [] = one Linear.",
        json_schema_extra=allowed_range(f"0-{MAX_LAYERS} widths, each 1 ≤ x ≤ {MAX_WIDTH}"),
    )

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int]) -> list[int]:
        return _check_widths(value)

    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before each head Linear.")
    activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = Field(
        "relu", description="Activation between head layers."
    )


class FreezeUntil(Section):
    """Freeze every parameter before the named module; train it and everything after."""

    until: str = Field(description="Name of the first trainable module, e.g. features.denseblock4.")


TORCHVISION = "torchvision"


class ModelConfig(Section):
    """Which network to build. Keys apply per model family; the rest are refused.

    Families: small_cnn, mlp, and `torchvision` (every other name: a torchvision classifier).
    """

    selector = "name"
    applies_to = {
        "channels": ("small_cnn",),
        "kernel_size": ("small_cnn",),
        "padding": ("small_cnn",),
        "pool": ("small_cnn",),
        "batch_norm": ("small_cnn",),
        "hidden": ("small_cnn", "mlp"),
        "activation": ("small_cnn", "mlp"),
        "dropout": ("small_cnn", "mlp"),
        "weights": (TORCHVISION,),
        "freeze": (TORCHVISION,),
        "head": (TORCHVISION,),
        "cache_features": (TORCHVISION,),
    }

    def family(self) -> str:
        return self.name if self.name in _MODEL_DEFAULTS else TORCHVISION

    name: str = Field("small_cnn", description="Model name; see `cnnctl models`.")
    channels: list[int] = Field(
        [32, 64],
        min_length=1,
        max_length=MAX_LAYERS,
        description="small_cnn: output channels of each conv block.",
        json_schema_extra=allowed_range(f"1-{MAX_LAYERS} widths, each 1 ≤ x ≤ {MAX_WIDTH}"),
    )
    kernel_size: int = Field(
        5,
        ge=1,
        le=31,
        description="small_cnn: conv kernel size (at most the padded input of every block).",
    )
    padding: int = Field(2, ge=0, le=15, description="small_cnn: conv zero padding.")
    pool: int = Field(2, ge=1, le=8, description="small_cnn: max-pool size after each block; 1 = none.")
    batch_norm: bool = Field(False, description="small_cnn: BatchNorm after each conv.")
    hidden: list[int] = Field(
        [1024],
        max_length=MAX_LAYERS,
        description="Hidden fully connected widths (small_cnn default [1024], mlp [128, 64]); "
        f"small_cnn and mlp have at most {MAX_PARAMETERS:,} parameters.",
        json_schema_extra=allowed_range(f"0-{MAX_LAYERS} widths, each 1 ≤ x ≤ {MAX_WIDTH}"),
    )
    activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = Field(
        "relu", description="Activation function."
    )
    dropout: float = Field(
        0.5, ge=0, lt=1, description="Dropout before each FC layer but the first (small_cnn 0.5, mlp 0.0)."
    )
    log_softmax: bool = Field(False, description="End in LogSoftmax (needed by train.loss: nll).")
    weights: str = Field(
        "none",
        description="torchvision: none (random init), imagenet / DEFAULT (the best ImageNet weights), "
        "a weights name such as IMAGENET1K_V1, or a path to a state_dict file.",
    )
    freeze: Literal["none", "backbone"] | int | FreezeUntil = Field(
        "none",
        description="torchvision: none (fine-tune all), backbone (train the head only), "
        "N (train the last N blocks and the head) or {until: module.name}.",
        json_schema_extra=allowed_range("N ≥ 0, at most the model's blocks"),
    )
    head: HeadConfig = Field(
        default_factory=HeadConfig,  # type: ignore[arg-type]
        description="torchvision: the new classifier, {hidden, dropout, activation}.",
    )
    cache_features: Literal["auto", "off"] = Field(
        "auto",
        description="torchvision: with freeze: backbone and no data.augment, run the frozen "
        "backbone once and train the head on its cached outputs (auto), or run it every epoch (off).",
    )

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            defaults = _MODEL_DEFAULTS.get(str(data.get("name", "small_cnn")), {})
            return {**defaults, **data}
        return data

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in _MODEL_DEFAULTS and not is_torchvision_classifier(value):
            raise ValueError(
                f"unknown model '{value}'; allowed: {', '.join(_MODEL_DEFAULTS)} or a torchvision "
                "classifier (alexnet, densenet121, resnet18, ...; `cnnctl models` lists them)"
            )
        return value

    @field_validator("freeze")
    @classmethod
    def _freeze_count(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 0:
            raise ValueError("freeze N needs N >= 0 trainable blocks")
        return value

    @field_validator("hidden", "channels")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        return _check_widths(value)


def is_torchvision_classifier(name: str) -> bool:
    """Is `name` a torchvision classification model? (cnnctl.core.catalog: no torch import.)"""
    from cnnctl.core.catalog import torchvision_models

    return name in torchvision_models()
