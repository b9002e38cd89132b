"""The `csv` data source: one row per image, a label column and C*H*W pixel columns.

The layout of the Fashion-MNIST / Kaggle digit CSVs (`label,pixel1,...,pixel784`):

- a header row is detected (the first row is not all numbers) and is optional; with no
  header, `data.label_column` must be a 0-based column index;
- pixel columns are in C, H, W order (channel-first, row by row) and hold 0-255 or 0-1
  values (`data.scale`; auto = 0-1 when every train value is <= 1);
- labels are integers (`data.classes` names labels 0..K-1; without it the classes are the
  sorted distinct labels of the train file) or names such as `cat` (sorted).

Files are parsed by numpy's C reader (a 60,000-row Fashion-MNIST CSV of integers, 130 MB,
in about 2 s; decimals parse about 4x slower); only an error sends a file through a slow
line-by-line pass that finds the line to name. Every problem is a `DataError` of one line: the file, the line
where there is one, and what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnctl.config import DataConfig
from cnnctl.core.errors import DataError

Part = tuple[torch.Tensor, torch.Tensor]  # uint8 (N, C, H, W) images, long (N,) labels
SPLITS = ("train", "val", "test")


@dataclass
class Table:
    """One CSV file as read: pixel values and label codes, before any checking."""

    where: str  # "data.train path/to/file.csv", the prefix of every error about it
    path: Path
    skip: int  # physical lines before the first data row (blank lines, the header)
    pixels: np.ndarray  # (N, P) int32 or float32
    codes: np.ndarray  # (N,) int64 index into `labels`
    labels: list[str]  # the distinct raw label strings, in first-seen order

    def line_of(self, row: int) -> int:
        """The file's (1-based) line number of data row `row`."""
        return _line_of_row(self.path, self.skip, row)


def load(cfg: DataConfig) -> tuple[dict[str, Part], list[str]]:
    """Read data.train (and data.val / data.test when given) → native uint8 images + labels.

    Returns {"train": (images, labels), ...} for the files named, and the class names.
    """
    files = {name: getattr(cfg, name) for name in SPLITS if getattr(cfg, name)}
    tables = {name: read_table(f"data.{name}", Path(path), cfg.label_column) for name, path in files.items()}
    train = tables["train"]
    shape = image_shape(cfg.image_shape, train)
    for table in tables.values():
        if table.pixels.shape[1] != train.pixels.shape[1]:
            raise DataError(
                f"{table.where}: {table.pixels.shape[1]} pixel columns, but data.train has "
                f"{train.pixels.shape[1]}; every CSV needs the same columns"
            )
    scale = cfg.scale if cfg.scale != "auto" else ("0-1" if _max(train.pixels) <= 1 else "0-255")
    classes, numeric = class_names(cfg.classes, train)
    parts: dict[str, Part] = {}
    for name, table in tables.items():
        pixels = to_uint8(table, scale, cfg.scale == "auto").reshape(-1, *shape)
        labels = label_indices(table, classes, numeric, fixed=cfg.classes is not None)
        parts[name] = (torch.from_numpy(pixels), torch.from_numpy(labels))
    return parts, classes


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def read_table(key: str, path: Path, label_column: str | int) -> Table:
    """Parse one CSV file: find the header and the label column, read every row."""
    where = f"{key} {path}"
    first, skip = _first_row(where, path)
    header, label = _layout(where, first, label_column)
    ncols = len(first)
    if ncols < 2:
        raise DataError(f"{where}: found {ncols} column; a CSV needs a label column and pixel columns")
    skip += 1 if header else 0
    sample = _first_data_row(path, skip)
    if sample is None:
        raise DataError(f"{where}: has a header but no data rows; add a row per image")
    decimals = any(c in field for i, field in enumerate(sample) if i != label for c in ".eE")
    values, names = _parse(where, path, skip, ncols, label, np.float32 if decimals else np.int32)
    codes = values[:, label].astype(np.int64)
    return Table(where, path, skip, np.delete(values, label, axis=1), codes, names)


