"""What `model.weights` names and where its tensors come from, as plain data.

`model.weights` is `none`, `imagenet` / `DEFAULT` (the architecture's default weights), a
torchvision weights enum member name (IMAGENET1K_V1, or Enum.MEMBER), or a state_dict file.
This module parses it (`resolve_weights`), reads the tensors (`hub_state` from torch.hub's
cache, `read_state_dict` from a file), and says how the weights' training images were
prepared (`preprocessing`: input size, resize, mean/std, from torchvision's `weights.transforms()`).

torchvision is imported inside the functions that need it, so the constants here
(`IMAGENET_MEAN`, `IMAGENET_STD`, which data/ uses too) cost no torchvision import.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from cnnctl.core.errors import ConfigError

log = logging.getLogger("cnnctl")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRETRAINED_ALIASES = ("imagenet", "default")


def first_line(err: BaseException) -> str:
    """The first line of an error's text (its class name when it has none)."""
    text = str(err).strip() or err.__class__.__name__
    return text.splitlines()[0]


def quiet_warnings() -> contextlib.AbstractContextManager[Any]:
    """Silence torchvision's UserWarning / FutureWarning chatter while it builds a network."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", UserWarning)
    warnings.simplefilter("ignore", FutureWarning)
    return stack


# --------------------------------------------------------------------------------------
# Naming: none | imagenet / DEFAULT | an enum member name | a state_dict file
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
    import torchvision.models as tvm

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


def weights_file_name(weights: Any) -> str:
    """The file name torch.hub caches a torchvision weights enum member under."""
    return Path(urlparse(str(weights.url)).path).name


# --------------------------------------------------------------------------------------
# Reading the tensors
# --------------------------------------------------------------------------------------


def _reference_kwargs(name: str) -> dict[str, Any]:
    return {"aux_logits": False} if name in ("googlenet", "inception_v3") else {}


def hub_state(name: str, weights: Any) -> dict[str, torch.Tensor]:
    """The state_dict torchvision's builder loads for `weights` (its key fixes included).

    It comes from torch.hub's cache ($TORCH_HOME/hub/checkpoints), downloaded there when
    missing; offline with no cached file is one ConfigError naming the file and the folder
    to put it in.
    """
    import torchvision.models as tvm

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = weights_file_name(weights)
    if not (folder / file).is_file():
        log.info(f"{name}: downloading {file} into {folder}")
    try:
        # Own RNG: loading weights must not change the seeded head init or data order; torch.hub's
        # "Downloading: ..." print is replaced by the line above (stdout stays the command's own).
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()), quiet_warnings():
            reference = tvm.get_model(name, weights=weights, **_reference_kwargs(name))
    except Exception as err:  # noqa: BLE001 - download and load failures become one line
        if not (folder / file).is_file():
            reason = getattr(err, "reason", None) or first_line(err)
            raise ConfigError(
                f"model.weights: {name} weights {file} are not cached and cannot be downloaded "
                f"({reason}); put {file} (from {weights.url}) in {folder}"
            ) from None
        raise ConfigError(
            f"model.weights: {folder / file}: cannot load it ({first_line(err)}); "
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
            f"model.weights: {path}: cannot read it as a state_dict ({first_line(err)})"
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
# The preprocessing the weights bring
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """How a weights' training images were prepared (torchvision's `weights.transforms()`)."""

    weights: str
    resize: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def is_imagenet(self) -> bool:
        """Whether the mean/std are ImageNet's (`data.normalize: imagenet`)."""
        return _close(self.mean, IMAGENET_MEAN) and _close(self.std, IMAGENET_STD)


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


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
