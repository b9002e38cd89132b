"""The run configuration: YAML + `--set` overrides → a typed, validated, frozen `RunConfig`.

This module must not import torch: `cnnctl config validate` runs on it alone.

Rules every section follows:
- unknown keys are refused (`extra="forbid"`), values are not coerced between types
  (`strict=True`), and each error names its dotted path and what is allowed;
- a key that belongs to one data source / model family / optimizer is refused when set
  for another (`data.label_column` with `data.source: synthetic`), so a config never
  carries a key that the code ignores;
- defaults that depend on a choice (`model.hidden` for `small_cnn` vs `mlp`) are filled in
  at load time, so `cnnctl config show` prints exactly what will run;
- a key named after a torch argument defaults to torch's value (TORCH_DEFAULTS lists them and
  the deliberate deviations);
- every number is bounded (finite, and within a range docs/config.md shows), and combinations
  that cannot train (a kernel larger than the image it reaches) are refused, so whatever
  validates either trains or fails in one line;
- the YAML itself is bounded (size, nesting, alias expansion) before it is composed, and a
  config file must name its data (`data.source`): an empty file is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnctl.core.errors import ConfigError

# --------------------------------------------------------------------------------------
# YAML: safe loader only, with YAML 1.2 floats (`1e-3` is a float, not the string "1e-3"),
# and bounded: a config is a few KB, so whatever is far beyond that is refused before it
# costs anything (a 520-byte "billion laughs" of nested aliases, a 10 KB nest of lists,
# a 50 MB file).
# --------------------------------------------------------------------------------------

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB; the largest example config is under 4 KB
MAX_LR = 1e30  # far above any useful lr; from 1e38 torch overflows float32 (a traceback, not a diverging run)
MAX_SET_BYTES = 64 << 10  # one --set KEY=VALUE item
MAX_YAML_DEPTH = 32  # nested mappings / lists; a config needs 4 (data.normalize.mean: [...])
MAX_YAML_NODES = 10_000  # values after alias expansion; a config has a few hundred
MAX_ERROR_LINES = 20  # one line per problem, at most this many


class _LimitError(yaml.MarkedYAMLError):
    """A YAML document beyond MAX_YAML_DEPTH / MAX_YAML_NODES, or an alias into itself."""


def _limit(problem: str, mark: Any) -> _LimitError:
    return _LimitError(None, None, problem, mark)


class _Values:
    """Constructor part shared by the two loaders: a value Python cannot build (an integer of
    5,000 digits, the date 2024-13-45) is a YAML error at its line, not a traceback."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except (ValueError, OverflowError) as err:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({err})", node.start_mark
            ) from None


