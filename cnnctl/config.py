"""The run configuration: YAML + `--set` overrides → a typed, validated, frozen `RunConfig`.

This module must not import torch: `cnnctl config validate` runs on it alone.

Rules every section follows:
- unknown keys are refused (`extra="forbid"`), values are not coerced between types
  (`strict=True`), and each error names its dotted path and what is allowed;
- a key that belongs to one data source / model family / optimizer is refused when set
  for another (`data.label_column` with `data.source: synthetic`), so a config never
  carries a key that the code ignores;
- defaults that depend on a choice (`model.hidden` for `small_cnn` vs `mlp`) are filled in
  at load time, so `cnnctl config show` prints exactly what will run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnctl.errors import ConfigError

# --------------------------------------------------------------------------------------
# YAML: safe loader only, with YAML 1.2 floats (`1e-3` is a float, not the string "1e-3").
# --------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: `1e-3` is a float, and only true/false are booleans
    (YAML 1.1 would read `amp: off` as False and `lr: 1e-3` as a string)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; a syntax error becomes one line with file:line:column."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = err.problem or err.context or "invalid YAML"
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: YAML error: {err}") from None


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------

DataSource = Literal["synthetic", "image_folder", "csv", "torchvision"]
Loss = Literal["cross_entropy", "nll", "bce_with_logits"]

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class KeyError_(ValueError):  # noqa: N801 - a ValueError that knows its key
    """A section-level check that is about one key: the message names `section.key`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    """Base for config sections: strict, frozen, unknown keys refused."""

    model_config = _STRICT

    # key → the values of the selector field (e.g. data.source) for which the key applies.
    applies_to: ClassVar[dict[str, tuple[str, ...]]] = {}
    selector: ClassVar[str] = ""

    def family(self) -> str | None:
        """The value `applies_to` is keyed on (the selector's value, or its family)."""
        return getattr(self, self.selector, None) if self.selector else None

    def to_plain(self) -> dict[str, Any]:
        """This section as plain data, without keys that do not apply to its choice."""
        choice = self.family()
        plain: dict[str, Any] = {}
        for key in type(self).model_fields:
            allowed = self.applies_to.get(key)
            if allowed and choice not in allowed:
                continue
            value = getattr(self, key)
            plain[key] = value.to_plain() if isinstance(value, Section) else _plain(value)
        return plain

    @model_validator(mode="after")
    def _keys_apply(self) -> Section:
        choice = self.family()
        for key in sorted(self.model_fields_set):
            allowed = self.applies_to.get(key)
            if allowed and choice not in allowed:
                raise KeyError_(
                    key,
                    f"does not apply to {self.selector} '{getattr(self, self.selector)}' "
                    f"(only to: {', '.join(allowed)}); remove it",
                )
        return self


class NormalizeStats(Section):
    """Explicit per-channel normalisation statistics, in the 0-1 pixel scale."""

    mean: list[float] = Field(description="Per-channel mean (one value per channel).")
    std: list[float] = Field(description="Per-channel standard deviation (all > 0).")

    @model_validator(mode="after")
    def _check(self) -> NormalizeStats:
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise ValueError("mean and std need the same length, 1 or 3 values")
        if any(s <= 0 for s in self.std):
            raise ValueError("every std value must be > 0")
        return self


class ColorJitterConfig(Section):
    """Colour jitter strengths (torchvision ColorJitter); 0 = that property untouched."""

    brightness: float = Field(0.0, ge=0, description="Brightness factor drawn from [1 - b, 1 + b].")
    contrast: float = Field(0.0, ge=0, description="Contrast factor drawn from [1 - c, 1 + c].")
    saturation: float = Field(0.0, ge=0, description="Saturation factor drawn from [1 - s, 1 + s].")
    hue: float = Field(0.0, ge=0, le=0.5, description="Hue shift drawn from [-h, h] (at most 0.5).")

    @property
    def enabled(self) -> bool:
        return any((self.brightness, self.contrast, self.saturation, self.hue))


