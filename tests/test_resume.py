"""Interruption and resume: SIGKILL then --resume is bit-identical; SIGINT/SIGTERM stop cleanly;
a resumed config may not change the model or data; non-finite losses and weights."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.config import load_config
from cnnctl.core.errors import RunFailed
from cnnctl.engine.stepper import Stepper
from cnnctl.session import build as session_build
from cnnctl.session import training
from cnnctl.workflows import train as workflows
from tests.conftest import TINY, invoke, merge

ROOT = Path(__file__).resolve().parents[1]

# Augmentation, dropout and a per-step schedule: everything that draws random numbers or
# keeps state between epochs is in play.
RESUMABLE: dict[str, Any] = {
    "data": {"samples_per_class": 60, "image_size": 24, "augment": {"hflip": True, "rotation": 10}},
    "model": {"name": "small_cnn", "channels": [8, 16], "kernel_size": 3, "padding": 1, "hidden": [32]},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "scheduler": {"name": "onecycle"},
    "train": {"epochs": 6},
}


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def weights(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(path, weights_only=True)["model"]
    return state


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "cnnctl", "train", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=config.parent,
    )


def wait_for_rows(run: Path, rows: int, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Block until metrics.csv has `rows` epochs (the process must still be running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "metrics.csv").is_file() and len(metrics(run)) >= rows:
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before epoch {rows}: {process.communicate()}")
        time.sleep(0.01)
    process.kill()
    pytest.fail("training did not reach the epoch in time")


def test_sigkill_then_resume_is_bit_identical(runner, write_config) -> None:
    config = write_config(RESUMABLE)
    reference = invoke(runner, "train", config, "--name", "whole")
    assert reference.exit_code == 0, reference.output

    process = start(config, "--name", "killed")
    run = config.parent / "runs" / "killed"
    wait_for_rows(run, 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    done = len(metrics(run))
    assert done < RESUMABLE["train"]["epochs"]  # it really was cut short

    resumed = invoke(runner, "train", "--resume", run)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output
    whole = config.parent / "runs" / "whole"
    assert metrics(run) == metrics(whole)
    for name in ("best.pt", "last.pt"):
        a, b = weights(run / name), weights(whole / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_at_a_batch_boundary_and_says_how_to_resume(write_config, sig, code) -> None:
    config = write_config(merge(RESUMABLE, {"train": {"epochs": 500}}))
    process = start(config, "--name", "signalled")
    run = config.parent / "runs" / "signalled"
    wait_for_rows(run, 1, process)
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert f"{sig.name}: stopped at epoch" in last and f"cnnctl train --resume {run.name}" in last.replace(
        str(run), run.name
    )
    saved = torch.load(run / "last.pt", weights_only=True)
    assert saved["epoch"] == len(metrics(run)) and not list(run.glob(".*tmp*"))


def test_resume_refuses_a_different_model_and_asks_force_for_epochs(runner, write_config) -> None:
    config = write_config()
    assert invoke(runner, "train", config).exit_code == 0
    run = config.parent / "runs" / "tiny"

    changed = invoke(runner, "train", "--resume", run, "--set", "model.hidden=[32]")
    assert changed.exit_code == 2
    assert "cannot resume" in changed.output and "model.hidden ([16] → [32])" in changed.output

    other_data = write_config({"data": {"image_size": 20}}, name="other")
    assert "data.image_size (16 → 20)" in invoke(runner, "train", other_data, "--resume", run).output

    longer = invoke(runner, "train", "--resume", run, "--set", "train.epochs=3")
    assert longer.exit_code == 2 and "train.epochs (2 → 3)" in longer.output and "--force" in longer.output

    assert invoke(runner, "train", "--resume", run, "--set", "train.epochs=3", "--force").exit_code == 0
    assert [r["epoch"] for r in metrics(run)] == ["1", "2", "3"]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3

    finished = invoke(runner, "train", "--resume", run)
    assert finished.exit_code == 2 and "finished its 3 epochs" in finished.output

    best = invoke(runner, "train", "--resume", run / "best.pt")
    assert best.exit_code == 2 and "resume from last.pt" in best.output

    free = invoke(runner, "train", "--resume", run, "--set", "train.epochs=4", "--force", "--device", "cpu")
    assert free.exit_code == 0, free.output


def test_resume_rewrites_a_best_pt_the_crash_left_behind(runner, write_config) -> None:
    config = write_config({"data": {"samples_per_class": 30}})
    # A crash right after last.pt of epoch 2 was written, before best.pt was: the run dir
    # holds epoch-2 last.pt, and best.pt from epoch 1.
    assert invoke(runner, "train", config, "--name", "cut", "--set", "train.epochs=1").exit_code == 0
    assert invoke(runner, "train", config, "--name", "two").exit_code == 0
    cut, two = config.parent / "runs" / "cut", config.parent / "runs" / "two"
    assert torch.load(two / "last.pt", weights_only=True)["train_state"]["best_epoch"] == 2
    shutil.copy(two / "last.pt", cut / "last.pt")
    shutil.copy(two / "metrics.csv", cut / "metrics.csv")
    shutil.copy(two / ".cnnctl-run", cut / ".cnnctl-run")  # cut becomes run two, crashed
    stale = torch.load(cut / "best.pt", weights_only=True)  # an epoch-1 best.pt of that run
    torch.save({**stale, "run_id": torch.load(two / "last.pt", weights_only=True)["run_id"]}, cut / "best.pt")
    # min_delta 100: no later epoch can become best, so best.pt must be epoch 2's weights.
    result = invoke(
        runner, "train", "--resume", cut, "--set", "train.epochs=3", "--set", "train.min_delta=100", "--force"
    )
    assert result.exit_code == 0, result.output
    assert torch.load(cut / "best.pt", weights_only=True)["epoch"] == 2
    a, b = weights(cut / "best.pt"), weights(two / "best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def poison_losses(
    monkeypatch: pytest.MonkeyPatch, bad: Callable[[int], bool], value: float
) -> dict[str, int]:
    """Make training loss number n (counted from 1 over the run) `loss * value` where bad(n);
    returns the live call counter."""
    original = session_build.train_loss_fn
    calls = {"n": 0}

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        loss_fn = original(*args, **kwargs)

        def wrapped(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            calls["n"] += 1
            loss = loss_fn(outputs, labels)
            return loss * value if bad(calls["n"]) else loss

        return wrapped

    monkeypatch.setattr(session_build, "train_loss_fn", poisoned)
    return calls


def test_nan_policy_skip_batch_skips_and_reports(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = poison_losses(monkeypatch, lambda n: n % 3 == 0, float("nan"))
    lines: list[str] = []
    cfg = load_config(write_config({"train": {"nan_policy": "skip_batch"}}))
    outcome = workflows.train(cfg, "skip", log=lines.append)
    assert outcome.state.epoch == 2
    assert any("skipped 1 batch(es) with a non-finite loss" in line for line in lines)
    assert all(torch.isfinite(v).all() for v in weights(outcome.run_dir / "best.pt").values())

    calls["n"] = 0
    stop = load_config(write_config({"train": {"nan_policy": "stop"}}, name="stop"))
    with pytest.raises(RunFailed, match="non-finite training loss .* at epoch 1, batch 3"):
        workflows.train(stop, "stop")


def test_deferred_loss_check_names_the_first_bad_batch(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU, nan_policy stop checks the losses every 20 batches instead of syncing per batch:
    the run still stops in the epoch of the bad batch, names it, and writes no checkpoint."""
    calls = poison_losses(monkeypatch, lambda n: n == 4, float("inf"))
    monkeypatch.setattr(Stepper, "check_every_batch", property(lambda self: False))
    cfg = load_config(
        write_config({"train": {"nan_policy": "stop"}, "data": {"batch_size": 2}}, name="deferred")
    )
    with pytest.raises(RunFailed, match="non-finite training loss .* at epoch 1, batch 4"):
        workflows.train(cfg, "deferred")
    assert calls["n"] == 9  # the epoch's other batches ran before the check at its end caught it
    assert not list(Path(cfg.output.dir).rglob("*.pt"))


