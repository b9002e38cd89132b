"""Test-time augmentation views: deterministic transforms of a uint8 (N, C, H, W) batch, each
giving a batch of the same shape, so any scorer (a checkpoint's network or an exported ONNX
model) takes them as it takes the images themselves. The image itself is always the first
view; the probabilities are averaged over all of them.

- hflip / vflip: the mirror image.
- crops: the four corner crops of 7/8 the side, resized back (bilinear): the zoom that
  `random_resized_crop` trains for.
- shifts: the image moved by 1/16 of its side (at least a pixel; `random_crop`'s padding
  when smaller) up-left, up-right, down-left and down-right, reflect-padded: the
  translations `random_crop` trains for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from cnnctl.config import DataConfig

NAMES = ("hflip", "vflip", "crops", "shifts")
CROP_SHARE = 7 / 8

View = Callable[[torch.Tensor], torch.Tensor]


def default_names(data: DataConfig) -> list[str]:
    """`data.tta` as view names: as given, or (auto) the ones the train augmentation implies."""
    if data.tta != "auto":
        return [name for name in NAMES if name in data.tta]
    augment = data.augment
    chosen = {
        "hflip": augment.hflip,
        "vflip": augment.vflip,
        "crops": augment.random_resized_crop is not None,
        "shifts": augment.random_crop > 0,
    }
    return [name for name in NAMES if chosen[name]]


def parse_names(text: str, option: str = "--tta-views") -> list[str]:
    """Comma-separated view names (an option's value), checked."""
    from cnnctl.core.errors import ConfigError

    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [name for name in names if name not in NAMES]
    if bad or not names:
        raise ConfigError(f"{option} {text!r}: allowed views, comma-separated: {', '.join(NAMES)}")
    return [name for name in NAMES if name in names]


def views(names: Sequence[str], shift: int = 0) -> list[tuple[str, View]]:
    """(label, transform) per view, the image itself first; `shift` the pixels `shifts` moves
    by (0: 1/16 of the side)."""
    out: list[tuple[str, View]] = [("identity", lambda x: x)]
    for name in names:
        if name == "hflip":
            out.append(("hflip", lambda x: x.flip(-1)))
        elif name == "vflip":
            out.append(("vflip", lambda x: x.flip(-2)))
        elif name == "crops":
            out += [(f"crop-{corner}", _crop(corner)) for corner in ("tl", "tr", "bl", "br")]
        elif name == "shifts":
            out += [(f"shift{dy:+d},{dx:+d}", _shift(dy, dx, shift)) for dy in (-1, 1) for dx in (-1, 1)]
        else:
            raise ValueError(f"TTA view {name!r} is not one of {', '.join(NAMES)}")
    return out


def _crop(corner: str) -> View:
    def crop(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * CROP_SHARE)), max(1, round(w * CROP_SHARE))
        top = 0 if corner[0] == "t" else h - ch
        left = 0 if corner[1] == "l" else w - cw
        part = x[..., top : top + ch, left : left + cw].float()
        resized = F.interpolate(part, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
        return resized.round().clamp(0, 255).to(x.dtype)

    return crop


def _shift(dy: int, dx: int, pixels: int) -> View:
    def shift(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p = pixels or max(1, round(min(h, w) / 16))
        p = min(p, h - 1, w - 1)
        if p < 1:
            return x
        padded = F.pad(x.float(), (p, p, p, p), mode="reflect").to(x.dtype)
        top, left = p + dy * p, p + dx * p
        return padded[..., top : top + h, left : left + w]

    return shift


def shift_pixels(data: DataConfig) -> int:
    """How far `shifts` moves: random_crop's padding halved when it trained with one, else 0 (auto)."""
    return max(1, data.augment.random_crop // 2) if data.augment.random_crop else 0


def averaged(
    score: Callable[[torch.Tensor], torch.Tensor], chosen: Sequence[tuple[str, View]]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A scorer (uint8 batch → probabilities) that averages `score` over the views."""

    def tta_score(x: torch.Tensor) -> torch.Tensor:
        total = None
        for _, view in chosen:
            probs = score(view(x))
            total = probs if total is None else total + probs
        assert total is not None
        return total / len(chosen)

    return tta_score