class AugmentConfig(Section):
    """Train-time augmentation; validation, test and predict never augment.

    Applied per image, in this order: geometric (random_resized_crop, random_crop, rotation,
    flips) → policy → color_jitter → random_erasing, on the uint8 pixels before normalisation.
    """

    selector = "policy"
    applies_to = {
        "randaugment_ops": ("randaugment",),
        "randaugment_magnitude": ("randaugment",),
        "autoaugment_policy": ("autoaugment",),
    }

    hflip: bool = Field(False, description="Random horizontal flip (p=0.5).")
    vflip: bool = Field(False, description="Random vertical flip (p=0.5).")
    random_crop: int = Field(
        0, ge=0, description="Pad by this many pixels (reflect) and crop back at random; 0 = off."
    )
    rotation: float = Field(0.0, ge=0, le=180, description="Random rotation in ±degrees; 0 = off.")
    random_resized_crop: list[float] | None = Field(
        None,
        description="[min_scale, max_scale]: crop a random share of the image's area in this range "
        "(aspect ratio 3/4-4/3) and resize it back to the input size; null = off.",
    )
    policy: Literal["none", "trivialaugment", "randaugment", "autoaugment"] = Field(
        "none",
        description="Automatic augmentation policy (torchvision TrivialAugmentWide, RandAugment, "
        "AutoAugment); none = off.",
    )
    randaugment_ops: int = Field(2, ge=1, le=10, description="randaugment: operations applied per image.")
    randaugment_magnitude: int = Field(
        9, ge=0, le=30, description="randaugment: strength of every operation, 0-30."
    )
    autoaugment_policy: Literal["imagenet", "cifar10", "svhn"] = Field(
        "imagenet", description="autoaugment: the learned policy to apply."
    )
    color_jitter: float | ColorJitterConfig = Field(
        0.0,
        description="Colour jitter: a number s jitters brightness, contrast and saturation by "
        "±s (hue untouched), or {brightness, contrast, saturation, hue} (hue at most 0.5); 0 = off.",
    )
    random_erasing: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Probability of erasing (to 0) a random rectangle of 2-33% of the image, "
        "after every other step; 0 = off.",
    )

    @field_validator("random_resized_crop")
    @classmethod
    def _scale_range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) != 2 or not 0 < value[0] <= value[1] <= 1):
            raise ValueError("random_resized_crop is [min_scale, max_scale] with 0 < min <= max <= 1")
        return value

    @field_validator("color_jitter")
    @classmethod
    def _jitter(cls, value: float | ColorJitterConfig) -> float | ColorJitterConfig:
        if isinstance(value, float) and value < 0:
            raise ValueError("color_jitter is a strength >= 0 or {brightness, contrast, saturation, hue}")
        return value

    @property
    def jitter(self) -> ColorJitterConfig:
        """color_jitter as its four strengths."""
        value = self.color_jitter
        if isinstance(value, ColorJitterConfig):
            return value
        return ColorJitterConfig(brightness=value, contrast=value, saturation=value, hue=0.0)

    @property
    def enabled(self) -> bool:
        return (
            self.hflip
            or self.vflip
            or self.random_crop > 0
            or self.rotation > 0
            or self.random_resized_crop is not None
            or self.policy != "none"
            or self.jitter.enabled
            or self.random_erasing > 0
        )