class _Loader(_Values, yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: `1e-3` is a float, and only true/false are booleans
    (YAML 1.1 would read `amp: off` as False and `lr: 1e-3` as a string)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

# libyaml's parser (bundled with PyYAML's wheels) is ~30x faster than the pure-Python one;
# the values are built by the same Python constructor and resolvers either way.
_EventLoader: Any = yaml.SafeLoader
_FastLoader: Any = _Loader
if getattr(yaml, "__with_libyaml__", False):

    class _CLoader(_Values, yaml.CSafeLoader):
        """_Loader's resolvers and constructor on libyaml's parser."""

    _CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    _EventLoader, _FastLoader = yaml.CSafeLoader, _CLoader


class _Shape:
    """Walks a YAML text's events (no values built) and refuses it as soon as it nests deeper
    than MAX_YAML_DEPTH or its aliases would expand it beyond MAX_YAML_NODES values."""

    def __init__(self) -> None:
        self.open: list[list[Any]] = []  # per open collection: [anchor, expanded size, height]
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor → (expanded size, height)
        self.total = 0

    def count(self, size: int, depth: int, event: yaml.Event) -> None:
        """`size` more values (after expansion), reaching `depth` levels of nesting."""
        self.total += size
        if self.total > MAX_YAML_NODES:
            what = "its aliases expand it to" if isinstance(event, yaml.AliasEvent) else "it holds"
            raise _limit(
                f"YAML too large: {what} more than {MAX_YAML_NODES:,} values (a config has a few "
                "hundred); remove the repeated aliases (*name) or the bulk data",
                event.start_mark,
            )
        if depth > MAX_YAML_DEPTH:
            raise _limit(
                f"YAML nested more than {MAX_YAML_DEPTH} levels deep (a config needs about 4); flatten it",
                event.start_mark,
            )

    def child(self, size: int, height: int) -> None:
        if self.open:
            frame = self.open[-1]
            frame[1] += size
            frame[2] = max(frame[2], height)

    def event(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in self.open):
                raise _limit(
                    f"YAML alias *{event.anchor} refers to a node that contains it (a recursive "
                    "structure); remove the alias",
                    event.start_mark,
                )
            size, height = self.anchors.get(str(event.anchor), (1, 0))
            self.count(size, len(self.open) + height, event)
            self.child(size, height)
        elif isinstance(event, yaml.ScalarEvent):
            self.count(1, len(self.open), event)
            if event.anchor:
                self.anchors[event.anchor] = (1, 0)
            self.child(1, 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            self.count(1, len(self.open) + 1, event)
            self.open.append([event.anchor, 1, 0])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size, height = self.open.pop()
            if anchor:
                self.anchors[anchor] = (size, height + 1)
            self.child(size, height + 1)


def _check_shape(text: str) -> None:
    """Refuse a YAML text that nests too deeply or expands too far, before composing it."""
    loader = _EventLoader(text)
    shape = _Shape()
    try:
        while loader.check_event():
            shape.event(loader.get_event())
    finally:
        loader.dispose()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely and within the limits above; any problem becomes one line with
    file:line:column."""
    try:
        _check_shape(text)
        return yaml.load(text, Loader=_FastLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = ", ".join(p for p in (err.context, err.problem) if p) or "invalid YAML"
        if isinstance(err, yaml.scanner.ScannerError | yaml.parser.ParserError):
            problem = f"YAML syntax error: {problem}"
        elif not isinstance(err, _LimitError):
            problem = f"YAML error: {problem}"
        raise ConfigError(_one_line(f"{where}: {problem}")) from None
    except yaml.reader.ReaderError as err:
        raise ConfigError(
            f"{source}: YAML error: character #x{err.character:x} at position {err.position}: "
            f"{err.reason}; a config is plain UTF-8 text"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(_one_line(f"{source}: YAML error: {err}")) from None
    except RecursionError:  # not reachable within MAX_YAML_DEPTH; kept so it never is a traceback
        raise ConfigError(f"{source}: YAML nested too deeply to read; flatten it") from None


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------

DataSource = Literal["synthetic", "image_folder", "csv", "torchvision"]
Loss = Literal["cross_entropy", "nll", "bce_with_logits"]

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True, allow_inf_nan=False)

# Bounds: whatever validates either trains or fails in one line. docs/config.md shows each
# key's range (from the Field constraints, or `allowed` where a validator checks it).
MAX_SIDE = 2048  # image_size / resize / image_shape sides: 9x the 224 of ImageNet models
MAX_BATCH = 65_536  # batch_size: 2^16, the top of the published large-batch ImageNet recipes
MAX_WORKERS = 64  # num_workers: DataLoader processes; more only adds memory and start-up time
MAX_EPOCHS = 100_000  # epochs and every count of epochs
MAX_WIDTH = 16_384  # one conv / fully connected width
MAX_LAYERS = 16  # entries of model.channels / model.hidden / model.head.hidden
MAX_SEED = 2**63 - 1  # torch.manual_seed takes [-2^63, 2^64); seed + rank must fit too
MAX_PARAMETERS = 2**30  # small_cnn / mlp: 4 GiB of fp32 weights, 16 GiB with Adam's state
MAX_SYNTHETIC_BYTES = 2 << 30  # synthetic images are generated into memory
SYNTHETIC_MAX_PER_CLASS = 10_000
NATIVE_SIZE = {"synthetic": 32, "image_folder": 64}  # image_size null (data/__init__.DEFAULT_SIZE)


SMALLEST_CONFIG = "data: {source: synthetic}"  # what an empty config is told to start from
REQUIRED_KEYS = ("data.source",)  # a config file must set these (load_config → require_data)


def _short(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"


def _allowed(text: str) -> dict[str, Any]:
    """json_schema_extra for a key whose range a validator checks (shown in docs/config.md)."""
    return {"allowed": text}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class KeyError_(ValueError):  # noqa: N801 - a ValueError that knows its key
    """A section-level check that is about one key: the message names `section.key`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    """Base for config sections: strict, frozen, unknown keys refused."""

    model_config = _STRICT

    # key → the values of the selector field (e.g. data.source) for which the key applies.
    applies_to: ClassVar[dict[str, tuple[str, ...]]] = {}
    selector: ClassVar[str] = ""

    def family(self) -> str | None:
        """The value `applies_to` is keyed on (the selector's value, or its family)."""
        return getattr(self, self.selector, None) if self.selector else None

    def to_plain(self) -> dict[str, Any]:
        """This section as plain data, without keys that do not apply to its choice."""
        choice = self.family()
        plain: dict[str, Any] = {}
        for key in type(self).model_fields:
            allowed = self.applies_to.get(key)
            if allowed and choice not in allowed:
                continue
            value = getattr(self, key)
            plain[key] = value.to_plain() if isinstance(value, Section) else _plain(value)
        return plain

    @model_validator(mode="after")
    def _keys_apply(self) -> Section:
        choice = self.family()
        for key in sorted(self.model_fields_set):
            allowed = self.applies_to.get(key)
            if allowed and choice not in allowed:
                raise KeyError_(
                    key,
                    f"does not apply to {self.selector} '{getattr(self, self.selector)}' "
                    f"(only to: {', '.join(allowed)}); remove it",
                )
        return self


class NormalizeStats(Section):
    """Explicit per-channel normalisation statistics, in the 0-1 pixel scale."""

    mean: list[float] = Field(
        description="Per-channel mean (one value per channel).", json_schema_extra=_allowed("1 or 3 values")
    )
    std: list[float] = Field(
        description="Per-channel standard deviation (all > 0).",
        json_schema_extra=_allowed("as many values as mean, each x > 0"),
    )

    @model_validator(mode="after")
    def _check(self) -> NormalizeStats:
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise ValueError("mean and std need the same length, 1 or 3 values")
        if any(s <= 0 for s in self.std):
            raise ValueError("every std value must be > 0")
        return self


class ColorJitterConfig(Section):
    """Colour jitter strengths (torchvision ColorJitter); 0 = that property untouched."""

    brightness: float = Field(0.0, ge=0, le=10, description="Brightness factor drawn from [1 - b, 1 + b].")
    contrast: float = Field(0.0, ge=0, le=10, description="Contrast factor drawn from [1 - c, 1 + c].")
    saturation: float = Field(0.0, ge=0, le=10, description="Saturation factor drawn from [1 - s, 1 + s].")
    hue: float = Field(0.0, ge=0, le=0.5, description="Hue shift drawn from [-h, h] (at most 0.5).")

    @property
    def enabled(self) -> bool:
        return any((self.brightness, self.contrast, self.saturation, self.hue))


class AugmentConfig(Section):
    """Train-time augmentation; validation, test and predict never augment.

    Applied per image, in this order: geometric (random_resized_crop, random_crop, rotation,
    flips) → policy → color_jitter → random_erasing, on the uint8 pixels before normalisation.
    """

    selector = "policy"
    applies_to = {
        "randaugment_ops": ("randaugment",),
        "randaugment_magnitude": ("randaugment",),
        "autoaugment_policy": ("autoaugment",),
    }

    hflip: bool = Field(False, description="Random horizontal flip (p=0.5).")
    vflip: bool = Field(False, description="Random vertical flip (p=0.5).")
    random_crop: int = Field(
        0,
        ge=0,
        le=64,
        description="Pad by this many pixels (reflect) and crop back at random; 0 = off; less than "
        "the image's smaller side.",
    )
    rotation: float = Field(0.0, ge=0, le=180, description="Random rotation in ±degrees; 0 = off.")
    random_resized_crop: list[float] | None = Field(
        None,
        description="[min_scale, max_scale]: crop a random share of the image's area in this range "
        "(aspect ratio 3/4-4/3) and resize it back to the input size; null = off.",
        json_schema_extra=_allowed("0 < min ≤ max ≤ 1"),
    )
    policy: Literal["none", "trivialaugment", "randaugment", "autoaugment"] = Field(
        "none",
        description="Automatic augmentation policy (torchvision TrivialAugmentWide, RandAugment, "
        "AutoAugment); none = off.",
    )
    randaugment_ops: int = Field(2, ge=1, le=10, description="randaugment: operations applied per image.")
    randaugment_magnitude: int = Field(
        9, ge=0, le=30, description="randaugment: strength of every operation, 0-30."
    )
    autoaugment_policy: Literal["imagenet", "cifar10", "svhn"] = Field(
        "imagenet", description="autoaugment: the learned policy to apply."
    )
    color_jitter: float | ColorJitterConfig = Field(
        0.0,
        description="Colour jitter: a number s jitters brightness, contrast and saturation by "
        "±s (hue untouched), or {brightness, contrast, saturation, hue} (hue at most 0.5); 0 = off.",
        json_schema_extra=_allowed("0 ≤ s ≤ 10, or a mapping"),
    )
    random_erasing: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Probability of erasing (to 0) a random rectangle of 2-33% of the image, "
        "after every other step; 0 = off.",
    )

    @field_validator("random_resized_crop")
    @classmethod
    def _scale_range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) != 2 or not 0 < value[0] <= value[1] <= 1):
            raise ValueError("random_resized_crop is [min_scale, max_scale] with 0 < min <= max <= 1")
        return value

    @field_validator("color_jitter")
    @classmethod
    def _jitter(cls, value: float | ColorJitterConfig) -> float | ColorJitterConfig:
        if isinstance(value, float) and not 0 <= value <= 10:
            raise ValueError(
                f"color_jitter is a strength >= 0 and at most 10, or {{brightness, contrast, saturation, "
                f"hue}} (got {value!r})"
            )
        return value

    @property
    def jitter(self) -> ColorJitterConfig:
        """color_jitter as its four strengths."""
        value = self.color_jitter
        if isinstance(value, ColorJitterConfig):
            return value
        return ColorJitterConfig(brightness=value, contrast=value, saturation=value, hue=0.0)

    @property
    def enabled(self) -> bool:
        return (
            self.hflip
            or self.vflip
            or self.random_crop > 0
            or self.rotation > 0
            or self.random_resized_crop is not None
            or self.policy != "none"
            or self.jitter.enabled
            or self.random_erasing > 0
        )


