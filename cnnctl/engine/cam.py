"""Grad-CAM heat maps (the `grad-cam` package, pytorch-grad-cam): where in an image the
network's evidence for one class lies.

The target layer is chosen per architecture without a table: one forward pass with a hook on
every module records the modules in the order they finish; the last one whose output is a
(N, C, H, W) map with H and W above 1 is the last convolutional block (small_cnn's last
conv stage, a torchvision ResNet's `layer4`, DenseNet's and EfficientNet's `features`).
`layer` overrides it with a dotted name from the model's `named_modules()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cnnctl.core.errors import ConfigError

INSTALL_HINT = "pip install 'cnnctl[explain]'"


def grad_cam_module() -> Any:
    try:
        import pytorch_grad_cam
    except ImportError:
        raise ConfigError(f"explanations need the 'grad-cam' package: {INSTALL_HINT}") from None
    return pytorch_grad_cam


def target_layer(model: nn.Module, sample: torch.Tensor, name: str | None = None) -> tuple[str, nn.Module]:
    """(dotted name, module) of the layer whose activations Grad-CAM weighs."""
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules or not name:
            shown = ", ".join(n for n, _ in _spatial_layers(model, sample)[-8:])
            raise ConfigError(f"--layer {name!r}: no such module; the last feature maps are: {shown}")
        return name, modules[name]
    layers = _spatial_layers(model, sample)
    if not layers:
        raise ConfigError(
            "this model has no layer giving a feature map (N, C, H, W) with H, W > 1 (an MLP?): "
            "Grad-CAM needs a convolutional network; pass --layer NAME to choose one"
        )
    chosen = layers[-1][0]
    return chosen, modules[chosen]


def _spatial_layers(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every module with a 4-D output wider than 1x1, in finishing order."""
    finished: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for module_name, module in model.named_modules():
        if not module_name:
            continue

        def hook(_m: nn.Module, _i: Any, out: Any, name: str = module_name) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] > 1 and out.shape[-2] > 1:
                finished.append((name, tuple(out.shape)))

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(sample[:1])
    finally:
        for handle in hooks:
            handle.remove()
    return finished


class _Output:
    """A grad-cam target: the score of one class in one image's outputs (a binary-logit
    network's single output counts for class 1, its negation for class 0)."""

    def __init__(self, index: int, binary: bool):
        self.index, self.binary = index, binary

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if self.binary:
            return output[0] if self.index == 1 else -output[0]
        return output[self.index]


def heatmaps(
    model: nn.Module,
    inputs: torch.Tensor,
    classes: Sequence[int],
    layer: nn.Module,
    binary: bool = False,
) -> torch.Tensor:
    """(N, H, W) Grad-CAM maps in [0, 1] (each image scaled to its own maximum; all zero when
    no location speaks for the class) for normalised `inputs` and one class index per image."""
    cam_module = grad_cam_module()
    model.eval()
    targets: list[Callable[[torch.Tensor], torch.Tensor]] = [_Output(int(c), binary) for c in classes]
    # The input itself tracks gradients, so the activations do even when every parameter
    # before the layer is frozen (model.freeze: backbone).
    tracked = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad(), cam_module.GradCAM(model=model, target_layers=[layer]) as cam:
        maps = cam(input_tensor=tracked, targets=targets)
    return torch.as_tensor(maps, dtype=torch.float32)