class DataConfig(Section):
    """Where the images come from and how they are shaped, split and batched."""

    selector = "source"
    applies_to = {
        "root": ("image_folder", "torchvision"),
        "classes": ("image_folder", "csv"),
        "extensions": ("image_folder",),
        "check_images": ("image_folder",),
        "cache": ("image_folder",),
        "num_classes": ("synthetic",),
        "samples_per_class": ("synthetic",),
        "noise": ("synthetic",),
        "train": ("csv",),
        "val": ("csv",),
        "test": ("csv",),
        "label_column": ("csv",),
        "image_shape": ("csv",),
        "scale": ("csv",),
        "name": ("torchvision",),
        "download": ("torchvision",),
    }

    source: DataSource = Field("synthetic", description="Dataset kind.")
    root: str | None = Field(
        None,
        description="image_folder: folder with class subfolders (or train/val/test); "
        "torchvision: where the dataset files are (or go, with download).",
    )
    image_size: int | list[int] | None = Field(
        None,
        description="Model input size, N or [H, W]; null = the source's native size "
        "(synthetic 32, image_folder 64, csv and torchvision: the data's own size).",
    )
    resize: int | None = Field(
        None,
        ge=1,
        description="Resize the shorter side to this, then centre-crop image_size; "
        "null = resize straight to image_size.",
    )
    channels: Literal[1, 3] | None = Field(
        None, description="1 (grey) or 3 (RGB); images are converted; null = 3 for folders."
    )
    normalize: Literal["auto", "imagenet", "none"] | NormalizeStats = Field(
        "auto",
        description="auto = mean/std computed on the train split; imagenet; none; "
        "or {mean: [...], std: [...]}.",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,  # type: ignore[arg-type]
        description="Train-time augmentation: 'none' or a mapping of the data.augment keys.",
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of train carved out for validation when no val split."
    )
    test_fraction: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Share carved out for test when no test split; null = no test split.",
    )
    batch_size: int | Literal["auto"] = Field(
        64,
        description="Samples per batch (per process); auto = the largest power of two that trains "
        "on the GPU (probed), 64 on CPU/MPS.",
    )
    num_workers: int | Literal["auto"] = Field(
        "auto",
        description=(
            "DataLoader worker processes; auto = 0 for in-memory data, else min(4, cpus - 1) while "
            "training and min(8, cpus) for the one decode pass of check_images / cache."
        ),
    )
    pin_memory: bool | Literal["auto"] = Field(
        "auto", description="Page-locked batches for faster host→GPU copies; auto = on for CUDA."
    )
    classes: list[str] | None = Field(
        None,
        description="image_folder: fixed class order (must match the folder names); "
        "csv: names of labels 0..K-1.",
    )
    extensions: list[str] | None = Field(
        None, description="image_folder: file extensions to read; null = common image types."
    )
    cache: Literal["auto", "memory", "disk", "off"] = Field(
        "auto",
        description="image_folder: decode every image once to the input size and keep the uint8 "
        "pixels in memory (memory), also on disk keyed by files + sizes + mtimes + decode settings "
        "(disk), memory when it fits a quarter of RAM (auto), or decode every epoch (off).",
    )
    check_images: bool = Field(
        True,
        description="image_folder: decode every image once before training and skip (listing "
        "them) the unreadable ones; verdicts cached by path, size and mtime.",
    )
    num_classes: int = Field(4, ge=2, le=6, description="synthetic: number of shape classes.")
    samples_per_class: int = Field(300, ge=4, description="synthetic: images generated per class.")
    noise: float = Field(0.1, ge=0, le=1, description="synthetic: strength of background pixel noise.")
    train: str | None = Field(None, description="csv: the training CSV file.")
    val: str | None = Field(None, description="csv: validation CSV; null = carved by val_fraction.")
    test: str | None = Field(None, description="csv: test CSV; null = carved by test_fraction or none.")
    label_column: str | int = Field("label", description="csv: the label column, by name or 0-based index.")
    image_shape: list[int] | None = Field(
        None,
        description="csv: [C, H, W] of the pixel columns; null = 1 x N x N from the column count.",
    )
    scale: Literal["auto", "0-255", "0-1"] = Field(
        "auto", description="csv: pixel value range; auto = 0-1 if every value is <= 1."
    )
    name: str | None = Field(
        None, description="torchvision: dataset class, e.g. MNIST, FashionMNIST, CIFAR10, SVHN."
    )
    download: bool = Field(False, description="torchvision: download the files into root when missing.")

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_none(cls, value: Any) -> Any:
        return {} if value in (None, "none") else value

    @field_validator("image_size")
    @classmethod
    def _size(cls, value: int | list[int] | None) -> int | list[int] | None:
        sizes = [value] if isinstance(value, int) else (value or [])
        if isinstance(value, list) and len(value) != 2:
            raise ValueError("image_size is N or [H, W]")
        if any(s < 4 for s in sizes):
            raise ValueError("image_size must be at least 4 pixels")
        return value

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("batch_size must be at least 1 (or auto)")
        return value

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.val_fraction + (self.test_fraction or 0) >= 1:
            raise ValueError("val_fraction + test_fraction must stay below 1")
        if self.source in ("image_folder", "torchvision") and not self.root:
            raise KeyError_("root", f"source {self.source} needs data.root (a folder)")
        if self.source == "csv" and not self.train:
            raise KeyError_("train", "source csv needs data.train (a CSV file)")
        if self.source == "torchvision" and not self.name:
            raise KeyError_("name", "source torchvision needs data.name, e.g. MNIST or CIFAR10")
        if self.image_shape is not None and (
            len(self.image_shape) != 3 or self.image_shape[0] not in (1, 3) or min(self.image_shape) < 1
        ):
            raise KeyError_("image_shape", "image_shape is [C, H, W] with C 1 or 3")
        return self


