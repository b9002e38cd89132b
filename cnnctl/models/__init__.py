"""Model registry: a name → a builder that makes an `nn.Module` for a class count and input shape.

Builders register themselves with `@register("name")`; a duplicate name is a programming
error. `build_model` is the only way the rest of cnnctl makes a network, so a checkpoint
can rebuild exactly what was trained from `model_spec` alone.

Built-in families: small_cnn and mlp (`simple.py`), and every torchvision classifier
(`transfer.py`, registered under its torchvision name and imported only when needed, as
it imports torchvision). A builder never loads pretrained weights, so building (and so
rebuilding a checkpoint) never downloads anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from cnnctl.core.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: stored in every checkpoint as plain data."""

    config: dict[str, Any]  # the resolved `model` section
    num_outputs: int
    input_shape: tuple[int, int, int]  # (C, H, W)

    def to_plain(self) -> dict[str, Any]:
        return {
            "config": dict(self.config),
            "num_outputs": self.num_outputs,
            "input_shape": list(self.input_shape),
        }

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> ModelSpec:
        c, h, w = (int(v) for v in data["input_shape"])
        return cls(dict(data["config"]), int(data["num_outputs"]), (c, h, w))


Builder = Callable[[ModelSpec], nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make `name` buildable; refuses a name registered twice."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise RuntimeError(f"model '{name}' is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """Names cnnctl can build (imports torchvision, builds nothing)."""
    _load_builtin(torchvision=True)
    return sorted(_REGISTRY)


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the network a spec describes (weights freshly initialised, never downloaded)."""
    _load_builtin()
    name = str(spec.config["name"])
    builder = _REGISTRY.get(name)
    if builder is None:
        _load_builtin(torchvision=True)
        builder = _REGISTRY.get(name)
    if builder is None:
        raise ConfigError(
            f"model.name: unknown model '{name}'; allowed: small_cnn, mlp or a torchvision "
            "classifier (`cnnctl models` lists them)"
        )
    return builder(spec)


def _load_builtin(torchvision: bool = False) -> None:
    from cnnctl.models import simple  # noqa: F401  (registers small_cnn, mlp)

    if torchvision:
        from cnnctl.models import transfer  # noqa: F401  (registers every torchvision classifier)
