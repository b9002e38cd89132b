"""`data`: where the images come from and how they are shaped, split and batched; and the
input shape the config alone implies."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cnnctl.config.augment import AugmentConfig
from cnnctl.config.base import KeyError_, Section, allowed_range, short_repr
from cnnctl.config.limits import MAX_BATCH, MAX_FOLDS, MAX_SIDE, MAX_WORKERS, SYNTHETIC_MAX_PER_CLASS

DataSource = Literal["synthetic", "image_folder", "manifest", "csv", "torchvision"]
NATIVE_SIZE = {
    "synthetic": 32,
    "image_folder": 64,
    "manifest": 64,
}  # image_size null (data/__init__.DEFAULT_SIZE)
SMALLEST_CONFIG = "data: {source: synthetic}"  # what an empty config is told to start from
REQUIRED_KEYS = ("data.source",)
MANIFEST_SUFFIXES = (
    ".csv",
    ".jsonl",
    ".parquet",
)  # a config file must set these (load_config → require_data)


class NormalizeStats(Section):
    """Explicit per-channel normalisation statistics, in the 0-1 pixel scale."""

    mean: list[float] = Field(
        description="Per-channel mean (one value per channel).",
        json_schema_extra=allowed_range("1 or 3 values"),
    )
    std: list[float] = Field(
        description="Per-channel standard deviation (all > 0).",
        json_schema_extra=allowed_range("as many values as mean, each x > 0"),
    )

    @model_validator(mode="after")
    def _check(self) -> NormalizeStats:
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise ValueError("mean and std need the same length, 1 or 3 values")
        if any(s <= 0 for s in self.std):
            raise ValueError("every std value must be > 0")
        return self


class CvFold(Section):
    """One fold of K-fold cross-validation: what `cnnctl cv` sets in each of its K runs."""

    folds: int = Field(ge=2, le=MAX_FOLDS, description="K, the number of folds.")
    fold: int = Field(
        ge=0,
        description="The fold this run validates on (0 ≤ fold < folds); it trains on the other K - 1.",
        json_schema_extra=allowed_range("0 ≤ x < folds"),
    )

    @model_validator(mode="after")
    def _fold(self) -> CvFold:
        if self.fold >= self.folds:
            raise KeyError_(
                "fold", f"got {self.fold}; fold counts from 0, so it is below folds ({self.folds})"
            )
        return self


class DataConfig(Section):
    """Where the images come from and how they are shaped, split and batched."""

    selector = "source"
    applies_to = {
        "root": ("image_folder", "manifest", "torchvision"),
        "classes": ("image_folder", "manifest", "csv"),
        "extensions": ("image_folder",),
        "split_folders": ("image_folder",),
        "check_images": ("image_folder", "manifest"),
        "cache": ("image_folder", "manifest"),
        "num_classes": ("synthetic",),
        "samples_per_class": ("synthetic",),
        "noise": ("synthetic",),
        "train": ("csv", "manifest"),
        "val": ("csv", "manifest"),
        "test": ("csv", "manifest"),
        "label_column": ("csv", "manifest"),
        "path_column": ("manifest",),
        "group_column": ("manifest",),
        "label_separator": ("manifest",),
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
        description="image_folder: folder with class subfolders (or train/val/test); manifest: the "
        "folder relative paths start from (null = each manifest's own folder); "
        "torchvision: where the dataset files are (or go, with download).",
    )
    image_size: int | list[int] | None = Field(
        None,
        description="Model input size, N or [H, W]; null = the source's native size "
        "(synthetic 32, image_folder and manifest 64, csv and torchvision: the data's own size).",
        json_schema_extra=allowed_range(f"each side 4 ≤ x ≤ {MAX_SIDE}"),
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
    tta: Literal["auto"] | list[Literal["hflip", "vflip", "crops", "shifts"]] = Field(
        "auto",
        description="Test-time augmentation views for `evaluate --tta` / `predict --tta` (the "
        "probabilities averaged over the image itself and each view): hflip, vflip, crops (four "
        "corner crops of 7/8 the side, resized back), shifts (four reflect-padded shifts); auto = "
        "the views the training augmentation taught the model (hflip / vflip when it flipped, "
        "crops with random_resized_crop, shifts with random_crop), none without any.",
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
    cv: CvFold | None = Field(
        None,
        description="K-fold cross-validation, {folds: K, fold: k}: val is fold k of a K-fold split of "
        "train and the given val split together (stratified; whole groups with data.group_column) "
        "and val_fraction is unused; test is carved first, as without it, so every fold tests on "
        "the same images. `cnnctl cv` runs every fold; null = an ordinary train / val split.",
    )
    batch_size: int | Literal["auto"] = Field(
        64,
        description="Samples per batch (per process); auto = the largest power of two that trains "
        "on the GPU (probed), 64 on CPU/MPS.",
        json_schema_extra=allowed_range(f"1 ≤ x ≤ {MAX_BATCH}, or auto"),
    )
    num_workers: int | Literal["auto"] = Field(
        "auto",
        description=(
            "DataLoader worker processes; auto = 0 for in-memory data, else min(4, cpus - 1) while "
            "training and min(8, cpus) for the one decode pass of check_images / cache."
        ),
        json_schema_extra=allowed_range(f"0 ≤ x ≤ {MAX_WORKERS}, or auto"),
    )
    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle",
        description="The training order: shuffle (each image once per epoch); balanced (as many draws "
        "per epoch, with replacement, every class equally likely; split across processes under DDP).",
    )
    pin_memory: bool | Literal["auto"] = Field(
        "auto", description="Page-locked batches for faster host→GPU copies; auto = on for CUDA."
    )
    classes: list[str] | None = Field(
        None,
        description="image_folder: fixed class order (must match the folder names); manifest: "
        "fixed class order (must name every label); csv: names of labels 0..K-1.",
    )
    extensions: list[str] | None = Field(
        None, description="image_folder: file extensions to read; null = common image types."
    )
    split_folders: dict[Literal["train", "val", "test"], str] | None = Field(
        None,
        description="image_folder: the folder (under root) that holds each split, e.g. {train: train, "
        "test: val}; a split not named is carved from train; null = train/, val/ (or valid/, "
        "validation/) and test/ when root has a train/ folder.",
    )
    cache: Literal["auto", "memory", "disk", "off"] = Field(
        "auto",
        description="image_folder, manifest: decode every image once to the input size and keep the uint8 "
        "pixels in memory (memory), also on disk keyed by files + sizes + mtimes + decode settings "
        "(disk), memory when it fits a quarter of RAM (auto), or decode every epoch (off).",
    )
    check_images: bool = Field(
        True,
        description="image_folder, manifest: decode every image once before training and skip (listing "
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
    train: str | None = Field(
        None,
        description="csv: the training CSV file; manifest: the training manifest, one row per image "
        "(.csv, .jsonl or .parquet).",
    )
    val: str | None = Field(
        None, description="csv, manifest: the validation file; null = carved from train by val_fraction."
    )
    test: str | None = Field(
        None, description="csv, manifest: the test file; null = carved by test_fraction or none."
    )
    label_column: str | int = Field(
        "label", description="csv: the label column, by name or 0-based index; manifest: by name."
    )
    path_column: str = Field(
        "path",
        description="manifest: the column of image paths (absolute, or relative to data.root, else "
        "to the manifest's folder).",
    )
    group_column: str | None = Field(
        None,
        description="manifest: rows sharing a value here (a patient, a camera, a video) never fall "
        "in two splits; splits stay as close to stratified as the groups allow.",
    )
    label_separator: str = Field(
        "|",
        description="manifest, task multi_label: what separates an image's labels in a text label "
        "('cat|dog'); a JSONL or Parquet label may also be a list (['cat', 'dog']). Also joins the "
        "predicted labels in a prediction file.",
    )
    image_shape: list[int] | None = Field(
        None,
        description="csv: [C, H, W] of the pixel columns; null = 1 x N x N from the column count.",
        json_schema_extra=allowed_range(f"C 1 or 3, H and W 1 ≤ x ≤ {MAX_SIDE}"),
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

    @field_validator("label_separator")
    @classmethod
    def _separator(cls, value: str) -> str:
        if not value or not value.strip() or any(c in value for c in "\r\n\0"):
            raise ValueError(f"got {short_repr(value)}; a separator is visible text on one line, e.g. '|'")
        return value

    @field_validator("image_size")
    @classmethod
    def _size(cls, value: int | list[int] | None) -> int | list[int] | None:
        sizes = [value] if isinstance(value, int) else (value or [])
        if isinstance(value, list) and len(value) != 2:
            raise ValueError("image_size is N or [H, W]")
        if any(not 4 <= s <= MAX_SIDE for s in sizes):
            raise ValueError(f"got {short_repr(value)}; each side of image_size must be 4-{MAX_SIDE} pixels")
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
        if self.source == "manifest":
            self._check_manifest()
        if self.split_folders is not None:
            self._check_split_folders(self.split_folders)
        if self.source == "torchvision" and not self.name:
            raise KeyError_("name", "source torchvision needs data.name, e.g. MNIST or CIFAR10")
        if self.image_shape is not None and (
            len(self.image_shape) != 3
            or self.image_shape[0] not in (1, 3)
            or not all(1 <= side <= MAX_SIDE for side in self.image_shape[1:])
        ):
            raise KeyError_("image_shape", f"image_shape is [C, H, W] with C 1 or 3, H and W 1-{MAX_SIDE}")
        return self

    @staticmethod
    def _check_split_folders(folders: Mapping[Any, str]) -> None:
        if "train" not in folders:
            raise KeyError_("split_folders", "split_folders must name the train folder, e.g. {train: train}")
        for role, name in folders.items():
            parts = name.replace("\\", "/").split("/")
            if not name or name.startswith("/") or ".." in parts:
                raise KeyError_(
                    "split_folders", f"{role}: {name!r} must be a folder name under data.root (no '..')"
                )
        if len({posixpath.normpath(name.replace("\\", "/")) for name in folders.values()}) != len(folders):
            raise KeyError_("split_folders", f"two splits name the same folder ({folders})")

    def _check_manifest(self) -> None:
        if not self.train:
            raise KeyError_("train", "source manifest needs data.train (a .csv, .jsonl or .parquet file)")
        if not isinstance(self.label_column, str):
            raise KeyError_("label_column", "manifest: label_column is a column name, not an index")
        named = {"path_column": self.path_column, "label_column": self.label_column}
        if self.group_column is not None:
            named["group_column"] = self.group_column
        if len(set(named.values())) != len(named):
            raise KeyError_("path_column", f"manifest: the columns must differ (got {named})")
        for key in ("train", "val", "test"):
            value = getattr(self, key)
            if value is not None and not value.lower().endswith(MANIFEST_SUFFIXES):
                raise KeyError_(key, f"manifest: {value!r} must end in {', '.join(MANIFEST_SUFFIXES)}")


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
