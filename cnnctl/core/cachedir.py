"""Where cnnctl keeps what it can recompute (no torch import).

$CNNCTL_CACHE, else $XDG_CACHE_HOME/cnnctl, else ~/.cache/cnnctl. Under it: `images/`
(data.cache: disk), `checks/` (which image files decoded cleanly) and `torchvision-*.json`
(the model catalog of a torchvision other than the tested one). Deleting it costs only time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cnnctl.core.errors import OutputError


def cache_root() -> Path:
    base = os.environ.get("CNNCTL_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnctl"


def write_json(path: Path, data: Any) -> None:
    """Best effort: a cache that cannot be written (read-only home, full disk) only costs time.
    Written through `cnnctl.core.atomic`, so a reader never sees half a file."""
    from cnnctl.core.atomic import write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(data), "cache file")
    except (OSError, OutputError):
        pass
