"""Keys named after torch's arguments take torch's defaults.

Each entry says which torch argument a key carries; tests/test_config.py compares the two
defaults with the installed torch (so the rule cannot silently rot), and docs/config.md lists
them, with the reason for every deliberate deviation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cnnctl.config.base import Section, models_in, plain_data
from cnnctl.config.run import RunConfig


@dataclass(frozen=True)
class TorchDefault:
    """`key` (for the selector value `choice`, None = any) carries `target`'s `argument`."""

    key: str
    choice: str | None
    target: str
    argument: str
    deviation: str = ""  # why cnnctl's default differs; empty = the same as torch's

    def value(self) -> Any:
        """cnnctl's default for this key and choice (from the schema)."""
        return default_for(self.key, self.choice)


_SGD, _ADAM, _ADAMW, _RMSPROP = (f"torch.optim.{n}" for n in ("SGD", "Adam", "AdamW", "RMSprop"))
_SCHED = "torch.optim.lr_scheduler."
_LOADER = "torch.utils.data.DataLoader"
_V2 = "torchvision.transforms.v2."
_MIX = (
    "0 = off, so it must be the default; torchvision's alpha=1.0 has no off switch (cnnctl adds the "
    "transform only when alpha > 0)"
)

TORCH_DEFAULTS: tuple[TorchDefault, ...] = (
    *(
        TorchDefault(f"optimizer.{key}", name, target, key)
        for name, target in (("sgd", _SGD), ("adam", _ADAM), ("adamw", _ADAMW), ("rmsprop", _RMSPROP))
        for key in ("lr", "weight_decay")
    ),
    TorchDefault("optimizer.momentum", "sgd", _SGD, "momentum"),
    TorchDefault("optimizer.nesterov", "sgd", _SGD, "nesterov"),
    TorchDefault("optimizer.momentum", "rmsprop", _RMSPROP, "momentum"),
    TorchDefault("optimizer.betas", "adam", _ADAM, "betas"),
    TorchDefault("optimizer.betas", "adamw", _ADAMW, "betas"),
    TorchDefault("scheduler.gamma", "step", _SCHED + "StepLR", "gamma"),
    TorchDefault(
        "scheduler.step_size",
        "step",
        _SCHED + "StepLR",
        "step_size",
        "torch has no default (a required argument); cnnctl drops the lr every 10 epochs",
    ),
    TorchDefault("scheduler.min_lr", "cosine", _SCHED + "CosineAnnealingLR", "eta_min"),
    TorchDefault("scheduler.factor", "plateau", _SCHED + "ReduceLROnPlateau", "factor"),
    TorchDefault("scheduler.patience", "plateau", _SCHED + "ReduceLROnPlateau", "patience"),
    TorchDefault("scheduler.pct_start", "onecycle", _SCHED + "OneCycleLR", "pct_start"),
    TorchDefault("train.label_smoothing", None, "torch.nn.CrossEntropyLoss", "label_smoothing"),
    TorchDefault("train.ema.decay", None, "torch.optim.swa_utils.get_ema_multi_avg_fn", "decay"),
    TorchDefault("train.mixup_alpha", None, _V2 + "MixUp", "alpha", _MIX),
    TorchDefault("train.cutmix_alpha", None, _V2 + "CutMix", "alpha", _MIX),
    TorchDefault("data.augment.randaugment_ops", "randaugment", _V2 + "RandAugment", "num_ops"),
    TorchDefault("data.augment.randaugment_magnitude", "randaugment", _V2 + "RandAugment", "magnitude"),
    TorchDefault("data.augment.autoaugment_policy", "autoaugment", _V2 + "AutoAugment", "policy"),
    TorchDefault(
        "data.batch_size",
        None,
        _LOADER,
        "batch_size",
        "torch's 1 would train one image per step; 64 is the usual small-model batch",
    ),
    TorchDefault(
        "data.num_workers",
        None,
        _LOADER,
        "num_workers",
        "auto = 0 (torch's) for in-memory data, worker processes only where images are decoded",
    ),
    TorchDefault(
        "data.pin_memory", None, _LOADER, "pin_memory", "auto = on for CUDA, where it speeds up copies"
    ),
    TorchDefault(
        "model.kernel_size",
        "small_cnn",
        "torch.nn.Conv2d",
        "kernel_size",
        "torch has no default (a required argument); the default small_cnn is the classic 5x5 MNIST net",
    ),
    TorchDefault(
        "model.padding",
        "small_cnn",
        "torch.nn.Conv2d",
        "padding",
        "2 is 'same' padding for the default 5x5 kernel (28 → 14 → 7 on MNIST), as in the classic net",
    ),
)


def default_for(key: str, choice: str | None = None) -> Any:
    """The schema's default of a dotted key, with its section's selector set to `choice`
    (e.g. `default_for("optimizer.momentum", "sgd")`), as plain data."""
    *sections, name = key.split(".")
    raw: dict[str, Any] = {}
    node: dict[str, Any] = raw
    model: type[BaseModel] = RunConfig
    for part in sections:
        node[part] = {}
        node = node[part]
        model = models_in(model.model_fields[part].annotation)[0]
    if choice is not None and issubclass(model, Section) and model.selector:
        node[model.selector] = choice
    value: Any = RunConfig.model_validate(raw)
    for part in [*sections, name]:
        value = getattr(value, part)
    return plain_data(value)
