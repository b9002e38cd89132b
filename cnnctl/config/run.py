"""`RunConfig`: every section together, plus the checks that need keys of two sections (the
loss against the model, the schedule against the lr, the input size against the model, the
augmentation and the synthetic data's memory)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cnnctl.config.base import KeyError_, Section, allowed_range
from cnnctl.config.data import DataConfig, config_input_shape
from cnnctl.config.limits import MAX_SEED, MAX_SYNTHETIC_BYTES
from cnnctl.config.model import TORCHVISION, ModelConfig
from cnnctl.config.optim import OptimizerConfig, SchedulerConfig
from cnnctl.config.output import LoggingConfig, OutputConfig
from cnnctl.config.small_models import check_small_model
from cnnctl.config.train import TrainConfig

MULTI_LABEL = "multi_label"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _check_input_fits(cfg: RunConfig) -> None:
    """The input size (when the config gives it) against the augmentation, the synthetic data's
    memory and small_cnn / mlp (these only for a size the config states: validate() of a model
    section alone does not judge it against the default data)."""
    data = cfg.data
    if cfg.model.family() == TORCHVISION and data.image_size is None:
        return  # pretrained weights bring their own input size (resolved at train time)
    shape = config_input_shape(data)
    if shape is None:
        return
    c, h, w = shape
    pad = data.augment.random_crop
    if pad >= min(h, w):
        raise KeyError_(
            "data.augment.random_crop",
            f"{pad} px of reflect padding needs an image larger than that, the input is {h}x{w} "
            f"(data.image_size); use random_crop below {min(h, w)}",
        )
    if (
        data.source == "synthetic"
        and data.num_classes * data.samples_per_class * c * h * w > MAX_SYNTHETIC_BYTES
    ):
        images = data.num_classes * data.samples_per_class
        raise KeyError_(
            "data.samples_per_class",
            f"{images:,} synthetic {c}x{h}x{w} images would hold {images * c * h * w / 2**30:.1f} GiB "
            f"of pixels (at most {MAX_SYNTHETIC_BYTES // 2**30} GiB, generated in memory); lower "
            "data.samples_per_class or data.image_size",
        )
    stated = config_input_shape(data, native=False)
    if cfg.model.family() != TORCHVISION and stated is not None:
        outputs = data.num_classes if data.source == "synthetic" else 2  # at least 2
        check_small_model(cfg.model.to_plain(), stated, outputs)


class RunConfig(Section):
    """Everything one `cnnctl train` needs."""

    data: DataConfig = Field(default_factory=DataConfig)  # type: ignore[arg-type]
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)  # type: ignore[arg-type]
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)  # type: ignore[arg-type]
    train: TrainConfig = Field(default_factory=TrainConfig)  # type: ignore[arg-type]
    output: OutputConfig = Field(default_factory=OutputConfig)  # type: ignore[arg-type]
    logging: LoggingConfig = Field(default_factory=LoggingConfig)  # type: ignore[arg-type]
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seed for data splits, init and data order (torch.manual_seed takes it, and "
        "seed + process rank, as a 64-bit integer).",
        json_schema_extra=allowed_range("0 ≤ x ≤ 2^63 − 1"),
    )
    device: str = Field("auto", description="auto (cuda → mps → cpu), cpu, cuda, cuda:N or mps.")
    task: Literal["single_label", "multi_label"] = Field(
        "single_label",
        description="single_label: each image is one of the classes (softmax); multi_label: each "
        "image has any number of the labels (one sigmoid per label, train.loss bce_with_logits by "
        "default, thresholds by train.threshold); multi_label needs data.source: manifest.",
    )

    def label_separator(self) -> str | None:
        """data.label_separator for task multi_label (how the data layer reads label sets), else None."""
        return self.data.label_separator if self.task == MULTI_LABEL else None

    @model_validator(mode="before")
    @classmethod
    def _multi_label_loss(cls, data: Any) -> Any:
        """task multi_label trains with bce_with_logits unless train.loss says otherwise."""
        if not isinstance(data, dict) or data.get("task") != MULTI_LABEL:
            return data
        train = data.get("train")
        if train is None:
            return {**data, "train": {"loss": "bce_with_logits"}}
        if isinstance(train, dict) and "loss" not in train:
            return {**data, "train": {**train, "loss": "bce_with_logits"}}
        if isinstance(train, TrainConfig) and "loss" not in train.model_fields_set:
            return {**data, "train": train.model_copy(update={"loss": "bce_with_logits"})}
        return data

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"unknown device '{value}'; allowed: auto, cpu, cuda, cuda:N, mps")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        _check_task(self)
        loss = self.train.loss
        if loss == "nll" and not self.model.log_softmax:
            raise KeyError_("train.loss", "nll needs model.log_softmax: true")
        if loss == "bce_with_logits" and self.model.log_softmax:
            raise KeyError_("train.loss", "bce_with_logits needs model.log_softmax: false")
        binary = self.data.source != "synthetic" or self.data.num_classes == 2
        if loss == "bce_with_logits" and not binary:
            raise KeyError_("train.loss", "bce_with_logits needs 2 classes (data.num_classes: 2)")
        lr, min_lr = self.optimizer.lr, self.scheduler.min_lr
        if self.scheduler.name == "cosine" and isinstance(lr, float) and min_lr > lr:
            raise KeyError_(
                "scheduler.min_lr",
                f"{min_lr} is above optimizer.lr {lr}: the final lr must not exceed the peak",
            )
        _check_input_fits(self)
        return self


def _check_task(cfg: RunConfig) -> None:
    """What task multi_label needs (a manifest, a per-label loss) and the keys it has no meaning for."""
    train = cfg.train
    if cfg.task != MULTI_LABEL:
        if not isinstance(train.threshold, str):  # auto is the default every stored config holds
            raise KeyError_("train.threshold", "applies to task: multi_label only; remove it")
        return
    if cfg.data.source != "manifest":
        raise KeyError_(
            "task",
            f"multi_label needs data.source: manifest (a table of paths whose label lists each "
            f"image's labels); data.source {cfg.data.source} gives one label per image",
        )
    if train.loss not in ("bce_with_logits", "focal"):
        raise KeyError_("train.loss", f"{train.loss} is single-label; task multi_label trains with "
                        "bce_with_logits (the default) or focal")  # fmt: skip
    for key, value in (("label_smoothing", train.label_smoothing), ("mixup_alpha", train.mixup_alpha),
                       ("cutmix_alpha", train.cutmix_alpha)):  # fmt: skip
        if value:
            raise KeyError_(f"train.{key}", "is single-label (it mixes one class per image); "
                            "task multi_label: remove it")  # fmt: skip