class DataConfig(Section):
    """Where the images come from and how they are shaped, split and batched."""

    selector = "source"
    applies_to = {
        "root": ("image_folder", "torchvision"),
        "classes": ("image_folder", "csv"),
        "extensions": ("image_folder",),
        "check_images": ("image_folder",),
        "cache": ("image_folder",),
        "num_classes": ("synthetic",),
        "samples_per_class": ("synthetic",),
        "noise": ("synthetic",),
        "train": ("csv",),
        "val": ("csv",),
        "test": ("csv",),
        "label_column": ("csv",),
        "image_shape": ("csv",),
        "scale": ("csv",),
        "name": ("torchvision",),
        "download": ("torchvision",),
    }

    source: DataSource = Field(
        "synthetic",
        description=f"Dataset kind; a config must name it (the smallest valid config is `{SMALLEST_CONFIG}`).",
    )
    root: str | None = Field(
        None,
        description="image_folder: folder with class subfolders (or train/val/test); "
        "torchvision: where the dataset files are (or go, with download).",
    )
    image_size: int | list[int] | None = Field(
        None,
        description="Model input size, N or [H, W]; null = the source's native size "
        "(synthetic 32, image_folder 64, csv and torchvision: the data's own size).",
        json_schema_extra=_allowed(f"each side 4 ≤ x ≤ {MAX_SIDE}"),
    )
    resize: int | None = Field(
        None,
        ge=1,
        le=MAX_SIDE,
        description="Resize the shorter side to this, then centre-crop image_size; "
        "null = resize straight to image_size.",
    )
    channels: Literal[1, 3] | None = Field(
        None, description="1 (grey) or 3 (RGB); images are converted; null = 3 for folders."
    )
    normalize: Literal["auto", "imagenet", "none"] | NormalizeStats = Field(
        "auto",
        description="auto = mean/std computed on the train split; imagenet; none; "
        "or {mean: [...], std: [...]}.",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,  # type: ignore[arg-type]
        description="Train-time augmentation: 'none' or a mapping of the data.augment keys.",
    )
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of train carved out for validation when no val split."
    )
    test_fraction: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Share carved out for test when no test split; null = no test split.",
    )
    batch_size: int | Literal["auto"] = Field(
        64,
        description="Samples per batch (per process); auto = the largest power of two that trains "
        "on the GPU (probed), 64 on CPU/MPS.",
        json_schema_extra=_allowed(f"1 ≤ x ≤ {MAX_BATCH}, or auto"),
    )
    num_workers: int | Literal["auto"] = Field(
        "auto",
        description=(
            "DataLoader worker processes; auto = 0 for in-memory data, else min(4, cpus - 1) while "
            "training and min(8, cpus) for the one decode pass of check_images / cache."
        ),
        json_schema_extra=_allowed(f"0 ≤ x ≤ {MAX_WORKERS}, or auto"),
    )
    pin_memory: bool | Literal["auto"] = Field(
        "auto", description="Page-locked batches for faster host→GPU copies; auto = on for CUDA."
    )
    classes: list[str] | None = Field(
        None,
        description="image_folder: fixed class order (must match the folder names); "
        "csv: names of labels 0..K-1.",
    )
    extensions: list[str] | None = Field(
        None, description="image_folder: file extensions to read; null = common image types."
    )
    cache: Literal["auto", "memory", "disk", "off"] = Field(
        "auto",
        description="image_folder: decode every image once to the input size and keep the uint8 "
        "pixels in memory (memory), also on disk keyed by files + sizes + mtimes + decode settings "
        "(disk), memory when it fits a quarter of RAM (auto), or decode every epoch (off).",
    )
    check_images: bool = Field(
        True,
        description="image_folder: decode every image once before training and skip (listing "
        "them) the unreadable ones; verdicts cached by path, size and mtime.",
    )
    num_classes: int = Field(4, ge=2, le=6, description="synthetic: number of shape classes.")
    samples_per_class: int = Field(
        300,
        ge=4,
        le=SYNTHETIC_MAX_PER_CLASS,
        description="synthetic: images generated per class (generated into memory: at most 2 GiB of "
        "pixels in all).",
    )
    noise: float = Field(0.1, ge=0, le=1, description="synthetic: strength of background pixel noise.")
    train: str | None = Field(None, description="csv: the training CSV file.")
    val: str | None = Field(None, description="csv: validation CSV; null = carved by val_fraction.")
    test: str | None = Field(None, description="csv: test CSV; null = carved by test_fraction or none.")
    label_column: str | int = Field("label", description="csv: the label column, by name or 0-based index.")
    image_shape: list[int] | None = Field(
        None,
        description="csv: [C, H, W] of the pixel columns; null = 1 x N x N from the column count.",
        json_schema_extra=_allowed(f"C 1 or 3, H and W 1 ≤ x ≤ {MAX_SIDE}"),
    )
    scale: Literal["auto", "0-255", "0-1"] = Field(
        "auto", description="csv: pixel value range; auto = 0-1 if every value is <= 1."
    )
    name: str | None = Field(
        None, description="torchvision: dataset class, e.g. MNIST, FashionMNIST, CIFAR10, SVHN."
    )
    download: bool = Field(False, description="torchvision: download the files into root when missing.")

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_none(cls, value: Any) -> Any:
        return {} if value in (None, "none") else value

    @field_validator("image_size")
    @classmethod
    def _size(cls, value: int | list[int] | None) -> int | list[int] | None:
        sizes = [value] if isinstance(value, int) else (value or [])
        if isinstance(value, list) and len(value) != 2:
            raise ValueError("image_size is N or [H, W]")
        if any(not 4 <= s <= MAX_SIDE for s in sizes):
            raise ValueError(f"got {_short(value)}; each side of image_size must be 4-{MAX_SIDE} pixels")
        return value

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= MAX_BATCH:
            raise ValueError(f"got {value!r}; batch_size must be 1-{MAX_BATCH} (or auto)")
        return value

    @field_validator("num_workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= MAX_WORKERS:
            raise ValueError(
                f"got {value!r}; num_workers must be 0-{MAX_WORKERS} worker processes (0 = load in "
                "the main process), or auto"
            )
        return value

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.val_fraction + (self.test_fraction or 0) >= 1:
            raise ValueError("val_fraction + test_fraction must stay below 1")
        if self.source in ("image_folder", "torchvision") and not self.root:
            raise KeyError_("root", f"source {self.source} needs data.root (a folder)")
        if self.source == "csv" and not self.train:
            raise KeyError_("train", "source csv needs data.train (a CSV file)")
        if self.source == "torchvision" and not self.name:
            raise KeyError_("name", "source torchvision needs data.name, e.g. MNIST or CIFAR10")
        if self.image_shape is not None and (
            len(self.image_shape) != 3
            or self.image_shape[0] not in (1, 3)
            or not all(1 <= side <= MAX_SIDE for side in self.image_shape[1:])
        ):
            raise KeyError_("image_shape", f"image_shape is [C, H, W] with C 1 or 3, H and W 1-{MAX_SIDE}")
        return self


def _check_widths(value: list[int]) -> list[int]:
    if any(not 1 <= v <= MAX_WIDTH for v in value):
        raise ValueError(f"got {_short(value)}; every width must be 1-{MAX_WIDTH}")
    return value


_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "small_cnn": {"hidden": [1024], "dropout": 0.5},
    "mlp": {"hidden": [128, 64], "dropout": 0.0},
}