def _first_row(where: str, path: Path) -> tuple[list[str], int]:
    """The fields of the first non-blank line and the number of physical lines before it."""
    if not path.is_file():
        hint = "it is a folder" if path.is_dir() else "file not found"
        raise DataError(f"{where}: {hint}; give the path of a CSV file (relative to the current folder)")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for number, line in enumerate(handle):
                if line.strip():
                    return _fields(line), number
    except UnicodeDecodeError:
        raise DataError(f"{where}: not a UTF-8 text file; save it as CSV text") from None
    except OSError as err:
        raise DataError(f"{where}: cannot read it ({err.strerror or err})") from None
    raise DataError(f"{where}: the file is empty; it needs a row per image (label and pixel columns)")


def _first_data_row(path: Path, skip: int) -> list[str] | None:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(handle):
            if number >= skip and line.strip():
                return _fields(line)
    return None


def _fields(line: str) -> list[str]:
    return [f.strip().strip('"').strip() for f in line.rstrip("\r\n").split(",")]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _layout(where: str, first: list[str], label_column: str | int) -> tuple[bool, int]:
    """(has a header, index of the label column) from the first row."""
    if isinstance(label_column, int):
        if not 0 <= label_column < len(first):
            raise DataError(
                f"{where}: data.label_column {label_column} is not a column (the file has "
                f"{len(first)} columns, 0..{len(first) - 1}); set data.label_column"
            )
        header = not all(_is_number(f) for i, f in enumerate(first) if i != label_column)
        return header, label_column
    if label_column in first:
        return True, first.index(label_column)
    if sum(not _is_number(f) for f in first) <= 1:
        raise DataError(
            f"{where}: has no header row, so data.label_column '{label_column}' cannot be found; "
            "set data.label_column to the label's 0-based column index"
        )
    shown = ", ".join(first[:5]) + (", ..." if len(first) > 5 else "")
    raise DataError(
        f"{where}: no column named '{label_column}' in the header ({shown}); "
        "set data.label_column to a column name or 0-based index"
    )


def _parse(
    where: str, path: Path, skip: int, ncols: int, label: int, dtype: type[np.generic]
) -> tuple[np.ndarray, list[str]]:
    """All rows as one numeric array; the label column holds codes into the returned names."""
    names: dict[str, int] = {}

    def code(text: str) -> int:
        return names.setdefault(text.strip().strip('"').strip(), len(names))

    try:
        values = np.loadtxt(
            path,
            delimiter=",",
            skiprows=skip,
            dtype=dtype,
            converters={label: code},
            encoding="utf-8-sig",
            comments=None,
            quotechar='"',
            ndmin=2,
        )
    except UnicodeDecodeError:  # a ValueError too: first
        raise DataError(f"{where}: not a UTF-8 text file; save it as CSV text") from None
    except ValueError as err:
        if dtype is np.int32 and "could not convert" in str(err):
            return _parse(where, path, skip, ncols, label, np.float32)  # decimals after all
        problem = find_bad_line(path, skip, ncols, label) or " ".join(str(err).split())
        raise DataError(f"{where}: {problem}") from None
    if values.shape[1] != ncols:  # pragma: no cover - loadtxt enforces the first row's width
        raise DataError(f"{where}: rows have {values.shape[1]} columns, the first row {ncols}")
    return values, list(names)


