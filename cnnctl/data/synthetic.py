"""A generated, learnable image dataset: coloured shapes on noisy backgrounds.

Each class is a shape (circle, square, triangle, cross, diamond, ring) drawn at a random
size, position and colour on a random, noisy background. Everything derives from the
seed, so the same config always yields the same images. It backs `make demo` and the
tests, and `write_image_folder` writes it out as real PNG files for the image-folder path.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageDraw

from cnnctl.core.atomic import write_with

SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")


def class_names(num_classes: int) -> list[str]:
    """The first `num_classes` shape names, in label order (alphabetical, as folders sort)."""
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be 2..{len(SHAPES)}")
    return sorted(SHAPES[:num_classes])


def _colour(rng: np.random.Generator, avoid: np.ndarray | None = None) -> np.ndarray:
    while True:
        colour = rng.integers(0, 256, size=3)
        if avoid is None or np.abs(colour - avoid).sum() > 180:
            return colour


def _background(big: int, rng: np.random.Generator, noise: float) -> tuple[Image.Image, np.ndarray]:
    """A `big` x `big` canvas of one random colour plus Gaussian noise, and that colour."""
    background = _colour(rng)
    canvas = np.empty((big, big, 3), dtype=np.float64)
    canvas[:] = background
    canvas += rng.normal(0.0, 255.0 * noise, size=canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)), background


def draw_shape(shape: str, size: int, rng: np.random.Generator, noise: float) -> Image.Image:
    """One RGB image of `shape` on a noisy background, drawn at 2x and downsampled."""
    big = size * 2
    img, background = _background(big, rng, noise)
    draw = ImageDraw.Draw(img)
    fill = tuple(int(v) for v in _colour(rng, avoid=background))
    radius = rng.uniform(0.22, 0.42) * big
    cx, cy = (rng.uniform(radius + 1, big - radius - 1) for _ in range(2))
    _draw(draw, shape, cx, cy, radius, rng.uniform(0, 2 * math.pi), fill)
    return img.resize((size, size), Image.Resampling.BILINEAR)


def _draw(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    radius: float,
    angle: float,
    fill: tuple[int, ...],
) -> None:
    """`shape` of `radius` centred at (cx, cy), turned by `angle` where a turn shows."""
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif shape == "ring":
        width = max(2, int(radius * 0.35))
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=fill, width=width)
    elif shape == "cross":
        arm = radius * 0.3
        for dx, dy in ((radius, arm), (arm, radius)):
            draw.polygon(_rotated(cx, cy, dx, dy, angle), fill=fill)
    else:
        sides = {"square": 4, "diamond": 4, "triangle": 3}[shape]
        offset = angle if shape != "diamond" else 0.0
        stretch = 0.6 if shape == "diamond" else 1.0
        points = [
            (
                cx + radius * stretch * math.cos(offset + 2 * math.pi * k / sides),
                cy + radius * math.sin(offset + 2 * math.pi * k / sides),
            )
            for k in range(sides)
        ]
        draw.polygon(points, fill=fill)


def draw_shapes(shapes: list[str], size: int, rng: np.random.Generator, noise: float) -> Image.Image:
    """One RGB image holding each of `shapes` (at most 2: one in each half, left and right) on
    a noisy background: a multi-label image whose labels are `shapes` (none: background only)."""
    big = size * 2
    img, background = _background(big, rng, noise)
    draw = ImageDraw.Draw(img)
    halves = rng.permutation(2)[: len(shapes)]
    for shape, half in zip(shapes, halves, strict=True):
        radius = rng.uniform(0.34, 0.44) * size
        margin = min(radius + 1, size / 2)  # inside its half, however small the image
        cx = half * size + rng.uniform(margin, size - margin)
        cy = rng.uniform(margin, big - margin)
        fill = tuple(int(v) for v in _colour(rng, avoid=background))
        _draw(draw, shape, cx, cy, radius, rng.uniform(0, 2 * math.pi), fill)
    return img.resize((size, size), Image.Resampling.BILINEAR)


def write_multi_label_manifest(
    out_dir: Path, labels: int, images: int, size: int, seed: int, noise: float = 0.04
) -> Path:
    """PNGs under `out/images/` and `out/manifest.csv` (path,label: the shapes in each image
    joined by '|'): each image holds two different shapes of the first `labels` shapes, one
    in each half (a tenth of them only one)."""
    names = class_names(labels)
    rng = np.random.default_rng(seed)
    folder = out_dir / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    for i in range(images):
        picked = rng.permutation(len(names))[: 1 if rng.random() < 0.1 else 2]
        chosen = [names[j] for j in sorted(picked)]
        img = draw_shapes(chosen, size, rng, noise)
        write_with(folder / f"{i:05d}.png", functools.partial(_save_png, img), "image")
        rows.append(f"images/{i:05d}.png,{'|'.join(chosen)}")
    manifest = out_dir / "manifest.csv"
    text = ("\n".join(rows) + "\n").encode()
    write_with(manifest, lambda handle: _write_bytes(handle, text), "manifest")
    return manifest


def _rotated(cx: float, cy: float, dx: float, dy: float, angle: float) -> list[tuple[float, float]]:
    cos, sin = math.cos(angle), math.sin(angle)
    corners = ((-dx, -dy), (dx, -dy), (dx, dy), (-dx, dy))
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners]


def generate(
    num_classes: int, samples_per_class: int, size: int, seed: int, noise: float
) -> tuple[list[Image.Image], list[int], list[str]]:
    """All images (class-interleaved), their labels and the class names."""
    names = class_names(num_classes)
    rng = np.random.default_rng(seed)
    images: list[Image.Image] = []
    labels: list[int] = []
    for _ in range(samples_per_class):
        for label, name in enumerate(names):
            images.append(draw_shape(name, size, rng, noise))
            labels.append(label)
    return images, labels, names


def write_image_folder(
    out_dir: Path,
    num_classes: int,
    samples_per_class: int,
    size: int,
    seed: int,
    noise: float,
    splits: dict[str, float] | None = None,
) -> dict[str, int]:
    """Write PNGs as `out/<class>/NNNN.png`, or `out/<split>/<class>/...` when splits are given.

    `splits` maps split name → share of each class (e.g. {"train": .7, "val": .15, "test": .15}).
    Returns the number of files written per split (key "" for the flat layout).
    """
    images, labels, names = generate(num_classes, samples_per_class, size, seed, noise)
    shares = splits or {"": 1.0}
    counts = dict.fromkeys(shares, 0)
    per_class_seen = [0] * len(names)
    bounds = np.cumsum(list(shares.values())) * samples_per_class
    for img, label in zip(images, labels, strict=True):
        i = per_class_seen[label]
        per_class_seen[label] += 1
        split = list(shares)[min(int(np.searchsorted(bounds, i, side="right")), len(shares) - 1)]
        folder = out_dir / split / names[label] if split else out_dir / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        # through cnnctl.core.atomic: a symlink in the folder is replaced, never written through
        write_with(folder / f"{i:05d}.png", functools.partial(_save_png, img), "image")
        counts[split] += 1
    return counts


def _write_bytes(handle: IO[bytes], data: bytes) -> None:
    handle.write(data)


def _save_png(img: Image.Image, handle: IO[bytes]) -> None:
    img.save(handle, format="PNG")
