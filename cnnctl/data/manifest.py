"""Manifests: a table of image paths and labels, one row per image, as CSV, JSONL or Parquet
(by the file's extension).

Rows are numbered from 1 (the first row after a CSV's header; a JSONL file's blank lines are
not rows). A path is absolute, or relative to `data.root` when it is set, else to the
manifest's own folder. Problems with the table itself (a missing column, an empty label or
path, the same image twice, a line that is not JSON) are one DataError naming the file, the
row and what to do, before anything is decoded; a row whose file is missing is left out and
named in one warning, as an image folder's unreadable files are.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnctl.core.errors import DataError
from cnnctl.report.console import printable

PARQUET_HINT = "pip install 'cnnctl[parquet]' (pyarrow)"
SHOWN = 10  # rows named in a message, at most


@dataclass
class Manifest:
    """One manifest's usable rows: resolved file paths, their labels and groups, row numbers."""

    source: Path
    files: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # empty without data.group_column
    rows: list[int] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)  # each file's real path (links resolved)
    missing: list[tuple[int, str]] = field(default_factory=list)  # (row, path) of files not found


def read_manifest(
    path: Path,
    path_column: str,
    label_column: str,
    group_column: str | None,
    root: Path | None,
    separator: str | None = None,
) -> Manifest:
    """The rows of the manifest at `path` (see the module doc for the rules). With `separator`
    (task multi_label) a label is a set of labels: text split on it, or a JSON list; each row's
    label is then stored as its labels joined by `separator` ('' for none)."""
    shown = printable(str(path))
    if not path.is_file():
        raise DataError(f"{shown}: manifest not found (data.train / data.val / data.test)")
    wanted = [c for c in (path_column, label_column, group_column) if c is not None]
    base = root if root is not None else path.parent
    out = Manifest(path)
    seen: dict[str, int] = {}
    for number, row in _rows(path, wanted):
        file = _cell(row, path_column, number, shown, "path")
        label = (
            _label(row, label_column, number, shown).strip()
            if separator is None
            else _label_set(row, label_column, number, shown, separator)
        )
        group = _cell(row, group_column, number, shown, "group").strip() if group_column else ""
        resolved = file if os.path.isabs(file) else os.path.join(base, file)
        resolved = os.path.normpath(resolved)
        identity = os.path.realpath(resolved)  # a link or another spelling is still the same image
        if identity in seen:
            raise DataError(
                f"{shown}: rows {seen[identity]} and {number} name the same image "
                f"{printable(resolved)}; keep one row per image"
            )
        seen[identity] = number
        if not _is_file(resolved):
            out.missing.append((number, resolved))
            continue
        out.files.append(resolved)
        out.identities.append(identity)
        out.labels.append(label)
        out.rows.append(number)
        if group_column:
            out.groups.append(group)
    if not seen:
        raise DataError(f"{shown}: the manifest has no rows")
    _warn_missing(out)
    return out


