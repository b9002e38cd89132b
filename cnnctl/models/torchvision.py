"""torchvision's classifiers as cnnctl networks: every name in
`torchvision.models.list_models(module=torchvision.models)` (alexnet, densenet121, resnet18, ...),
each registered under its torchvision name.

A model is a `TransferNet`: the torchvision network (`.net`) with its classifier replaced by
a new head, plus the two things a backbone needs around it: grey input expanded to 3
channels, and a frozen part kept in eval mode (BatchNorm stats fixed, no dropout): a fixed
feature extractor, which is what lets the feature cache compute its output once.

Three steps, kept apart on purpose:

1. `build_transfer(spec)` (the registry builder) makes the architecture with random
   weights, replaces the head and applies `model.freeze`. It never reads or downloads
   weights, so a checkpoint rebuilds offline: it is built, then the stored state_dict loaded.
2. `pretrained.load_pretrained(model, weights)` puts `model.weights` into the backbone;
   only training calls it, once, before the first epoch.
3. `cnnctl.session.resolve` fills data defaults from the weights (`weights.preprocessing`:
   input size, resize, mean/std) before the data is read.

The head is found generically: the last `nn.Linear` (or 1x1 `nn.Conv2d`, for squeezenet)
in `named_modules()` whose width is the 1000 ImageNet classes the network is built for.
It is replaced through its parent by [dropout → Linear → activation] per `head.hidden`
width, then dropout → Linear(num_outputs); `model.log_softmax` appends a LogSoftmax.

"Blocks" (for `freeze: N`) are the children that hold parameters of the network's trunk:
`features` (alexnet, vgg, densenet, mobilenet, efficientnet, convnext, squeezenet, swin),
`layers` (mnasnet), `trunk_output` (regnet), `blocks` (maxvit), `encoder.layers` (vit);
for the others (resnet, resnext, googlenet, inception, shufflenet) the network's own
children that hold parameters, the head excluded: resnet18 → conv1, bn1, layer1 … layer4.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torchvision.ops import StochasticDepth

from cnnctl.core.errors import ConfigError
from cnnctl.models.registry import ModelSpec, register
from cnnctl.models.simple import ACTIVATIONS
from cnnctl.models.weights import enum_member, first_line, quiet_warnings

IMAGENET_CLASSES = 1000  # the width of every torchvision classifier built without weights
TRUNKS = ("features", "layers", "trunk_output", "blocks", "encoder.layers")


def classifier_names() -> list[str]:
    """torchvision's classification models, from its own registry."""
    return sorted(tvm.list_models(module=tvm))


# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


