"""What a source's images are prepared to: the model's input size, the normalisation stats,
and the batch conversion of in-memory images to that size and channel count."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cnnctl.config import NATIVE_SIZE, DataConfig
from cnnctl.core.errors import DataError
from cnnctl.data import torchvision_source
from cnnctl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, channel_stats

DEFAULT_SIZE = NATIVE_SIZE  # csv, torchvision: the data's native size
STATS_SAMPLE = 512  # images read to compute `normalize: auto` on an image folder
STATS_IN_MEMORY = 10_000  # at most this many (evenly spaced) for in-memory csv / torchvision data
RESIZE_BATCH = 4096  # images resized per interpolate call

Stats = tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std)


def input_size(cfg: DataConfig, native: tuple[int, int] | None = None) -> tuple[int, int]:
    """(H, W) fed to the model: data.image_size, else the source's native size.

    `native` is the size of the images as read (csv, torchvision); without it the size is
    known from the config alone where it can be (csv image_shape, a torchvision dataset).
    """
    size = cfg.image_size
    if size is None:
        if native is not None:
            return native
        if cfg.source == "csv" and cfg.image_shape is not None:
            return cfg.image_shape[1], cfg.image_shape[2]
        if cfg.source == "torchvision" and cfg.name is not None and cfg.name in torchvision_source.KNOWN:
            size = torchvision_source.KNOWN[cfg.name].size
        else:
            size = DEFAULT_SIZE.get(cfg.source, 64)
    return (size, size) if isinstance(size, int) else (size[0], size[1])


def norm_stats(cfg: DataConfig, channels: int, sample: Callable[[], torch.Tensor]) -> Stats:
    """data.normalize as per-channel (mean, std); `auto` measures `sample()` (train images)."""
    norm = cfg.normalize
    if norm == "none":
        return (0.0,) * channels, (1.0,) * channels
    if norm == "imagenet":
        if channels == 1:
            return (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)
        return IMAGENET_MEAN, IMAGENET_STD
    if norm == "auto":
        return channel_stats(sample())
    if len(norm.mean) != channels:
        raise DataError(
            f"data.normalize: {len(norm.mean)} mean/std value(s) given for {channels}-channel images"
        )
    return tuple(norm.mean), tuple(norm.std)


def prepare_images(
    images: torch.Tensor, channels: int, size: tuple[int, int], resize: int | None
) -> torch.Tensor:
    """A uint8 (N, C, H, W) batch → `channels` and (H, W) `size` the way `fit_size` does one image.

    Grey ↔ RGB as PIL converts ('L' = ITU-R 601-2 luma); bilinear, antialiased resizing,
    straight to `size` or, with `resize`, shorter side to `resize` then a centre crop.
    """
    if images.shape[1] == 3 and channels == 1:
        weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        luma = (images.to(torch.int32) * weights).sum(dim=1, keepdim=True) + 32768
        images = (luma >> 16).to(torch.uint8)
    images = _resize_batch(images, size, resize)
    if images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1).contiguous()
    return images


def _resize_batch(images: torch.Tensor, size: tuple[int, int], resize: int | None) -> torch.Tensor:
    h, w = size
    src_h, src_w = int(images.shape[2]), int(images.shape[3])
    if resize is None:
        new = (h, w)
    else:
        scale = resize / min(src_h, src_w)
        new = (max(h, round(src_h * scale)), max(w, round(src_w * scale)))
    if new == (src_h, src_w) == (h, w):
        return images
    top, left = (new[0] - h) // 2, (new[1] - w) // 2
    out = torch.empty((images.shape[0], images.shape[1], h, w), dtype=torch.uint8)
    for start in range(0, images.shape[0], RESIZE_BATCH):
        chunk = images[start : start + RESIZE_BATCH]
        if new != (src_h, src_w):
            chunk = _interpolate(chunk, new)
        out[start : start + RESIZE_BATCH] = chunk[:, :, top : top + h, left : left + w]
    return out


def _interpolate(chunk: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a uint8 batch (natively where torch can, else via float)."""
    try:
        return torch.nn.functional.interpolate(
            chunk, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    except (RuntimeError, NotImplementedError):  # pragma: no cover - torch builds without uint8 kernels
        resized = torch.nn.functional.interpolate(
            chunk.float(), size=size, mode="bilinear", align_corners=False, antialias=True
        )
        return resized.round_().clamp_(0, 255).to(torch.uint8)
