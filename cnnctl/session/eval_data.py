"""The labelled images a checkpoint is scored on (evaluate, calibrate): its own dataset's
split, another config's, or an image folder, with the classes put in the checkpoint's order."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnctl import tasks
from cnnctl.artifacts.loaded import LoadedModel
from cnnctl.config import RunConfig, load_config
from cnnctl.core.errors import DataError
from cnnctl.data import (
    ArrayDataset,
    Batches,
    FileDataset,
    LabelledDataset,
    build_splits,
    folder_eval_set,
    make_loader,
    resolve_workers,
)
from cnnctl.session.build import batch_of


def eval_batches(
    loaded: LoadedModel, cfg: RunConfig, dataset: LabelledDataset, batch_size: int | None
) -> Batches:
    """`dataset` in order, in batches of `batch_size` (default: the run's), as evaluate reads it."""
    return make_loader(
        dataset,
        batch_size or batch_of(cfg),
        shuffle=False,
        seed=cfg.seed,
        workers=resolve_workers(cfg.data, isinstance(dataset, ArrayDataset)),
        pin=loaded.stepper.device.type == "cuda",
    )


def eval_dataset(
    loaded: LoadedModel, cfg: RunConfig, data: str | Path | None, split: str
) -> tuple[LabelledDataset, str]:
    """A labelled split to score a checkpoint on, and what it is in words: an image folder
    (`data` a directory: every image, labelled by its subfolder), a config's split, or the
    checkpoint's own dataset's split; classes reordered to the checkpoint's."""
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