class EmaConfig(Section):
    """An exponential moving average of the weights, validated beside the raw weights."""

    decay: float = Field(0.999, gt=0, lt=1, description="EMA decay per optimizer step (e.g. 0.999).")


class HeadConfig(Section):
    """The new classifier put on a torchvision backbone."""

    hidden: list[int] = Field(
        [],
        max_length=MAX_LAYERS,
        description="Hidden widths before the output layer; [] = one Linear.",
        json_schema_extra=_allowed(f"0-{MAX_LAYERS} widths, each 1 ≤ x ≤ {MAX_WIDTH}"),
    )

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int]) -> list[int]:
        return _check_widths(value)

    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before each head Linear.")
    activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = Field(
        "relu", description="Activation between head layers."
    )


class FreezeUntil(Section):
    """Freeze every parameter before the named module; train it and everything after."""

    until: str = Field(description="Name of the first trainable module, e.g. features.denseblock4.")


TORCHVISION = "torchvision"


class ModelConfig(Section):
    """Which network to build. Keys apply per model family; the rest are refused.

    Families: small_cnn, mlp, and `torchvision` (every other name: a torchvision classifier).
    """

    selector = "name"
    applies_to = {
        "channels": ("small_cnn",),
        "kernel_size": ("small_cnn",),
        "padding": ("small_cnn",),
        "pool": ("small_cnn",),
        "batch_norm": ("small_cnn",),
        "hidden": ("small_cnn", "mlp"),
        "activation": ("small_cnn", "mlp"),
        "dropout": ("small_cnn", "mlp"),
        "weights": (TORCHVISION,),
        "freeze": (TORCHVISION,),
        "head": (TORCHVISION,),
        "cache_features": (TORCHVISION,),
    }

    def family(self) -> str:
        return self.name if self.name in _MODEL_DEFAULTS else TORCHVISION

    name: str = Field("small_cnn", description="Model name; see `cnnctl models`.")
    channels: list[int] = Field(
        [32, 64],
        min_length=1,
        max_length=MAX_LAYERS,
        description="small_cnn: output channels of each conv block.",
        json_schema_extra=_allowed(f"1-{MAX_LAYERS} widths, each 1 ≤ x ≤ {MAX_WIDTH}"),
    )
    kernel_size: int = Field(
        5,
        ge=1,
        le=31,
        description="small_cnn: conv kernel size (at most the padded input of every block).",
    )
    padding: int = Field(2, ge=0, le=15, description="small_cnn: conv zero padding.")
    pool: int = Field(2, ge=1, le=8, description="small_cnn: max-pool size after each block; 1 = none.")
    batch_norm: bool = Field(False, description="small_cnn: BatchNorm after each conv.")
    hidden: list[int] = Field(
        [1024],
        max_length=MAX_LAYERS,
        description="Hidden fully connected widths (small_cnn default [1024], mlp [128, 64]); "
        f"small_cnn and mlp have at most {MAX_PARAMETERS:,} parameters.",
        json_schema_extra=_allowed(f"0-{MAX_LAYERS} widths, each 1 ≤ x ≤ {MAX_WIDTH}"),
    )
    activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = Field(
        "relu", description="Activation function."
    )
    dropout: float = Field(
        0.5, ge=0, lt=1, description="Dropout before each FC layer but the first (small_cnn 0.5, mlp 0.0)."
    )
    log_softmax: bool = Field(False, description="End in LogSoftmax (needed by train.loss: nll).")
    weights: str = Field(
        "none",
        description="torchvision: none (random init), imagenet / DEFAULT (the best ImageNet weights), "
        "a weights name such as IMAGENET1K_V1, or a path to a state_dict file.",
    )
    freeze: Literal["none", "backbone"] | int | FreezeUntil = Field(
        "none",
        description="torchvision: none (fine-tune all), backbone (train the head only), "
        "N (train the last N blocks and the head) or {until: module.name}.",
        json_schema_extra=_allowed("N ≥ 0, at most the model's blocks"),
    )
    head: HeadConfig = Field(
        default_factory=HeadConfig,  # type: ignore[arg-type]
        description="torchvision: the new classifier, {hidden, dropout, activation}.",
    )
    cache_features: Literal["auto", "off"] = Field(
        "auto",
        description="torchvision: with freeze: backbone and no data.augment, run the frozen "
        "backbone once and train the head on its cached outputs (auto), or run it every epoch (off).",
    )

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            defaults = _MODEL_DEFAULTS.get(str(data.get("name", "small_cnn")), {})
            return {**defaults, **data}
        return data

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in _MODEL_DEFAULTS and not is_torchvision_classifier(value):
            raise ValueError(
                f"unknown model '{value}'; allowed: {', '.join(_MODEL_DEFAULTS)} or a torchvision "
                "classifier (alexnet, densenet121, resnet18, ...; `cnnctl models` lists them)"
            )
        return value

    @field_validator("freeze")
    @classmethod
    def _freeze_count(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 0:
            raise ValueError("freeze N needs N >= 0 trainable blocks")
        return value

    @field_validator("hidden", "channels")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        return _check_widths(value)


# Each key named after a torch argument defaults to torch's value for the chosen optimizer
# (torch.optim.RMSprop's lr is 0.01, AdamW's weight_decay 0.01); TORCH_DEFAULTS below lists
# them and a test compares them with the installed torch.
_OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "rmsprop": {"lr": 0.01},
    "adamw": {"weight_decay": 0.01},
}


