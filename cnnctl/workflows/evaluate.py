"""`cnnctl evaluate`: a checkpoint's metrics on a split of its own data, an image folder or
another config's data, with its confusion matrix and most confidently wrong images."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from cnnctl.artifacts.loaded import LoadedModel, load_model
from cnnctl.config import RunConfig, validate
from cnnctl.core.errors import RunFailed
from cnnctl.data import (
    FileDataset,
    LabelledDataset,
)
from cnnctl.session.eval_data import eval_batches, eval_dataset
from cnnctl.session.eval_plots import WRONG_SHOWN, draw_eval_plots
from cnnctl.tasks.metrics import EvalResult
from cnnctl.tasks.multi_label_metrics import MultiLabelResult


def evaluate(
    checkpoint_path: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    topk: int = 5,
    batch_size: int | None = None,
    device: str = "auto",
    plots_dir: Path | None = None,
    tta: bool | list[str] = False,
) -> tuple[EvalResult | MultiLabelResult, str]:
    """Metrics of a checkpoint on a split: of its own dataset, an image folder or a config's.

    Returns the result and a description of what was evaluated. With `plots_dir`, also
    draws the confusion matrix and a grid of the most confidently wrong images there. With
    `tta`, the result's `tta` holds the same metrics with the probabilities averaged over the
    run's test-time augmentation views (`data.tta`), or over the views `tta` names.
    """
    loaded = load_model(checkpoint_path, device)
    cfg = validate(loaded.checkpoint["config"], f"{checkpoint_path} (stored config)")
    dataset, what = eval_dataset(loaded, cfg, data, split)
    batches = eval_batches(loaded, cfg, dataset, batch_size)
    ks = tuple(sorted({1, max(1, topk)}))
    keep = WRONG_SHOWN if plots_dir is not None else 0
    result = loaded.stepper.evaluate(batches, loaded.classes, topk=ks, keep_wrong=keep)
    if not math.isfinite(result.loss):
        raise RunFailed(
            f"{checkpoint_path}: the model's loss on {what} is not finite (NaN or inf outputs); its "
            "weights or the data are broken"
        )
    if tta:
        names = list(tta) if isinstance(tta, list) else None
        result.tta = _with_tta(loaded, cfg, dataset, batch_size, ks, names)
    if isinstance(dataset, FileDataset):
        for wrong in getattr(result, "wrong", []):
            wrong["path"] = dataset.files[wrong["index"]]
    if plots_dir is not None:
        draw_eval_plots(result, dataset, split, plots_dir, loaded)
    return result, what


def _with_tta(
    loaded: LoadedModel,
    cfg: RunConfig,
    dataset: LabelledDataset,
    batch_size: int | None,
    ks: tuple[int, ...],
    names: list[str] | None,
) -> dict[str, Any]:
    """The metrics with the probabilities averaged over the TTA views (`names`, else the run's
    data.tta): {views, metrics...}."""
    from cnnctl.data import tta

    names = tta.default_names(cfg.data) if names is None else names
    if not names:
        logging.getLogger("cnnctl").warning(
            "--tta: the model trained without flips or crops and data.tta is auto, so there is no "
            "view to average over (choose some with --tta-views hflip,... or data.tta in the config); the "
            "images are scored as they are"
        )
    chosen = tta.views(names, tta.shift_pixels(cfg.data))
    batches = eval_batches(loaded, cfg, dataset, batch_size)
    result = loaded.stepper.evaluate(batches, loaded.classes, topk=ks, views=[view for _, view in chosen])
    plain = result.to_plain()
    for heavy in ("classes", "most_confident_errors", "confusion_matrix"):
        plain.pop(heavy, None)
    return {"views": [label for label, _ in chosen], **plain}
