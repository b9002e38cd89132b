"""`cnnctl tune`: hyperparameter search on Optuna, each trial an ordinary training run.

- The space (`cnnctl.config.space`) is checked against the config schema before any trial.
- Trial k is the run dir `<output.dir>/<study>/trial-<k>/` (resumable, with its plots),
  trained by exactly what `cnnctl train` runs. Its objective is the run's monitored metric
  (train.monitor: the best val_loss, minimised, or val_acc, maximised).
- Every epoch's value goes to the trial, so the median pruner stops poor trials early; a pruned
  run keeps its last.pt.
- The study lives in Optuna's RDB storage: by default a SQLite file `<study folder>/study.db`.
  Several `cnnctl tune` processes on one storage share the study: each asks it for the next
  trial and they stop together once `--trials` trials are finished.
- A tune that is stopped (Ctrl-C) or killed continues with the same command on the same
  machine: its interrupted trial is failed and its parameters are tried again first.
- The end (or Ctrl-C) writes trials.csv, best.yaml (the base config with the best parameters,
  ready for `cnnctl train`) and tune.json, and computes Optuna's importance of each key.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnctl.config import RunConfig, dump_yaml, validate
from cnnctl.config.space import Param, read_space, with_values
from cnnctl.core.atomic import write_json, write_text
from cnnctl.core.errors import CnnctlError, ConfigError, Interrupted
from cnnctl.session.training import train

INSTALL_HINT = "pip install 'cnnctl[tune]'"
PRUNERS = ("median", "none")
FINISHED = ("COMPLETE", "PRUNED")


class Pruned(Exception):
    """Raised from a trial's epoch hook when the pruner says stop."""


@dataclass
class TuneResult:
    study: str
    storage: str
    folder: Path
    direction: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    importance: dict[str, float] | None = None

    def to_plain(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "storage": self.storage,
            "folder": str(self.folder),
            "direction": self.direction,
            "best": self.best,
            "importance": self.importance,
            "trials": self.trials,
        }


def optuna_module() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"cnnctl tune needs the 'optuna' package: {INSTALL_HINT}") from None
    return optuna


def tune(
    cfg: RunConfig,
    space: Path,
    trials: int,
    study_name: str,
    *,
    storage: str | None = None,
    pruner: str = "median",
    say: Callable[[str], None] = lambda line: None,
) -> TuneResult:
    """Run trials until the study holds `trials` finished (complete or pruned) ones."""
    optuna = optuna_module()
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner!r}: allowed: {', '.join(PRUNERS)}")
    params = read_space(space, cfg)
    folder = Path(cfg.output.dir) / study_name
    folder.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(folder / 'study.db').absolute()}"
    with _creating(folder):  # two processes starting at once must not both create the schema
        study, store = _study(optuna, url, study_name, cfg, pruner)
    with _creating(folder):  # two processes restarted together must not both retry a trial
        _retry_orphans(optuna, study, store, say)
    parent = _parent_run(cfg, study, study_name, folder)
    objective = _objective(optuna, cfg, params, folder, say, parent)
    try:
        while (trial := _next_trial(study, trials, folder)) is not None:
            _run_trial(optuna, study, trial, objective, say)
    except Interrupted:
        say("tune stopped; the same command continues the study")
        _write_outputs(_result(optuna, study, study_name, url, folder, cfg), cfg, params)
        raise
    result = _result(optuna, study, study_name, url, folder, cfg)
    _write_outputs(result, cfg, params)
    if parent is not None:
        from cnnctl.artifacts.tracking import end_parent

        end_parent(cfg, parent[1], {"best_value": result.best["value"]} if result.best else {})
    return result


def _parent_run(cfg: RunConfig, study: Any, name: str, folder: Path) -> tuple[str, str | None] | None:
    """With logging.mlflow: (experiment, the study's parent MLflow run), made once per study
    (its id kept in the study, so every process's trials are children of one run)."""
    if not cfg.logging.mlflow:
        return None
    from cnnctl.artifacts.tracking import parent_run

    experiment = cfg.logging.mlflow_experiment or name
    with _creating(folder):
        known = study.user_attrs.get("mlflow_parent")
        if not isinstance(known, str):
            known = parent_run(cfg, experiment, f"tune {name}", {"cnnctl.study": name})
            if known is not None:
                study.set_user_attr("mlflow_parent", known)
    return experiment, known


