"""The strict model registry: a name → a builder that makes an `nn.Module` from a `ModelSpec`.

Builders register themselves with `@register("name")`; a duplicate name is a programming
error. The registry only records builders: which families are loaded, and when, is
`factory.py`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


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


def registered_builder(name: str) -> Builder | None:
    """The builder registered under `name`, or None."""
    return _REGISTRY.get(name)


def registered_names() -> list[str]:
    """Every name registered so far, sorted."""
    return sorted(_REGISTRY)