_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "small_cnn": {"hidden": [1024], "dropout": 0.5},
    "mlp": {"hidden": [128, 64], "dropout": 0.0},
}


class EmaConfig(Section):
    """An exponential moving average of the weights, validated beside the raw weights."""

    decay: float = Field(0.999, gt=0, lt=1, description="EMA decay per optimizer step (e.g. 0.999).")


class HeadConfig(Section):
    """The new classifier put on a torchvision backbone."""

    hidden: list[int] = Field([], description="Hidden widths before the output layer; [] = one Linear.")
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
        [32, 64], min_length=1, description="small_cnn: output channels of each conv block."
    )
    kernel_size: int = Field(5, ge=1, description="small_cnn: conv kernel size.")
    padding: int = Field(2, ge=0, description="small_cnn: conv zero padding.")
    pool: int = Field(2, ge=1, description="small_cnn: max-pool size after each block; 1 = none.")
    batch_norm: bool = Field(False, description="small_cnn: BatchNorm after each conv.")
    hidden: list[int] = Field(
        [1024],
        description="Hidden fully connected widths (small_cnn default [1024], mlp [128, 64]).",
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
        if any(v < 1 for v in value):
            raise ValueError("widths must be positive")
        return value


class OptimizerConfig(Section):
    """The optimizer; `weight_decay` is the L2 penalty (decoupled for adamw)."""

    selector = "name"
    applies_to = {
        "momentum": ("sgd", "rmsprop"),
        "nesterov": ("sgd",),
        "betas": ("adam", "adamw"),
    }

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("adam", description="Optimizer.")
    lr: float | Literal["auto"] = Field(
        1e-3,
        description="Learning rate (peak lr for schedules); auto = run `cnnctl lr-find`'s range test "
        "before training and train with its suggestion (stored in the run's config.yaml).",
    )

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not value > 0:
            raise ValueError(f"got {value!r}; the learning rate must be > 0 (or auto)")
        return value

    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (decoupled for adamw).")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd, rmsprop: momentum.")
    nesterov: bool = Field(False, description="sgd: Nesterov momentum.")
    betas: list[float] = Field(
        [0.9, 0.999], min_length=2, max_length=2, description="adam, adamw: (beta1, beta2)."
    )
    backbone_lr_mult: float = Field(
        1.0, gt=0, le=1, description="torchvision models: backbone lr = lr x this (the head gets lr)."
    )


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
        description="Linear warmup from lr/100 over this many epochs, per optimizer step (any schedule).",
    )
    step_size: int = Field(10, ge=1, description="step: epochs between lr drops.")
    gamma: float = Field(0.1, gt=0, le=1, description="step: lr multiplier at each drop.")
    min_lr: float = Field(0.0, ge=0, description="cosine: final lr.")
    factor: float = Field(0.1, gt=0, lt=1, description="plateau: lr multiplier on a plateau.")
    patience: int = Field(2, ge=0, description="plateau: epochs without val-loss improvement.")
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: share of steps spent increasing the lr.")


