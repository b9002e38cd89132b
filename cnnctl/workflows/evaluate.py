"""`cnnctl evaluate`: a checkpoint's metrics on a split of its own data, an image folder or
another config's data, with its confusion matrix and most confidently wrong images."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from cnnctl.artifacts.loaded import LoadedModel, load_model
from cnnctl.config import RunConfig, validate
from cnnctl.core.errors import RunFailed
from cnnctl.data import (
    FileDataset,
    LabelledDataset,
)
from cnnctl.session.eval_data import eval_batches, eval_dataset
from cnnctl.tasks.metrics import EvalResult
from cnnctl.tasks.multi_label_metrics import MultiLabelResult

WRONG_SHOWN = 16  # images in evaluate's "most confidently wrong" grid


def evaluate(
    checkpoint_path: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    topk: int = 5,
    batch_size: int | None = None,
    device: str = "auto",
    plots_dir: Path | None = None,
    tta: bool = False,
) -> tuple[EvalResult | MultiLabelResult, str]:
    """Metrics of a checkpoint on a split: of its own dataset, an image folder or a config's.

    Returns the result and a description of what was evaluated. With `plots_dir`, also
    draws the confusion matrix and a grid of the most confidently wrong images there. With
    `tta`, the result's `tta` holds the same metrics with the probabilities averaged over the
    run's test-time augmentation views (`data.tta`).
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
        result.tta = _with_tta(loaded, cfg, dataset, batch_size, ks)
    if isinstance(dataset, FileDataset):
        for wrong in getattr(result, "wrong", []):
            wrong["path"] = dataset.files[wrong["index"]]
    if plots_dir is not None:
        _eval_plots(result, dataset, split, plots_dir, loaded)
    return result, what


def _with_tta(
    loaded: LoadedModel, cfg: RunConfig, dataset: LabelledDataset, batch_size: int | None, ks: tuple[int, ...]
) -> dict[str, Any]:
    """The metrics with the probabilities averaged over the TTA views: {views, metrics...}."""
    from cnnctl.data import tta

    names = tta.default_names(cfg.data)
    if not names:
        logging.getLogger("cnnctl").warning(
            "--tta: the model trained without flips or crops and data.tta is auto, so there is no "
            "view to average over (set data.tta: [hflip, ...] in the config to choose some); the "
            "images are scored as they are"
        )
    chosen = tta.views(names, tta.shift_pixels(cfg.data))
    batches = eval_batches(loaded, cfg, dataset, batch_size)
    result = loaded.stepper.evaluate(batches, loaded.classes, topk=ks, views=[view for _, view in chosen])
    plain = result.to_plain()
    for heavy in ("classes", "most_confident_errors", "confusion_matrix"):
        plain.pop(heavy, None)
    return {"views": [label for label, _ in chosen], **plain}


def _wrong_heat(loaded: LoadedModel, images: list[torch.Tensor], predicted: list[int]) -> list[Any] | None:
    """Grad-CAM maps of the predicted class for the wrong images; None (no overlay) without
    the grad-cam package or a convolutional layer."""
    from cnnctl.core.errors import ConfigError
    from cnnctl.engine import cam
    from cnnctl.tasks.single_label import BINARY_LOGIT

    if not images:
        return None
    try:
        cam.grad_cam_module()
        stepper = loaded.stepper
        x = stepper.model_input(torch.stack(images))
        _, layer = cam.target_layer(stepper.model, x)
        maps = cam.heatmaps(
            stepper.model, x, predicted, layer, binary=stepper.task.output_kind == BINARY_LOGIT
        )
    except ConfigError as err:
        logging.getLogger("cnnctl").debug(f"no Grad-CAM overlay on the wrong grid: {err}")
        return None
    return [m.numpy() for m in maps]


def _eval_plots(result: Any, dataset: LabelledDataset, split: str, folder: Path, loaded: LoadedModel) -> None:
    """eval_<split>_pr.png and eval_<split>_roc.png (one-vs-rest curves per class or label),
    eval_<split>_reliability.png (the reliability diagram), and for single-label eval_<split>_confusion.png and eval_<split>_wrong.png; failures are
    warnings, not errors."""
    from cnnctl.report import plots

    try:
        for kind, (points, scores) in result.ranking().items():
            out = folder / f"eval_{split}_{kind}.png"
            plots.ranking_curves(kind, points, result.classes, scores, out, f"{kind.upper()} ({split})")
        if result.reliability is not None:
            out = folder / f"eval_{split}_reliability.png"
            plots.reliability(result.reliability.tolist(), out, f"reliability ({split})", result.ece)
        if isinstance(result, MultiLabelResult):
            return
        plots.confusion(
            result.confusion.tolist(), result.classes, folder / f"eval_{split}_confusion.png", split
        )
        images = [dataset[w["index"]][0] for w in result.wrong]
        captions = [f"true {w['true']}\npred {w['predicted']} ({w['confidence']:.2f})" for w in result.wrong]
        title = f"most confidently wrong ({split})"
        heat = _wrong_heat(loaded, images, [result.classes.index(w["predicted"]) for w in result.wrong])
        if heat is not None:
            title += ", Grad-CAM of the predicted class"
        plots.wrong_grid(images, captions, folder / f"eval_{split}_wrong.png", title, heat)
    except Exception as err:  # noqa: BLE001 - plots are a convenience
        logging.getLogger("cnnctl").warning(f"plots not drawn: {err.__class__.__name__}: {err}")
