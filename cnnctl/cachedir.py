"""Where cnnctl keeps what it can recompute (no torch import).

$CNNCTL_CACHE, else $XDG_CACHE_HOME/cnnctl, else ~/.cache/cnnctl. Under it: `images/`
(data.cache: disk), `checks/` (which image files decoded cleanly) and `torchvision-*.json`
(the model catalog of a torchvision other than the tested one). Deleting it costs only time.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("CNNCTL_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnctl"
