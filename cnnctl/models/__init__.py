"""Networks: a registry of builders, cnnctl's own small networks and torchvision's classifiers.

`build_model` is the only way the rest of cnnctl makes a network, so a checkpoint can
rebuild exactly what was trained from `model_spec` alone. models/ never sees the config:
builders get a `ModelSpec` (the resolved `model` section as plain data); the defaults a
config implies are resolved above, in `cnnctl.session.resolve`.

- `registry.py`   ModelSpec, `register` (refuses duplicates)
- `factory.py`    `build_model`, `list_models` (loads the built-in families)
- `simple.py`     small_cnn, mlp
- `torchvision.py` every torchvision classifier as a `TransferNet` (imports torchvision: loaded lazily)
- `weights.py`    what `model.weights` names, weights files, the preprocessing weights bring
- `pretrained.py` loading pretrained weights into a built `TransferNet` (training only)

This facade re-exports the registry and factory names; it never imports torchvision.
"""

from __future__ import annotations

from cnnctl.models.factory import build_model, list_models
from cnnctl.models.registry import Builder, ModelSpec, register

__all__ = ["Builder", "ModelSpec", "build_model", "list_models", "register"]
