"""Shared fixtures: tiny configs, a CLI runner with a pinned width, a trained tiny run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cnnctl.cli import app

# Small enough that a training epoch takes well under a second on 2 cores.
TINY: dict[str, Any] = {
    "data": {
        "source": "synthetic",
        "num_classes": 3,
        "samples_per_class": 12,
        "image_size": 16,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        "batch_size": 8,
        "noise": 0.05,
    },
    "model": {"name": "small_cnn", "channels": [4, 8], "kernel_size": 3, "padding": 1, "hidden": [16]},
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 2},
    "seed": 0,
    "device": "cpu",
    "output": {"plots": False, "report": False},  # made only where a test looks at them (~0.3 s a run)
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in changes.items():
        replaces_model = key == "model" and "name" in value
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not replaces_model:
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables must not wrap in tests, whatever the terminal."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture(autouse=True)
def _private_check_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image-check cache goes to a temp folder, never the user's ~/.cache."""
    monkeypatch.setenv("CNNCTL_CACHE", str(tmp_path_factory.getbasetemp() / "check-cache"))


@pytest.fixture
def write_config(tmp_path: Path):
    """write_config(changes, name) → path of a YAML config: TINY merged with changes."""

    def write(changes: dict[str, Any] | None = None, name: str = "tiny") -> Path:
        cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}})
        cfg = merge(cfg, changes or {})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        return path

    return write


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny training run shared by the evaluate / predict / checkpoint tests."""
    root = tmp_path_factory.mktemp("trained")
    cfg = merge(TINY, {"output": {"dir": str(root / "runs")}, "train": {"epochs": 3}})
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    return root / "runs" / "tiny"
