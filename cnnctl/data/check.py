"""Checking image files before training: every file fully decoded once, problems listed.

Policy (docs/reliability.md):
- unreadable files (zero bytes, truncated, not an image, a decompression bomb) are skipped
  with a warning that counts and lists them; training never meets them mid-epoch;
- odd but valid images (CMYK, RGBA, palette, 16-bit, grey among RGB, EXIF-rotated) are
  converted when loaded (`transforms.to_mode`, `ImageOps.exif_transpose`);
- the user's files are only ever opened for reading, and only regular files are opened: a
  FIFO, device or socket is "not a regular file" by stat alone (a FIFO opened for reading
  blocks until a writer comes; a device may never end).

Results are cached per file by (path, size, mtime) under the user's cache folder, so a
second check of an unchanged folder reads no image. When training will cache the decoded
images anyway (`data.cache`), the check decodes each file straight to the model's input and
hands the tensors on, so a cold folder is decoded once, not twice; the files are spread over
DataLoader worker processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from cnnctl.core.cachedir import cache_root, write_json
from cnnctl.data.folder import not_regular, open_regular
from cnnctl.data.transforms import InputSpec, load_for_model
from cnnctl.report.console import printable

CACHE_VERSION = 1


@dataclass
class CheckReport:
    """Which files can be used, and why the others cannot."""

    good: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0
    decoded: dict[str, Any] = field(default_factory=dict)  # path → uint8 tensor, when asked to decode

    def summary(self, limit: int = 10, rows: Mapping[str, str] | None = None) -> str:
        """One line: how many were skipped, the first `limit` with their reasons (each named
        by `rows[path]` too when given: a manifest's file and row)."""
        if not self.bad:
            return f"{len(self.good)} images ok"
        rows = rows or {}
        shown = "; ".join(
            f"{printable(rows[path]) + ' ' if path in rows else ''}{printable(path)}: {printable(reason)}"
            for path, reason in self.bad[:limit]
        )
        more = f"; ... and {len(self.bad) - limit} more" if len(self.bad) > limit else ""
        return (
            f"skipping {len(self.bad)} unreadable image(s) of {len(self.good) + len(self.bad)}: {shown}{more}"
        )


def verify_image(path: str) -> str:
    """'' when the file decodes fully, else the reason it cannot be used."""
    return inspect_image(path)[0]


def inspect_image(path: str, spec: InputSpec | None = None) -> tuple[str, Any]:
    """(reason, image): reason is '' when the file decodes fully; with `spec`, image is the
    file decoded to that input (`load_for_model`), else None."""

    def full_decode() -> None:
        with open_regular(path) as handle, Image.open(handle) as img:
            img.load()  # a full decode: verify() alone misses truncated pixel data

    decode: Callable[[], Any] = full_decode if spec is None else lambda: load_for_model(path, spec)
    try:
        special = not_regular(path)  # by stat: a FIFO or a device is never opened
        if special:
            return special, None
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)", None
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return "", decode()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return f"too large ({str(err).split('(')[0].strip() or 'decompression bomb guard'})", None
    except Exception as err:  # noqa: BLE001 - any decoder failure is a reason, not a crash
        lines = str(err).splitlines()
        text = lines[0] if lines else ""
        for named in (f"<_io.BufferedReader name={path!r}>", repr(path), f"'{path}'", path):
            text = text.replace(named, "")  # the path is listed once, beside the reason
        text = text.strip(" :")
        return (f"{err.__class__.__name__}: {text}" if text else err.__class__.__name__), None


class _Inspect:
    """Map-style dataset for the worker processes: index → (reason, image or None)."""

    def __init__(self, files: Sequence[str], spec: InputSpec | None):
        self.files, self.spec = files, spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[str, Any]:
        return inspect_image(self.files[i], self.spec)


def _inspect_all(files: Sequence[str], spec: InputSpec | None, workers: int) -> list[tuple[str, Any]]:
    if workers <= 0 or len(files) < 64:
        return [inspect_image(path, spec) for path in files]
    from torch.utils.data import DataLoader

    loader: DataLoader[Any] = DataLoader(
        _Inspect(files, spec),  # type: ignore[arg-type]
        batch_size=64,
        num_workers=workers,
        collate_fn=_collate,
    )
    results: list[tuple[str, Any]] = []
    for reasons, images in loader:
        results += [
            (reason, None if images is None or reason else images[i]) for i, reason in enumerate(reasons)
        ]
    return results


def _collate(items: list[tuple[str, Any]]) -> tuple[list[str], Any]:
    """In the worker: one stacked tensor per batch (zeros where a file failed), so the batch
    crosses to the main process as one shared-memory block, not one per image."""
    reasons = [reason for reason, _ in items]
    images = [image for _, image in items]
    if all(image is None for image in images):
        return reasons, None
    import torch

    shape = next(image for image in images if image is not None).shape
    blank = torch.zeros(shape, dtype=torch.uint8)
    return reasons, torch.stack([blank if image is None else image for image in images])


def _encoded(files: Sequence[str]) -> bytes:
    """The file list as bytes for the cache key (a name's surrogate escapes kept, not an error)."""
    return chr(0).join(files).encode("utf-8", "surrogatepass")


def _key(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def check_files(
    files: Sequence[str], use_cache: bool = True, decode: InputSpec | None = None, workers: int = 0
) -> CheckReport:
    """Decode every file once (or reuse the cached verdict of an unchanged file), in `workers`
    processes. With `decode`, the files decoded now come back in `report.decoded`, prepared
    for that input spec; files with a cached verdict are not read."""
    cache_file = cache_root() / "checks" / f"{hashlib.sha256(_encoded(files)).hexdigest()[:20]}.json"
    cached: dict[str, list[str]] = {}
    if use_cache and cache_file.is_file():
        try:
            data = json.loads(cache_file.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION:
                cached = data["files"]
        except (OSError, ValueError, KeyError):
            cached = {}
    keys = {path: _key(path) for path in files}
    fresh = [
        path
        for path, key in keys.items()
        if key is not None and (cached.get(path) is None or cached[path][0] != key)
    ]
    inspected = dict(zip(fresh, _inspect_all(fresh, decode, workers), strict=True))
    report = CheckReport()
    verdicts: dict[str, list[str]] = {}
    for path in files:
        key = keys[path]
        if key is None:
            reason = "file disappeared"
        elif path in inspected:
            reason, image = inspected[path]
            if image is not None and decode is not None:
                report.decoded[path] = image
        else:
            reason = cached[path][1]
            report.cached += 1
        verdicts[path] = [key or "", reason]
        if reason:
            report.bad.append((path, reason))
        else:
            report.good.append(path)
    if use_cache:
        write_json(cache_file, {"version": CACHE_VERSION, "files": verdicts})
    return report
