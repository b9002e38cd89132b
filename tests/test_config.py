"""Config loading: defaults, overrides, and one clear line per mistake (exit code 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnctl.config import apply_overrides, load_config, validate
from cnnctl.errors import ConfigError
from tests.conftest import invoke


def test_six_line_config_gets_every_default(tmp_path: Path) -> None:
    path = tmp_path / "six.yaml"
    path.write_text("data:\n  source: synthetic\nmodel:\n  name: mlp\ntrain:\n  epochs: 2\n")
    cfg = load_config(path)
    assert cfg.model.hidden == [128, 64] and cfg.model.dropout == 0.0  # mlp family defaults
    assert cfg.optimizer.name == "adam" and cfg.data.val_fraction == 0.1 and cfg.device == "auto"


def test_small_cnn_defaults_are_the_classic_net() -> None:
    model = validate({}).model
    assert (model.channels, model.kernel_size, model.padding, model.pool) == ([32, 64], 5, 2, 2)
    assert (model.hidden, model.dropout) == ([1024], 0.5)


def test_overrides_are_yaml_typed_and_create_sections() -> None:
    raw = apply_overrides(
        {"train": {"epochs": 5}}, ["train.epochs=3", "optimizer.lr=1e-2", "data.augment.hflip=true"]
    )
    assert raw == {"train": {"epochs": 3}, "optimizer": {"lr": 0.01}, "data": {"augment": {"hflip": True}}}
    cfg = validate(raw)
    assert cfg.train.epochs == 3 and cfg.optimizer.lr == 0.01 and cfg.data.augment.hflip


def test_yaml_1_2_booleans(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  amp: off\ndata:\n  augment:\n    hflip: true\n")
    cfg = load_config(path)
    assert cfg.train.amp == "off" and cfg.data.augment.hflip is True
    with pytest.raises(ConfigError, match="train.amp: got 'no'; allowed: 'auto', 'off', 'bf16' or 'fp16'"):
        load_config(path, ["train.amp=no"])


def test_yaml_1_2_floats() -> None:
    assert validate({"optimizer": {"lr": 1e-3}}).optimizer.lr == 0.001
    path_cfg = apply_overrides({}, ["optimizer.lr=5E-4"])
    assert validate(path_cfg).optimizer.lr == 0.0005


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"data": {"bogus": 1}}, "data.bogus: unknown key; allowed keys here: source, root"),
        ({"data": {"source": "nope"}}, "data.source: got 'nope'; allowed: 'synthetic', 'image_folder'"),
        ({"train": {"epochs": "many"}}, "train.epochs: input should be a valid integer"),
        ({"train": {"epochs": 1.5}}, "train.epochs: input should be a valid integer"),
        (
            {"optimizer": {"name": "lion"}},
            "optimizer.name: got 'lion'; allowed: 'sgd', 'adam', 'adamw' or 'rmsprop'",
        ),
        ({"model": {"name": "resnet"}}, "model.name: unknown model 'resnet'; allowed: small_cnn, mlp"),
        ({"device": "gpu"}, "device: unknown device 'gpu'; allowed: auto, cpu, cuda, cuda:N, mps"),
        (
            {"data": {"noise": 0.2, "source": "image_folder", "root": "x"}},
            "data.noise: does not apply to source 'image_folder'",
        ),
        ({"model": {"name": "mlp", "channels": [3]}}, "model.channels: does not apply to name 'mlp'"),
        (
            {"optimizer": {"name": "adam", "momentum": 0.5}},
            "optimizer.momentum: does not apply to name 'adam'",
        ),
        (
            {"data": {"normalize": {"mean": [0.5], "std": [0.0]}}},
            "data.normalize: every std value must be > 0",
        ),
        ({"data": {"normalize": "bad"}}, "data.normalize: got 'bad'; allowed: 'auto', 'imagenet' or 'none'"),
        ({"train": {"loss": "nll"}}, "train.loss: nll needs model.log_softmax: true"),
        (
            {"data": {"val_fraction": 0.6, "test_fraction": 0.5}},
            "val_fraction + test_fraction must stay below 1",
        ),
        ({"data": 5}, "data: expected a mapping of keys, got 5"),
    ],
)
def test_errors_name_the_dotted_path(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(raw, "c.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("c.yaml: ")


def test_cli_config_error_is_one_line_exit_2(runner, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 2, "epohcs": 3}}))
    result = invoke(runner, "config", "validate", path)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {path}: train.epohcs: unknown key; allowed keys here: "
        "epochs, loss, label_smoothing, monitor, patience, min_delta, grad_clip, amp, accumulate, ema, mixup_alpha, cutmix_alpha, channels_last, compile, nan_policy, deterministic, unfreeze_at_epoch"
    ]


def test_yaml_syntax_error_names_file_and_line(runner, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  source: synthetic\n  bad: [1, 2\n")
    result = invoke(runner, "config", "validate", path)
    assert result.exit_code == 2
    assert f"{path}:4:1: YAML syntax error" in result.output
    assert "Traceback" not in result.output


def test_missing_config_file(runner, tmp_path: Path) -> None:
    result = invoke(runner, "train", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "nope.yaml: config file not found" in result.output


def test_bad_set_override(runner, write_config) -> None:
    result = invoke(runner, "config", "validate", write_config(), "--set", "train.epochs")
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    result = invoke(runner, "config", "validate", write_config(), "--set", "train.epochs=zero")
    assert result.exit_code == 2 and "train.epochs: input should be a valid integer" in result.output


def test_config_show_prints_resolved_yaml(runner, write_config) -> None:
    result = invoke(runner, "config", "show", write_config(), "--set", "train.epochs=7")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["train"]["epochs"] == 7
    assert shown["scheduler"]["name"] == "none" and shown["train"]["monitor"] == "val_loss"
    assert validate(shown).train.epochs == 7  # what is shown loads back as the same config


def test_validate_and_models_do_not_import_torch(write_config) -> None:
    code = (
        "import sys; from cnnctl.cli import app\n"
        "for args in (['config', 'validate', sys.argv[1]], ['config', 'validate', sys.argv[2]], ['models']):\n"
        "    try:\n        app(args)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    transfer = write_config(name="transfer")
    raw = yaml.safe_load(transfer.read_text())
    raw["model"] = {"name": "densenet121", "weights": "none"}
    transfer.write_text(yaml.safe_dump(raw), encoding="utf-8")
    args = [sys.executable, "-c", code, str(write_config()), str(transfer)]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert ": ok (synthetic data, model small_cnn, 2 epochs)" in done.stdout
    assert ": ok (synthetic data, model densenet121, 2 epochs)" in done.stdout
    assert "densenet121" in done.stdout.split("epochs)")[-1]  # the `models` listing


def test_relative_data_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.source=image_folder", "data.root=images"])
    assert cfg.data.root == str(tmp_path / "images")