class TransferNet(nn.Module):
    """A torchvision network with a new head; knows its head, blocks and frozen part.

    `train()` keeps the normalisation, dropout and stochastic-depth layers of a frozen part
    in eval mode: running statistics never move and nothing random happens there while it is
    frozen (whatever calls `train()`).
    """

    def __init__(
        self, net: nn.Module, name: str, head_name: str, *, expand_grey: bool, log_softmax: bool
    ) -> None:
        super().__init__()
        self.net = net
        self.arch = name
        self.head_name = head_name
        self.expand_grey = expand_grey
        self.log_softmax: nn.Module | None = nn.LogSoftmax(dim=1) if log_softmax else None
        self.frozen_fixed: list[nn.Module] = []

    @property
    def head(self) -> nn.Module:
        return self.net.get_submodule(self.head_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.expand_grey:
            x = x.expand(-1, 3, -1, -1)
        out: torch.Tensor = self.net(x)
        return self.log_softmax(out) if self.log_softmax is not None else out

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        for module in self.frozen_fixed:
            module.eval()
        return self

    # -- parts ---------------------------------------------------------------------

    def display_modules(self) -> list[tuple[str, nn.Module]]:
        """(name, module) with names as in torchvision (what `freeze.until` takes)."""
        named = [(n.removeprefix("net."), m) for n, m in self.named_modules() if n not in ("", "net")]
        return named

    def blocks(self) -> list[str]:
        """The backbone's blocks for `freeze: N`, first to last (see the module docstring)."""
        for trunk in TRUNKS:
            try:
                module = self.net.get_submodule(trunk)
            except AttributeError:
                continue
            found = [f"{trunk}.{n}" for n, child in module.named_children() if _has_params(child)]
            if found:
                return found
        top = self.head_name.split(".")[0]
        return [n for n, child in self.net.named_children() if n != top and _has_params(child)]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head.parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def has_frozen(self) -> bool:
        return any(not p.requires_grad for p in self.parameters())

    # -- freezing --------------------------------------------------------------------

    def freeze(self, setting: Any) -> None:
        """Apply `model.freeze`: none | backbone | N | {until: name} (see the module docstring)."""
        modules = list(self.net.named_modules())
        names = [n for n, _ in modules]
        if setting == "none":
            start = 0
        elif setting == "backbone" or setting == 0:
            start = len(modules)
        elif isinstance(setting, int) and not isinstance(setting, bool):
            blocks = self.blocks()
            if setting > len(blocks):
                raise ConfigError(
                    f"model.freeze: {self.arch} has {len(blocks)} blocks ({', '.join(blocks)}); "
                    f"N must be at most {len(blocks)}"
                )
            start = names.index(blocks[-setting])
        elif isinstance(setting, Mapping) and isinstance(setting.get("until"), str):
            start = self._index_of(str(setting["until"]), names)
        else:
            raise ConfigError(f"model.freeze: cannot apply {setting!r}")
        trainable = {id(m) for _, m in modules[start:]} | {id(m) for m in self.head.modules()}
        for _, module in modules:
            for param in module.parameters(recurse=False):
                param.requires_grad_(id(module) in trainable)
        self.frozen_fixed = [m for _, m in modules if id(m) not in trainable and _train_mode_differs(m)]
        self.train(self.training)

    def _index_of(self, until: str, names: list[str]) -> int:
        if until and until in names:
            return names.index(until)
        hints = difflib.get_close_matches(until, names[1:], n=3, cutoff=0.5)
        hints += [b for b in reversed(self.blocks()) if b not in hints][: 5 - len(hints)]
        raise ConfigError(
            f"model.freeze.until: {self.arch} has no module '{until}'; valid names include "
            f"{', '.join(hints)} (`cnnctl summary CONFIG` lists them all)"
        )

    def unfreeze(self) -> int:
        """Make every parameter trainable and let every norm layer train; returns how many."""
        count = 0
        for param in self.parameters():
            if not param.requires_grad:
                param.requires_grad_(True)
                count += param.numel()
        self.frozen_fixed = []
        self.train(self.training)
        return count

    def param_groups(self, lr: float, backbone_lr_mult: float, keep_frozen: bool) -> list[dict[str, Any]]:
        """Optimizer groups: the head at `lr`, the backbone at `lr * backbone_lr_mult`.

        Frozen backbone parameters are left out unless `keep_frozen` (they will be
        unfrozen later): then they sit in the backbone group from the start with
        requires_grad False; torch optimizers skip parameters without a gradient, so they
        do not move until unfrozen, and the lr schedule already knows their group.
        """
        groups: list[dict[str, Any]] = [{"params": self.head_parameters(), "lr": lr, "name": "head"}]
        backbone = [p for p in self.backbone_parameters() if p.requires_grad or keep_frozen]
        if backbone:
            groups.append({"params": backbone, "lr": lr * backbone_lr_mult, "name": "backbone"})
        return groups


def layer_width(layer: nn.Module, out: int) -> int:
    if isinstance(layer, nn.Linear):
        return int(layer.out_features if out else layer.in_features)
    assert isinstance(layer, nn.Conv2d)
    return int(layer.out_channels if out else layer.in_channels)


def _train_mode_differs(module: nn.Module) -> bool:
    """Layers a frozen part keeps in eval mode, so it is a fixed feature extractor: BatchNorm
    (running stats must not drift), dropout and stochastic depth (no randomness)."""
    if isinstance(module, _NormBase):
        return bool(getattr(module, "track_running_stats", False))
    return isinstance(module, nn.modules.dropout._DropoutNd | StochasticDepth)


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------


def arch_kwargs(name: str, spec: ModelSpec, torchvision_weights: bool) -> dict[str, Any]:
    """Constructor arguments that depend on the input or on the weights, the same at every build."""
    _, h, w = spec.input_shape
    if name.startswith("vit_"):
        if h != w:
            raise ConfigError(f"model: {name} needs a square input; data.image_size is {h}x{w}")
        return {"image_size": h}
    if name == "maxvit_t":
        return {"input_size": (h, w)}
    if name in ("googlenet", "inception_v3"):
        # torchvision's own weights for these expect its `transform_input` re-normalisation.
        return {"aux_logits": False, "init_weights": True, "transform_input": torchvision_weights}
    return {}


def _find_classifier(net: nn.Module, name: str) -> tuple[str, nn.Module]:
    found: tuple[str, nn.Module] | None = None
    for path, module in net.named_modules():
        linear = isinstance(module, nn.Linear) and module.out_features == IMAGENET_CLASSES
        conv = isinstance(module, nn.Conv2d) and module.out_channels == IMAGENET_CLASSES
        if linear or conv:
            found = (path, module)
    if found is None:
        raise ConfigError(f"model.name: cannot find the classifier layer of {name}")
    return found


def _make_head(old: nn.Module, head: Mapping[str, Any], outputs: int) -> nn.Sequential:
    conv = isinstance(old, nn.Conv2d)
    act = ACTIVATIONS[str(head.get("activation", "relu"))]
    dropout = float(head.get("dropout", 0.0))

    def layer(i: int, o: int) -> nn.Module:
        return nn.Conv2d(i, o, kernel_size=1) if conv else nn.Linear(i, o)

    width = layer_width(old, 0)
    layers: list[nn.Module] = []
    for hidden in head.get("hidden", []):
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [layer(width, int(hidden)), act()]
        width = int(hidden)
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(layer(width, outputs))
    return nn.Sequential(*layers)


def build_transfer(spec: ModelSpec) -> TransferNet:
    """Architecture with random weights → new head → freeze. Never touches the network."""
    cfg = spec.config
    name = str(cfg["name"])
    torchvision_weights = enum_member(name, str(cfg.get("weights", "none"))) is not None
    shape = "x".join(map(str, spec.input_shape))
    try:
        with quiet_warnings():
            net = tvm.get_model(name, weights=None, **arch_kwargs(name, spec, torchvision_weights))
    except (ValueError, AssertionError, RuntimeError, TypeError) as err:
        raise ConfigError(f"model: cannot build {name} for a {shape} input: {first_line(err)}") from None
    head_name, old = _find_classifier(net, name)
    net.set_submodule(head_name, _make_head(old, cfg.get("head") or {}, spec.num_outputs))
    model = TransferNet(
        net,
        name,
        head_name,
        expand_grey=spec.input_shape[0] == 1,
        log_softmax=bool(cfg.get("log_softmax")),
    )
    _check_input(model, spec)
    model.freeze(cfg.get("freeze", "none"))
    return model


def _check_input(model: TransferNet, spec: ModelSpec) -> None:
    """One dummy forward: a too-small input is a clear ConfigError now, not a traceback later."""
    shape = "x".join(map(str, spec.input_shape))
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, *spec.input_shape))
    except (RuntimeError, ValueError, AssertionError, IndexError) as err:
        raise ConfigError(
            f"model: {model.arch} cannot take a {shape} input ({first_line(err)}); "
            "use a larger data.image_size (most torchvision models want 224)"
        ) from None
    finally:
        model.train()
    if tuple(out.shape) != (1, spec.num_outputs):
        raise ConfigError(f"model: {model.arch} gives outputs of shape {list(out.shape)} for a {shape} input")


for _name in classifier_names():
    register(_name)(build_transfer)
