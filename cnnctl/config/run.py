"""`RunConfig`: every section together, plus the checks that need keys of two sections (the
loss against the model, the schedule against the lr, the input size against the model, the
augmentation and the synthetic data's memory)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from cnnctl.config.base import KeyError_, Section, allowed_range
from cnnctl.config.data import DataConfig, config_input_shape
from cnnctl.config.limits import MAX_SEED, MAX_SYNTHETIC_BYTES
from cnnctl.config.model import TORCHVISION, ModelConfig
from cnnctl.config.optim import OptimizerConfig, SchedulerConfig
from cnnctl.config.output import LoggingConfig, OutputConfig
from cnnctl.config.small_models import check_small_model
from cnnctl.config.train import TrainConfig

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
        lr, min_lr = self.optimizer.lr, self.scheduler.min_lr
        if self.scheduler.name == "cosine" and isinstance(lr, float) and min_lr > lr:
            raise KeyError_(
                "scheduler.min_lr",
                f"{min_lr} is above optimizer.lr {lr}: the final lr must not exceed the peak",
            )
        _check_input_fits(self)
        return self
