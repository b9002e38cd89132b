"""MLflow tracking of a run (`logging.mlflow`), off the training loop.

Every MLflow call goes through one background thread in order, so an epoch never waits on
the tracking server. The first failure (server down, bad URI, a full disk) is one warning;
after it the tracker drops its calls and training goes on. `finish` waits for what is queued,
up to FLUSH_SECONDS. The MLflow run id is kept in <run>/mlflow.json, so a resumed run goes on
logging into the same MLflow run.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cnnctl import __version__
from cnnctl.config import RunConfig
from cnnctl.core.atomic import write_json
from cnnctl.core.errors import ConfigError

INSTALL_HINT = "pip install 'cnnctl[mlflow]'"
FLUSH_SECONDS = 120.0
RECORD = "mlflow.json"
PARAM_BATCH = 100  # MLflow takes at most 100 params per call


def require() -> None:
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            f"logging.mlflow: the mlflow package is not installed; {INSTALL_HINT} or set logging.mlflow: false"
        )


def tracking_uri(cfg: RunConfig) -> str:
    """logging.mlflow_uri, else MLFLOW_TRACKING_URI, else SQLite in output.dir."""
    if cfg.logging.mlflow_uri:
        return cfg.logging.mlflow_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(cfg.output.dir) / 'mlflow.db').absolute()}"


def client(uri: str) -> Any:
    """An MlflowClient for `uri`, MLflow's own INFO lines (schema creation) kept off the console."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def parent_run(cfg: RunConfig, experiment: str, name: str, tags: Mapping[str, str]) -> str | None:
    """A parent MLflow run (a tune study, a cv) whose children are its runs; None, with one
    warning, when tracking fails (the runs then log as top-level runs)."""
    require()
    try:
        tracker = client(tracking_uri(cfg))
        run = tracker.create_run(
            experiment_id(tracker, cfg, experiment),
            tags={"mlflow.runName": name, "cnnctl.version": __version__, **tags},
        )
        return str(run.info.run_id)
    except Exception as err:  # noqa: BLE001 - tracking never stops the work
        logging.getLogger("cnnctl").warning(
            f"MLflow tracking failed ({err.__class__.__name__}); going on without a parent run"
        )
        return None


def experiment_id(tracker: Any, cfg: RunConfig, name: str) -> str:
    """The id of MLflow experiment `name`, made when missing (its artifacts beside our own
    SQLite store when that is where tracking goes); another process making it first is fine."""
    found = tracker.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if not cfg.logging.mlflow_uri and not os.environ.get("MLFLOW_TRACKING_URI"):  # ours: beside the db
        location = (Path(cfg.output.dir) / "mlartifacts" / name).absolute().as_uri()
    try:
        return str(tracker.create_experiment(name, artifact_location=location))
    except Exception:  # noqa: BLE001 - another process made it first
        again = tracker.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def end_parent(
    cfg: RunConfig, run_id: str | None, metrics: Mapping[str, float], status: str = "FINISHED"
) -> None:
    if run_id is None:
        return
    try:
        tracker = client(tracking_uri(cfg))
        for key, value in metrics.items():
            tracker.log_metric(run_id, key, float(value))
        tracker.set_terminated(run_id, status=status)
    except Exception as err:  # noqa: BLE001
        logging.getLogger("cnnctl").warning(
            f"MLflow tracking failed ({err.__class__.__name__}) closing the parent run"
        )


def flat(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys and leaf values of nested plain data."""
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


class MlflowTracker:
    """One MLflow run for one cnnctl run dir: params at start, metrics per epoch, test
    metrics and artifacts at the end."""

    def __init__(self, cfg: RunConfig, run_dir: Path, experiment: str, parent: str | None = None):
        require()
        self.run_dir, self.uri = run_dir, tracking_uri(cfg)
        self.checkpoints = cfg.logging.mlflow_checkpoints
        self.run_id: str | None = None
        self.failed = False
        self.calls: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="cnnctl-mlflow", daemon=True)
        self.worker.start()
        self._submit(lambda: self._open(cfg, experiment, parent))

    # --- the worker -------------------------------------------------------------------
    def _work(self) -> None:
        while (call := self.calls.get()) is not None:
            if self.failed:
                continue
            try:
                call()
            except Exception as err:  # noqa: BLE001 - tracking never stops training
                self.failed = True
                first = str(err).splitlines()[0] if str(err) else err.__class__.__name__
                logging.getLogger("cnnctl").warning(
                    f"MLflow tracking at {self.uri} failed ({err.__class__.__name__}: {first[:200]}); "
                    "training goes on without it"
                )

    def _submit(self, call: Callable[[], None]) -> None:
        self.calls.put(call)

    def _open(self, cfg: RunConfig, experiment: str, parent: str | None) -> None:
        from mlflow.entities import Param

        self.client = client(self.uri)
        previous = self._previous()
        if previous is not None:
            self.run_id = previous
            self.client.update_run(previous, status="RUNNING")
            return
        tags = {"cnnctl.run_dir": str(self.run_dir), "cnnctl.version": __version__, "cnnctl.task": cfg.task,
                "mlflow.runName": self.run_dir.name}  # fmt: skip
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(experiment_id(self.client, cfg, experiment), tags=tags)
        self.run_id = run.info.run_id
        write_json(self.run_dir / RECORD, {"run_id": self.run_id, "uri": self.uri, "experiment": experiment})
        params = [Param(k, str(v)[:6000]) for k, v in flat(cfg.to_plain())]
        for start in range(0, len(params), PARAM_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + PARAM_BATCH])

    def _previous(self) -> str | None:
        import json

        try:
            record = json.loads((self.run_dir / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(record, dict)
            or record.get("uri") != self.uri
            or not isinstance(record.get("run_id"), str)
        ):
            return None
        return str(record["run_id"])

    # --- what the run calls ------------------------------------------------------------
    def append(self, row: dict[str, Any]) -> None:
        """One epoch's metrics row (a metrics.csv sink)."""
        epoch = int(row["epoch"])
        values = {
            k: float(v)
            for k, v in row.items()
            if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
        }
        self._submit(lambda: self._metrics(values, epoch))

    def _metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def close(self) -> None:
        """Sinks are closed when the loop ends; the run itself ends with `finish`."""

    def finish(self, summary: Mapping[str, Any] | None, status: str = "FINISHED") -> None:
        """Test metrics and artifacts (with summary), the run's end state; waits for the queue."""
        if summary is not None:
            self._submit(lambda: self._final(summary))
        self._submit(lambda: self._end(status))
        self.calls.put(None)
        self.worker.join(FLUSH_SECONDS)

    def _final(self, summary: Mapping[str, Any]) -> None:
        test = summary.get("test") or {}
        scalars = {
            f"test_{k}": v for k, v in test.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        calibration = summary.get("calibration") or {}
        scalars |= {f"calibration_{k}": v for k, v in calibration.items() if isinstance(v, int | float)}
        self._metrics(
            {k: float(v) for k, v in scalars.items() if v is not None}, int(summary.get("epochs_run") or 0)
        )
        assert self.run_id is not None
        for name in ("summary.json", "config.yaml", "metrics.csv", "report.html", "splits.csv"):
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        if (self.run_dir / "plots").is_dir():
            self.client.log_artifacts(self.run_id, str(self.run_dir / "plots"), "plots")
        if self.checkpoints:
            for name in ("best.pt", "last.pt"):
                if (self.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name), "checkpoints")

    def _end(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)
