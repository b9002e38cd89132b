"""Image → uint8 tensor at the model's input size, train-time augmentation, normalisation.

Datasets yield uint8 CHW tensors (a quarter of float32's memory and host→GPU traffic);
the float conversion and normalisation happen once per batch, on the device, in
`Normalizer`. The same `InputSpec` drives training, evaluation and predict, so a
checkpoint's images are always prepared the way the model saw them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from cnnctl.models.weights import IMAGENET_MEAN as IMAGENET_MEAN
from cnnctl.models.weights import IMAGENET_STD as IMAGENET_STD

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes a model input. Stored in every checkpoint as plain data."""

    channels: int
    size: tuple[int, int]  # (H, W) fed to the model
    resize: int | None  # shorter side before a centre crop; None = straight resize to size
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def to_plain(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "size": list(self.size),
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> InputSpec:
        h, w = (int(v) for v in data["size"])
        return cls(
            channels=int(data["channels"]),
            size=(h, w),
            resize=None if data.get("resize") is None else int(data["resize"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
        )


def file_kind(mode: int) -> str:
    """What a stat mode is, in words: 'FIFO', 'character device', ..."""
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symlink"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def open_image(path: str | Path, channels: int) -> Image.Image:
    """Decode an image fully (EXIF orientation applied) in grey ('L') or 'RGB'. A FIFO, device
    or socket is refused before it is opened (reading a FIFO would block forever)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise OSError(f"not a regular file ({file_kind(mode)})")
    with Image.open(path) as handle:
        handle.load()
        return to_mode(ImageOps.exif_transpose(handle), channels)


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to 'L' or 'RGB'; transparency is composited on white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits by the file's own range instead of saturating.
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        img = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return img.convert("L" if channels == 1 else "RGB")


def fit_size(img: Image.Image, size: tuple[int, int], resize: int | None) -> Image.Image:
    """Resize to (H, W); with `resize`, shorter side → resize, then centre crop."""
    h, w = size
    if resize is None:
        return img.resize((w, h), Image.Resampling.BILINEAR) if img.size != (w, h) else img
    scale = resize / min(img.size)
    new = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
    img = img.resize(new, Image.Resampling.BILINEAR)
    left, top = (new[0] - w) // 2, (new[1] - h) // 2
    return img.crop((left, top, left + w, top + h))


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """PIL 'L'/'RGB' → contiguous uint8 tensor (C, H, W)."""
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def load_for_model(path: str | Path, spec: InputSpec) -> torch.Tensor:
    """File → uint8 (C, H, W) tensor exactly as the model expects it (before normalising)."""
    return pil_to_uint8(fit_size(open_image(path, spec.channels), spec.size, spec.resize))


def build_augment(augment: Any, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Train-time augmentation on uint8 CHW tensors (torchvision v2), or None when off.

    `augment` is a `config.AugmentConfig`; `size` the model's (H, W) input size. The steps run
    in the order geometric → policy → colour → erasing, and every one keeps the image uint8
    and `size` (normalisation happens later, on the device).
    """
    if not augment.enabled:
        return None
    from torchvision.transforms import v2

    steps = [*_geometric(augment, size), *_policy(augment)]
    jitter = augment.jitter
    if jitter.enabled:
        steps.append(v2.ColorJitter(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue))
    if augment.random_erasing:
        steps.append(v2.RandomErasing(p=augment.random_erasing, value=0))
    composed: Callable[[torch.Tensor], torch.Tensor] = v2.Compose(steps)
    return composed


def _geometric(augment: Any, size: tuple[int, int]) -> list[Any]:
    from torchvision.transforms import v2

    steps: list[Any] = []
    if augment.random_resized_crop is not None:
        low, high = augment.random_resized_crop
        steps.append(v2.RandomResizedCrop(size, scale=(low, high), antialias=True))
    if augment.random_crop:
        if augment.random_crop >= min(size):  # torch's reflect padding needs less than the image side
            from cnnctl.core.errors import ConfigError

            raise ConfigError(
                f"data.augment.random_crop: {augment.random_crop} needs images larger than that; the input is "
                f"{size[0]}x{size[1]}: use a value below {min(size)}"
            )
        steps.append(v2.RandomCrop(size, padding=augment.random_crop, padding_mode="reflect"))
    if augment.rotation:
        steps.append(v2.RandomRotation(augment.rotation))
    if augment.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if augment.vflip:
        steps.append(v2.RandomVerticalFlip())
    return steps


def _policy(augment: Any) -> list[Any]:
    """data.augment.policy as a torchvision v2 auto-augmentation (none: no step)."""
    from torchvision.transforms import v2

    if augment.policy == "trivialaugment":
        return [v2.TrivialAugmentWide()]
    if augment.policy == "randaugment":
        return [v2.RandAugment(num_ops=augment.randaugment_ops, magnitude=augment.randaugment_magnitude)]
    if augment.policy == "autoaugment":
        return [v2.AutoAugment(v2.AutoAugmentPolicy(augment.autoaugment_policy))]
    return []


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in the 0-1 scale of a uint8 (N, C, H, W) batch."""
    x = images.to(torch.float64).div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class Normalizer(torch.nn.Module):
    """uint8 batch on the device → float, scaled to 0-1 and normalised per channel."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        c = spec.channels
        mean = torch.tensor(spec.mean, dtype=torch.float32).expand(c).reshape(1, c, 1, 1) * 255.0
        std = torch.tensor(spec.std, dtype=torch.float32).expand(c).reshape(1, c, 1, 1) * 255.0
        self.register_buffer("mean", mean.clone(), persistent=False)
        self.register_buffer("inv_std", 1.0 / std, persistent=False)

    mean: torch.Tensor
    inv_std: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) * self.inv_std
