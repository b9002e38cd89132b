"""Checking image files before training: every file fully decoded once, problems listed.

Policy (docs/reliability.md):
- unreadable files (zero bytes, truncated, not an image, a decompression bomb) are skipped
  with a warning that counts and lists them; training never meets them mid-epoch;
- odd but valid images (CMYK, RGBA, palette, 16-bit, grey among RGB, EXIF-rotated) are
  converted when loaded (`transforms.to_mode`, `ImageOps.exif_transpose`);
- the user's files are only ever opened for reading.

Results are cached per file by (path, size, mtime) under the user's cache folder, so a
second check of an unchanged folder reads no image.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from cnnctl.cachedir import cache_root, write_json

CACHE_VERSION = 1


@dataclass
class CheckReport:
    """Which files can be used, and why the others cannot."""

    good: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0

    def summary(self, limit: int = 10) -> str:
        if not self.bad:
            return f"{len(self.good)} images ok"
        shown = "; ".join(f"{path}: {reason}" for path, reason in self.bad[:limit])
        more = f"; ... and {len(self.bad) - limit} more" if len(self.bad) > limit else ""
        return (
            f"skipping {len(self.bad)} unreadable image(s) of {len(self.good) + len(self.bad)}: {shown}{more}"
        )


def verify_image(path: str) -> str:
    """'' when the file decodes fully, else the reason it cannot be used."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # a full decode: verify() alone misses truncated pixel data
        return ""
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return f"too large ({str(err).split('(')[0].strip() or 'decompression bomb guard'})"
    except Exception as err:  # noqa: BLE001 - any decoder failure is a reason, not a crash
        lines = str(err).splitlines()
        text = (lines[0] if lines else "").replace(f"'{path}'", "").replace(path, "").strip(" :")
        return f"{err.__class__.__name__}: {text}" if text else err.__class__.__name__


def _key(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def check_files(files: Sequence[str], use_cache: bool = True) -> CheckReport:
    """Decode every file once (or reuse the cached verdict of an unchanged file)."""
    cache_file = (
        cache_root() / "checks" / f"{hashlib.sha256(chr(0).join(files).encode()).hexdigest()[:20]}.json"
    )
    cached: dict[str, list[str]] = {}
    if use_cache and cache_file.is_file():
        try:
            data = json.loads(cache_file.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION:
                cached = data["files"]
        except (OSError, ValueError, KeyError):
            cached = {}
    report = CheckReport()
    verdicts: dict[str, list[str]] = {}
    for path in files:
        key = _key(path)
        hit = cached.get(path)
        if hit is not None and key is not None and hit[0] == key:
            reason = hit[1]
            report.cached += 1
        else:
            reason = verify_image(path) if key is not None else "file disappeared"
        verdicts[path] = [key or "", reason]
        if reason:
            report.bad.append((path, reason))
        else:
            report.good.append(path)
    if use_cache:
        write_json(cache_file, {"version": CACHE_VERSION, "files": verdicts})
    return report