class OptimizerConfig(Section):
    """The optimizer (torch.optim). Every key defaults to torch's own default for the chosen
    optimizer: `optimizer: {name: sgd, lr: 0.1}` is `torch.optim.SGD(params, lr=0.1)`, without
    momentum. `weight_decay` is the L2 penalty (decoupled for adamw)."""

    selector = "name"
    applies_to = {
        "momentum": ("sgd", "rmsprop"),
        "nesterov": ("sgd",),
        "betas": ("adam", "adamw"),
    }

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("adam", description="Optimizer.")
    lr: float | Literal["auto"] = Field(
        1e-3,
        description="Learning rate (peak lr for schedules); torch's default: 0.001, rmsprop 0.01; "
        "auto = run `cnnctl lr-find`'s range test before training and train with its suggestion "
        "(stored in the run's config.yaml).",
        json_schema_extra=_allowed("0 < x <= 1e30, or auto"),
    )

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0 < value <= MAX_LR:
            raise ValueError(f"got {value!r}; the learning rate must be > 0 and at most {MAX_LR:g} (or auto)")
        return value

    weight_decay: float = Field(
        0.0,
        ge=0,
        le=1,
        description="L2 penalty (decoupled for adamw); torch's default: 0, adamw 0.01.",
    )
    momentum: float = Field(
        0.0, ge=0, lt=1, description="sgd, rmsprop: momentum (torch's default 0: none; e.g. 0.9)."
    )
    nesterov: bool = Field(False, description="sgd: Nesterov momentum (needs momentum > 0).")
    betas: list[float] = Field(
        [0.9, 0.999],
        min_length=2,
        max_length=2,
        description="adam, adamw: (beta1, beta2).",
        json_schema_extra=_allowed("two values, each 0 ≤ x < 1"),
    )
    backbone_lr_mult: float = Field(
        1.0, gt=0, le=1, description="torchvision models: backbone lr = lr x this (the head gets lr)."
    )

    @model_validator(mode="before")
    @classmethod
    def _torch_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {**_OPTIMIZER_DEFAULTS.get(str(data.get("name", "adam")), {}), **data}
        return data

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: list[float]) -> list[float]:
        if any(not 0 <= beta < 1 for beta in value):
            raise ValueError(f"got {_short(value)}; each beta must be in [0, 1)")
        return value

    @model_validator(mode="after")
    def _nesterov(self) -> OptimizerConfig:
        if self.name == "sgd" and self.nesterov and not self.momentum > 0:
            raise KeyError_(
                "nesterov",
                "needs optimizer.momentum > 0 (torch.optim.SGD refuses Nesterov without momentum); "
                "set e.g. momentum: 0.9",
            )
        return self


class SchedulerConfig(Section):
    """Learning-rate schedule. step/cosine/onecycle update every batch; plateau every epoch."""

    selector = "name"
    applies_to = {
        "step_size": ("step",),
        "gamma": ("step",),
        "min_lr": ("cosine",),
        "factor": ("plateau",),
        "patience": ("plateau",),
        "pct_start": ("onecycle",),
    }

    name: Literal["none", "step", "cosine", "plateau", "onecycle"] = Field("none", description="Schedule.")
    warmup_epochs: float = Field(
        0.0,
        ge=0,
        le=MAX_EPOCHS,
        description="Linear warmup from lr/100 over this many epochs, per optimizer step (any schedule).",
    )
    step_size: int = Field(10, ge=1, le=MAX_EPOCHS, description="step: epochs between lr drops.")
    gamma: float = Field(0.1, gt=0, le=1, description="step: lr multiplier at each drop.")
    min_lr: float = Field(
        0.0,
        ge=0,
        description="cosine: final lr (torch's eta_min).",
        json_schema_extra=_allowed("0 ≤ x ≤ optimizer.lr"),
    )
    factor: float = Field(0.1, gt=0, lt=1, description="plateau: lr multiplier on a plateau.")
    patience: int = Field(
        10,
        ge=0,
        le=MAX_EPOCHS,
        description="plateau: epochs without val-loss improvement before the lr drops (torch's 10).",
    )
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: share of steps spent increasing the lr.")


class TrainConfig(Section):
    """The training loop."""

    epochs: int = Field(10, ge=1, le=MAX_EPOCHS, description="Number of epochs.")
    loss: Loss = Field(
        "cross_entropy",
        description="cross_entropy; nll (model.log_softmax: true); bce_with_logits (2 classes).",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="cross_entropy: label smoothing (train loss only)."
    )
    monitor: Literal["val_loss", "val_acc"] = Field(
        "val_loss", description="What picks best.pt and drives early stopping."
    )
    patience: int | None = Field(
        None, ge=1, le=MAX_EPOCHS, description="Early stopping: epochs without improvement; null = off."
    )
    min_delta: float = Field(0.0, ge=0, description="Early stopping / best.pt: smallest change that counts.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this; null = off.")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision; auto = bf16/fp16 on CUDA, off elsewhere."
    )
    accumulate: int = Field(
        1,
        ge=1,
        le=1024,
        description="Gradient accumulation: one optimizer step per this many batches (effective "
        "batch = batch_size x accumulate); lr schedules count optimizer steps.",
    )
    ema: EmaConfig | None = Field(
        None,
        description="{decay: 0.999}: keep an EMA of the weights, validate it beside the raw weights "
        "every epoch, and let the better of the two (by train.monitor) stand for the epoch; best.pt "
        "records which won (`weights`: ema | raw). null = off.",
    )
    mixup_alpha: float = Field(
        0.0, ge=0, le=10, description="MixUp on training batches with this Beta alpha (0 = off; e.g. 0.2)."
    )
    cutmix_alpha: float = Field(
        0.0,
        ge=0,
        le=10,
        description="CutMix on training batches with this Beta alpha (0 = off; e.g. 1.0); with "
        "mixup_alpha too, each batch gets one of the two at random. Accuracy stays on hard labels.",
    )
    channels_last: Literal["auto"] | bool = Field(
        "auto",
        description="NHWC memory layout for the model and its input batches; auto = on for CUDA "
        "(tensor cores prefer it), off on CPU and MPS.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model (a one-off compile cost, then faster steps on CUDA; "
        "needs a C++ compiler on CPU).",
    )
    nan_policy: Literal["stop", "skip_batch"] = Field(
        "stop",
        description="A non-finite training loss: stop (exit 1, best.pt kept) or skip_batch "
        "(no step for that batch, counted and reported; an epoch with every batch skipped stops).",
    )
    deterministic: bool = Field(
        False,
        description="torch.use_deterministic_algorithms(True) (warn-only where an op has no "
        "deterministic kernel) and cuDNN benchmark off; slower on GPU, CPU runs repeat without it.",
    )
    unfreeze_at_epoch: int | None = Field(
        None,
        ge=2,
        le=MAX_EPOCHS,
        description="Unfreeze a frozen backbone from this epoch on (backbone lr = lr x "
        "optimizer.backbone_lr_mult); null = stay as model.freeze says.",
    )

    @model_validator(mode="after")
    def _smoothing(self) -> TrainConfig:
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ValueError("label_smoothing applies to loss cross_entropy only")
        if (self.mixup_alpha or self.cutmix_alpha) and self.loss == "bce_with_logits":
            raise ValueError("mixup_alpha / cutmix_alpha need loss cross_entropy or nll")
        return self


