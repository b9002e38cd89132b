"""`cnnctl tune`: the space checked first, trials as ordinary runs, pruning, a shared SQLite
study across processes, and a killed tune continued by the same command."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cnnctl.config import load_config
from tests.conftest import TINY, invoke, merge
from tests.test_hostile_outputs import one_line_error

optuna = pytest.importorskip("optuna")

SPACE = {
    "optimizer.lr": {"type": "float", "low": 1.0e-4, "high": 3.0e-2, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
}


def write(tmp_path: Path, epochs: int = 2, space: dict | None = None, **data) -> tuple[Path, Path]:
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}, "train": {"epochs": epochs}, "data": data})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space or SPACE), encoding="utf-8")
    return config, space_file


def study(folder: Path, name: str = "tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


@pytest.mark.parametrize(
    ("space", "needle"),
    [
        ({"optimizer.lrr": {"type": "float", "low": 0.1, "high": 0.2}}, "optimizer.lrr"),
        ({"model.dropout": {"type": "float", "low": 0.0, "high": 1.5}}, "model.dropout"),
        ({"optimizer.lr": {"type": "float", "low": 0.2, "high": 0.1}}, "below high"),
        ({"optimizer.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "low > 0"),
        ({"data.batch_size": {"type": "categorical", "choices": []}}, "non-empty"),
        ({"optimizer.lr": {"type": "gauss"}}, "float|int|categorical"),
        ({"optimizer.lr": {"type": "float", "low": 0.1, "high": 0.2, "mean": 1}}, "unknown field"),
    ],
)
def test_a_bad_space_is_one_line_before_any_trial(runner, tmp_path: Path, space: dict, needle: str) -> None:
    config, space_file = write(tmp_path, space=space)
    one_line_error(invoke(runner, "tune", config, "--space", space_file, "--trials", "2"), 2, needle)
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was made


def test_a_study_of_ordinary_runs_with_its_table_files_and_best_config(runner, tmp_path: Path) -> None:
    config, space_file = write(tmp_path, epochs=2)
    result = invoke(
        runner, "tune", config, "--space", space_file, "--trials", "3", "--pruner", "none", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    folder = tmp_path / "runs" / "tiny"
    assert [t["state"] for t in data["trials"]] == ["complete"] * 3
    for trial in data["trials"]:
        run = Path(trial["run_dir"])
        assert run.parent == folder and run.name == f"trial-{trial['number']}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["best_val_loss"] == pytest.approx(trial["value"])
        stored = yaml.safe_load((run / "config.yaml").read_text())
        assert stored["optimizer"]["lr"] == pytest.approx(trial["params"]["optimizer.lr"])
    best = min(data["trials"], key=lambda t: t["value"])
    assert data["best"]["number"] == best["number"]
    best_cfg = load_config(folder / "best.yaml")  # ready for cnnctl train
    assert best_cfg.optimizer.lr == pytest.approx(best["params"]["optimizer.lr"])
    with open(folder / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in rows] == [0, 1, 2] and "optimizer.lr" in rows[0]
    assert json.loads((folder / "tune.json").read_text())["best"] == data["best"]
    again = invoke(runner, "tune", config, "--space", space_file, "--trials", "3")  # already there
    assert again.exit_code == 0 and len(study(folder).trials) == 3


def test_the_pruner_stops_a_bad_trial_before_its_last_epoch(tmp_path: Path) -> None:
    from cnnctl.workflows.tune import tune

    space = {"optimizer.lr": {"type": "categorical", "choices": [0.01, 1.0e-9]}}
    config, space_file = write(tmp_path, epochs=4, space=space)
    cfg = load_config(config)
    result = tune(cfg, space_file, 8, "prune")
    pruned = [t for t in result.trials if t["state"] == "pruned"]
    assert pruned and all(t["epochs"] < 4 for t in pruned)
    assert any(t["params"]["optimizer.lr"] == 1.0e-9 for t in pruned)  # the lr that cannot learn
    assert all((Path(t["run_dir"]) / "last.pt").is_file() for t in pruned)  # resumable as any run


def _tune_process(config: Path, space: Path, trials: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnctl", "tune", str(config), "--space", str(space), "--trials", str(trials)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def test_two_processes_share_one_sqlite_study(tmp_path: Path) -> None:
    # trials of a few seconds each: far longer than the two processes' start-up skew
    config, space_file = write(tmp_path, epochs=3, samples_per_class=24)
    first, second = _tune_process(config, space_file, 8), _tune_process(config, space_file, 8)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    trials = study(tmp_path / "runs" / "tiny").trials
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 8  # counted and asked under the study's lock: no overshoot
    assert len({t.number for t in trials}) == len(trials)
    dirs = [t.user_attrs["run_dir"] for t in finished]
    assert len(set(dirs)) == len(dirs) and all(Path(d).is_dir() for d in dirs)
    both = [sum(f"trial {t.number}:" in out for t in finished) for out in outputs]
    assert all(n >= 1 for n in both) and sum(both) == len(finished)  # each process ran some


def test_a_killed_tune_continues_with_the_same_command(tmp_path: Path) -> None:
    config, space_file = write(tmp_path, epochs=40, samples_per_class=40)
    killed = _tune_process(config, space_file, 2)
    folder = tmp_path / "runs" / "tiny"
    deadline = time.monotonic() + 120
    while not (folder / "trial-0" / "last.pt").is_file():  # a trial is under way, an epoch done
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    interrupted = study(folder).trials[0]
    assert interrupted.state.name == "RUNNING"
    write(tmp_path, epochs=2)  # the same command; the epochs shortened so the test is quick
    resumed = _tune_process(config, space_file, 2)
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out
    assert "trial 0 was interrupted" in out
    trials = study(folder).trials
    assert trials[0].state.name == "FAIL"
    assert [t.state.name for t in trials[1:]] == ["COMPLETE", "COMPLETE"]
    assert trials[1].params == interrupted.params  # its parameters ran again first


def test_ctrl_c_writes_the_tables_and_the_same_command_reruns_the_stopped_trial(tmp_path: Path) -> None:
    config, space_file = write(tmp_path, epochs=40, samples_per_class=40)
    stopped = _tune_process(config, space_file, 2)
    folder = tmp_path / "runs" / "tiny"
    deadline = time.monotonic() + 120
    while not (folder / "trial-0" / "last.pt").is_file():
        assert time.monotonic() < deadline and stopped.poll() is None
        time.sleep(0.2)
    stopped.send_signal(signal.SIGINT)
    out = stopped.communicate(timeout=120)[0]
    assert stopped.returncode == 130, out
    assert "the same command continues the study" in out
    assert json.loads((folder / "tune.json").read_text())["trials"][0]["state"] == "fail"
    write(tmp_path, epochs=2)
    again = _tune_process(config, space_file, 2)
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0 and "trial 0 was stopped" in out, out
    trials = study(folder).trials
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0


def test_a_trial_whose_run_fails_is_recorded_and_the_study_goes_on(runner, tmp_path: Path) -> None:
    space = {"optimizer.lr": {"type": "categorical", "choices": [0.01, 1.0e12]}}
    config, space_file = write(tmp_path, epochs=2, space=space)
    result = invoke(
        runner, "tune", config, "--space", space_file, "--trials", "6", "--pruner", "none", "--json"
    )
    assert result.exit_code == 0, result.output
    trials = json.loads(result.stdout)["trials"]
    assert len(trials) == 6
    failed = [t for t in trials if t["state"] == "fail"]
    assert failed and all(
        t["params"]["optimizer.lr"] == 1.0e12 and "non-finite" in t["error"] for t in failed
    )
    assert all(t["state"] == "complete" for t in trials if t["params"]["optimizer.lr"] == 0.01)
