"""Seeding and determinism: the one place the RNGs are seeded (resume relies on the order)."""

from __future__ import annotations

import os
import random

import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, torch's and numpy's global RNGs."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover - numpy ships with torch's usual installs
        pass


def set_deterministic(on: bool) -> None:
    """train.deterministic: deterministic kernels (warn where an op has none), no cuDNN autotune."""
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.benchmark = not on and torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic = on
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