def find_bad_line(path: Path, skip: int, ncols: int, label: int) -> str | None:
    """The first line with the wrong number of values or a non-number pixel, described."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= skip or not line.strip():
                continue
            fields = _fields(line)
            if len(fields) != ncols:
                return (
                    f"line {number} has {len(fields)} values, the first row {ncols}; "
                    "every row needs the same columns"
                )
            for column, text in enumerate(fields):
                if column != label and not _is_number(text):
                    return (
                        f"line {number}, column {column + 1}: '{text[:20]}' is not a number; "
                        "pixel values must be numbers"
                    )
    return None


def _line_of_row(path: Path, skip: int, row: int) -> int:
    seen = -1
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if number > skip and line.strip():
                seen += 1
                if seen == row:
                    return number
    return skip + row + 1  # pragma: no cover - rows come from this file


# --------------------------------------------------------------------------------------
# Shape, scale, labels
# --------------------------------------------------------------------------------------


def image_shape(given: list[int] | None, table: Table) -> tuple[int, int, int]:
    """[C, H, W] of the pixel columns: data.image_shape, or 1 x N x N from the column count."""
    count = table.pixels.shape[1]
    if given is None:
        side = math.isqrt(count)
        if side * side != count:
            raise DataError(
                f"{table.where}: {count} pixel columns are not a square grey image; "
                "set data.image_shape: [C, H, W]"
            )
        return 1, side, side
    c, h, w = given
    if c * h * w != count:
        raise DataError(
            f"{table.where}: data.image_shape {given} needs {c * h * w} pixel columns, the file has "
            f"{count}; fix data.image_shape (or data.label_column)"
        )
    return c, h, w


def _max(values: np.ndarray) -> float:
    return float(values.max()) if values.size else 0.0


def to_uint8(table: Table, scale: str, detected: bool) -> np.ndarray:
    """Pixel values in `scale` → uint8 0-255; NaN or a value outside the range is an error."""
    values = table.pixels
    top = 1.0 if scale == "0-1" else 255.0
    if values.dtype.kind == "f":
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            line = table.line_of(int(np.argmin(finite)))
            raise DataError(f"{table.where}: line {line}: a pixel value is not a finite number; fix that row")
    outside = (values.min(axis=1) < 0) | (values.max(axis=1) > top)
    if outside.any():
        row = int(np.argmax(outside))
        low, high = float(values[row].min()), float(values[row].max())
        how = "detected from data.train" if detected else "set by data.scale"
        raise DataError(
            f"{table.where}: line {table.line_of(row)}: pixel values {low:g}..{high:g} are outside "
            f"{scale} ({how}); fix that row or set data.scale"
        )
    if scale == "0-1":
        values = np.rint(values * np.float32(255.0))
    elif values.dtype.kind == "f":
        values = np.rint(values)
    result: np.ndarray = values.astype(np.uint8)
    return result


def _as_int(text: str) -> int | None:
    """The integer a label string holds ("3", "3.0"), or None for a name."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


def class_names(fixed: list[str] | None, train: Table) -> tuple[list[str], bool]:
    """The class list, and whether labels are numbers (True) or names (False).

    With data.classes the list is given; otherwise it is the sorted distinct labels of the
    train file: numerically for integer labels, alphabetically for names.
    """
    numbers = [_as_int(raw) for raw in train.labels]
    numeric = all(n is not None for n in numbers)
    fractions = [raw for raw, n in zip(train.labels, numbers, strict=True) if n is None and _is_number(raw)]
    if fractions:
        raw = fractions[0]
        row = int(np.argmax(train.codes == train.labels.index(raw)))
        raise DataError(
            f"{train.where}: line {train.line_of(row)}: label '{raw}' is neither a whole number "
            "nor a name; labels are integers 0..K-1 or class names"
        )
    if fixed is not None:
        return list(fixed), numeric
    if numeric:
        return [str(n) for n in sorted({n for n in numbers if n is not None})], True
    return sorted(set(train.labels)), False


def label_indices(table: Table, classes: list[str], numeric: bool, fixed: bool) -> np.ndarray:
    """Each row's class index; a label outside the class list is an error naming its line."""
    position = {name: i for i, name in enumerate(classes)}
    lookup = np.empty(len(table.labels), dtype=np.int64)
    for code, raw in enumerate(table.labels):
        number = _as_int(raw)
        if fixed and number is not None:
            index = number if 0 <= number < len(classes) else None
        else:
            index = position.get(str(number) if numeric and number is not None else raw)
        if index is None:
            row = int(np.argmax(table.codes == code))
            if fixed:
                allowed = f"0..{len(classes) - 1} or a name in data.classes"
            else:
                allowed = "one of data.train's classes " + _short(classes)
            raise DataError(
                f"{table.where}: line {table.line_of(row)}: label '{raw}' is not {allowed}; "
                "fix the label or set data.classes"
            )
        lookup[code] = index
    indices: np.ndarray = lookup[table.codes]
    return indices


def _short(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"[{shown}]"
