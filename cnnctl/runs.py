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
