"""DDP under torchrun: 2 CPU processes (gloo) on tiny data, against one process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cnnctl.distributed import shard_order
from tests.conftest import TINY, invoke, merge

ROOT = Path(__file__).resolve().parents[1]

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


def launch(args: list[str], cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(str(p) for p in (extra_path, ROOT) if p is not None)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cnnctl", "train", *args, "--nproc", "2"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_shards_pad_training_and_never_repeat_evaluation() -> None:
    order = torch.arange(7)
    train = [shard_order(order, (r, 2), pad=True).tolist() for r in range(2)]
    assert train == [[0, 2, 4, 6], [1, 3, 5, 0]]  # equal steps per rank
    evaluation = [shard_order(order, (r, 2), pad=False).tolist() for r in range(2)]
    assert sorted(evaluation[0] + evaluation[1]) == list(range(7))


def test_two_processes_match_one_process_with_the_same_global_batch(runner, tmp_path: Path) -> None:
    cfg = merge(merge(TINY, DDP), {"output": {"dir": str(tmp_path / "runs")}})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    done = launch([str(config), "--name", "two"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
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
    assert [row["epoch"] for row in rows(tmp_path / "runs" / "two")] == [1, 2, 3, 4, 5]
    assert again.stdout.count("training finished") == 1


def test_a_failing_rank_brings_the_job_down(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    from cnnctl import engine\n"
        "    from cnnctl.errors import RunFailed\n"
        "    def boom(self, *args, **kwargs):\n"
        "        raise RunFailed('rank 1 failed on purpose')\n"
        "    engine.Stepper.train_epoch = boom\n"
    )
    cfg = merge(merge(TINY, DDP), {"output": {"dir": str(tmp_path / "runs")}})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    done = launch([str(config)], tmp_path, extra_path=hook)  # timeout: a hang fails the test
    assert done.returncode != 0
    assert "error: rank 1 failed on purpose" in done.stderr
