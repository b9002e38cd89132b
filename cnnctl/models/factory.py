"""`build_model` and `list_models`: the registry with cnnctl's built-in families loaded.

small_cnn and mlp (`simple.py`) load on the first build; every torchvision classifier
(`torchvision.py`, registered under its torchvision name) loads only when a name is not
found otherwise or the full list is asked for, as it imports torchvision. A builder never
loads pretrained weights, so building (and so rebuilding a checkpoint) never downloads anything.
"""

from __future__ import annotations

from torch import nn

from cnnctl.core.errors import ConfigError
from cnnctl.models.registry import ModelSpec, registered_builder, registered_names


def list_models() -> list[str]:
    """Names cnnctl can build (imports torchvision, builds nothing)."""
    _load_builtin(with_torchvision=True)
    return registered_names()


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the network a spec describes (weights freshly initialised, never downloaded)."""
    _load_builtin()
    name = str(spec.config["name"])
    builder = registered_builder(name)
    if builder is None:
        _load_builtin(with_torchvision=True)
        builder = registered_builder(name)
    if builder is None:
        raise ConfigError(
            f"model.name: unknown model '{name}'; allowed: small_cnn, mlp or a torchvision "
            "classifier (`cnnctl models` lists them)"
        )
    return builder(spec)


def _load_builtin(with_torchvision: bool = False) -> None:
    import cnnctl.models.simple  # noqa: F401  (registers small_cnn, mlp)

    if with_torchvision:
        import cnnctl.models.torchvision  # noqa: F401  (registers every torchvision classifier)