class OutputConfig(Section):
    """Where runs are written."""

    dir: str = Field("runs", description="Parent folder of run directories.")
    name: str | None = Field(None, description="Run name (runs/<name>); null = the config file's name.")
    plots: bool = Field(
        True, description="Draw curves and the confusion matrix into <run>/plots/ when training ends."
    )

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and (not value or os.sep in value or value in (".", "..")):
            raise ValueError("a run name is a plain folder name")
        return value


class LoggingConfig(Section):
    """Where epoch metrics go besides metrics.csv (always written)."""

    tensorboard: bool = Field(
        False,
        description="Also write TensorBoard scalars to <run>/tensorboard/ (needs the tensorboard "
        "package: pip install cnnctl[tensorboard]).",
    )


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


# --------------------------------------------------------------------------------------
# Checks that need two keys: the input size against the model and the augmentation. They run
# here when the config alone gives the input size, and again where the data is read or the
# network is built (cnnctl/models/simple.py) for the sizes only the data knows.
# --------------------------------------------------------------------------------------


def small_cnn_features(
    input_shape: Sequence[int], channels: Sequence[int], kernel_size: int, padding: int, pool: int
) -> tuple[int, int]:
    """(H, W) of small_cnn's last feature map for a (C, H, W) input. A conv kernel larger than
    its padded input, or a pool window larger than its feature map, is a KeyError_ naming the
    key to change (torch would fail mid-build, or allocate the kernel first)."""
    h, w = input_shape[1], input_shape[2]
    too_small = (
        f"a {'x'.join(map(str, input_shape))} input is too small for {len(channels)} "
        f"conv blocks with kernel_size {kernel_size}, padding {padding}, pool {pool}"
    )
    for block in range(1, len(channels) + 1):
        if min(h, w) + 2 * padding < kernel_size:
            raise KeyError_(
                "model.kernel_size",
                f"{too_small}: block {block} gets {h}x{w}, {h + 2 * padding}x{w + 2 * padding} padded, "
                "less than the kernel; use a smaller model.kernel_size, more model.padding, fewer "
                "model.channels or a larger data.image_size",
            )
        h, w = h + 2 * padding - kernel_size + 1, w + 2 * padding - kernel_size + 1
        if pool > 1:
            if min(h, w) < pool:
                raise KeyError_(
                    "model.pool",
                    f"{too_small}: block {block}'s conv output is {h}x{w}, less than the pool window; "
                    "use fewer model.channels, a smaller model.pool or a larger data.image_size",
                )
            h, w = h // pool, w // pool
    return h, w


def small_model_parameters(model: Mapping[str, Any], input_shape: Sequence[int], outputs: int) -> int:
    """Parameters of small_cnn / mlp (the resolved `model` section as plain data), computed
    before anything is allocated; small_cnn's geometry is checked on the way."""
    c, h, w = input_shape
    total = 0
    if model["name"] == "small_cnn":
        kernel, previous = int(model["kernel_size"]), c
        for width in model["channels"]:
            total += kernel * kernel * previous * width + (2 if model["batch_norm"] else 1) * width
            previous = width
        fh, fw = small_cnn_features(input_shape, model["channels"], kernel, model["padding"], model["pool"])
        features = previous * fh * fw
    else:
        features = c * h * w
    for width in [*model["hidden"], outputs]:
        total += (features + 1) * width
        features = width
    return total


def check_small_model(model: Mapping[str, Any], input_shape: Sequence[int], outputs: int) -> None:
    """KeyError_ when small_cnn / mlp does not fit `input_shape` or is absurdly large."""
    params = small_model_parameters(model, input_shape, outputs)
    if params > MAX_PARAMETERS:
        shape = "x".join(map(str, input_shape))
        more = ", add model.channels blocks or a larger model.pool" if model["name"] == "small_cnn" else ""
        raise KeyError_(
            "model.hidden",
            f"{model['name']} would have {params:,} parameters for a {shape} input (at most "
            f"{MAX_PARAMETERS:,}); use smaller model.hidden widths or data.image_size{more}",
        )


def config_input_shape(data: DataConfig, native: bool = True) -> tuple[int, int, int] | None:
    """(C, H, W) the model gets when the config says it (C: at least that): data.image_size,
    csv's image_shape, and with `native` the sources' default sizes; None when only the data
    knows (a torchvision dataset's or a csv file's own size)."""
    shape = data.image_shape if data.source == "csv" else None
    size: Any = data.image_size
    if size is None and shape:
        size = (shape[1], shape[2])
    if size is None and native:
        size = NATIVE_SIZE.get(data.source)
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    channels = data.channels or (shape[0] if shape else 3 if data.source in NATIVE_SIZE else 1)
    return channels, h, w


def _check_input_fits(cfg: RunConfig) -> None:
    """The input size (when the config gives it) against the augmentation, the synthetic data's
    memory and small_cnn / mlp (these only for a size the config states: validate() of a model
    section alone does not judge it against the default data)."""
    data = cfg.data
    if cfg.model.family() == TORCHVISION and data.image_size is None:
        return  # pretrained weights bring their own input size (resolved at train time)
    shape = config_input_shape(data)
    if shape is None:
        return
    c, h, w = shape
    pad = data.augment.random_crop
    if pad >= min(h, w):
        raise KeyError_(
            "data.augment.random_crop",
            f"{pad} px of reflect padding needs an image larger than that, the input is {h}x{w} "
            f"(data.image_size); use random_crop below {min(h, w)}",
        )
    if (
        data.source == "synthetic"
        and data.num_classes * data.samples_per_class * c * h * w > MAX_SYNTHETIC_BYTES
    ):
        images = data.num_classes * data.samples_per_class
        raise KeyError_(
            "data.samples_per_class",
            f"{images:,} synthetic {c}x{h}x{w} images would hold {images * c * h * w / 2**30:.1f} GiB "
            f"of pixels (at most {MAX_SYNTHETIC_BYTES // 2**30} GiB, generated in memory); lower "
            "data.samples_per_class or data.image_size",
        )
    stated = config_input_shape(data, native=False)
    if cfg.model.family() != TORCHVISION and stated is not None:
        outputs = data.num_classes if data.source == "synthetic" else 2  # at least 2
        check_small_model(cfg.model.to_plain(), stated, outputs)


class RunConfig(Section):
    """Everything one `cnnctl train` needs."""

    data: DataConfig = Field(default_factory=DataConfig)  # type: ignore[arg-type]
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)  # type: ignore[arg-type]
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)  # type: ignore[arg-type]
    train: TrainConfig = Field(default_factory=TrainConfig)  # type: ignore[arg-type]
    output: OutputConfig = Field(default_factory=OutputConfig)  # type: ignore[arg-type]
    logging: LoggingConfig = Field(default_factory=LoggingConfig)  # type: ignore[arg-type]
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seed for data splits, init and data order (torch.manual_seed takes it, and "
        "seed + process rank, as a 64-bit integer).",
        json_schema_extra=_allowed("0 ≤ x ≤ 2^63 − 1"),
    )
    device: str = Field("auto", description="auto (cuda → mps → cpu), cpu, cuda, cuda:N or mps.")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"unknown device '{value}'; allowed: auto, cpu, cuda, cuda:N, mps")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        loss = self.train.loss
        if loss == "nll" and not self.model.log_softmax:
            raise KeyError_("train.loss", "nll needs model.log_softmax: true")
        if loss == "bce_with_logits" and self.model.log_softmax:
            raise KeyError_("train.loss", "bce_with_logits needs model.log_softmax: false")
        binary = self.data.source != "synthetic" or self.data.num_classes == 2
        if loss == "bce_with_logits" and not binary:
            raise KeyError_("train.loss", "bce_with_logits needs 2 classes (data.num_classes: 2)")
        lr, min_lr = self.optimizer.lr, self.scheduler.min_lr
        if self.scheduler.name == "cosine" and isinstance(lr, float) and min_lr > lr:
            raise KeyError_(
                "scheduler.min_lr",
                f"{min_lr} is above optimizer.lr {lr}: the final lr must not exceed the peak",
            )
        _check_input_fits(self)
        return self


