"""The data sources by name: `build_splits(cfg.data, seed)` → `Splits` (train, val, test, classes, input).

Each source is one module with a builder `(DataConfig, seed, InputSpec | None) → Splits`,
registered in `SOURCES` under its `data.source` name; a new source is a new module plus one
line here. A source that can say an image has several labels (task multi_label) registers a
second builder in `MULTI_LABEL`.
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
MULTI_LABEL: dict[str, SplitBuilder] = {"manifest": manifest.build_multi_label}


def build_splits(
    cfg: DataConfig, seed: int, spec: InputSpec | None = None, separator: str | None = None
) -> Splits:
    """Resolve a data config into train/val/test datasets.

    With `spec` (from a checkpoint) images are prepared exactly as it says; without, the
    input spec is derived from the config (and `normalize: auto` measured on train). With
    `separator` (RunConfig.label_separator(): task multi_label) targets are multi-hot.
    """
    if separator is not None:
        multi = MULTI_LABEL.get(cfg.source)
        if multi is None:
            raise DataError(
                f"data.source {cfg.source} gives one label per image; task multi_label needs a manifest"
            )
        return multi(cfg, seed, spec)
    builder = SOURCES.get(cfg.source)
    if builder is None:
        raise DataError(f"data.source '{cfg.source}' is not available in this version of cnnctl")
    return builder(cfg, seed, spec)
