"""Decoded-image caches for image folders (`data.cache`).

Decoding and resizing PNG/JPEG files is most of the cost of a small model's epoch. With a
cache, every file is decoded once, in parallel, to the model's input size (uint8, so 1 byte
per pixel and channel); the split then lives in memory like the CSV and torchvision sources,
and random augmentation runs on the cached uint8 tensors.

- `memory`: decode at the start of the run, keep in RAM;
- `disk`: the same, also saved under the cache folder ($CNNCTL_CACHE, else
  $XDG_CACHE_HOME/cnnctl, else ~/.cache/cnnctl) keyed by the file list, each file's size and
  mtime, and the decode settings, so the next run with the same files and input spec loads
  one file instead of decoding thousands; any change of a file or of the settings is a new key;
- `auto`: `memory` when the decoded images fit in a quarter of the RAM (at most 4 GiB), else off;
- `off`: decode every file every epoch.

The decoded pixels are exactly those of the uncached path (same `load_for_model`), so a cached
run trains on identical inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from cnnctl.core.atomic import write_with
from cnnctl.core.cachedir import cache_root
from cnnctl.core.errors import DataError, OutputError
from cnnctl.data.transforms import InputSpec, load_for_model

CACHE_VERSION = 1
AUTO_LIMIT = 4 * 2**30

log = logging.getLogger("cnnctl")


def resolve_mode(mode: str, count: int, spec: InputSpec) -> str:
    """`auto` → memory or off by the decoded size; other modes as given."""
    if mode != "auto":
        return mode
    need = count * spec.channels * spec.size[0] * spec.size[1]
    budget = min(AUTO_LIMIT, physical_ram() // 4)
    if need <= budget:
        return "memory"
    log.info(
        f"data.cache auto: {need / 2**30:.1f} GiB of decoded images would not fit the "
        f"{budget / 2**30:.1f} GiB budget; decoding from files every epoch (set data.cache: disk to keep them)"
    )
    return "off"


def physical_ram() -> int:
    """Bytes of physical memory (8 GiB where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def key(files: Sequence[str], spec: InputSpec) -> str:
    """Changes whenever a file is added, removed, rewritten, or the decode settings change."""
    digest = hashlib.sha256()
    decode = {"channels": spec.channels, "size": list(spec.size), "resize": spec.resize}
    digest.update(json.dumps({"version": CACHE_VERSION, "decode": decode}).encode())
    for path in files:
        stat = os.stat(path)
        digest.update(f"\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


class _Decode(Dataset[torch.Tensor]):
    def __init__(self, files: Sequence[str], spec: InputSpec):
        self.files, self.spec = files, spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        try:
            return load_for_model(self.files[i], self.spec)
        except Exception as err:  # noqa: BLE001 - any decoder failure names the file
            raise DataError(f"{self.files[i]}: cannot read image ({err})") from None


def decode_all(
    files: Sequence[str], spec: InputSpec, workers: int, decoded: Mapping[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """Every file decoded to the spec's channels and size: one uint8 (N, C, H, W) tensor.
    Files in `decoded` (the image check's output, same `load_for_model`) are not read again."""
    out = torch.empty((len(files), *spec.shape), dtype=torch.uint8)
    known = decoded or {}
    missing = []
    for i, path in enumerate(files):
        if path in known:
            out[i] = known[path]
        else:
            missing.append(i)
    if not missing:
        return out
    todo = [files[i] for i in missing]
    loader: DataLoader[torch.Tensor] = DataLoader(
        _Decode(todo, spec), batch_size=64, num_workers=workers if len(todo) >= 64 else 0
    )
    start = 0
    for batch in loader:
        out[missing[start : start + len(batch)]] = batch
        start += len(batch)
    return out


def cached_images(
    files: Sequence[str],
    spec: InputSpec,
    mode: str,
    workers: int,
    decoded: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The decoded images of `files`: from the disk cache when it has them, else decoded
    (and, for `disk`, saved there atomically; a cache that cannot be written only costs time).
    `decoded` holds images the image check has already decoded."""
    if mode != "disk":
        return decode_all(files, spec, workers, decoded)
    path = cache_root() / "images" / f"{key(files, spec)}.pt"
    if path.is_file():
        try:
            images = torch.load(path, weights_only=True)
            if isinstance(images, torch.Tensor) and tuple(images.shape) == (len(files), *spec.shape):
                log.debug(f"data.cache disk: {len(files)} decoded images from {path}")
                return images
        except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt
            pass
    images = decode_all(files, spec, workers, decoded)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with(path, lambda handle: torch.save(images, handle), "image cache")
        log.debug(f"data.cache disk: {len(files)} decoded images saved to {path}")
    except (OSError, OutputError) as err:
        reason = err.strerror if isinstance(err, OSError) else str(err)
        log.warning(f"data.cache disk: cannot write {path} ({reason}); continuing without it")
    return images
