"""`cnnctl train` end to end: run dir, checkpoints, metrics, the best-val rule, repeatability."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from cnnctl.config import load_config
from cnnctl.engine import loop as engine
from cnnctl.engine.stepper import Stepper
from cnnctl.tasks.metrics import EvalResult
from cnnctl.workflows import train as workflows
from tests.conftest import invoke


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_writes_a_complete_run_dir(runner, write_config) -> None:
    config = write_config()
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    run = config.parent / "runs" / "tiny"
    assert sorted(p.name for p in run.iterdir()) == [
        ".cnnctl-run",
        "best.pt",
        "config.yaml",
        "last.pt",
        "metrics.csv",
        "summary.json",
    ]
    assert "epoch 1/2  train loss" in result.output and "epoch 2/2" in result.output
    assert "training finished" in result.output and "test acc" in result.output

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert (
        resolved["train"]["epochs"] == 2 and resolved["scheduler"]["name"] == "none"
    )  # defaults written out

    rows = read_metrics(run)
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    assert [r["epoch"] for r in rows] == ["1", "2"]

    summary = json.loads((run / "summary.json").read_text())
    best_epoch = min(rows, key=lambda r: float(r["val_loss"]))["epoch"]
    assert summary["best_epoch"] == int(best_epoch)
    assert summary["best_val_loss"] == pytest.approx(float(rows[int(best_epoch) - 1]["val_loss"]), rel=1e-5)
    assert summary["classes"] == ["circle", "square", "triangle"]
    assert summary["test"]["count"] == 9 and 0 <= summary["test"]["accuracy"] <= 1
    assert set(summary["versions"]) == {"cnnctl", "torch", "torchvision", "python"}


def test_checkpoint_is_self_describing_and_weights_only(trained_run: Path) -> None:
    best = torch.load(trained_run / "best.pt", weights_only=True)
    for key in ("model", "classes", "config", "epoch", "model_spec", "input", "output_kind", "metrics"):
        assert key in best
    assert best["classes"] == ["circle", "square", "triangle"]
    assert best["model_spec"]["input_shape"] == [3, 16, 16]
    assert set(best["input"]) == {"channels", "size", "resize", "mean", "std"}
    assert "optimizer" not in best  # best.pt is for inference; last.pt carries the resume state
    last = torch.load(trained_run / "last.pt", weights_only=True)
    assert {"optimizer", "schedule", "scaler", "rng", "train_state"} <= set(last)
    assert last["epoch"] == 3 and last["train_state"]["epoch"] == 3


def test_a_new_run_never_overwrites_an_old_one(runner, write_config) -> None:
    config = write_config({"train": {"epochs": 1}})
    assert invoke(runner, "train", config).exit_code == 0
    assert invoke(runner, "train", config).exit_code == 0
    runs = config.parent / "runs"
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == ["tiny", "tiny-2"]
    result = invoke(runner, "train", config, "--force", "--name", "tiny")
    assert result.exit_code == 0
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == ["tiny", "tiny-2"]


def test_same_config_and_seed_repeat_the_metrics(runner, write_config) -> None:
    config = write_config({"data": {"augment": {"hflip": True, "random_crop": 2}}})
    for name in ("a", "b"):
        assert invoke(runner, "train", config, "--name", name).exit_code == 0
    runs = config.parent / "runs"

    def numbers(name: str) -> list[list[str]]:
        return [[v for k, v in row.items() if k != "seconds"] for row in read_metrics(runs / name)]

    assert numbers("a") == numbers("b")
    a = torch.load(runs / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(runs / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_best_pt_keeps_the_epoch_with_the_lowest_val_loss(
    write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Val loss rises after epoch 1: best.pt must hold epoch 1's weights, last.pt epoch 3's."""
    scripted = iter([0.5, 0.9, 0.7])
    real_evaluate = Stepper.evaluate
    snapshots: list[dict[str, torch.Tensor]] = []

    def evaluate(self, batches, classes, topk=(1,)) -> EvalResult:
        result = real_evaluate(self, batches, classes, topk)
        if self.model.training is False and len(snapshots) < 3:
            snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})
            result.loss = next(scripted)
        return result

    monkeypatch.setattr(Stepper, "evaluate", evaluate)
    cfg = load_config(write_config({"train": {"epochs": 3}}))
    outcome = workflows.train(cfg, "rule")
    assert outcome.state.best_epoch == 1
    best = torch.load(outcome.run_dir / "best.pt", weights_only=True)
    last = torch.load(outcome.run_dir / "last.pt", weights_only=True)
    assert best["epoch"] == 1 and best["metrics"]["val_loss"] == 0.5 and last["epoch"] == 3
    assert all(torch.equal(best["model"][k], snapshots[0][k]) for k in best["model"])
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])


def test_ties_keep_the_earlier_epoch_and_nan_never_wins() -> None:
    assert engine.improved(0.5, None, "val_loss", 0.0)
    assert not engine.improved(0.5, 0.5, "val_loss", 0.0)
    assert not engine.improved(float("nan"), None, "val_loss", 0.0)
    assert not engine.improved(0.45, 0.5, "val_loss", 0.1)  # min_delta
    assert engine.improved(0.9, 0.8, "val_acc", 0.0) and not engine.improved(0.7, 0.8, "val_acc", 0.0)


def test_early_stopping(runner, write_config) -> None:
    config = write_config({"train": {"epochs": 30, "patience": 1, "min_delta": 10.0}})
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    summary = json.loads((config.parent / "runs" / "tiny" / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["stopped_early"] and summary["best_epoch"] == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"model": {"name": "mlp", "hidden": [32]}},
        {"model": {"name": "mlp", "hidden": [16], "log_softmax": True}, "train": {"loss": "nll"}},
        {"data": {"num_classes": 2}, "train": {"loss": "bce_with_logits"}},
        {
            "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
            "scheduler": {"name": "step", "step_size": 1},
        },
        {"optimizer": {"name": "adamw"}, "scheduler": {"name": "cosine", "warmup_epochs": 1}},
        {"optimizer": {"name": "rmsprop", "lr": 0.001}, "scheduler": {"name": "plateau"}},
        {"scheduler": {"name": "onecycle"}, "train": {"label_smoothing": 0.1, "grad_clip": 1.0}},
        {"train": {"monitor": "val_acc"}, "data": {"channels": 1, "normalize": "none"}},
        {"train": {"amp": "bf16"}},
    ],
)
def test_training_options_run(write_config, changes: dict) -> None:
    outcome = workflows.train(load_config(write_config(changes)), "opts")
    assert outcome.state.epoch == 2 and outcome.test is not None
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in outcome.state.history)


def test_schedules_change_the_lr(write_config) -> None:
    cfg = load_config(
        write_config({"train": {"epochs": 3}, "scheduler": {"name": "step", "step_size": 1, "gamma": 0.5}})
    )
    lrs = [r["lr"] for r in workflows.train(cfg, "lr").state.history]
    assert lrs == pytest.approx([0.01, 0.005, 0.0025])


def test_unavailable_device_is_a_clear_error(runner, write_config) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    result = invoke(runner, "train", write_config(), "--device", "cuda")
    assert result.exit_code == 2
    assert "device 'cuda': CUDA is not available here; use --device cpu" in result.output


def test_non_finite_loss_stops_with_exit_1(runner, write_config) -> None:
    config = write_config({"optimizer": {"name": "sgd", "lr": 1e12, "momentum": 0.0}, "train": {"epochs": 3}})
    result = invoke(runner, "train", config)
    assert result.exit_code == 1
    assert "non-finite training loss" in result.output and "epoch" in result.output
