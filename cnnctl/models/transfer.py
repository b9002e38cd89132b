"""Transfer learning from torchvision classifiers: every name in
`torchvision.models.list_models(module=torchvision.models)` (alexnet, densenet121, resnet18, ...).

A model is a `TransferNet`: the torchvision network (`.net`) with its classifier replaced by
a new head, plus the two things a backbone needs around it: grey input expanded to 3
channels, and a frozen part kept in eval mode (BatchNorm stats fixed, no dropout): a fixed
feature extractor, which is what lets `features.py` compute its output once.

Three steps, kept apart on purpose:

1. `build_model(spec)` (the registry builder below) makes the architecture with random
   weights, replaces the head and applies `model.freeze`. It never reads or downloads
   weights, so a checkpoint rebuilds offline: `workflows.load_model` builds, then loads the
   stored state_dict.
2. `load_pretrained(model, cfg.model)` puts `model.weights` into the backbone. Only
   `workflows.train` calls it, once, before the first epoch.
3. `resolve_run_config(cfg)` fills data defaults from the weights (input size, resize,
   mean/std) before the data is read; the run's config.yaml keeps the resolved values.

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

import contextlib
import difflib
import io
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision.models as tvm
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torchvision.ops import StochasticDepth

from cnnctl.config import NormalizeStats, RunConfig
from cnnctl.core.errors import ConfigError
from cnnctl.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cnnctl.models import ModelSpec, register
from cnnctl.models.simple import ACTIVATIONS

log = logging.getLogger("cnnctl")

IMAGENET_CLASSES = 1000  # the width of every torchvision classifier built without weights
TRUNKS = ("features", "layers", "trunk_output", "blocks", "encoder.layers")
PRETRAINED_ALIASES = ("imagenet", "default")


def classifier_names() -> list[str]:
    """torchvision's classification models, from its own registry."""
    return sorted(tvm.list_models(module=tvm))


# --------------------------------------------------------------------------------------
# Weights: none | imagenet / DEFAULT | an enum member name | a state_dict file
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsChoice:
    """What `model.weights` names: nothing, a torchvision weights enum member, or a file."""

    kind: str  # "none" | "torchvision" | "file"
    enum: Any = None  # a torchvision WeightsEnum member
    path: Path | None = None

    @property
    def pretrained(self) -> bool:
        return self.kind != "none"


def weights_enum(name: str) -> Any:
    """The WeightsEnum class of a torchvision classifier."""
    return tvm.get_model_weights(name)


def enum_member(name: str, value: str) -> Any:
    """The enum member `value` names (imagenet, DEFAULT, IMAGENET1K_V1, Enum.MEMBER), or None."""
    enum = weights_enum(name)
    if value.lower() in PRETRAINED_ALIASES:
        return enum.DEFAULT
    member = value.removeprefix(f"{enum.__name__}.")
    return enum[member] if member in enum.__members__ else None


def resolve_weights(name: str, value: str) -> WeightsChoice:
    """Parse `model.weights` for model `name`; an unknown name or missing file → ConfigError."""
    if value == "none":
        return WeightsChoice("none")
    member = enum_member(name, value)
    if member is not None:
        return WeightsChoice("torchvision", enum=member)
    path = Path(value).expanduser()
    if path.is_file():
        return WeightsChoice("file", path=path.absolute())
    names = ", ".join(["none", "imagenet", *weights_enum(name).__members__])
    raise ConfigError(
        f"model.weights: '{value}' is neither a weights name of {name} ({names}) nor an existing file"
    )


