"""Prediction files: `cnnctl predict --out` as CSV or JSON (by suffix), streamed row by row
and written atomically, with the task's columns (single_label: path, label, probability,
with --top-k K > 1 top{i}_label / top{i}_probability, then error)."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cnnctl.core import atomic
from cnnctl.tasks import Task
from cnnctl.tasks.single_label import SingleLabel


def write_predictions(
    rows: Iterable[Any], out: Path | None, topk: int, task: Task | None = None
) -> Iterator[dict[str, Any]]:
    """Stream prediction records to CSV or JSON (by suffix) while yielding them onward.

    The file appears (atomically) once every row is written. Paths and labels go in as they
    are: the CSV is UTF-8 with a non-UTF-8 name's own bytes put back (surrogateescape), so a
    path read back with `errors="surrogateescape"` is the file's name; a cell is never
    prefixed, even one starting with = + - @ (see docs/reliability.md); JSON escapes such a
    name as `\\udcXX`, which reads back to the same str. The columns are `task`'s, else
    those of the task the first row carries (`Prediction.task`), else single_label's."""
    rows = iter(rows)
    head = next(rows, None)
    task = task or getattr(head, "task", None) or SingleLabel()
    if head is not None:
        rows = itertools.chain([head], rows)
    if out is None:
        for pred in rows:
            yield task.prediction_record(pred, topk)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise atomic.output_error(out, err, "predictions file") from None
    as_json = out.suffix.lower() == ".json"
    with atomic.atomic_open(
        out, "w", "predictions file", newline="", encoding="utf-8", errors="surrogateescape"
    ) as handle:
        writer = None if as_json else csv.DictWriter(handle, fieldnames=task.prediction_columns(topk))
        if writer is not None:
            writer.writeheader()
        else:
            handle.write("[\n")
        first = True
        for pred in rows:
            record = task.prediction_record(pred, topk)
            if writer is not None:
                writer.writerow({k: _csv_value(v) for k, v in record.items()})
            else:
                handle.write(("" if first else ",\n") + "  " + json.dumps(record))
            first = False
            yield record
        if writer is None:
            handle.write("\n]\n")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else value