# --------------------------------------------------------------------------------------
# Keys named after torch's arguments take torch's defaults. Each entry says which torch
# argument a key carries; tests/test_config.py compares the two defaults with the installed
# torch (so the rule cannot silently rot), and docs/config.md lists them, with the reason for
# every deliberate deviation.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchDefault:
    """`key` (for the selector value `choice`, None = any) carries `target`'s `argument`."""

    key: str
    choice: str | None
    target: str
    argument: str
    deviation: str = ""  # why cnnctl's default differs; empty = the same as torch's

    def value(self) -> Any:
        """cnnctl's default for this key and choice (from the schema)."""
        return default_for(self.key, self.choice)


_SGD, _ADAM, _ADAMW, _RMSPROP = (f"torch.optim.{n}" for n in ("SGD", "Adam", "AdamW", "RMSprop"))
_SCHED = "torch.optim.lr_scheduler."
_LOADER = "torch.utils.data.DataLoader"
_V2 = "torchvision.transforms.v2."
_MIX = (
    "0 = off, so it must be the default; torchvision's alpha=1.0 has no off switch (cnnctl adds the "
    "transform only when alpha > 0)"
)

TORCH_DEFAULTS: tuple[TorchDefault, ...] = (
    *(
        TorchDefault(f"optimizer.{key}", name, target, key)
        for name, target in (("sgd", _SGD), ("adam", _ADAM), ("adamw", _ADAMW), ("rmsprop", _RMSPROP))
        for key in ("lr", "weight_decay")
    ),
    TorchDefault("optimizer.momentum", "sgd", _SGD, "momentum"),
    TorchDefault("optimizer.nesterov", "sgd", _SGD, "nesterov"),
    TorchDefault("optimizer.momentum", "rmsprop", _RMSPROP, "momentum"),
    TorchDefault("optimizer.betas", "adam", _ADAM, "betas"),
    TorchDefault("optimizer.betas", "adamw", _ADAMW, "betas"),
    TorchDefault("scheduler.gamma", "step", _SCHED + "StepLR", "gamma"),
    TorchDefault(
        "scheduler.step_size",
        "step",
        _SCHED + "StepLR",
        "step_size",
        "torch has no default (a required argument); cnnctl drops the lr every 10 epochs",
    ),
    TorchDefault("scheduler.min_lr", "cosine", _SCHED + "CosineAnnealingLR", "eta_min"),
    TorchDefault("scheduler.factor", "plateau", _SCHED + "ReduceLROnPlateau", "factor"),
    TorchDefault("scheduler.patience", "plateau", _SCHED + "ReduceLROnPlateau", "patience"),
    TorchDefault("scheduler.pct_start", "onecycle", _SCHED + "OneCycleLR", "pct_start"),
    TorchDefault("train.label_smoothing", None, "torch.nn.CrossEntropyLoss", "label_smoothing"),
    TorchDefault("train.ema.decay", None, "torch.optim.swa_utils.get_ema_multi_avg_fn", "decay"),
    TorchDefault("train.mixup_alpha", None, _V2 + "MixUp", "alpha", _MIX),
    TorchDefault("train.cutmix_alpha", None, _V2 + "CutMix", "alpha", _MIX),
    TorchDefault("data.augment.randaugment_ops", "randaugment", _V2 + "RandAugment", "num_ops"),
    TorchDefault("data.augment.randaugment_magnitude", "randaugment", _V2 + "RandAugment", "magnitude"),
    TorchDefault("data.augment.autoaugment_policy", "autoaugment", _V2 + "AutoAugment", "policy"),
    TorchDefault(
        "data.batch_size",
        None,
        _LOADER,
        "batch_size",
        "torch's 1 would train one image per step; 64 is the usual small-model batch",
    ),
    TorchDefault(
        "data.num_workers",
        None,
        _LOADER,
        "num_workers",
        "auto = 0 (torch's) for in-memory data, worker processes only where images are decoded",
    ),
    TorchDefault(
        "data.pin_memory", None, _LOADER, "pin_memory", "auto = on for CUDA, where it speeds up copies"
    ),
    TorchDefault(
        "model.kernel_size",
        "small_cnn",
        "torch.nn.Conv2d",
        "kernel_size",
        "torch has no default (a required argument); the default small_cnn is the classic 5x5 MNIST net",
    ),
    TorchDefault(
        "model.padding",
        "small_cnn",
        "torch.nn.Conv2d",
        "padding",
        "2 is 'same' padding for the default 5x5 kernel (28 → 14 → 7 on MNIST), as in the classic net",
    ),
)


def default_for(key: str, choice: str | None = None) -> Any:
    """The schema's default of a dotted key, with its section's selector set to `choice`
    (e.g. `default_for("optimizer.momentum", "sgd")`), as plain data."""
    *sections, name = key.split(".")
    raw: dict[str, Any] = {}
    node: dict[str, Any] = raw
    model: type[BaseModel] = RunConfig
    for part in sections:
        node[part] = {}
        node = node[part]
        model = _models_in(model.model_fields[part].annotation)[0]
    if choice is not None and issubclass(model, Section) and model.selector:
        node[model.selector] = choice
    value: Any = RunConfig.model_validate(raw)
    for part in [*sections, name]:
        value = getattr(value, part)
    return _plain(value)


# --------------------------------------------------------------------------------------
# Loading, overrides and error messages
# --------------------------------------------------------------------------------------


