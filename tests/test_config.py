"""Config loading: defaults, overrides, and one clear line per mistake (exit code 2)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnctl.config import (
    TORCH_DEFAULTS,
    OptimizerConfig,
    SchedulerConfig,
    TorchDefault,
    TrainConfig,
    apply_overrides,
    load_config,
    validate,
)
from cnnctl.core.errors import ConfigError
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
    path.write_text("train:\n  amp: off\ndata:\n  source: synthetic\n  augment:\n    hflip: true\n")
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
    path.write_text(yaml.safe_dump({"data": {"source": "synthetic"}, "train": {"epochs": 2, "epohcs": 3}}))
    result = invoke(runner, "config", "validate", path)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {path}: train.epohcs: unknown key; allowed keys here: "
        "epochs, loss, focal_gamma, class_weights, threshold, calibrate, label_smoothing, monitor, patience, min_delta, grad_clip, amp, accumulate, ema, mixup_alpha, cutmix_alpha, channels_last, compile, nan_policy, deterministic, unfreeze_at_epoch"
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


# --------------------------------------------------------------------------------------
# Keys named after torch's arguments take torch's defaults (issue 15, part 7)
# --------------------------------------------------------------------------------------


def _torch_target(dotted: str) -> Any:
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _comparable(value: Any) -> Any:
    value = getattr(value, "value", value)  # enums (AutoAugmentPolicy.IMAGENET → "imagenet")
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(
    "item", TORCH_DEFAULTS, ids=[f"{t.key}[{t.choice or 'any'}]" for t in TORCH_DEFAULTS]
)
def test_torch_named_keys_default_to_the_installed_torch(item: TorchDefault) -> None:
    """Each key's default equals the torch argument it carries, unless TORCH_DEFAULTS gives the
    reason it deviates; a listed deviation that torch has since caught up with fails too."""
    parameter = inspect.signature(_torch_target(item.target)).parameters[item.argument]
    ours = _comparable(item.value())
    if item.deviation:
        assert parameter.default is inspect.Parameter.empty or _comparable(parameter.default) != ours
    else:
        assert _comparable(parameter.default) == ours, (
            f"{item.key}: torch's {parameter.default!r}, ours {ours!r}"
        )


def test_every_key_sharing_a_torch_argument_name_is_listed() -> None:
    """A key later added to the optimizer / scheduler / loss under a torch argument's name must
    be registered in TORCH_DEFAULTS (and so compared above), or this fails."""
    listed = {(t.key, t.choice) for t in TORCH_DEFAULTS}
    targets = [
        ("optimizer", OptimizerConfig, "sgd", "torch.optim.SGD"),
        ("optimizer", OptimizerConfig, "adam", "torch.optim.Adam"),
        ("optimizer", OptimizerConfig, "adamw", "torch.optim.AdamW"),
        ("optimizer", OptimizerConfig, "rmsprop", "torch.optim.RMSprop"),
        ("scheduler", SchedulerConfig, "step", "torch.optim.lr_scheduler.StepLR"),
        ("scheduler", SchedulerConfig, "cosine", "torch.optim.lr_scheduler.CosineAnnealingLR"),
        ("scheduler", SchedulerConfig, "plateau", "torch.optim.lr_scheduler.ReduceLROnPlateau"),
        ("scheduler", SchedulerConfig, "onecycle", "torch.optim.lr_scheduler.OneCycleLR"),
        ("train", TrainConfig, None, "torch.nn.CrossEntropyLoss"),
    ]
    missing = []
    for prefix, section, choice, target in targets:
        arguments = inspect.signature(_torch_target(target)).parameters
        for key in section.model_fields:
            applies = section.applies_to.get(key)
            if key == section.selector or key not in arguments or (applies and choice not in applies):
                continue
            if (f"{prefix}.{key}", choice) not in listed:
                missing.append(f"{prefix}.{key} [{choice}]")
    assert not missing, f"keys named after a torch argument but not in TORCH_DEFAULTS: {missing}"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_built_optimizer_is_torchs_default_optimizer(name: str) -> None:
    """`optimizer: {name: X}` builds exactly `torch.optim.X(params)`: every hyperparameter,
    also the ones cnnctl does not expose (eps, alpha, dampening, amsgrad, ...)."""
    import torch

    from cnnctl.session.optim import build_optimizer

    param = torch.nn.Parameter(torch.zeros(3))
    ours = build_optimizer(OptimizerConfig.model_validate({"name": name}), [param], torch.device("cpu"))
    torchs = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}[name]
    expected = getattr(torch.optim, torchs)([param]).defaults
    assert {k: v for k, v in ours.defaults.items() if k != "foreach"} == {
        k: v for k, v in expected.items() if k != "foreach"
    }


def test_sgd_with_only_a_learning_rate_is_plain_sgd(tmp_path: Path) -> None:
    """The seeds' Fashion-MNIST recipe: `torch.optim.SGD(model.parameters(), lr=0.1)`. Written as
    `optimizer: {name: sgd, lr: 0.1}` it used to get momentum 0.9 (and an MLP diverged)."""
    import torch

    from cnnctl.session.optim import build_optimizer

    path = tmp_path / "sgd.yaml"
    path.write_text("data: {source: synthetic}\nmodel: {name: mlp}\noptimizer: {name: sgd, lr: 0.1}\n")
    cfg = load_config(path).optimizer
    assert (cfg.momentum, cfg.nesterov, cfg.weight_decay) == (0.0, False, 0.0)

    def trajectory(make: Any) -> list[torch.Tensor]:
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 2)
        optimizer = make(layer.parameters())
        x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
        for _ in range(3):  # momentum would show from the second step on
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(layer(x), y).backward()
            optimizer.step()
        return [p.detach().clone() for p in layer.parameters()]

    ours = trajectory(lambda params: build_optimizer(cfg, params, torch.device("cpu")))
    plain = trajectory(lambda params: torch.optim.SGD(params, lr=0.1))
    assert all(torch.equal(a, b) for a, b in zip(ours, plain, strict=True))
    assert load_config(path, ["optimizer.momentum=0.9"]).optimizer.momentum == 0.9  # opt in, explicitly


def test_plateau_and_loss_are_torchs_defaults() -> None:
    import torch

    from cnnctl.engine.schedule import Schedule
    from cnnctl.session.optim import train_loss_fn

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ours = Schedule(SchedulerConfig.model_validate({"name": "plateau"}), optimizer, 5, 10).plateau
    torchs = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    keys = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lrs", "eps")
    assert ours is not None and {k: getattr(ours, k) for k in keys} == {k: getattr(torchs, k) for k in keys}
    loss = train_loss_fn("cross_entropy", TrainConfig().label_smoothing)
    default = torch.nn.CrossEntropyLoss()
    assert isinstance(loss, torch.nn.CrossEntropyLoss)
    assert (loss.label_smoothing, loss.ignore_index, loss.reduction, loss.weight) == (
        default.label_smoothing,
        default.ignore_index,
        default.reduction,
        default.weight,
    )


def test_nesterov_needs_momentum() -> None:
    with pytest.raises(ConfigError, match=r"optimizer\.nesterov: needs optimizer\.momentum > 0"):
        validate({"optimizer": {"name": "sgd", "nesterov": True}}, "c.yaml")
    assert validate({"optimizer": {"name": "sgd", "nesterov": True, "momentum": 0.9}}).optimizer.nesterov
