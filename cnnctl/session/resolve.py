"""The config as it will train: defaults implied by the weights, and the model spec the data implies."""

from __future__ import annotations

from cnnctl.config import TORCHVISION, RunConfig
from cnnctl.core.errors import ConfigError
from cnnctl.data import Splits
from cnnctl.models import ModelSpec
from cnnctl.session.optim import num_outputs, output_kind


def resolve_config(cfg: RunConfig) -> RunConfig:
    """The config as it will train: for torchvision models, weights named exactly and the data
    defaults their weights imply (input size, resize, mean/std); other models unchanged."""
    if cfg.model.family() != TORCHVISION:
        return cfg
    from cnnctl.models.transfer import resolve_run_config

    return resolve_run_config(cfg)


def model_spec(cfg: RunConfig, splits: Splits) -> tuple[ModelSpec, str]:
    """The spec of the network `cfg` trains on `splits`, and what its outputs are."""
    kind = output_kind(cfg.train.loss, cfg.model.log_softmax)
    if cfg.train.loss == "bce_with_logits" and len(splits.classes) != 2:
        raise ConfigError(f"train.loss: bce_with_logits needs 2 classes, the data has {len(splits.classes)}")
    return ModelSpec(cfg.model.to_plain(), num_outputs(kind, len(splits.classes)), splits.input.shape), kind