def test_non_finite_weights_are_never_saved(runner, write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config({"train": {"epochs": 3}})
    original = ckpt.plain_state_dict
    calls = {"n": 0}

    def poisoned(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        state = original(model)
        if calls["n"] == 2:  # the second epoch's weights
            first = next(iter(state))
            state[first] = torch.full_like(state[first], float("inf"))
        return state

    monkeypatch.setattr(ckpt, "plain_state_dict", poisoned)
    result = invoke(runner, "train", config)
    assert result.exit_code == 1
    assert "epoch 2: the weights became non-finite" in result.output
    run = config.parent / "runs" / "tiny"
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1
    assert len(metrics(run)) == 1


def test_deterministic_switches_torch_to_deterministic_kernels(write_config, monkeypatch) -> None:
    seen: list[bool] = []
    original = training.fit  # patched where it is used: the training run

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.are_deterministic_algorithms_enabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "fit", spy)
    try:
        workflows.train(load_config(write_config({"train": {"deterministic": True}})), "det")
        workflows.train(load_config(write_config({"train": {"deterministic": False}}, name="free")), "free")
    finally:
        torch.use_deterministic_algorithms(False)
    assert seen == [True, False]


def test_seeded_runs_repeat_with_worker_processes(runner, tmp_path: Path) -> None:
    images = tmp_path / "images"
    assert invoke(runner, "data", "synth", images, "--per-class", "12", "--classes", "3").exit_code == 0
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}})
    cfg["data"] = {
        "source": "image_folder",
        "root": str(images),
        "image_size": 16,
        "batch_size": 8,
        "num_workers": 2,
        "augment": {"hflip": True, "rotation": 15},
    }
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for name in ("a", "b"):
        result = invoke(runner, "train", path, "--name", name)
        assert result.exit_code == 0, result.output
    assert metrics(tmp_path / "runs" / "a") == metrics(tmp_path / "runs" / "b")