def _rows(path: Path, wanted: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(path, wanted)
    if suffix == ".jsonl":
        return _jsonl_rows(path, wanted)
    if suffix == ".parquet":
        return _parquet_rows(path, wanted)
    raise DataError(f"{printable(str(path))}: a manifest is a .csv, .jsonl or .parquet file")


def _csv_rows(path: Path, wanted: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    shown = printable(str(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            _check_columns(reader.fieldnames or [], wanted, shown)
            for number, row in enumerate(reader, start=1):
                if None in row:  # more fields than the header: an unquoted comma, most likely
                    raise DataError(
                        f"{shown}: row {number} has more fields than the header; quote a value "
                        'that holds a comma ("a,b.png")'
                    )
                yield number, row
    except UnicodeDecodeError as err:
        raise DataError(f"{shown}: not UTF-8 text ({err.reason}); save the manifest as UTF-8") from None
    except csv.Error as err:
        raise DataError(f"{shown}: not a readable CSV file ({err})") from None


def _jsonl_rows(path: Path, wanted: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    shown = printable(str(path))
    number = 0
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line in handle:
                if not line.strip():
                    continue
                number += 1
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):
                    raise DataError(f"{shown}: row {number} is not a JSON object on one line") from None
                if not isinstance(row, dict):
                    raise DataError(f'{shown}: row {number} is not a JSON object ({{"path": ..., ...}})')
                _check_columns(list(row), wanted, shown, number)
                yield number, row
    except UnicodeDecodeError as err:
        raise DataError(f"{shown}: not UTF-8 text ({err.reason}); save the manifest as UTF-8") from None


def _parquet_rows(path: Path, wanted: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    shown = printable(str(path))
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{shown}: reading Parquet needs pyarrow: {PARQUET_HINT}") from None
    try:
        names = pq.read_schema(path).names
        _check_columns(names, wanted, shown)
        table = pq.read_table(path, columns=wanted)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - pyarrow raises its own kinds for a damaged file
        raise DataError(f"{shown}: not a readable Parquet file ({type(err).__name__}: {err})") from None
    yield from enumerate(table.to_pylist(), start=1)


def _check_columns(names: Sequence[str], wanted: list[str], shown: str, row: int | None = None) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        where = f"row {row} has" if row is not None else "has"
        raise DataError(
            f"{shown}: {where} no column {', '.join(repr(c) for c in missing)} (it has: "
            f"{', '.join(map(repr, names[:20])) or 'none'}); set data.path_column / data.label_column "
            "/ data.group_column to its column names"
        )


def _cell(row: dict[str, Any], column: str | None, number: int, shown: str, what: str) -> str:
    value = row.get(column) if column is not None else None
    blank = isinstance(value, float) and not math.isfinite(value)  # pandas writes a missing value as NaN
    if value is None or blank or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{shown}: row {number} has an empty {what} ({column!r}); fill it in or drop the row")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(
            f"{shown}: row {number}: the {what} ({column!r}) must be text, got {type(value).__name__}"
        )
    text = str(value)
    if "\0" in text:
        raise DataError(f"{shown}: row {number}: the {what} holds a NUL character")
    return text


def _label(row: dict[str, Any], column: str, number: int, shown: str) -> str:
    if isinstance(row.get(column), list):
        raise DataError(
            f"{shown}: row {number}: the label is a list (several labels per image); give one label "
            "per row, or set task: multi_label"
        )
    return _cell(row, column, number, shown, "label")


def _label_set(row: dict[str, Any], column: str, number: int, shown: str, separator: str) -> str:
    """A multi-label row's labels, in their order, each once, joined by `separator`: a JSON
    list (an empty one: no label), or text split on `separator` (empty pieces dropped)."""
    value = row.get(column)
    if isinstance(value, list):
        names = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int) or not str(item).strip():
                raise DataError(
                    f"{shown}: row {number}: each label of a list must be non-empty text, got {item!r}"
                )
            if separator in str(item):
                raise DataError(
                    f"{shown}: row {number}: the label {printable(str(item))!r} holds data.label_separator "
                    f"{separator!r}; rename it or set another data.label_separator"
                )
            names.append(str(item).strip())
    else:
        names = [part.strip() for part in _cell(row, column, number, shown, "label").split(separator)]
    if any("\0" in name for name in names):
        raise DataError(f"{shown}: row {number}: the label holds a NUL character")
    return separator.join(dict.fromkeys(name for name in names if name))


def _is_file(path: str) -> bool:
    """A regular file (a link to one counts); a FIFO or device is never opened."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _warn_missing(manifest: Manifest) -> None:
    if not manifest.missing:
        return
    listed = ", ".join(f"row {n} ({printable(p)})" for n, p in manifest.missing[:SHOWN])
    more = f" and {len(manifest.missing) - SHOWN} more" if len(manifest.missing) > SHOWN else ""
    logging.getLogger("cnnctl").warning(
        f"{printable(str(manifest.source))}: {len(manifest.missing)} row(s) name no readable regular file, "
        f"left out: {listed}{more}"
    )