class TrainConfig(Section):
    """The training loop."""

    epochs: int = Field(10, ge=1, description="Number of epochs.")
    loss: Loss = Field(
        "cross_entropy",
        description="cross_entropy; nll (model.log_softmax: true); bce_with_logits (2 classes).",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="cross_entropy: label smoothing (train loss only)."
    )
    monitor: Literal["val_loss", "val_acc"] = Field(
        "val_loss", description="What picks best.pt and drives early stopping."
    )
    patience: int | None = Field(
        None, ge=1, description="Early stopping: epochs without improvement; null = off."
    )
    min_delta: float = Field(0.0, ge=0, description="Early stopping / best.pt: smallest change that counts.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this; null = off.")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision; auto = bf16/fp16 on CUDA, off elsewhere."
    )
    accumulate: int = Field(
        1,
        ge=1,
        description="Gradient accumulation: one optimizer step per this many batches (effective "
        "batch = batch_size x accumulate); lr schedules count optimizer steps.",
    )
    ema: EmaConfig | None = Field(
        None,
        description="{decay: 0.999}: keep an EMA of the weights, validate it beside the raw weights "
        "every epoch, and let the better of the two (by train.monitor) stand for the epoch; best.pt "
        "records which won (`weights`: ema | raw). null = off.",
    )
    mixup_alpha: float = Field(
        0.0, ge=0, description="MixUp on training batches with this Beta alpha (0 = off; e.g. 0.2)."
    )
    cutmix_alpha: float = Field(
        0.0,
        ge=0,
        description="CutMix on training batches with this Beta alpha (0 = off; e.g. 1.0); with "
        "mixup_alpha too, each batch gets one of the two at random. Accuracy stays on hard labels.",
    )
    channels_last: Literal["auto"] | bool = Field(
        "auto",
        description="NHWC memory layout for the model and its input batches; auto = on for CUDA "
        "(tensor cores prefer it), off on CPU and MPS.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model (a one-off compile cost, then faster steps on CUDA; "
        "needs a C++ compiler on CPU).",
    )
    nan_policy: Literal["stop", "skip_batch"] = Field(
        "stop",
        description="A non-finite training loss: stop (exit 1, best.pt kept) or skip_batch "
        "(no step for that batch, counted and reported; an epoch with every batch skipped stops).",
    )
    deterministic: bool = Field(
        False,
        description="torch.use_deterministic_algorithms(True) (warn-only where an op has no "
        "deterministic kernel) and cuDNN benchmark off; slower on GPU, CPU runs repeat without it.",
    )
    unfreeze_at_epoch: int | None = Field(
        None,
        ge=2,
        description="Unfreeze a frozen backbone from this epoch on (backbone lr = lr x "
        "optimizer.backbone_lr_mult); null = stay as model.freeze says.",
    )

    @model_validator(mode="after")
    def _smoothing(self) -> TrainConfig:
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ValueError("label_smoothing applies to loss cross_entropy only")
        if (self.mixup_alpha or self.cutmix_alpha) and self.loss == "bce_with_logits":
            raise ValueError("mixup_alpha / cutmix_alpha need loss cross_entropy or nll")
        return self


class OutputConfig(Section):
    """Where runs are written."""

    dir: str = Field("runs", description="Parent folder of run directories.")
    name: str | None = Field(None, description="Run name (runs/<name>); null = the config file's name.")
    plots: bool = Field(
        True, description="Draw curves and the confusion matrix into <run>/plots/ when training ends."
    )

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and (not value or os.sep in value or value in (".", "..")):
            raise ValueError("a run name is a plain folder name")
        return value


class LoggingConfig(Section):
    """Where epoch metrics go besides metrics.csv (always written)."""

    tensorboard: bool = Field(
        False,
        description="Also write TensorBoard scalars to <run>/tensorboard/ (needs the tensorboard "
        "package: pip install cnnctl[tensorboard]).",
    )


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class RunConfig(Section):
    """Everything one `cnnctl train` needs."""

    data: DataConfig = Field(default_factory=DataConfig)  # type: ignore[arg-type]
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)  # type: ignore[arg-type]
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)  # type: ignore[arg-type]
    train: TrainConfig = Field(default_factory=TrainConfig)  # type: ignore[arg-type]
    output: OutputConfig = Field(default_factory=OutputConfig)  # type: ignore[arg-type]
    logging: LoggingConfig = Field(default_factory=LoggingConfig)  # type: ignore[arg-type]
    seed: int = Field(0, ge=0, description="Seed for data splits, init and data order.")
    device: str = Field("auto", description="auto (cuda → mps → cpu), cpu, cuda, cuda:N or mps.")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"unknown device '{value}'; allowed: auto, cpu, cuda, cuda:N, mps")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        loss = self.train.loss
        if loss == "nll" and not self.model.log_softmax:
            raise KeyError_("train.loss", "nll needs model.log_softmax: true")
        if loss == "bce_with_logits" and self.model.log_softmax:
            raise KeyError_("train.loss", "bce_with_logits needs model.log_softmax: false")
        binary = self.data.source != "synthetic" or self.data.num_classes == 2
        if loss == "bce_with_logits" and not binary:
            raise KeyError_("train.loss", "bce_with_logits needs 2 classes (data.num_classes: 2)")
        return self


# --------------------------------------------------------------------------------------
# Loading, overrides and error messages
# --------------------------------------------------------------------------------------


