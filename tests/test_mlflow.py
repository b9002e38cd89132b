"""logging.mlflow: what a run logs, read back with MLflow's own client; a tracking failure
never stops training; tune's trials and cv's folds are children of one parent run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY, invoke, merge

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def write(tmp_path: Path, logging: dict, epochs: int = 3) -> Path:
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs"), "plots": True}, "train": {"epochs": epochs},
                       "logging": logging})  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def runs_of(store: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{store}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    return client.search_runs([found.experiment_id])


def test_a_run_logs_params_metrics_per_epoch_tags_and_artifacts(runner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = invoke(runner, "train", write(tmp_path, {"mlflow": True}))
    assert result.exit_code == 0, result.output
    store = tmp_path / "runs" / "mlflow.db"
    (run,) = runs_of(store, "tiny")  # the config file's stem
    client = MlflowClient(f"sqlite:///{store}")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (
        params["optimizer.lr"] == "0.01"
        and params["model.name"] == "small_cnn"
        and params["train.epochs"] == "3"
    )
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3]  # one value per epoch
    summary = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert run.data.tags["cnnctl.run_dir"] == str(tmp_path / "runs" / "tiny")
    assert run.data.tags["cnnctl.task"] == "single_label"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "config.yaml", "plots"} <= artifacts and "checkpoints" not in artifacts
    assert not (tmp_path / "mlruns").exists() and not Path("mlruns").exists()  # nothing in the cwd


def test_a_tracking_failure_warns_once_and_training_goes_on(runner, tmp_path: Path) -> None:
    result = invoke(
        runner, "train", write(tmp_path, {"mlflow": True, "mlflow_uri": "bogus://nowhere"}, epochs=2)
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("MLflow tracking at bogus://nowhere failed") == 1
    assert (tmp_path / "runs" / "tiny" / "summary.json").is_file()


def test_tune_trials_are_children_of_one_parent_run(runner, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("optuna")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = write(tmp_path, {"mlflow": True}, epochs=2)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.dropout": {"type": "float", "low": 0.0, "high": 0.5}}))
    result = invoke(runner, "tune", config, "--space", space, "--trials", "2", "--pruner", "none")
    assert result.exit_code == 0, result.output
    runs = runs_of(tmp_path / "runs" / "mlflow.db", "tiny")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert "best_value" in parents[0].data.metrics


def test_cv_folds_are_children_of_one_parent_run_also_when_continued(
    runner, tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("sklearn")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = write(tmp_path, {"mlflow": True}, epochs=2)
    result = invoke(runner, "cv", config, "--folds", "2")
    assert result.exit_code == 0, result.output
    store = tmp_path / "runs" / "mlflow.db"
    runs = runs_of(store, "tiny")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {"mean_val_loss", "mean_val_accuracy"} <= parents[0].data.metrics.keys()
    assert sorted(c.data.params["data.cv.fold"] for c in children) == ["0", "1"]
    history = MlflowClient(f"sqlite:///{store}").get_metric_history(children[0].info.run_id, "val_loss")
    assert len(history) == 2  # one value per epoch
    (tmp_path / "runs" / "tiny" / "fold-1" / "summary.json").unlink()  # as if killed before its end
    again = invoke(runner, "cv", config, "--folds", "2")
    assert again.exit_code == 0, again.output
    assert len([r for r in runs_of(store, "tiny") if "mlflow.parentRunId" not in r.data.tags]) == 1


def test_a_resumed_run_logs_into_the_same_mlflow_run(runner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert invoke(runner, "train", write(tmp_path, {"mlflow": True}, epochs=2)).exit_code == 0
    run_dir = tmp_path / "runs" / "tiny"
    more = invoke(runner, "train", "--resume", run_dir, "--set", "train.epochs=3", "--force")
    assert more.exit_code == 0, more.output
    (run,) = runs_of(tmp_path / "runs" / "mlflow.db", "tiny")
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2, 3]
    assert run.info.status == "FINISHED"
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == run.info.run_id
