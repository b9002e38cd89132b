"""The `csv` and `torchvision` data sources, on tiny files written in each source's real format."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cnnctl.config import DataConfig
from cnnctl.core.errors import DataError
from cnnctl.data import build_splits, prepare_images, torchvision_source
from cnnctl.data.transforms import InputSpec, fit_size, pil_to_uint8, to_mode
from tests.conftest import invoke

# --------------------------------------------------------------------------------------
# Writers: tiny datasets in the sources' own on-disk formats (also used by test_configs)
# --------------------------------------------------------------------------------------


def tiny_images(labels: np.ndarray, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """uint8 (N, C, H, W): a bright band whose row depends on the class, on noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(len(labels), *shape), dtype=np.int64)
    h = shape[1]
    for i, label in enumerate(labels):
        row = int(label) * h // (int(labels.max()) + 1)
        images[i, :, row : row + max(1, h // 4), :] += 180
    return images.clip(0, 255).astype(np.uint8)


def write_csv(
    path: Path,
    labels: list[Any] | np.ndarray,
    pixels: np.ndarray,
    *,
    header: bool = True,
    label_at: int = 0,
    label_name: str = "label",
    fmt: str = "{:d}",
) -> Path:
    """One row per image: `label,pixel1..pixelN` as Fashion-MNIST ships (the label at column
    `label_at`; -1 = last)."""
    flat = pixels.reshape(len(pixels), -1)
    at = label_at if label_at >= 0 else flat.shape[1]

    def row(label: str, values: list[str]) -> str:
        return ",".join([*values[:at], label, *values[at:]])

    lines = [row(label_name, [f"pixel{i + 1}" for i in range(flat.shape[1])])] if header else []
    lines += [
        row(str(label), [fmt.format(v.item()) for v in values])
        for label, values in zip(labels, flat, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_csv(
    path: Path, rows: int = 30, classes: int = 3, shape: tuple[int, int, int] = (1, 8, 8), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(rows) % classes
    images = tiny_images(labels, shape, seed)
    write_csv(path, labels, images)
    return labels, images


def tiny_csv_files(data: DataConfig, tmp_path: Path) -> list[str]:
    """Tiny CSVs in the config's layout (label column, image shape, scale, classes) for each
    file it names; the overrides that point the config at them."""
    shape = (data.image_shape[0], data.image_shape[1], data.image_shape[2]) if data.image_shape else (1, 8, 8)
    count = len(data.classes) if data.classes else 3
    named = isinstance(data.label_column, str)
    overrides = []
    for split in ("train", "val", "test"):
        if split != "train" and getattr(data, split) is None:
            continue
        labels = np.arange(3 * count if split == "train" else count) % count
        pixels = tiny_images(labels, shape, seed=len(overrides))
        path = write_csv(
            tmp_path / f"{split}.csv",
            labels,
            pixels / 255.0 if data.scale == "0-1" else pixels,
            header=named,
            label_at=0 if named else int(data.label_column),
            label_name=str(data.label_column),
            fmt="{:.5f}" if data.scale == "0-1" else "{:d}",
        )
        overrides.append(f"data.{split}={path}")
    return overrides


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed idx-ubyte file (MNIST's format): magic, big-endian dims, bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(
    root: Path, name: str = "MNIST", train: int = 30, test: int = 12, size: int = 8, classes: int = 3
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """root/<name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, as torchvision reads them."""
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, count in (("train", "train", train), ("test", "t10k", test)):
        labels = (np.arange(count) % classes).astype(np.uint8)
        images = tiny_images(labels, (1, size, size), seed=count)[:, 0]
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[split] = (images, labels)
    return written


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, per_batch: int = 4, test: int = 6) -> dict[str, tuple[np.ndarray, list[int]]]:
    """root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}: pickled dicts."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written: dict[str, tuple[np.ndarray, list[int]]] = {}
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    for k, name in enumerate([*batches, "test_batch"]):
        count = test if name == "test_batch" else per_batch
        labels = [(k * per_batch + i) % 10 for i in range(count)]
        data = tiny_images(np.array(labels), (3, 32, 32), seed=k).reshape(count, 3072)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, handle)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch}, handle)
    return written


def data_cfg(**data: Any) -> Any:
    """The data section alone (a whole config would also check the default model against it)."""
    return DataConfig.model_validate(data)


def one_line(err: pytest.ExceptionInfo[DataError]) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


# --------------------------------------------------------------------------------------
# csv
# --------------------------------------------------------------------------------------


def test_csv_reads_pixels_exactly_and_carves_stratified_splits(tmp_path: Path) -> None:
    labels, images = tiny_csv(tmp_path / "train.csv")
    cfg = data_cfg(source="csv", train=str(tmp_path / "train.csv"), val_fraction=0.2, test_fraction=0.2)
    splits = build_splits(cfg, seed=0)
    assert splits.classes == ["0", "1", "2"]
    assert splits.input.shape == (1, 8, 8) and splits.input.resize is None
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert splits.train.images.dtype == torch.uint8 and splits.in_memory
    for part in (splits.train, splits.val, splits.test):
        for image, label in zip(part.images, part.labels, strict=True):
            matches = [i for i in range(len(images)) if torch.equal(torch.from_numpy(images[i]), image)]
            assert len(matches) == 1 and labels[matches[0]] == label
    mean = splits.train.images.double().mean() / 255
    assert splits.input.mean[0] == pytest.approx(float(mean))
    again = build_splits(cfg, seed=0)
    assert torch.equal(again.val.images, splits.val.images)


def test_csv_val_and_test_files_and_named_labels(tmp_path: Path) -> None:
    names = np.array(["dog", "cat", "bird"])
    for split, rows in (("train", 24), ("val", 6), ("test", 9)):
        labels = np.arange(rows) % 3
        write_csv(tmp_path / f"{split}.csv", names[labels], tiny_images(labels, (1, 6, 6), seed=rows))
    cfg = data_cfg(
        source="csv",
        train=str(tmp_path / "train.csv"),
        val=str(tmp_path / "val.csv"),
        test=str(tmp_path / "test.csv"),
    )
    splits = build_splits(cfg, seed=0)
    assert splits.classes == ["bird", "cat", "dog"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 9)
    assert splits.test.labels[:3].tolist() == [2, 1, 0]  # dog, cat, bird


def test_csv_without_header_label_last_and_0_1_values(tmp_path: Path) -> None:
    labels = np.arange(20) % 2
    images = tiny_images(labels, (1, 4, 4))
    write_csv(tmp_path / "t.csv", labels, images / 255.0, header=False, label_at=-1, fmt="{:.6f}")
    splits = build_splits(data_cfg(source="csv", train=str(tmp_path / "t.csv"), label_column=16), 0)
    everything = torch.cat([splits.train.images, splits.val.images])
    assert sorted(map(bytes, everything.numpy())) == sorted(map(bytes, images))  # round(x * 255)
    with pytest.raises(DataError, match="outside 0-255") as err:
        write_csv(tmp_path / "big.csv", labels, images.astype(np.int64) * 2)
        build_splits(data_cfg(source="csv", train=str(tmp_path / "big.csv"), scale="0-255"), 0)
    assert "big.csv: line " in one_line(err)


def test_csv_sparse_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    labels = np.array([10, 3, 7] * 6)
    write_csv(tmp_path / "t.csv", labels, tiny_images(labels, (1, 4, 4)))
    splits = build_splits(data_cfg(source="csv", train=str(tmp_path / "t.csv")), 0)
    assert splits.classes == ["3", "7", "10"]
    assert set(splits.train.labels.tolist()) == {0, 1, 2}


def test_csv_image_shape_classes_channels_and_size(tmp_path: Path) -> None:
    labels = np.arange(24) % 2
    images = tiny_images(labels, (3, 4, 6))
    write_csv(tmp_path / "rgb.csv", labels, images)
    cfg = data_cfg(
        source="csv",
        train=str(tmp_path / "rgb.csv"),
        image_shape=[3, 4, 6],
        classes=["no", "yes"],
        channels=1,
        image_size=[8, 12],
    )
    splits = build_splits(cfg, 0)
    assert splits.classes == ["no", "yes"]
    assert splits.input.shape == (1, 8, 12) and splits.train.images.shape[1:] == (1, 8, 12)
    native = build_splits(data_cfg(source="csv", train=str(tmp_path / "rgb.csv"), image_shape=[3, 4, 6]), 0)
    assert native.input.shape == (3, 4, 6)
    assert sorted(map(bytes, torch.cat([native.train.images, native.val.images]).numpy())) == sorted(
        map(bytes, images)
    )


def test_csv_rebuilt_from_a_checkpoint_spec_follows_the_spec(tmp_path: Path) -> None:
    tiny_csv(tmp_path / "t.csv")
    cfg = data_cfg(source="csv", train=str(tmp_path / "t.csv"), test_fraction=0.2)
    spec = InputSpec(3, (12, 10), None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    splits = build_splits(cfg, 0, spec)
    assert splits.input == spec
    assert splits.test is not None and splits.test.images.shape[1:] == (3, 12, 10)
    plain = build_splits(cfg, 0)
    assert torch.equal(splits.test.labels, plain.test.labels)  # the same carve


def test_prepare_images_matches_the_per_image_pil_path() -> None:
    generator = torch.Generator().manual_seed(0)
    cases = [
        ((1, 28, 28), (3, (32, 32), None)),
        ((3, 32, 32), (1, (16, 16), None)),
        ((3, 20, 30), (3, (16, 16), 18)),
    ]
    for shape, (channels, size, resize) in cases:
        batch = torch.randint(0, 256, (3, *shape), generator=generator, dtype=torch.uint8)
        fast = prepare_images(batch, channels, size, resize)
        for image, got in zip(batch, fast, strict=True):
            array = image.permute(1, 2, 0).numpy()
            pil = Image.fromarray(array[:, :, 0] if shape[0] == 1 else array)
            want = pil_to_uint8(fit_size(to_mode(pil, channels), size, resize))
            assert got.shape == want.shape
            assert (got.int() - want.int()).abs().max() <= 1


CSV_ERRORS = [
    ("missing", None, {}, "missing.csv: file not found"),
    ("empty", "", {}, "the file is empty"),
    ("header only", "label,p1,p2,p3,p4\n", {}, "has a header but no data rows"),
    ("ragged", "label,p1,p2,p3,p4\n0,1,2,3,4\n1,1,2,3\n", {}, "line 3 has 4 values, the first row 5"),
    (
        "not a number",
        "label,p1,p2,p3,p4\n0,1,2,3,4\n1,1,x,3,4\n",
        {},
        "line 3, column 3: 'x' is not a number",
    ),
    ("nan", "label,p1,p2,p3,p4\n0,1,2,3,4\n1,1,nan,3,4\n", {}, "line 3: a pixel value is not a finite"),
    ("no such column", "y,p1,p2,p3,p4\n0,1,2,3,4\n", {}, "no column named 'label' in the header (y, p1"),
    ("no header", "0,1,2,3,4\n1,1,2,3,4\n", {}, "has no header row"),
    ("index out of range", "0,1,2,3,4\n", {"label_column": 5}, "data.label_column 5 is not a column"),
    ("not square", "label,p1,p2,p3\n0,1,2,3\n", {}, "3 pixel columns are not a square"),
    ("shape", "label,p1,p2,p3,p4\n0,1,2,3,4\n", {"image_shape": [1, 3, 3]}, "needs 9 pixel columns"),
    ("negative", "label,p1,p2,p3,p4\n0,1,2,3,4\n1,1,-2,3,4\n", {}, "line 3: pixel values -2..4 are outside"),
    ("fraction label", "label,p1,p2,p3,p4\n0.5,1,2,3,4\n", {}, "label '0.5' is neither"),
    ("not utf-8", "label,p1,p2,p3,p4\n0,1,2,3,4\n1,\udcff,2,3,4\n", {}, "not a UTF-8 text file"),
    (
        "label beyond classes",
        "label,p1,p2,p3,p4\n2,1,2,3,4\n",
        {"classes": ["a", "b"]},
        "label '2' is not 0..1",
    ),
]


@pytest.mark.parametrize(
    ("text", "data", "expected"), [c[1:] for c in CSV_ERRORS], ids=[c[0] for c in CSV_ERRORS]
)
def test_csv_errors_are_one_line_naming_the_file(
    tmp_path: Path, text: str | None, data: dict[str, Any], expected: str
) -> None:
    path = tmp_path / ("missing.csv" if text is None else "train.csv")
    if text is not None:
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    with pytest.raises(DataError) as err:
        build_splits(data_cfg(source="csv", train=str(path), **data), 0)
    message = one_line(err)
    assert message.startswith(f"data.train {path}") and expected in message


def test_csv_val_file_must_match_train(tmp_path: Path) -> None:
    tiny_csv(tmp_path / "train.csv", classes=2)
    write_csv(tmp_path / "val.csv", [0, 5], tiny_images(np.array([0, 1]), (1, 8, 8)))
    cfg = data_cfg(source="csv", train=str(tmp_path / "train.csv"), val=str(tmp_path / "val.csv"))
    with pytest.raises(DataError) as err:
        build_splits(cfg, 0)
    assert "val.csv: line 3: label '5' is not one of data.train's classes [0, 1]" in one_line(err)
    write_csv(tmp_path / "val.csv", [0, 1], tiny_images(np.array([0, 1]), (1, 4, 4)))
    with pytest.raises(DataError, match="16 pixel columns, but data.train has 64"):
        build_splits(cfg, 0)


# --------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_torchvision_mnist_family_from_idx_files(tmp_path: Path, name: str) -> None:
    written = write_mnist(tmp_path, name)
    cfg = data_cfg(source="torchvision", name=name, root=str(tmp_path), val_fraction=0.2)
    splits = build_splits(cfg, 0)
    import torchvision.datasets

    assert splits.classes == getattr(torchvision.datasets, name).classes
    assert splits.input.shape == (1, 8, 8)
    assert (len(splits.train), len(splits.val)) == (24, 6)
    assert splits.test is not None
    assert torch.equal(splits.test.images[:, 0], torch.from_numpy(written["test"][0]))  # official test
    assert splits.test.labels.tolist() == written["test"][1].tolist()
    resized = build_splits(
        data_cfg(source="torchvision", name=name, root=str(tmp_path), channels=3, image_size=12), 0
    )
    assert resized.input.shape == (3, 12, 12) and resized.train.images.shape[1:] == (3, 12, 12)


def test_torchvision_cifar10_from_pickled_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR10 checks every file's md5 before reading it: tiny files cannot pass, so only that
    check is replaced (by "the file exists"); the pickled batches are read as torchvision does."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file()
    )
    written = write_cifar10(tmp_path)
    splits = build_splits(
        data_cfg(source="torchvision", name="CIFAR10", root=str(tmp_path), val_fraction=0.1), 0
    )
    assert splits.classes == CIFAR_NAMES
    assert splits.input.shape == (3, 32, 32)
    assert len(splits.train) + len(splits.val) == 20
    test_data, test_labels = written["test_batch"]
    assert splits.test is not None and splits.test.labels.tolist() == test_labels
    assert torch.equal(splits.test.images, torch.from_numpy(test_data.reshape(-1, 3, 32, 32)))


def test_torchvision_missing_files_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        build_splits(data_cfg(source="torchvision", name="MNIST", root=str(tmp_path / "data")), 0)
    assert one_line(err) == (
        f"data.root {tmp_path / 'data'}: no MNIST files found (torchvision looked in "
        f"{tmp_path / 'data' / 'MNIST' / 'raw'}); set data.download: true, or put the files there"
    )


def test_torchvision_corrupt_files_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path)  # real layout, but the md5 check fails
    with pytest.raises(DataError) as err:
        build_splits(data_cfg(source="torchvision", name="CIFAR10", root=str(tmp_path)), 0)
    assert "fail torchvision's checksum check" in one_line(err)
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03")  # float data
    with pytest.raises(DataError) as err:
        build_splits(data_cfg(source="torchvision", name="MNIST", root=str(tmp_path)), 0)
    assert f"cannot read the MNIST files in {raw}" in one_line(err)


def test_torchvision_failed_download_says_where_to_put_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.mnist

    def offline(url: str, *args: Any, **kwargs: Any) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    cfg = data_cfg(source="torchvision", name="FashionMNIST", root=str(tmp_path), download=True)
    with pytest.raises(DataError) as err:
        build_splits(cfg, 0)
    message = one_line(err)
    assert message.startswith("data.download: downloading FashionMNIST")
    assert "Temporary failure in name resolution" in message
    assert f"put the FashionMNIST files in {tmp_path / 'FashionMNIST' / 'raw'} by hand" in message


def test_torchvision_unknown_name_lists_the_supported_ones() -> None:
    with pytest.raises(DataError) as err:
        build_splits(data_cfg(source="torchvision", name="mnist", root="."), 0)
    assert "unknown torchvision dataset 'mnist'; did you mean MNIST? supported: MNIST, " in one_line(err)
    with pytest.raises(DataError, match="CIFAR10, CIFAR100, SVHN"):
        build_splits(data_cfg(source="torchvision", name="ImageNet", root="."), 0)


class _VariedSet:
    """A dataset without arrays: PIL images of different sizes and modes, like GTSRB."""

    classes = ["left", "right"]

    def __init__(self, root: str, split: str = "train", download: bool = False) -> None:
        if split == "boom":
            raise ImportError("No module named 'scipy'", name="scipy")
        self.count = 10 if split == "train" else 4

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        mode = "RGB" if i % 2 else "L"
        return Image.new(mode, (10 + i, 7 + 2 * i), color=200 if mode == "L" else (200, 10, 10)), i % 2


def test_torchvision_datasets_without_arrays_are_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "Varied", _VariedSet, raising=False)
    known = torchvision_source.Known(3, 16, "varied", torchvision_source.KNOWN["GTSRB"].splits, varied=True)
    monkeypatch.setitem(torchvision_source.KNOWN, "Varied", known)  # type: ignore[arg-type]
    splits = build_splits(
        data_cfg(source="torchvision", name="Varied", root=str(tmp_path), val_fraction=0.2), 0
    )
    assert splits.input.shape == (3, 16, 16) and splits.classes == ["left", "right"]
    assert splits.test is not None and len(splits.test) == 4
    spec = InputSpec(1, (8, 8), None, (0.5,), (0.5,))
    again = build_splits(data_cfg(source="torchvision", name="Varied", root=str(tmp_path)), 0, spec)
    assert again.input == spec and again.train.images.shape[1:] == (1, 8, 8)
    broken = torchvision_source.Known(3, 16, "varied", ({"split": "boom"}, {"split": "boom"}), varied=True)
    monkeypatch.setitem(torchvision_source.KNOWN, "Varied", broken)  # type: ignore[arg-type]
    with pytest.raises(DataError) as err:
        build_splits(data_cfg(source="torchvision", name="Varied", root=str(tmp_path)), 0)
    assert one_line(err) == "data.name Varied: torchvision needs scipy to read it; pip install scipy"


def test_input_size_defaults_to_the_native_size() -> None:
    from cnnctl.data import input_size

    assert input_size(data_cfg(source="torchvision", name="CIFAR10", root=".")) == (32, 32)
    assert input_size(data_cfg(source="torchvision", name="MNIST", root=".", image_size=20)) == (20, 20)
    assert input_size(data_cfg(source="csv", train="x.csv", image_shape=[1, 12, 10])) == (12, 10)


# --------------------------------------------------------------------------------------
# Through the CLI: train, then evaluate with nothing but the checkpoint
# --------------------------------------------------------------------------------------

TINY_MODEL = {"name": "small_cnn", "channels": [4, 8], "kernel_size": 3, "padding": 1, "hidden": [16]}


def write_run_config(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    cfg = {
        "data": {"batch_size": 8, "val_fraction": 0.2, **data},
        "model": TINY_MODEL,
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 3},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def train_and_evaluate(runner: Any, tmp_path: Path, config: Path) -> str:
    sets = ["train.epochs=1", "device=cpu", f"output.dir={tmp_path / 'runs'}"]
    result = invoke(runner, "train", config, *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    checkpoint = tmp_path / "runs" / config.stem / "best.pt"
    evaluated = invoke(runner, "evaluate", checkpoint, "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    return str(evaluated.output)


def test_cli_trains_and_evaluates_a_csv_dataset(runner: Any, tmp_path: Path) -> None:
    tiny_csv(tmp_path / "train.csv")
    labels = np.arange(9) % 3
    write_csv(tmp_path / "test.csv", labels, tiny_images(labels, (1, 8, 8), seed=5))
    config = write_run_config(
        tmp_path,
        "digits",
        {"source": "csv", "train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")},
    )
    output = train_and_evaluate(runner, tmp_path, config)
    assert "the checkpoint's own dataset, test split (9 images)" in output


def test_cli_trains_and_evaluates_tiny_mnist_files(runner: Any, tmp_path: Path) -> None:
    write_mnist(tmp_path / "data")
    config = write_run_config(
        tmp_path, "mnist", {"source": "torchvision", "name": "MNIST", "root": str(tmp_path / "data")}
    )
    output = train_and_evaluate(runner, tmp_path, config)
    assert "the checkpoint's own dataset, test split (12 images)" in output


def _bad_csv(tmp_path: Path, text: str) -> dict[str, Any]:
    (tmp_path / "bad.csv").write_text(text, encoding="utf-8")
    return {"source": "csv", "train": str(tmp_path / "bad.csv")}


CLI_ERRORS = [
    ("missing file", lambda t: {"source": "csv", "train": str(t / "nope.csv")}, "nope.csv: file not found"),
    ("ragged row", lambda t: _bad_csv(t, "label,a,b,c,d\n0,1,2,3,4\n1,2,3\n"), "line 3 has 3 values"),
    (
        "bad label column",
        lambda t: {**_bad_csv(t, "label,a,b,c,d\n0,1,2,3,4\n"), "label_column": "target"},
        "no column named 'target'",
    ),
    (
        "offline, no files",
        lambda t: {"source": "torchvision", "name": "KMNIST", "root": str(t / "none")},
        "no KMNIST files found",
    ),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CLI_ERRORS], ids=[c[0] for c in CLI_ERRORS])
def test_cli_data_errors_are_one_line(runner: Any, tmp_path: Path, make: Any, expected: str) -> None:
    config = write_run_config(tmp_path, "bad", make(tmp_path))
    result = invoke(
        runner, "train", config, "--set", "device=cpu", "--set", f"output.dir={tmp_path / 'runs'}"
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.output