def is_torchvision_classifier(name: str) -> bool:
    """Is `name` a torchvision classification model? (cnnctl.core.catalog: no torch import.)"""
    from cnnctl.core.catalog import torchvision_models

    return name in torchvision_models()


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` → (["a", "b", "c"], YAML-typed value), bounded like a config file."""
    key, sep, raw = item.partition("=")
    try:
        size = len(item.encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes on the command line (surrogate-escaped)
        shown = item.encode("utf-8", "surrogateescape")
        raise ConfigError(f"--set {shown!r}: not valid UTF-8 text; write the override in UTF-8") from None
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {item[:80]!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=3")
    if size > MAX_SET_BYTES:
        raise ConfigError(
            f"--set {key.strip()[:80]}: the override is {size:,} bytes; one value is at most "
            f"{MAX_SET_BYTES:,} bytes (put bulk settings in the config file)"
        )
    return parts, parse_yaml(raw, f"--set {key.strip()}") if raw.strip() else None


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b=c` override set (creating sections as needed)."""
    result: dict[str, Any] = _deep_copy(raw)
    for item in overrides:
        parts, value = parse_override(item)
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; missing, oversized, non-UTF-8 or non-mapping
    files and bad YAML → ConfigError (one line, file and line number)."""
    path = Path(path)
    try:
        if path.exists() and not (path.is_file() or path.is_dir()):  # a FIFO would block forever
            raise ConfigError(f"{path}: not a regular file (a FIFO or device?); give a YAML file")
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # never more, whatever the file is
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as err:
        raise ConfigError(
            f"{path}: cannot read config file ({err.strerror or err.__class__.__name__})"
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES / 2**20:g} MiB; a config is a few KB of YAML "
            "(is this the right file?)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the config as UTF-8"
        ) from None
    parsed = parse_yaml(text, str(path))
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise ConfigError(
            f"{path}: the config must be a YAML mapping of sections (data, model, ...), "
            f"not {_kind(parsed)}; start from `data: {{source: synthetic}}`"
        )
    return parsed


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__} value"


def require_data(raw: Mapping[str, Any], source: str, empty: bool = False) -> None:
    """A config must name its data: no section, or no data.source, is an error, never the
    generated-shapes demo by default."""
    data = raw.get("data")
    if isinstance(data, Mapping) and "source" in data:
        return
    if data is not None and not isinstance(data, Mapping):
        return  # not a mapping: validation says so
    why = (
        "the config is empty"
        if empty
        else "no data section"
        if "data" not in raw
        else "data is empty"
        if data is None
        else "data names no source"
    )
    sources = ", ".join(get_args(DataSource))
    raise ConfigError(
        f"{source}: data.source: missing ({why}); a config must name its data, e.g. the smallest "
        f"valid config is `{SMALLEST_CONFIG}` (sources: {sources})"
    )


def validate(raw: Mapping[str, Any], source: str = "config") -> RunConfig:
    """Validate plain data into a RunConfig; errors become one ConfigError per problem."""
    try:
        return RunConfig.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    except RecursionError:  # not reachable from YAML within MAX_YAML_DEPTH
        raise ConfigError(f"{source}: the config is nested too deeply to validate") from None


def load_config(
    path: str | Path | None, overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None
) -> RunConfig:
    """Load a config file (or start from `base`), apply overrides, validate.

    A file (or, without file and base, the overrides) must name its data (`data.source`);
    `base` is a stored, already validated config (resume) and is taken as it is.
    Relative data paths are taken as given (relative to the working directory) and
    made absolute here, so the resolved config in the run dir points at the same files.
    """
    raw = read_config_file(path) if path is not None else dict(base or {})
    source = str(path) if path is not None else "config"
    empty = not raw
    raw = apply_overrides(raw, overrides)
    if base is not None:
        return _absolute_paths(validate(raw, source))
    # Validation first, so a misspelt `dat:` is told as such; an empty `data:` is no data.
    cfg = validate({k: v for k, v in raw.items() if not (k == "data" and v is None)}, source)
    require_data(raw, source, empty)
    return _absolute_paths(cfg)


def _absolute_paths(cfg: RunConfig) -> RunConfig:
    if cfg.data.root is None:
        return cfg
    root = str(Path(cfg.data.root).expanduser().absolute())
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": root})})


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text, sections in declaration order."""
    return yaml.safe_dump(cfg.to_plain(), sort_keys=False, default_flow_style=None)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel types an annotation may hold (directly or as a union member)."""
    return [
        t for t in (annotation, *get_args(annotation)) if isinstance(t, type) and issubclass(t, BaseModel)
    ]


def _section_for(loc: Sequence[Any]) -> tuple[list[str], type[BaseModel] | None, list[str], bool]:
    """Split a pydantic error location into (field path, model owning the last key, rest,
    whether the location went into a union member that is a section)."""
    model: type[BaseModel] | None = RunConfig
    candidates: list[type[BaseModel]] = []
    path: list[str] = []
    via_member = False
    for i, part in enumerate(loc):
        member = next(
            (c for c in candidates if isinstance(part, str) and re.search(rf"\b{c.__name__}\b", part)),
            None,
        )
        if member is not None:
            model, via_member = member, True
            continue
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return path, model, [str(p) for p in loc[i:]], via_member
        path.append(part)
        candidates = _models_in(model.model_fields[part].annotation)
        model = candidates[0] if len(candidates) == 1 else None
    return path, model, [], via_member


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per distinct problem: `source: dotted.path: what is wrong (allowed ...)`."""
    lines: dict[str, tuple[str, bool]] = {}
    for item in err.errors():
        path, owner, rest, via_member = _section_for(item["loc"])
        kind = item["type"]
        # A union member that is a section only speaks for inputs that are mappings.
        via_member = via_member and kind not in ("model_type", "dict_type", "model_attributes_type")
        error = item.get("ctx", {}).get("error")
        if kind == "extra_forbidden" and owner is not None and rest:
            dotted = ".".join([*path, rest[0]])
            message = f"unknown key; allowed keys here: {', '.join(owner.model_fields)}"
        elif kind == "value_error" and isinstance(error, KeyError_):
            dotted = ".".join([*path, error.key])
            message = str(error)
        else:
            dotted = ".".join(path) or "(top level)"
            message = _describe(item, path)
        # For a union such as `'auto' | {mean, std}`, a mapping's own errors beat "not 'auto'".
        if dotted not in lines or (via_member and not lines[dotted][1]):
            lines[dotted] = (f"{source}: {dotted}: {message}", via_member)
    member_paths = [d for d, (_, via) in lines.items() if via]
    shown = [
        line
        for dotted, (line, via) in lines.items()
        if via or not any(m == dotted or m.startswith(dotted + ".") for m in member_paths)
    ]
    if len(shown) > MAX_ERROR_LINES:
        shown = [*shown[:MAX_ERROR_LINES], f"{source}: ... and {len(shown) - MAX_ERROR_LINES} more problems"]
    return "\n".join(shown)


def _describe(item: Any, path: list[str]) -> str:
    kind = item["type"]
    given = item.get("input")
    if kind == "value_error":
        return str(item["ctx"]["error"])
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping of keys, got {_short(given)}"
    if kind == "literal_error":
        return f"got {_short(given)}; allowed: {item['ctx']['expected']}"
    field = _field_info(path)
    expected = field.description if field is not None else None
    shown = f"got {_short(given)}" if not isinstance(given, dict) else "got a mapping"
    hint = f"; expected: {expected}" if expected else ""
    return f"{item['msg'].lower()} ({shown}){hint}"


def _field_info(path: list[str]) -> Any:
    model: Any = RunConfig
    field = None
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = next(
            (t for t in (field.annotation, *get_args(field.annotation)) if isinstance(t, type)), None
        )
    return field
