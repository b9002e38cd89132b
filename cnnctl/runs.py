"""Run directories: `runs/<name>/`, never silently overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

from cnnctl.errors import ConfigError

RUN_FILES = ("config.yaml", "best.pt", "last.pt", "metrics.csv", "summary.json")


def create_run_dir(parent: str | Path, name: str, force: bool = False) -> Path:
    """Make a fresh run directory: `name`, else `name-2`, `name-3`, ...; `force` reuses `name`.

    With `force` the old run's files are removed first, so nothing stale survives.
    """
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{parent}: cannot create the runs folder ({err.strerror})") from None
    target = parent / name
    if force and target.exists():
        if not any((target / f).exists() for f in RUN_FILES):
            raise ConfigError(f"{target}: exists and is not a cnnctl run; refusing to replace it")
        shutil.rmtree(target)
    suffix = 1
    while True:
        try:
            target.mkdir()
            return target
        except FileExistsError:
            suffix += 1
            target = parent / f"{name}-{suffix}"


def list_runs(parent: str | Path) -> list[dict[str, object]]:
    """One record per run directory under `parent` (newest first), read from summary.json."""
    import datetime
    import json

    parent = Path(parent)
    if not parent.is_dir():
        raise ConfigError(f"{parent}: no runs folder here")
    records: list[dict[str, object]] = []
    for run in sorted(p for p in parent.iterdir() if p.is_dir()):
        summary_file = run / "summary.json"
        if not summary_file.is_file():
            if (run / "config.yaml").is_file():
                records.append({"name": run.name, "status": "incomplete", "path": str(run)})
            continue
        try:
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            records.append({"name": run.name, "status": "unreadable summary", "path": str(run)})
            continue
        test = summary.get("test") or {}
        stamp = datetime.datetime.fromtimestamp(summary_file.stat().st_mtime)
        records.append(
            {
                "name": run.name,
                "status": "done",
                "model": summary.get("model"),
                "dataset": summary.get("dataset"),
                "epochs": summary.get("epochs_run"),
                "best_epoch": summary.get("best_epoch"),
                "best_val_loss": summary.get("best_val_loss"),
                "test_acc": test.get("accuracy"),
                "date": stamp.isoformat(timespec="seconds"),
                "path": str(run),
            }
        )
    records.sort(key=lambda r: str(r.get("date", "")), reverse=True)
    return records
