"""The plain model a state_dict export loads into: how a sidecar describes it, and rebuilding it.

For a torchvision model that is `torchvision.models.get_model(name)` with its classifier
replaced by the same head (keys without cnnctl's `net.` prefix); for a small_cnn / mlp it is
`build_model(model_spec)`. torchvision is imported only when a torchvision model is rebuilt.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from cnnctl.core.errors import CheckpointError
from cnnctl.models.registry import ModelSpec

# Head layers a sidecar may describe (and `rebuild_plain` may build): nothing else is constructed.
_HEAD_LAYERS = ("Linear", "Conv2d", "Dropout", "ReLU", "GELU", "SiLU", "Tanh", "LeakyReLU")


def _transfer_net(model: nn.Module) -> Any:
    """The model as a TransferNet (torchvision network + new head), or None."""
    if not hasattr(model, "net") or not hasattr(model, "head_name"):
        return None
    from cnnctl.models.torchvision import TransferNet

    return model if isinstance(model, TransferNet) else None


def plain_module(model: nn.Module) -> nn.Module:
    """The module whose state_dict a plain (torchvision / nn) model loads with strict=True:
    the torchvision network of a transfer model (keys without `net.`), else the model."""
    transfer = _transfer_net(model)
    return transfer.net if transfer is not None else model


def describe_architecture(model: nn.Module, model_spec: ModelSpec | None = None) -> dict[str, Any] | None:
    """How to rebuild the plain model a state_dict export loads into (None when unknown)."""
    transfer = _transfer_net(model)
    if transfer is not None:
        kwargs: dict[str, Any] = {}
        if model_spec is not None:
            from cnnctl.models.torchvision import arch_kwargs
            from cnnctl.models.weights import enum_member

            weights = str(model_spec.config.get("weights", "none"))
            kwargs = arch_kwargs(transfer.arch, model_spec, enum_member(transfer.arch, weights) is not None)
        head = transfer.head
        return {
            "family": "torchvision",
            "name": transfer.arch,
            "kwargs": kwargs,
            "head_module": transfer.head_name,
            "head": [_layer_plain(layer) for layer in head] if isinstance(head, nn.Sequential) else [],
            "log_softmax": transfer.log_softmax is not None,
            "expand_grey": bool(transfer.expand_grey),
            "rebuild_with": f"torchvision.models.get_model({transfer.arch!r}, weights=None)",
            "rebuild": "net = torchvision.models.get_model(name, weights=None, **kwargs); "
            "net.set_submodule(head_module, torch.nn.Sequential(*head layers, in order)); "
            "net.load_state_dict(state_dict, strict=True). The model's output is net(x) "
            "(x.expand(-1, 3, -1, -1) first when expand_grey; log_softmax(dim=1) after when log_softmax)",
        }
    if model_spec is None:
        return None
    return {
        "family": "cnnctl",
        "name": str(model_spec.config.get("name")),
        "model_spec": model_spec.to_plain(),
        "modules": {name: repr(m) for name, m in model.named_modules() if name and not list(m.children())},
        "rebuild_with": "cnnctl.models.build_model(ModelSpec.from_plain(model_spec))",
        "rebuild": "model = cnnctl.models.build_model(cnnctl.models.ModelSpec.from_plain(model_spec)) "
        "(a plain torch.nn.Sequential whose leaf modules are listed in `modules`); "
        "model.load_state_dict(state_dict, strict=True)",
    }


def _layer_plain(layer: nn.Module) -> dict[str, Any]:
    name = type(layer).__name__
    if isinstance(layer, nn.Linear):
        return {"type": name, "in_features": layer.in_features, "out_features": layer.out_features}
    if isinstance(layer, nn.Conv2d):
        return {
            "type": name,
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "kernel_size": 1,
        }
    if isinstance(layer, nn.Dropout):
        return {"type": name, "p": layer.p}
    return {"type": name}


def rebuild_plain(architecture: dict[str, Any]) -> nn.Module:
    """The plain model a state_dict export loads into, built from the sidecar's `architecture`.

    torchvision: `get_model(name, weights=None, **kwargs)` with `head_module` replaced by
    `nn.Sequential(*head)`, so keys are torchvision's own; cnnctl: `build_model(model_spec)`.
    """
    if architecture.get("family") == "cnnctl":
        from cnnctl.models import build_model

        return build_model(ModelSpec.from_plain(architecture["model_spec"]))
    import torchvision

    layers: list[nn.Module] = []
    for layer in architecture["head"]:
        kind = str(layer["type"])
        if kind not in _HEAD_LAYERS:
            raise CheckpointError(f"architecture.head: unknown layer type {kind!r}")
        layers.append(getattr(nn, kind)(**{k: v for k, v in layer.items() if k != "type"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net: nn.Module = torchvision.models.get_model(
            architecture["name"], weights=None, **architecture.get("kwargs", {})
        )
    net.set_submodule(architecture["head_module"], nn.Sequential(*layers))
    return net
