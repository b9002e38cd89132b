"""The data sources by name: `build_splits(cfg.data, seed)` → `Splits` (train, val, test, classes, input).

Each source is one module with a builder `(DataConfig, seed, InputSpec | None) → Splits`,
registered in `SOURCES` under its `data.source` name; a new source is a new module plus one
line here.
"""

from __future__ import annotations

from collections.abc import Callable

from cnnctl.config import DataConfig
from cnnctl.core.errors import DataError
from cnnctl.data.datasets import Splits
from cnnctl.data.sources import image_folder, in_memory, manifest, synthetic
from cnnctl.data.transforms import InputSpec

SplitBuilder = Callable[[DataConfig, int, InputSpec | None], Splits]

SOURCES: dict[str, SplitBuilder] = {
    "synthetic": synthetic.build,
    "image_folder": image_folder.build,
    "manifest": manifest.build,
    "csv": in_memory.build_csv,
    "torchvision": in_memory.build_torchvision,
}


def build_splits(cfg: DataConfig, seed: int, spec: InputSpec | None = None) -> Splits:
    """Resolve a data config into train/val/test datasets.

    With `spec` (from a checkpoint) images are prepared exactly as it says; without, the
    input spec is derived from the config (and `normalize: auto` measured on train).
    """
    builder = SOURCES.get(cfg.source)
    if builder is None:
        raise DataError(f"data.source '{cfg.source}' is not available in this version of cnnctl")
    return builder(cfg, seed, spec)
