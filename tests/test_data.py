"""Data sources, splits and loaders."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from cnnctl.config import validate
from cnnctl.data import build_splits, make_loader, stratified_split
from cnnctl.data.synthetic import write_image_folder
from cnnctl.errors import DataError
from tests.conftest import invoke


def data_cfg(**data):
    return validate({"data": data}).data


def test_stratified_split_is_per_class_and_seeded() -> None:
    labels = [0] * 40 + [1] * 20
    rest, val, test = stratified_split(labels, [0.25, 0.1], seed=3)
    assert Counter(labels[i] for i in val) == {0: 10, 1: 5}
    assert Counter(labels[i] for i in test) == {0: 4, 1: 2}
    assert sorted(rest + val + test) == list(range(60))
    assert stratified_split(labels, [0.25, 0.1], seed=3) == [rest, val, test]
    assert stratified_split(labels, [0.25, 0.1], seed=4) != [rest, val, test]


def test_synthetic_is_deterministic_and_shaped() -> None:
    cfg = data_cfg(num_classes=3, samples_per_class=10, image_size=20, test_fraction=0.2, channels=1)
    a, b = build_splits(cfg, seed=1), build_splits(cfg, seed=1)
    assert a.classes == ["circle", "square", "triangle"]
    assert a.input.shape == (1, 20, 20)
    assert (len(a.train), len(a.val), len(a.test)) == (21, 3, 6)
    assert torch.equal(a.train.images, b.train.images) and a.train.images.dtype == torch.uint8
    assert not torch.equal(a.train.images, build_splits(cfg, seed=2).train.images)


def test_normalize_options() -> None:
    auto = build_splits(data_cfg(samples_per_class=5), 0).input
    images = build_splits(data_cfg(samples_per_class=5), 0).train.images.double() / 255
    assert auto.mean == pytest.approx(images.mean(dim=(0, 2, 3)).tolist())
    assert build_splits(data_cfg(samples_per_class=5, normalize="imagenet"), 0).input.mean == (
        0.485,
        0.456,
        0.406,
    )
    fixed = build_splits(data_cfg(samples_per_class=5, normalize={"mean": [0.5] * 3, "std": [0.25] * 3}), 0)
    assert fixed.input.std == (0.25, 0.25, 0.25)
    with pytest.raises(DataError, match="1 mean/std value"):
        build_splits(data_cfg(samples_per_class=5, normalize={"mean": [0.5], "std": [0.2]}), 0)


def test_tensor_loader_order_depends_on_seed_and_epoch() -> None:
    splits = build_splits(data_cfg(samples_per_class=20), 0)
    loader = make_loader(splits.train, 16, shuffle=True, seed=0, workers=0, pin=False)

    def labels(epoch: int) -> list[int]:
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader]).tolist()

    assert labels(1) == labels(1) and labels(1) != labels(2)
    assert sorted(labels(1)) == sorted(splits.train.targets())


def test_image_folder_flat_layout_is_split_by_fractions(tmp_path: Path) -> None:
    write_image_folder(tmp_path, 3, 10, 16, seed=0, noise=0.1)
    (tmp_path / "circle" / ".DS_Store").write_bytes(b"junk")  # hidden files are skipped
    (tmp_path / "circle" / "notes.txt").write_text("not an image")
    cfg = data_cfg(
        source="image_folder", root=str(tmp_path), image_size=12, val_fraction=0.2, test_fraction=0.2
    )
    splits = build_splits(cfg, 0)
    assert splits.classes == ["circle", "square", "triangle"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    image, label = splits.train[0]
    assert image.shape == (3, 12, 12) and image.dtype == torch.uint8 and label == 0


def test_image_folder_uses_train_valid_test_and_matches_classes_by_name(tmp_path: Path) -> None:
    write_image_folder(
        tmp_path, 3, 10, 16, seed=0, noise=0.1, splits={"train": 0.6, "valid": 0.2, "test": 0.2}
    )
    cfg = data_cfg(
        source="image_folder", root=str(tmp_path), classes=["triangle", "circle", "square"], cache="off"
    )
    splits = build_splits(cfg, 0)
    assert splits.classes == ["triangle", "circle", "square"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert splits.val.files[0].startswith(str(tmp_path / "valid" / "circle"))
    assert splits.val.labels[0] == 1  # circle is label 1 in the configured order


def test_image_folder_missing_test_is_skipped_and_missing_val_is_carved(tmp_path: Path) -> None:
    write_image_folder(tmp_path, 2, 10, 16, seed=0, noise=0.1, splits={"train": 1.0})
    splits = build_splits(data_cfg(source="image_folder", root=str(tmp_path), val_fraction=0.3), 0)
    assert splits.test is None and (len(splits.train), len(splits.val)) == (14, 6)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        build_splits(data_cfg(source="image_folder", root=str(tmp_path / "nope")), 0)
    write_image_folder(tmp_path, 2, 4, 16, seed=0, noise=0.1, splits={"train": 0.5, "val": 0.5})
    (tmp_path / "val" / "square").rename(tmp_path / "val" / "blob")
    with pytest.raises(DataError, match=r"classes \['blob', 'circle'\] differ from train's"):
        build_splits(data_cfg(source="image_folder", root=str(tmp_path)), 0)
    (tmp_path / "val" / "blob").rename(tmp_path / "val" / "square")
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) with no images \(empty\)"):
        build_splits(data_cfg(source="image_folder", root=str(tmp_path)), 0)


def test_data_synth_command_writes_an_image_folder(runner, tmp_path: Path) -> None:
    result = invoke(
        runner, "data", "synth", tmp_path / "out", "--classes", "3", "--per-class", "20", "--splits"
    )
    assert result.exit_code == 0, result.output
    assert "wrote 42 train, 9 val, 9 test" in result.output
    files = [p.relative_to(tmp_path / "out").parts[:2] for p in (tmp_path / "out").rglob("*.png")]
    assert Counter(split for split, _ in files) == {"train": 42, "val": 9, "test": 9}
    assert {cls for _, cls in files} == {"circle", "square", "triangle"}
