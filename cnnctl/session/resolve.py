"""The config as it will train: defaults implied by the weights, and the model spec the data implies.

This is where config meets models/: models never see a config object. `resolve_config`
asks `models.weights` what the named weights bring (plain data) and writes it into the
config; `model_spec` turns the resolved config and the data into the `ModelSpec` a builder
gets, after checking that small_cnn / mlp fit the data's real size.
"""

from __future__ import annotations

import logging
from typing import Any

from cnnctl import tasks
from cnnctl.config import TORCHVISION, DataConfig, KeyError_, NormalizeStats, RunConfig, check_small_model
from cnnctl.core.catalog import BUILT_IN
from cnnctl.core.errors import ConfigError
from cnnctl.data import Splits
from cnnctl.models import ModelSpec
from cnnctl.models.weights import Preprocessing, WeightsChoice, preprocessing, resolve_weights
from cnnctl.tasks import Task
from cnnctl.tasks.multi_label import MultiLabel

log = logging.getLogger("cnnctl")


def resolve_config(cfg: RunConfig) -> RunConfig:
    """The config as it will train: for torchvision models, weights named exactly and the data
    defaults their weights imply (input size, resize, mean/std); other models unchanged.

    `imagenet` / `DEFAULT` become the enum member's name (IMAGENET1K_V1), a file path becomes
    absolute; data keys follow `input_defaults`.
    """
    if cfg.model.family() != TORCHVISION:
        return cfg
    choice = resolve_weights(cfg.model.name, cfg.model.weights)
    pre = preprocessing(cfg.model.name, cfg.model.weights)
    data_update = input_defaults(cfg.data, pre)
    if pre is not None and data_update.keys() & {"image_size", "resize", "normalize"}:
        shown = ", ".join(f"{k} {_plain(v)}" for k, v in data_update.items() if k != "channels")
        log.info(f"{cfg.model.name}: data defaults from {pre.weights}: {shown}")
    return cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update=_named_weights(choice)),
            "data": cfg.data.model_copy(update=data_update),
        }
    )


def _named_weights(choice: WeightsChoice) -> dict[str, Any]:
    """The `model` update that names the weights exactly: the enum member's name or the absolute path."""
    if choice.kind == "torchvision":
        return {"weights": str(choice.enum.name)}
    if choice.kind == "file":
        return {"weights": str(choice.path)}
    return {}


def input_defaults(data: DataConfig, pre: Preprocessing | None) -> dict[str, Any]:
    """DataConfig updates for a torchvision model: the keys the user left at null / auto.

    - data.channels: 3 for an image folder (1-channel sources stay 1; the model expands);
    - with pretrained weights (`pre`): data.image_size = the weights' crop size; data.resize =
      their resize size when image_size was left too (a given image_size keeps its own resize);
      data.normalize: auto → the weights' mean/std (`imagenet` when they are ImageNet's).
    """
    update: dict[str, Any] = {}
    if data.channels is None and data.source in ("image_folder", "manifest"):
        update["channels"] = 3
    if pre is None:
        return update
    if data.image_size is None:
        update["image_size"] = pre.crop[0] if pre.crop[0] == pre.crop[1] else list(pre.crop)
        if data.resize is None:
            update["resize"] = pre.resize
    if data.normalize == "auto":
        update["normalize"] = _normalize_from(pre, update.get("channels", data.channels))
    return update


def _normalize_from(pre: Preprocessing, channels: int | None) -> str | NormalizeStats:
    """`data.normalize` for the weights' mean/std: `imagenet`, or their stats (averaged for grey input)."""
    if pre.is_imagenet():
        return "imagenet"
    if channels == 1:
        return NormalizeStats(mean=[sum(pre.mean) / 3], std=[sum(pre.std) / 3])
    return NormalizeStats(mean=list(pre.mean), std=list(pre.std))


def _plain(value: Any) -> Any:
    return value.to_plain() if isinstance(value, NormalizeStats) else value


def model_spec(cfg: RunConfig, splits: Splits) -> tuple[ModelSpec, Task]:
    """The spec of the network `cfg` trains on `splits`, and the task that reads its outputs."""
    task = tasks.for_training(cfg.train.loss, cfg.model.log_softmax, cfg.task, splits.classes)
    if isinstance(task, MultiLabel):  # train.threshold: a number for every label, or tuned on val
        fixed = cfg.train.threshold
        thresholds = None if isinstance(fixed, str) else (fixed,) * len(splits.classes)
        task = MultiLabel(task.classes, thresholds, cfg.data.label_separator, tune=isinstance(fixed, str))
    problem = task.problem(cfg.train.loss, len(splits.classes))
    if problem:
        raise ConfigError(problem)
    spec = ModelSpec(cfg.model.to_plain(), task.num_outputs(len(splits.classes)), splits.input.shape)
    check_model_size(spec)
    return spec, task


def check_model_size(spec: ModelSpec) -> None:
    """small_cnn / mlp against the real input shape and class count, before any layer is allocated:
    a kernel or pool window that does not fit, or a network too large to allocate, is one line
    naming the key (the config check did what it could without the data's size)."""
    if spec.config["name"] not in BUILT_IN:
        return
    try:
        check_small_model(spec.config, spec.input_shape, spec.num_outputs)
    except KeyError_ as err:
        raise ConfigError(f"{err.key}: {err}") from None
