"""`data.augment`: train-time augmentation (and its colour jitter)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cnnctl.config.base import Section, allowed_range


class ColorJitterConfig(Section):
    """Colour jitter strengths (torchvision ColorJitter); 0 = that property untouched."""

    brightness: float = Field(0.0, ge=0, le=10, description="Brightness factor drawn from [1 - b, 1 + b].")
    contrast: float = Field(0.0, ge=0, le=10, description="Contrast factor drawn from [1 - c, 1 + c].")
    saturation: float = Field(0.0, ge=0, le=10, description="Saturation factor drawn from [1 - s, 1 + s].")
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
        0,
        ge=0,
        le=64,
        description="Pad by this many pixels (reflect) and crop back at random; 0 = off; less than "
        "the image's smaller side.",
    )
    rotation: float = Field(0.0, ge=0, le=180, description="Random rotation in ±degrees; 0 = off.")
    random_resized_crop: list[float] | None = Field(
        None,
        description="[min_scale, max_scale]: crop a random share of the image's area in this range "
        "(aspect ratio 3/4-4/3) and resize it back to the input size; null = off.",
        json_schema_extra=allowed_range("0 < min ≤ max ≤ 1"),
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
        json_schema_extra=allowed_range("0 ≤ s ≤ 10, or a mapping"),
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
        if isinstance(value, float) and not 0 <= value <= 10:
            raise ValueError(
                f"color_jitter is a strength >= 0 and at most 10, or {{brightness, contrast, saturation, "
                f"hue}} (got {value!r})"
            )
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
