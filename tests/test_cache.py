"""data.cache: decoded images in memory or on disk give exactly the uncached results,
and the disk cache is keyed by the files and the decode settings."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
import yaml

from cnnctl.config import DataConfig
from cnnctl.data import ArrayDataset, FileDataset, build_splits, cache, check, transforms
from cnnctl.data.synthetic import write_image_folder
from tests.conftest import TINY, invoke, merge


def folder_config(tmp_path: Path, root: Path, mode: str, **data: object) -> Path:
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}, "train": {"epochs": 2}})
    cfg["data"] = {
        "source": "image_folder",
        "root": str(root),
        "image_size": 16,
        "batch_size": 8,
        "val_fraction": 0.25,
        "test_fraction": 0.2,
        "cache": mode,
        "num_workers": 0,
        **data,
    }
    path = tmp_path / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]


@pytest.mark.parametrize("augment", [None, {"hflip": True, "rotation": 10}])
def test_cached_runs_equal_the_uncached_run(runner, tmp_path: Path, augment: dict | None) -> None:
    write_image_folder(tmp_path / "images", 3, 12, 24, seed=0, noise=0.1)
    extra = {"augment": augment} if augment else {}
    for mode in ("off", "memory", "disk"):
        result = invoke(
            runner, "train", folder_config(tmp_path, tmp_path / "images", mode, **extra), "--name", mode
        )
        assert result.exit_code == 0, result.output
    off, memory, disk = (metrics(tmp_path / "runs" / m) for m in ("off", "memory", "disk"))
    assert off == memory == disk


def test_memory_cache_holds_the_same_pixels(tmp_path: Path) -> None:
    write_image_folder(tmp_path, 3, 6, 20, seed=1, noise=0.1)
    base = {"source": "image_folder", "root": str(tmp_path), "image_size": 12, "val_fraction": 0.3}
    off = build_splits(DataConfig.model_validate({**base, "cache": "off"}), 0)
    on = build_splits(DataConfig.model_validate({**base, "cache": "memory"}), 0)
    assert isinstance(off.train, FileDataset) and isinstance(on.train, ArrayDataset)
    assert off.input == on.input  # normalize auto: the same statistics
    for i in range(len(off.train)):
        a, b = off.train[i], on.train[i]
        assert torch.equal(a[0], b[0]) and a[1] == b[1]
    auto = build_splits(DataConfig.model_validate({**base, "cache": "auto"}), 0)
    assert isinstance(auto.train, ArrayDataset)  # a small folder fits


def test_disk_cache_is_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNCTL_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "images"
    write_image_folder(root, 2, 5, 20, seed=2, noise=0.1)
    cfg = {
        "source": "image_folder",
        "root": str(root),
        "image_size": 12,
        "val_fraction": 0.3,
        "cache": "disk",
    }
    decoded: list[str] = []  # every file decode, by the image check or by the cache
    original = transforms.load_for_model

    def counting(path, spec):  # type: ignore[no-untyped-def]
        decoded.append(str(path))
        return original(path, spec)

    monkeypatch.setattr(check, "load_for_model", counting)
    monkeypatch.setattr(cache, "load_for_model", counting)
    first = build_splits(DataConfig.model_validate(cfg), 0)
    # a cold folder is decoded once: the check's decodes fill the cache
    assert len(decoded) == 10 and len(set(decoded)) == 10
    assert len(list((tmp_path / "cache" / "images").glob("*.pt"))) == 1
    again = build_splits(DataConfig.model_validate(cfg), 0)
    assert len(decoded) == 10  # verdicts and images from the caches, nothing decoded
    assert torch.equal(first.train.images, again.train.images)

    one = next(root.rglob("*.png"))
    os.utime(one, ns=(one.stat().st_atime_ns, one.stat().st_mtime_ns + 10**9))  # a changed file
    changed = build_splits(DataConfig.model_validate(cfg), 0)
    # the check re-reads the changed file, the cache decodes the other nine
    assert len(decoded) == 20 and decoded[10:].count(str(one)) == 1
    assert torch.equal(changed.train.images, first.train.images)
    build_splits(DataConfig.model_validate({**cfg, "image_size": 10}), 0)  # other decode settings
    assert len(decoded) == 30
    assert len(list((tmp_path / "cache" / "images").glob("*.pt"))) == 3


def test_check_decodes_in_worker_processes_to_the_same_pixels(tmp_path: Path) -> None:
    """The one-pass check (workers) yields exactly the images and verdicts of the serial path."""
    from cnnctl.data.transforms import InputSpec

    root = tmp_path / "images"
    write_image_folder(root, 2, 40, 20, seed=4, noise=0.1)
    next(p for p in root.iterdir() if p.is_dir()).joinpath("broken.png").write_bytes(b"\x89PNG broken")
    files = sorted(str(p) for p in root.rglob("*.png"))
    spec = InputSpec(3, (12, 12), None, (0.0,), (1.0,))
    serial = check.check_files(files, use_cache=False, decode=spec, workers=0)
    parallel = check.check_files(files, use_cache=False, decode=spec, workers=2)
    assert serial.bad == parallel.bad and len(parallel.bad) == 1
    assert serial.good == parallel.good and set(parallel.decoded) == set(parallel.good)
    for path in parallel.good:
        assert torch.equal(parallel.decoded[path], transforms.load_for_model(path, spec))
        assert torch.equal(serial.decoded[path], parallel.decoded[path])


def test_auto_falls_back_to_files_when_too_big(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnctl.data.transforms import InputSpec

    spec = InputSpec(3, (224, 224), 256, (0.0,), (1.0,))
    monkeypatch.setattr(cache, "physical_ram", lambda: 2**30)
    assert cache.resolve_mode("auto", 100, spec) == "memory"
    assert cache.resolve_mode("auto", 10_000, spec) == "off"  # 1.5 GB > a quarter of 1 GiB
    assert cache.resolve_mode("disk", 10_000, spec) == "disk"


def transfer_config(tmp_path: Path, root: Path, **model: object) -> Path:
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}, "train": {"epochs": 3}})
    cfg["data"] = {
        "source": "image_folder",
        "root": str(root),
        "image_size": 64,
        "batch_size": 8,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        "normalize": "imagenet",
    }
    cfg["model"] = {
        "name": "resnet18",
        "freeze": "backbone",
        "head": {"hidden": [16], "dropout": 0.2},
        **model,
    }
    path = tmp_path / "transfer.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cached_features_train_the_head_exactly_as_the_full_network(runner, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "images", 3, 8, 32, seed=3, noise=0.1)
    config = transfer_config(tmp_path, tmp_path / "images")
    cached = invoke(runner, "train", config, "--name", "cached")
    assert cached.exit_code == 0, cached.output
    assert "frozen backbone run once over 24 images" in cached.output
    full = invoke(runner, "train", config, "--name", "full", "--set", "model.cache_features=off")
    assert full.exit_code == 0, full.output
    a, b = metrics(tmp_path / "runs" / "cached"), metrics(tmp_path / "runs" / "full")
    for row_a, row_b in zip(a, b, strict=True):
        assert {k: float(v) for k, v in row_a.items()} == pytest.approx(
            {k: float(v) for k, v in row_b.items()}, rel=1e-4
        )

    # best.pt holds the whole network: evaluated end to end, it gives the run's test figures.
    summary = yaml.safe_load((tmp_path / "runs" / "cached" / "summary.json").read_text())
    evaluated = invoke(runner, "evaluate", tmp_path / "runs" / "cached", "--json", "-", "--no-plots")
    assert evaluated.exit_code == 0, evaluated.output
    assert yaml.safe_load(evaluated.output)["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-4)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"data.augment.hflip": "true"}, "data.augment changes the backbone's input every epoch"),
        ({"train.unfreeze_at_epoch": "2"}, "train.unfreeze_at_epoch will unfreeze the backbone"),
    ],
)
def test_features_are_not_cached_when_the_backbone_input_or_weights_change(
    runner, tmp_path: Path, changes: dict[str, str], reason: str
) -> None:
    write_image_folder(tmp_path / "images", 3, 4, 32, seed=3, noise=0.1)
    config = transfer_config(tmp_path, tmp_path / "images")
    sets = [part for key, value in changes.items() for part in ("--set", f"{key}={value}")]
    result = invoke(runner, "train", config, *sets, "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert f"running the frozen backbone every epoch ({reason})" in result.output
