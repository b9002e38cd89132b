"""The run dir's per-epoch logs: metrics.csv (one row per epoch, flushed as it ends) and,
with logging.tensorboard, TensorBoard scalars in <run>/tensorboard/."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from cnnctl.core import atomic

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


class MetricsLog:
    """metrics.csv, one row per epoch, flushed as each epoch ends."""

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None):
        """Start the file (header only), or with `rows` rewrite it to hold exactly those rows
        (a resumed run drops any row of an epoch whose checkpoint was never written)."""
        self.path = path
        if rows is not None or not path.exists():
            with atomic.atomic_open(path, "w", "metrics file", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(METRIC_COLUMNS)
                writer.writerows([_fmt(row[c]) for c in METRIC_COLUMNS] for row in rows or [])

    def append(self, row: dict[str, Any]) -> None:
        try:
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerow([_fmt(row[c]) for c in METRIC_COLUMNS])
        except OSError as err:
            raise atomic.output_error(self.path, err, "metrics file") from None


class TensorBoardLog:
    """Epoch scalars for TensorBoard in <run>/tensorboard/ (its writer thread does the I/O)."""

    def __init__(self, folder: Path):
        self.require()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    @staticmethod
    def require() -> None:
        """A clear ConfigError now (before a run dir exists) if tensorboard is missing."""
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            from cnnctl.core.errors import ConfigError

            raise ConfigError(
                "logging.tensorboard: the tensorboard package is not installed; "
                "pip install 'cnnctl[tensorboard]' or set logging.tensorboard: false"
            )

    def append(self, row: dict[str, Any]) -> None:
        epoch = int(row["epoch"])
        for split in ("train", "val"):
            self.writer.add_scalar(f"loss/{split}", row[f"{split}_loss"], epoch)
            self.writer.add_scalar(f"accuracy/{split}", row[f"{split}_acc"], epoch)
        self.writer.add_scalar("lr", row["lr"], epoch)
        self.writer.add_scalar("seconds_per_epoch", row["seconds"], epoch)

    def close(self) -> None:
        self.writer.close()


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def write_splits(path: Path, members: list[tuple[str, str, str, str]]) -> None:
    """splits.csv: `path,label,split` (plus `group` when the data has groups), one row per file
    of a file-based source, written atomically; paths keep their own bytes (surrogateescape)."""
    grouped = any(group for *_, group in members)
    with atomic.atomic_open(
        path, "w", "splits file", newline="", encoding="utf-8", errors="surrogateescape"
    ) as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", *(["group"] if grouped else [])])
        for file, label, split, group in members:
            writer.writerow([os.path.abspath(file), label, split, *([group] if grouped else [])])
