"""The example configs in configs/ and the generated reference in docs/config.md."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cnnctl.config import RunConfig, load_config
from cnnctl.data.synthetic import write_image_folder, write_multi_label_manifest
from cnnctl.workflows import train as workflows

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_validates(path: Path) -> None:
    load_config(path)


def tiny_data(cfg: RunConfig, tmp_path: Path) -> list[str]:
    """Overrides that point a config's data at a few generated images of its own source."""
    source = cfg.data.source
    common = ["data.batch_size=8", "data.num_workers=0"]
    if source == "synthetic":
        return [*common, "data.samples_per_class=6", "data.image_size=16"]
    if source == "image_folder" and cfg.data.split_folders:
        for n, folder in enumerate(cfg.data.split_folders.values()):
            write_image_folder(tmp_path / "images" / folder, 2, 6, 24, seed=n, noise=0.05)
        return [*common, f"data.root={tmp_path / 'images'}", "data.val_fraction=0.3"]
    if source == "manifest" and cfg.task == "multi_label":
        manifest = write_multi_label_manifest(tmp_path / "shapes", 3, 24, 24, seed=0)
        return [*common, f"data.train={manifest}", "data.val_fraction=0.3", "data.test_fraction=null"]
    if source == "manifest":
        write_image_folder(tmp_path / "images", 3, 6, 24, seed=0, noise=0.05)
        files = sorted((tmp_path / "images").rglob("*.png"))
        lines = [f"{cfg.data.path_column},{cfg.data.label_column},{cfg.data.group_column or 'group'}"]
        lines += [f"images/{f.parent.name}/{f.name},{f.parent.name},g{n // 2}" for n, f in enumerate(files)]
        (tmp_path / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [
            *common,
            f"data.train={tmp_path / 'train.csv'}",
            "data.val_fraction=0.3",
            "data.test_fraction=null",
        ]
    if source == "image_folder":
        names = cfg.data.classes or None
        write_image_folder(tmp_path / "images", 3, 6, 24, seed=0, noise=0.05)
        if names:  # the config fixes class names: give the folders those names
            for old, new in zip(sorted(p.name for p in (tmp_path / "images").iterdir()), names, strict=False):
                (tmp_path / "images" / old).rename(tmp_path / "images" / new)
        return [
            *common,
            f"data.root={tmp_path / 'images'}",
            "data.val_fraction=0.3",
            "data.test_fraction=null",
        ]
    if source == "csv":
        from tests.test_data_sources import tiny_csv_files

        return [*common, *tiny_csv_files(cfg.data, tmp_path)]
    if source == "torchvision":
        from tests.test_data_sources import write_mnist

        if cfg.data.name not in ("MNIST", "FashionMNIST", "KMNIST"):
            pytest.skip(f"no tiny-data writer for torchvision {cfg.data.name} yet")
        write_mnist(tmp_path / "torchvision", str(cfg.data.name), train=30, test=10, size=28, classes=10)
        return [*common, f"data.root={tmp_path / 'torchvision'}", "data.download=false"]
    pytest.skip(f"no tiny-data adapter for source {source} yet")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_trains_one_short_epoch(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    overrides = [*tiny_data(cfg, tmp_path), "train.epochs=1", "device=cpu", f"output.dir={tmp_path / 'runs'}"]
    if cfg.model.family() == "torchvision":
        overrides += ["model.weights=none", "data.image_size=64", "data.resize=null"]
    if cfg.train.unfreeze_at_epoch is not None:
        overrides.append("train.unfreeze_at_epoch=null")
    outcome = workflows.train(load_config(path, overrides), path.stem)
    assert outcome.state.epoch == 1
    assert (outcome.run_dir / "best.pt").is_file()
    assert yaml.safe_load((outcome.run_dir / "config.yaml").read_text())["model"]["name"] == cfg.model.name


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_says_what_it_relies_on(path: Path) -> None:
    """Each example names its data (there is no default source), and an sgd / rmsprop example
    that wants momentum says so: torch's default, and cnnctl's, is none."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert raw["data"]["source"], f"{path.name}: data.source"
    optimizer = raw.get("optimizer", {})
    if optimizer.get("name") in ("sgd", "rmsprop"):
        assert "momentum" in optimizer, (
            f"{path.name}: set optimizer.momentum explicitly (torch's default is 0)"
        )