def _creating(folder: Path) -> Any:
    """The study folder's file lock: what the tune processes of this machine do one at a time
    (creating the storage, retrying orphans, counting and asking for a trial)."""
    from filelock import FileLock

    return FileLock(str(folder / ".study.lock"), timeout=300)


def _study(optuna: Any, url: str, name: str, cfg: RunConfig, pruner: str) -> tuple[Any, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several processes, one file
    try:
        storage = optuna.storages.RDBStorage(url, **kwargs)
    except Exception as err:  # noqa: BLE001 - a bad URL or an unreachable database
        raise ConfigError(
            f"--storage {url}: cannot open it ({err.__class__.__name__}: {str(err).splitlines()[0]})"
        ) from None
    chosen = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if pruner == "median"
        else optuna.pruners.NopPruner()
    )
    direction = "maximize" if cfg.train.monitor == "val_acc" else "minimize"
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction=direction,
        pruner=chosen,
    )
    # Seeded by the config's seed and the trials already there: a fresh study run alone is
    # reproducible, and a process joining a study under way samples differently.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(study.get_trials(deepcopy=False)))
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {name!r} {study.direction.name.lower()}s; this config's train.monitor {cfg.train.monitor} asks to {direction}"
        )
    return study, storage


def _next_trial(study: Any, trials: int, folder: Path) -> Any:
    """A new trial, or None once the study holds `trials` finished or running ones. Counting
    and asking happen under the study folder's lock, so processes on one machine never
    overshoot (processes on other machines sharing a database can, by one trial each)."""
    with _creating(folder):
        if _counted(study) >= trials:
            return None
        return study.ask()


def _run_trial(
    optuna: Any, study: Any, trial: Any, objective: Callable[[Any], float], say: Callable[[str], None]
) -> None:
    """Run one trial and tell the study how it ended (a failure is told, then raised)."""
    state = optuna.trial.TrialState
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=state.PRUNED)
        return
    except Interrupted:
        trial.set_user_attr("interrupted", True)  # the same command runs its parameters again
        study.tell(trial, state=state.FAIL)
        raise
    except CnnctlError as err:  # this trial's settings failed (diverged, no lr found...): the study goes on
        trial.set_user_attr("error", str(err))
        study.tell(trial, state=state.FAIL)
        say(f"trial {trial.number}: failed: {err}")
        return
    except BaseException:
        study.tell(trial, state=state.FAIL)
        raise
    study.tell(trial, value)


def _counted(study: Any) -> int:
    """Trials finished (a trial whose run failed included), under way or queued, in any
    process: what `--trials` caps. An interrupted trial does not count: it runs again."""
    return sum(
        t.state.name in (*FINISHED, "RUNNING", "WAITING")
        or (t.state.name == "FAIL" and "error" in t.user_attrs)
        for t in study.get_trials(deepcopy=False)
    )


