"""The plots of a checkpoint's pass over a split (evaluate's, and a run report's): ranking
curves, the reliability diagram, the confusion matrix and the most confidently wrong images
with their Grad-CAM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from cnnctl.artifacts.loaded import LoadedModel
from cnnctl.data import LabelledDataset
from cnnctl.tasks.multi_label_metrics import MultiLabelResult

WRONG_SHOWN = 16  # images in the "most confidently wrong" grid


def wrong_heat(loaded: LoadedModel, images: list[torch.Tensor], predicted: list[int]) -> list[Any] | None:
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


def draw_eval_plots(
    result: Any,
    dataset: LabelledDataset,
    split: str,
    folder: Path,
    loaded: LoadedModel,
    prefix: str = "eval_",
) -> dict[str, Path]:
    """<prefix><split>_pr.png and _roc.png (one-vs-rest curves per class or label),
    _reliability.png (the reliability diagram), and for single-label _confusion.png and
    _wrong.png (the most confidently wrong images, with the predicted class's Grad-CAM);
    returns kind → file of those drawn. A failure is a warning, never an error."""
    from cnnctl.report import plots

    drawn: dict[str, Path] = {}

    def out(kind: str) -> Path:
        drawn[kind] = folder / f"{prefix}{split}_{kind}.png"
        return drawn[kind]

    try:
        for kind, (points, scores) in result.ranking().items():
            plots.ranking_curves(kind, points, result.classes, scores, out(kind), f"{kind.upper()} ({split})")
        if result.reliability is not None:
            plots.reliability(
                result.reliability.tolist(), out("reliability"), f"reliability ({split})", result.ece
            )
        if isinstance(result, MultiLabelResult):
            return drawn
        plots.confusion(result.confusion.tolist(), result.classes, out("confusion"), split)
        images = [dataset[w["index"]][0] for w in result.wrong]
        captions = [f"true {w['true']}\npred {w['predicted']} ({w['confidence']:.2f})" for w in result.wrong]
        title = f"most confidently wrong ({split})"
        heat = wrong_heat(loaded, images, [result.classes.index(w["predicted"]) for w in result.wrong])
        if heat is not None:
            title += ", Grad-CAM of the predicted class"
        plots.wrong_grid(images, captions, out("wrong"), title, heat)
    except Exception as err:  # noqa: BLE001 - plots are a convenience
        logging.getLogger("cnnctl").warning(f"plots not drawn: {err.__class__.__name__}: {err}")
        drawn = {kind: path for kind, path in drawn.items() if path.is_file()}
    return drawn