def is_torchvision_classifier(name: str) -> bool:
    """Is `name` a torchvision classification model? (cnnctl.catalog: no torch import.)"""
    from cnnctl.catalog import torchvision_models

    return name in torchvision_models()


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` → (["a", "b", "c"], YAML-typed value)."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=3")
    return parts, parse_yaml(raw, f"--set {key}") if raw.strip() else None


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b=c` override set (creating sections as needed)."""
    result: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        parts, value = parse_override(item)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; missing file, bad YAML → ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file ({err.__class__.__name__})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping of sections (data, model, ...)")
    return data


def validate(raw: Mapping[str, Any], source: str = "config") -> RunConfig:
    """Validate plain data into a RunConfig; errors become one ConfigError per problem."""
    try:
        return RunConfig.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(
    path: str | Path | None, overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None
) -> RunConfig:
    """Load a config file (or start from `base`), apply overrides, validate.

    Relative data paths are taken as given (relative to the working directory) and
    made absolute here, so the resolved config in the run dir points at the same files.
    """
    raw = read_config_file(path) if path is not None else dict(base or {})
    raw = apply_overrides(raw, overrides)
    cfg = validate(raw, str(path) if path is not None else "config")
    return _absolute_paths(cfg)


def _absolute_paths(cfg: RunConfig) -> RunConfig:
    if cfg.data.root is None:
        return cfg
    root = str(Path(cfg.data.root).expanduser().absolute())
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": root})})


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text, sections in declaration order."""
    return yaml.safe_dump(cfg.to_plain(), sort_keys=False, default_flow_style=None)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel types an annotation may hold (directly or as a union member)."""
    return [
        t for t in (annotation, *get_args(annotation)) if isinstance(t, type) and issubclass(t, BaseModel)
    ]


def _section_for(loc: Sequence[Any]) -> tuple[list[str], type[BaseModel] | None, list[str], bool]:
    """Split a pydantic error location into (field path, model owning the last key, rest,
    whether the location went into a union member that is a section)."""
    model: type[BaseModel] | None = RunConfig
    candidates: list[type[BaseModel]] = []
    path: list[str] = []
    via_member = False
    for i, part in enumerate(loc):
        member = next(
            (c for c in candidates if isinstance(part, str) and re.search(rf"\b{c.__name__}\b", part)),
            None,
        )
        if member is not None:
            model, via_member = member, True
            continue
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return path, model, [str(p) for p in loc[i:]], via_member
        path.append(part)
        candidates = _models_in(model.model_fields[part].annotation)
        model = candidates[0] if len(candidates) == 1 else None
    return path, model, [], via_member


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per distinct problem: `source: dotted.path: what is wrong (allowed ...)`."""
    lines: dict[str, tuple[str, bool]] = {}
    for item in err.errors():
        path, owner, rest, via_member = _section_for(item["loc"])
        kind = item["type"]
        # A union member that is a section only speaks for inputs that are mappings.
        via_member = via_member and kind not in ("model_type", "dict_type", "model_attributes_type")
        error = item.get("ctx", {}).get("error")
        if kind == "extra_forbidden" and owner is not None and rest:
            dotted = ".".join([*path, rest[0]])
            message = f"unknown key; allowed keys here: {', '.join(owner.model_fields)}"
        elif kind == "value_error" and isinstance(error, KeyError_):
            dotted = ".".join([*path, error.key])
            message = str(error)
        else:
            dotted = ".".join(path) or "(top level)"
            message = _describe(item, path)
        # For a union such as `'auto' | {mean, std}`, a mapping's own errors beat "not 'auto'".
        if dotted not in lines or (via_member and not lines[dotted][1]):
            lines[dotted] = (f"{source}: {dotted}: {message}", via_member)
    member_paths = [d for d, (_, via) in lines.items() if via]
    return "\n".join(
        line
        for dotted, (line, via) in lines.items()
        if via or not any(m == dotted or m.startswith(dotted + ".") for m in member_paths)
    )


def _describe(item: Any, path: list[str]) -> str:
    kind = item["type"]
    given = item.get("input")
    if kind == "value_error":
        return str(item["ctx"]["error"])
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping of keys, got {given!r}"
    if kind == "literal_error":
        return f"got {given!r}; allowed: {item['ctx']['expected']}"
    field = _field_info(path)
    expected = field.description if field is not None else None
    shown = f"got {given!r}" if not isinstance(given, dict) else "got a mapping"
    hint = f"; expected: {expected}" if expected else ""
    return f"{item['msg'].lower()} ({shown}){hint}"


def _field_info(path: list[str]) -> Any:
    model: Any = RunConfig
    field = None
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = next(
            (t for t in (field.annotation, *get_args(field.annotation)) if isinstance(t, type)), None
        )
    return field