def _retry_orphans(optuna: Any, study: Any, storage: Any, say: Callable[[str], None]) -> None:
    """Trials a stopped tune left behind run again first: a RUNNING one whose process on this
    machine is gone (killed) is failed, and it and an interrupted one (Ctrl-C) are queued
    again with their parameters, once."""
    host, state = socket.gethostname(), optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        pid = trial.user_attrs.get("pid")
        mine = trial.user_attrs.get("host") == host and isinstance(pid, int)
        orphan = trial.state == state.RUNNING and mine and not _alive(pid)
        stopped = trial.state == state.FAIL and trial.user_attrs.get("interrupted")
        if not (orphan or stopped) or trial.number in retried:
            continue
        if orphan:
            study_id = storage.get_study_id_from_name(study.study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_state_values(trial_id, state.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        how = f"was interrupted (process {pid} is gone)" if orphan else "was stopped"
        say(f"trial {trial.number} {how}: its parameters run again")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def suggest(trial: Any, param: Param) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(param.key, list(param.choices))
    assert param.low is not None and param.high is not None
    if param.type == "int":
        step = int(param.step or 1)
        return trial.suggest_int(param.key, int(param.low), int(param.high), step=step, log=param.log)
    return trial.suggest_float(param.key, param.low, param.high, step=param.step, log=param.log)


def _objective(
    optuna: Any,
    cfg: RunConfig,
    params: list[Param],
    folder: Path,
    say: Callable[[str], None],
    parent: tuple[str, str | None] | None = None,
) -> Callable[[Any], float]:
    monitor = cfg.train.monitor

    def objective(trial: Any) -> float:
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        values = {param.key: suggest(trial, param) for param in params}
        where = {"output.dir": str(folder), "output.name": None}
        if parent is not None:  # the trials log where the study's parent run is, not in the study folder
            from cnnctl.artifacts.tracking import tracking_uri

            where["logging.mlflow_uri"] = tracking_uri(cfg)
        raw = with_values(cfg.to_plain(), {**values, **where})
        trial_cfg = validate(raw, f"trial {trial.number}")

        def on_epoch(row: dict[str, Any]) -> None:
            trial.report(float(row[monitor]), int(row["epoch"]))
            if trial.should_prune():
                raise Pruned(int(row["epoch"]))

        started = time.perf_counter()
        shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        try:
            outcome = train(trial_cfg, f"trial-{trial.number}", on_epoch=on_epoch, tracking_as=parent)
        except Pruned as stop:
            trial.set_user_attr("seconds", time.perf_counter() - started)
            say(f"trial {trial.number}: {shown} → pruned after epoch {stop.args[0]}")
            raise optuna.TrialPruned() from None
        finally:
            trial.set_user_attr("run_dir", str(folder / f"trial-{trial.number}"))
        value = outcome.summary.get(f"best_{monitor}")
        trial.set_user_attr("run_dir", str(outcome.run_dir))
        trial.set_user_attr("seconds", time.perf_counter() - started)
        if value is None:
            raise CnnctlError(f"trial {trial.number}: the run has no {monitor}")
        say(f"trial {trial.number}: {shown} → {monitor} {value:.4f} ({time.perf_counter() - started:.1f}s)")
        return float(value)

    return objective


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _result(optuna: Any, study: Any, name: str, url: str, folder: Path, cfg: RunConfig) -> TuneResult:
    rows = [_row(t) for t in study.get_trials(deepcopy=False)]
    result = TuneResult(name, url, folder, study.direction.name.lower(), rows)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if complete:
        best = study.best_trial
        result.best = {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
        }
    if len(complete) >= 2:
        try:
            importance = optuna.importance.get_param_importances(study)
            result.importance = {k: float(v) for k, v in importance.items()}
        except (RuntimeError, ValueError, ZeroDivisionError) as err:
            logging.getLogger("cnnctl").debug(f"no importance: {err}")
    return result


def _row(trial: Any) -> dict[str, Any]:
    steps = sorted(trial.intermediate_values)
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "epochs": steps[-1] if steps else None,
        "seconds": trial.user_attrs.get("seconds"),
        "run_dir": trial.user_attrs.get("run_dir"),
        "params": dict(trial.params),
        "error": trial.user_attrs.get("error"),
    }


def _write_outputs(result: TuneResult, cfg: RunConfig, params: list[Param]) -> None:
    """trials.csv, best.yaml (with a complete trial) and tune.json in the study folder."""
    keys = [p.key for p in params]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["number", "state", "value", "epochs", "seconds", "run_dir", *keys])
    for row in result.trials:
        writer.writerow([row["number"], row["state"], row["value"], row["epochs"], row["seconds"], row["run_dir"],
                         *(row["params"].get(k) for k in keys)])  # fmt: skip
    write_text(result.folder / "trials.csv", text.getvalue(), "trials file")
    if result.best is not None:
        best = validate(with_values(cfg.to_plain(), result.best["params"]), "best trial")
        header = f"# cnnctl tune, study {result.study}: trial {result.best['number']}, value {result.best['value']:.6g}\n"
        write_text(result.folder / "best.yaml", header + dump_yaml(best), "best config")
    write_json(result.folder / "tune.json", result.to_plain())
