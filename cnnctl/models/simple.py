"""Networks sized from the model spec: the classic small CNN and an MLP.

The spec's size is checked against the data before a build (`cnnctl.session.resolve.model_spec`
runs the config's `check_small_model`), so a builder here only allocates.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnctl.core.errors import ConfigError
from cnnctl.models.registry import ModelSpec, register

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def _head(in_features: int, hidden: list[int], out: int, spec: ModelSpec) -> list[nn.Module]:
    """FC layers: [dropout → linear → act] per hidden width, then dropout → linear(out)."""
    act = ACTIVATIONS[spec.config["activation"]]
    dropout = float(spec.config["dropout"])
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        if dropout and layers:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(width, h), act()]
        width = h
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, out))
    if spec.config.get("log_softmax"):
        layers.append(nn.LogSoftmax(dim=1))
    return layers


@register("small_cnn")
def small_cnn(spec: ModelSpec) -> nn.Module:
    """Conv blocks → flatten → FC; defaults are the classic MNIST net.

    conv 32@5x5 pad 2 → ReLU → pool 2 → conv 64@5x5 pad 2 → ReLU → pool 2 → fc 1024 →
    dropout 0.5 → classes. The flatten width is measured by running a dummy input through
    the conv stack, so it is never hand-entered.
    """
    cfg = spec.config
    act = ACTIVATIONS[cfg["activation"]]
    in_ch = spec.input_shape[0]
    blocks: list[nn.Module] = []
    for out_ch in cfg["channels"]:
        blocks.append(
            nn.Conv2d(in_ch, out_ch, cfg["kernel_size"], padding=cfg["padding"], bias=not cfg["batch_norm"])
        )
        if cfg["batch_norm"]:
            blocks.append(nn.BatchNorm2d(out_ch))
        blocks.append(act())
        if cfg["pool"] > 1:
            blocks.append(nn.MaxPool2d(cfg["pool"]))
        in_ch = out_ch
    features = nn.Sequential(*blocks)
    too_small = ConfigError(
        f"model: a {'x'.join(map(str, spec.input_shape))} input is too small for "
        f"{len(cfg['channels'])} conv blocks with pool {cfg['pool']}; use fewer model.channels "
        "or a larger data.image_size"
    )
    try:
        with torch.no_grad():
            shape = features(torch.zeros(1, *spec.input_shape)).shape
    except RuntimeError:
        raise too_small from None
    if min(shape[2:]) < 1:
        raise too_small
    flat = int(shape[1] * shape[2] * shape[3])
    return nn.Sequential(features, nn.Flatten(), *_head(flat, list(cfg["hidden"]), spec.num_outputs, spec))


@register("mlp")
def mlp(spec: ModelSpec) -> nn.Module:
    """Flatten → hidden layers → classes (`hidden: [128, 64]` is the 784→128→64→10 net)."""
    c, h, w = spec.input_shape
    return nn.Sequential(nn.Flatten(), *_head(c * h * w, list(spec.config["hidden"]), spec.num_outputs, spec))
