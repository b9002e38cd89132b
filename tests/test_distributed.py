"""DDP under torchrun: 2 CPU processes (gloo) on tiny data, against one process."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from cnnctl.runtime.distributed import peer_gone, shard_order
from tests.conftest import TINY, invoke, merge

ROOT = Path(__file__).resolve().parents[1]


def _load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ddp_soak", ROOT / "bench" / "ddp_soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


soak = _load_soak()  # bench/ddp_soak.py: its exit report hook and what it counts as a failure

# 3 classes x 36: 27 val and 21 test images (odd: the shards are uneven), 60 train images.
# No dropout, no augmentation, no BatchNorm: nothing differs between ranks but their data.
DDP: dict[str, object] = {
    "data": {"samples_per_class": 36, "val_fraction": 0.25, "test_fraction": 0.2, "batch_size": 8},
    "model": {**TINY["model"], "dropout": 0.0},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 3},
}


def rows(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]


def launch(args: list[str], cwd: Path, hook: str = "") -> subprocess.CompletedProcess[str]:
    """`cnnctl train ARGS --nproc 2`; every rank runs `hook` at startup and reports its threads
    at exit (`ddp-soak: rank R threads at exit: ...`, bench/ddp_soak.py's hook)."""
    site = cwd / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(soak.EXIT_REPORT + hook)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cnnctl", "train", *args, "--nproc", "2"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def assert_clean_exit(done: subprocess.CompletedProcess[str], ranks: int = 2) -> None:
    """No rank aborted, and none had a process group's threads alive at exit: they would run
    on while Python finalizes, where one taking the GIL kills the process with `terminate
    called without an active exception` (SIGABRT) now and then, on a busy machine."""
    assert "terminate called" not in done.stderr, done.stderr[-3000:]
    assert soak.leftover_threads(done.stderr) == [], done.stderr[-3000:]
    assert done.stderr.count("ddp-soak: rank") == ranks, done.stderr[-3000:]


def test_shards_pad_training_and_never_repeat_evaluation() -> None:
    order = torch.arange(7)
    train = [shard_order(order, (r, 2), pad=True).tolist() for r in range(2)]
    assert train == [[0, 2, 4, 6], [1, 3, 5, 0]]  # equal steps per rank
    evaluation = [shard_order(order, (r, 2), pad=False).tolist() for r in range(2)]
    assert sorted(evaluation[0] + evaluation[1]) == list(range(7))


def test_a_collective_failing_for_a_lost_peer_is_told_apart() -> None:
    gloo = "[third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:2224."
    assert peer_gone(RuntimeError(gloo))
    assert not peer_gone(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not peer_gone(ValueError("Connection closed by peer"))  # only what a collective raises


def test_two_processes_match_one_process_with_the_same_global_batch(runner, tmp_path: Path) -> None:
    cfg = merge(merge(TINY, DDP), {"output": {"dir": str(tmp_path / "runs")}})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    done = launch([str(config), "--name", "two"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_clean_exit(done)
    assert done.stdout.count("training finished") == 1  # rank 1 prints nothing
    assert "2 processes (gloo), batch 8 per process = 16 per optimizer step" in done.stdout
    runs = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in runs if not p.name.startswith(".")) == ["two"]  # one run dir

    single = invoke(runner, "train", config, "--name", "one", "--set", "data.batch_size=16")
    assert single.exit_code == 0, single.output
    two, one = rows(tmp_path / "runs" / "two"), rows(tmp_path / "runs" / "one")
    assert len(two) == len(one) == 3
    for a, b in zip(two, one, strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    summary_two = json.loads((tmp_path / "runs" / "two" / "summary.json").read_text())
    summary_one = json.loads((tmp_path / "runs" / "one" / "summary.json").read_text())
    assert summary_two["processes"] == 2
    assert summary_two["test"]["count"] == summary_one["test"]["count"] == 21  # no duplicates counted
    assert summary_two["test"]["confusion_matrix"] == summary_one["test"]["confusion_matrix"]

    # A DDP checkpoint has no `module.` prefix: it evaluates and resumes in one process.
    best = torch.load(tmp_path / "runs" / "two" / "best.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in best["model"])
    assert invoke(runner, "evaluate", tmp_path / "runs" / "two", "--no-plots").exit_code == 0
    more = invoke(
        runner, "train", "--resume", tmp_path / "runs" / "two", "--set", "train.epochs=4", "--force"
    )
    assert more.exit_code == 0, more.output

    # And under torchrun again: every rank restores last.pt (with its own RNG state) and goes on.
    again = launch(
        ["--resume", str(tmp_path / "runs" / "two"), "--set", "train.epochs=5", "--force"], tmp_path
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert_clean_exit(again)
    assert [row["epoch"] for row in rows(tmp_path / "runs" / "two")] == [1, 2, 3, 4, 5]
    assert again.stdout.count("training finished") == 1


def test_a_failing_rank_brings_the_job_down(tmp_path: Path) -> None:
    hook = (
        "if os.environ.get('RANK') == '1':\n"
        "    from cnnctl.engine.stepper import Stepper\n"
        "    from cnnctl.core.errors import RunFailed\n"
        "    def boom(self, *args, **kwargs):\n"
        "        raise RunFailed('rank 1 failed on purpose')\n"
        "    Stepper.train_epoch = boom\n"
    )
    cfg = merge(merge(TINY, DDP), {"output": {"dir": str(tmp_path / "runs")}})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    done = launch([str(config)], tmp_path, hook=hook)  # timeout: a hang fails the test
    assert done.returncode != 0
    assert "error: rank 1 failed on purpose" in done.stderr
    # The failing rank's DDP wrapper is still referenced (by the error's traceback) when it
    # leaves the group: close() detaches it, so the group and its threads still go.
    assert "terminate called" not in done.stderr, done.stderr[-3000:]
    assert soak.leftover_threads(done.stderr) == [], done.stderr[-3000:]
    assert "ddp-soak: rank 1 threads at exit" in done.stderr


@pytest.mark.slow
def test_ddp_soak_short_under_a_cpu_hog(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/ddp_soak.py's short version: 2 DDP jobs in a row beside a busy-loop process,
    torchrun launched directly (one interpreter fewer per job); `python bench/ddp_soak.py`
    is the full one (20 jobs, 2 hog processes)."""
    code = soak.main(["--runs", "2", "--hogs", "1", "--epochs", "1", "--torchrun", "--timeout", "120"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ddp soak: 2 runs, 0 failures, under a 1-process CPU hog" in out


def test_the_balanced_sampler_under_ddp_matches_one_process(runner, tmp_path: Path) -> None:
    """Each rank takes every world-th draw of the one (seed, epoch) draw, so two processes of
    batch 8 step on the same 16 images as one process of batch 16."""
    cfg = merge(
        merge(TINY, DDP), {"output": {"dir": str(tmp_path / "runs")}, "data": {"sampler": "balanced"}}
    )
    cfg["train"] = {"epochs": 2}
    config = tmp_path / "balanced.yaml"
    config.write_text(yaml.safe_dump(cfg))
    done = launch([str(config), "--name", "two"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_clean_exit(done)
    assert "sampler balanced" in done.stdout
    single = invoke(runner, "train", config, "--name", "one", "--set", "data.batch_size=16")
    assert single.exit_code == 0, single.output
    two, one = rows(tmp_path / "runs" / "two"), rows(tmp_path / "runs" / "one")
    for a, b in zip(two, one, strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