def _file_name(weights: Any) -> str:
    return Path(urlparse(str(weights.url)).path).name


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

    # -- loading -------------------------------------------------------------------

    def load_backbone(self, state: Mapping[str, torch.Tensor], origin: str) -> None:
        """Load a torchvision-layout state_dict into the backbone; the head as it fits.

        Every backbone key must be present with the model's shape (else one ConfigError
        naming `origin` and the first mismatches). The pretrained classifier is kept only
        when the new head is a single layer of the same shape; otherwise it is replaced
        (logged), never partly loaded.
        """
        target = self.net.state_dict()
        prefix = self.head_name + "."
        body = {k: v for k, v in state.items() if not k.startswith(prefix)}
        old_head = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        wanted = [k for k in target if not k.startswith(prefix)]
        missing = [k for k in wanted if k not in body]
        unexpected = [k for k in body if k not in target]
        wrong = [
            f"{k} {list(body[k].shape)} vs {list(target[k].shape)}"
            for k in wanted
            if k in body and tuple(body[k].shape) != tuple(target[k].shape)
        ]
        problems = [
            f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatch (file vs model)", wrong),
            )
            if keys
        ]
        if problems:
            raise ConfigError(f"model.weights: {origin} does not fit {self.arch}: {'; '.join(problems)}")
        merged = {**target, **body}
        merged.update(self._head_from(old_head, prefix, target))
        self.net.load_state_dict(merged)

    def _head_from(
        self, old: dict[str, torch.Tensor], prefix: str, target: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The pretrained classifier's tensors when they fit the new head exactly, else {}."""
        layers = [m for m in self.head.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        shape = "→".join([str(_width(layers[0], 0)), *(str(_width(m, 1)) for m in layers)])
        last = f"{prefix}{len(self.head) - 1}." if isinstance(self.head, nn.Sequential) else prefix
        new = {k[len(last) :]: v for k, v in target.items() if k.startswith(last)}
        if not old:
            log.info(
                f"{self.arch}: the weights have no {self.head_name}; the new head ({shape}) starts random"
            )
            return {}
        if len(layers) == 1 and set(old) == set(new) and all(old[k].shape == new[k].shape for k in new):
            log.info(f"{self.arch}: kept the pretrained classifier {self.head_name} ({shape})")
            return {last + k: v for k, v in old.items()}
        was = old.get("weight")
        was_shape = f"{was.shape[1]}→{was.shape[0]}" if was is not None and was.dim() >= 2 else "?"
        log.info(
            f"{self.arch}: pretrained classifier {self.head_name} ({was_shape}) replaced by a new head "
            f"({shape}, random init)"
        )
        return {}


def _width(layer: nn.Module, out: int) -> int:
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

    width = _width(old, 0)
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


def _quiet() -> contextlib.AbstractContextManager[Any]:
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", UserWarning)
    warnings.simplefilter("ignore", FutureWarning)
    return stack


def build_transfer(spec: ModelSpec) -> TransferNet:
    """Architecture with random weights → new head → freeze. Never touches the network."""
    cfg = spec.config
    name = str(cfg["name"])
    torchvision_weights = enum_member(name, str(cfg.get("weights", "none"))) is not None
    shape = "x".join(map(str, spec.input_shape))
    try:
        with _quiet():
            net = tvm.get_model(name, weights=None, **arch_kwargs(name, spec, torchvision_weights))
    except (ValueError, AssertionError, RuntimeError, TypeError) as err:
        raise ConfigError(f"model: cannot build {name} for a {shape} input: {_first_line(err)}") from None
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
            f"model: {model.arch} cannot take a {shape} input ({_first_line(err)}); "
            "use a larger data.image_size (most torchvision models want 224)"
        ) from None
    finally:
        model.train()
    if tuple(out.shape) != (1, spec.num_outputs):
        raise ConfigError(f"model: {model.arch} gives outputs of shape {list(out.shape)} for a {shape} input")


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or err.__class__.__name__
    return text.splitlines()[0]


for _name in classifier_names():
    register(_name)(build_transfer)


# --------------------------------------------------------------------------------------
# Pretrained weights (training only)
# --------------------------------------------------------------------------------------


def load_pretrained(model: nn.Module, weights: str) -> None:
    """Load `model.weights` into a freshly built TransferNet; `none` does nothing.

    torchvision weights come from torch.hub's cache ($TORCH_HOME/hub/checkpoints), downloaded
    there when missing; offline with no cached file is one ConfigError naming the file and
    the folder to put it in.
    """
    if not isinstance(model, TransferNet):
        raise TypeError("load_pretrained needs a TransferNet")
    choice = resolve_weights(model.arch, weights)
    if choice.kind == "torchvision":
        state, origin = _hub_state(model.arch, choice.enum), f"{choice.enum} ({_file_name(choice.enum)})"
    elif choice.kind == "file":
        assert choice.path is not None
        state, origin = read_state_dict(choice.path), str(choice.path)
    else:
        return
    model.load_backbone(state, origin)
    log.info(f"{model.arch}: loaded pretrained weights {origin}")


def _reference_kwargs(name: str) -> dict[str, Any]:
    return {"aux_logits": False} if name in ("googlenet", "inception_v3") else {}


def _hub_state(name: str, weights: Any) -> dict[str, torch.Tensor]:
    """The state_dict torchvision's builder loads for `weights` (its key fixes included)."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = _file_name(weights)
    if not (folder / file).is_file():
        log.info(f"{name}: downloading {file} into {folder}")
    try:
        # Own RNG: loading weights must not change the seeded head init or data order; torch.hub's
        # "Downloading: ..." print is replaced by the line above (stdout stays the command's own).
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()), _quiet():
            reference = tvm.get_model(name, weights=weights, **_reference_kwargs(name))
    except Exception as err:  # noqa: BLE001 - download and load failures become one line
        if not (folder / file).is_file():
            reason = getattr(err, "reason", None) or _first_line(err)
            raise ConfigError(
                f"model.weights: {name} weights {file} are not cached and cannot be downloaded "
                f"({reason}); put {file} (from {weights.url}) in {folder}"
            ) from None
        raise ConfigError(
            f"model.weights: {folder / file}: cannot load it ({_first_line(err)}); "
            "delete it to download it again, or replace it"
        ) from None
    return dict(reference.state_dict())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict file (weights_only); a cnnctl checkpoint's `model` also works.

    A `module.` (DataParallel) or `net.` (a cnnctl TransferNet) prefix on every key is dropped.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is one line
        raise ConfigError(
            f"model.weights: {path}: cannot read it as a state_dict ({_first_line(err)})"
        ) from None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not (
        isinstance(obj, Mapping)
        and obj
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise ConfigError(
            f"model.weights: {path}: not a state_dict (a mapping of parameter names to tensors)"
        )
    state: dict[str, torch.Tensor] = dict(obj)
    for prefix in ("module.", "net."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


# --------------------------------------------------------------------------------------
# Data defaults from the weights
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """How a weights' training images were prepared (torchvision's `weights.transforms()`)."""

    weights: str
    resize: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def preprocessing(name: str, weights: str) -> Preprocessing | None:
    """The preprocessing that goes with `model.weights`; None without pretrained weights.

    A state_dict file carries no such metadata: it gets the architecture's DEFAULT weights'
    preprocessing (such files are most often those weights, or fine-tuned from them).
    """
    choice = resolve_weights(name, weights)
    if not choice.pretrained:
        return None
    member = choice.enum if choice.kind == "torchvision" else weights_enum(name).DEFAULT
    transforms = member.transforms()
    crop = [int(v) for v in transforms.crop_size]
    return Preprocessing(
        weights=str(member),
        resize=int(transforms.resize_size[0]),
        crop=(crop[0], crop[-1]),
        mean=tuple(float(v) for v in transforms.mean),
        std=tuple(float(v) for v in transforms.std),
    )


def input_defaults(cfg: RunConfig) -> dict[str, Any]:
    """DataConfig updates for a torchvision model: the keys the user left at null / auto.

    - data.channels: 3 for an image folder (1-channel sources stay 1; the model expands);
    - with pretrained weights: data.image_size = the weights' crop size; data.resize = their
      resize size when image_size was left too (a given image_size keeps its own resize);
      data.normalize: auto → the weights' mean/std (`imagenet` when they are ImageNet's).
    """
    data = cfg.data
    update: dict[str, Any] = {}
    if data.channels is None and data.source == "image_folder":
        update["channels"] = 3
    pre = preprocessing(cfg.model.name, cfg.model.weights)
    if pre is None:
        return update
    if data.image_size is None:
        update["image_size"] = pre.crop[0] if pre.crop[0] == pre.crop[1] else list(pre.crop)
        if data.resize is None:
            update["resize"] = pre.resize
    if data.normalize == "auto":
        imagenet = _close(pre.mean, IMAGENET_MEAN) and _close(pre.std, IMAGENET_STD)
        if imagenet:
            update["normalize"] = "imagenet"
        elif update.get("channels", data.channels) == 1:
            update["normalize"] = NormalizeStats(mean=[sum(pre.mean) / 3], std=[sum(pre.std) / 3])
        else:
            update["normalize"] = NormalizeStats(mean=list(pre.mean), std=list(pre.std))
    return update


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


def resolve_run_config(cfg: RunConfig) -> RunConfig:
    """The config a torchvision run trains with: weights named exactly, data defaults filled.

    `imagenet` / `DEFAULT` become the enum member's name (IMAGENET1K_V1), a file path becomes
    absolute; data keys follow `input_defaults`.
    """
    if cfg.model.family() != "torchvision":
        return cfg
    choice = resolve_weights(cfg.model.name, cfg.model.weights)
    model_update: dict[str, Any] = {}
    if choice.kind == "torchvision":
        model_update["weights"] = str(choice.enum.name)
    elif choice.kind == "file":
        model_update["weights"] = str(choice.path)
    data_update = input_defaults(cfg)
    pre = preprocessing(cfg.model.name, cfg.model.weights)
    if pre is not None and data_update.keys() & {"image_size", "resize", "normalize"}:
        shown = ", ".join(f"{k} {_plain(v)}" for k, v in data_update.items() if k != "channels")
        log.info(f"{cfg.model.name}: data defaults from {pre.weights}: {shown}")
    return cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update=model_update),
            "data": cfg.data.model_copy(update=data_update),
        }
    )


def _plain(value: Any) -> Any:
    return value.to_plain() if isinstance(value, NormalizeStats) else value
