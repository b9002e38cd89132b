"""`cnnctl evaluate`: a checkpoint's metrics on a split of its own data, an image folder or
another config's data, with its confusion matrix and most confidently wrong images."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from cnnctl import tasks
from cnnctl.artifacts.loaded import LoadedModel, load_model
from cnnctl.config import RunConfig, load_config, validate
from cnnctl.core.errors import DataError, RunFailed
from cnnctl.data import (
    ArrayDataset,
    FileDataset,
    LabelledDataset,
    build_splits,
    folder_eval_set,
    make_loader,
    resolve_workers,
)
from cnnctl.session.build import batch_of
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
) -> tuple[EvalResult | MultiLabelResult, str]:
    """Metrics of a checkpoint on a split: of its own dataset, an image folder or a config's.

    Returns the result and a description of what was evaluated. With `plots_dir`, also
    draws the confusion matrix and a grid of the most confidently wrong images there.
    """
    loaded = load_model(checkpoint_path, device)
    cfg = validate(loaded.checkpoint["config"], f"{checkpoint_path} (stored config)")
    dataset, what = _eval_dataset(loaded, cfg, data, split)
    batches = make_loader(
        dataset,
        batch_size or batch_of(cfg),
        shuffle=False,
        seed=cfg.seed,
        workers=resolve_workers(cfg.data, isinstance(dataset, ArrayDataset)),
        pin=loaded.stepper.device.type == "cuda",
    )
    ks = tuple(sorted({1, max(1, topk)}))
    keep = WRONG_SHOWN if plots_dir is not None else 0
    result = loaded.stepper.evaluate(batches, loaded.classes, topk=ks, keep_wrong=keep)
    if not math.isfinite(result.loss):
        raise RunFailed(
            f"{checkpoint_path}: the model's loss on {what} is not finite (NaN or inf outputs); its "
            "weights or the data are broken"
        )
    if isinstance(dataset, FileDataset):
        for wrong in getattr(result, "wrong", []):
            wrong["path"] = dataset.files[wrong["index"]]
    if plots_dir is not None:
        _eval_plots(result, dataset, split, plots_dir)
    return result, what


def _eval_plots(result: Any, dataset: LabelledDataset, split: str, folder: Path) -> None:
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
        plots.wrong_grid(
            images, captions, folder / f"eval_{split}_wrong.png", f"most confidently wrong ({split})"
        )
    except Exception as err:  # noqa: BLE001 - plots are a convenience
        logging.getLogger("cnnctl").warning(f"plots not drawn: {err.__class__.__name__}: {err}")


def _eval_dataset(
    loaded: LoadedModel, cfg: RunConfig, data: str | Path | None, split: str
) -> tuple[LabelledDataset, str]:
    if data is not None and Path(data).is_dir():
        if loaded.stepper.task.name != tasks.DEFAULT:
            raise DataError(
                f"{data}: a folder gives one label per image; evaluate this {loaded.stepper.task.name} "
                "checkpoint on its own data or on a config whose manifest lists each image's labels"
            )
        extensions = cfg.data.extensions if cfg.data.source == "image_folder" else None
        dataset = folder_eval_set(Path(data), split, loaded.input, loaded.classes, extensions)
        return dataset, f"{data} ({len(dataset)} images)"
    if data is not None:
        cfg = load_config(data)
    if data is not None and cfg.task != loaded.stepper.task.name:
        raise DataError(
            f"{data}: a task {cfg.task} config; the checkpoint was trained for {loaded.stepper.task.name}"
        )
    splits = build_splits(cfg.data, cfg.seed, loaded.input, cfg.label_separator())
    chosen = {"train": splits.train, "val": splits.val, "test": splits.test}[split]
    source = f"{data}" if data is not None else "the checkpoint's own dataset"
    if chosen is None:
        raise DataError(f"{source} has no {split} split; use --split val, or --data DIR")
    if split == "train" and isinstance(chosen, ArrayDataset | FileDataset):
        chosen = chosen.subset(range(len(chosen)))  # the train split without augmentation
    return _match_classes(
        chosen, splits.classes, loaded.classes, source
    ), f"{source}, {split} split ({len(chosen)} images)"


def _match_classes(
    dataset: LabelledDataset, classes: list[str], wanted: list[str], source: str
) -> LabelledDataset:
    if classes == wanted:
        return dataset
    if set(classes) != set(wanted):
        raise DataError(f"{source}: its classes {classes} differ from the checkpoint's {wanted}")
    position = {name: i for i, name in enumerate(wanted)}
    mapping = torch.tensor([position[name] for name in classes])
    if isinstance(dataset, ArrayDataset | FileDataset):
        labels = dataset.labels
        if labels.dim() == 2:  # multi-hot: column i moves to the checkpoint's column mapping[i]
            moved = torch.zeros_like(labels)
            moved[:, mapping] = labels
        else:
            moved = mapping[labels]
        if isinstance(dataset, ArrayDataset):
            return ArrayDataset(dataset.images, moved, dataset.augment)
        return FileDataset(dataset.files, moved, dataset.spec, dataset.augment)
    raise DataError(f"{source}: cannot reorder its classes to the checkpoint's")
