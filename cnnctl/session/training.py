"""A training run from a validated config, or a resumed one, to its run directory: what
`cnnctl train` runs, and each trial of `cnnctl tune` and fold of `cnnctl cv`.

The session (data, model, loaders, optimizer) is built by `cnnctl.session.build`; this module
claims the run dir, runs the loop (`cnnctl.engine.loop.fit`) with the session's hooks, and
finishes the run: best.pt tested, summary.json and the plots written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnctl import tasks
from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.artifacts import tracking
from cnnctl.artifacts.resume import ResumePoint, load_own_checkpoint, own_run_id, restore, unusable
from cnnctl.artifacts.run_logs import MetricsLog, TensorBoardLog, write_splits
from cnnctl.artifacts.rundir import check_name, create_run_dir, lock_run
from cnnctl.config import RunConfig, dump_yaml
from cnnctl.core.atomic import remove_stale_temps, write_json, write_text
from cnnctl.core.errors import CnnctlError, ConfigError, Interrupted, RunFailed
from cnnctl.core.logs import logs_to
from cnnctl.data import Splits, make_loader
from cnnctl.engine.loop import fit
from cnnctl.engine.state import FitSettings, FitState, Progress, SilentProgress
from cnnctl.engine.stepper import StopRequested
from cnnctl.runtime.distributed import Dist, peer_gone
from cnnctl.runtime.interrupt import StopSignals
from cnnctl.session.build import Session, batch_size, build_session
from cnnctl.session.calibrate import calibrate, rewrite_with
from cnnctl.session.hooks import checkpointer, unfreezer
from cnnctl.session.lr import resolve_auto_lr
from cnnctl.session.run_outputs import train_plots, write_run_report
from cnnctl.tasks.metrics import EvalResult


@dataclass
class TrainOutcome:
    run_dir: Path
    state: FitState
    best: dict[str, Any]
    test: EvalResult | None
    device: str
    summary: dict[str, Any] = field(default_factory=dict)
    main: bool = True  # False on the other ranks under torchrun: they print nothing
    splits: Splits | None = field(default=None, repr=False)  # what it trained on (cv scores its val)


def train(
    cfg: RunConfig,
    run_name: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
    log: Any = None,
    resume: ResumePoint | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    tracking_as: tuple[str | None, str | None] | None = None,
) -> TrainOutcome:
    """Train a model as `cfg` says; write the run directory; evaluate best.pt on test.

    With `resume`, continue that run in its own directory from its last completed epoch.
    `on_epoch(row)` is called with each epoch's metrics row once its checkpoints are written
    (tune's pruner: an exception it raises stops the run there, resumable from last.pt).
    `tracking_as` = (MLflow experiment, parent run id) for logging.mlflow (tune, cv).
    SIGINT/SIGTERM stop at the next batch boundary with `Interrupted` (exit 130/143).
    """
    dist = Dist.from_env(cfg.device)  # torchrun: join the process group; else one process
    if not dist.main:  # only rank 0 reports
        progress, log = SilentProgress(), lambda message: None
    say = log or (lambda message: None)
    try:
        with logs_to(log), StopSignals() as signals:
            check_name(run_name)
            cfg = resolve_auto_lr(cfg, dist, signals)  # optimizer.lr: auto → an lr-find sweep first
            run = build_session(cfg, resume, signals, dist)
            with contextlib.ExitStack() as held:  # the run's lock, released however it ends
                run.on_epoch, run.tracking = on_epoch, tracking_as
                return _train_in(
                    run, run_name, force, progress or SilentProgress(), say, resume, signals, held
                )
    except RuntimeError as err:
        if dist.enabled and peer_gone(err):  # one line, not a traceback: the other process says why
            raise RunFailed(
                f"rank {dist.rank}: another process of the job stopped; this one stops too"
            ) from None
        raise
    finally:
        dist.close()


def _claim(
    run: Session, run_name: str, force: bool, resume: ResumePoint | None, held: contextlib.ExitStack
) -> tuple[Path, str]:
    """The run dir and run id this process writes: a new one (made, marked and locked by rank
    0) or the resumed one (locked, its stale temp files removed, its id checked)."""
    dist, cfg = run.dist, run.cfg
    claimed: Any = None
    if dist.main:
        try:
            claimed = _claim_here(cfg, run_name, force, resume, held)
        except CnnctlError as err:
            dist.broadcast(str(err))  # the other ranks stop too instead of waiting
            raise
    claimed = dist.broadcast(claimed)  # one run dir for all ranks
    if isinstance(claimed, str):
        raise RunFailed(f"rank 0 could not claim the run dir: {claimed}")
    folder, ident = claimed
    return Path(folder), ident


def _claim_here(
    cfg: RunConfig, run_name: str, force: bool, resume: ResumePoint | None, held: contextlib.ExitStack
) -> tuple[str, str]:
    if resume is None:
        folder, ident, lock = create_run_dir(cfg.output.dir, run_name, force=force)
        held.callback(lock.release)
        return str(folder), ident
    run_dir = resume.run_dir
    held.callback(lock_run(run_dir.parent, run_dir.name).release)
    remove_stale_temps(run_dir)
    remove_stale_temps(run_dir / "plots")
    return str(run_dir), own_run_id(resume, write=True)


def _train_in(
    run: Session,
    run_name: str,
    force: bool,
    progress: Progress,
    say: Callable[[str], None],
    resume: ResumePoint | None,
    signals: StopSignals,
    held: contextlib.ExitStack,
) -> TrainOutcome:
    cfg, dist = run.cfg, run.dist
    state = FitState()
    if cfg.logging.tensorboard:
        TensorBoardLog.require()
    if cfg.logging.mlflow:
        tracking.require()
    run_dir, run.run_id = _claim(run, run_name, force, resume, held)
    if resume is not None:
        state = restore(resume, run.model, run.stepper, run.run_id, write=dist.main)
        if _finished(run_dir, state, cfg):  # killed after its last checkpoint: finish it
            say(
                f"resuming {run_dir}: its {state.epoch} epochs are done; testing best.pt and writing its summary"
            )
            return _finish(run, run_dir, state, say)
        say(f"resuming {run_dir} after epoch {state.epoch} (best so far: epoch {state.best_epoch})")
    if dist.main:
        write_text(run_dir / "config.yaml", dump_yaml(cfg), "config")
        if run.splits.members:  # file-based sources: which file went to which split
            write_splits(run_dir / "splits.csv", run.splits.members)
    say(_opening_line(run, run_dir))
    sinks, tracker = _sinks(run, run_dir, run_name, state) if dist.main else ([], None)
    on_epoch_end = _with_callback(checkpointer(run, run_dir, sinks), run.on_epoch)
    if resume is not None:  # last: building the session used the RNGs too
        per_rank = resume.checkpoint.get("rng_ranks") or []
        with unusable(run_dir / "last.pt"):
            ckpt.restore_rng(per_rank[dist.rank] if len(per_rank) == dist.world else resume.checkpoint["rng"])
    try:
        try:
            state = _fit(run, state, progress, on_epoch_end, run_dir, signals)
        finally:
            _close(sinks)
        outcome = _finish(run, run_dir, state, say)
    except BaseException as err:
        if tracker is not None:  # an interrupted or pruned run is KILLED, a failed one FAILED
            failed = isinstance(err, CnnctlError) and not isinstance(err, Interrupted)
            tracker.finish(None, "FAILED" if failed else "KILLED")
        raise
    if tracker is not None:
        tracker.finish(outcome.summary)
    return outcome


def _sinks(run: Session, run_dir: Path, run_name: str, state: FitState) -> tuple[list[Any], Any]:
    """Where epoch rows go (rank 0): metrics.csv, TensorBoard, MLflow; and the MLflow tracker."""
    cfg = run.cfg
    sinks: list[Any] = [MetricsLog(run_dir / "metrics.csv", rows=state.history)]
    if cfg.logging.tensorboard:
        sinks.append(TensorBoardLog(run_dir / "tensorboard"))
    tracker = None
    if cfg.logging.mlflow:
        experiment, parent = run.tracking or (None, None)
        name = cfg.logging.mlflow_experiment or experiment or run_name
        tracker = tracking.MlflowTracker(cfg, run_dir, name, parent)
        sinks.append(tracker)
    return sinks, tracker


def _with_callback(
    hook: Callable[..., None], callback: Callable[[dict[str, Any]], None] | None
) -> Callable[..., None]:
    if callback is None:
        return hook

    def on_epoch_end(row: Any, state: FitState, is_best: bool, result: Any = None) -> None:
        hook(row, state, is_best, result)
        callback(row.to_plain())

    return on_epoch_end


def _opening_line(run: Session, run_dir: Path) -> str:
    splits = run.splits
    return (
        f"run dir {run_dir} · device {run.device} · amp {run.precision.name} · "
        f"{len(splits.train)} train / {len(splits.val)} val / "
        f"{len(splits.test) if splits.test is not None else 0} test images · "
        f"{len(splits.classes)} classes · input {'x'.join(map(str, splits.input.shape))}"
        + "".join(f" · {part}" for part in _imbalance(run.cfg))
    )


def _imbalance(cfg: RunConfig) -> list[str]:
    """What the run does about class imbalance, for its first line (nothing when nothing)."""
    parts = []
    weights = cfg.train.class_weights
    if weights != "none":
        parts.append(f"class weights {weights if isinstance(weights, str) else 'as given'}")
    if cfg.data.sampler == "balanced":
        parts.append("sampler balanced")
    if cfg.train.loss == "focal":
        parts.append(f"loss focal (gamma {cfg.train.focal_gamma:g})")
    return parts


def _fit(
    run: Session,
    state: FitState,
    progress: Progress,
    on_epoch_end: Callable[..., None],
    run_dir: Path,
    signals: StopSignals,
) -> FitState:
    """The loop, with a stop request and an out-of-memory each turned into one line."""
    cfg = run.cfg
    settings = FitSettings(cfg.train.epochs, cfg.train.monitor, cfg.train.patience, cfg.train.min_delta)
    try:
        return fit(
            run.stepper,
            run.train_batches,
            run.val_batches,
            run.splits.classes,
            settings,
            state,
            progress,
            on_epoch_end,
            on_epoch_start=unfreezer(run, cfg),
        )
    except StopRequested as stop:
        getattr(progress, "close", lambda: None)()
        kept = (
            f"last.pt holds epoch {state.epoch}; continue with: cnnctl train --resume {run_dir}"
            if state.epoch
            else "no epoch had completed, so there is nothing to resume"
        )
        raise Interrupted(
            f"{signals.name}: stopped at epoch {stop.epoch}, batch {stop.batch} (that epoch is "
            f"dropped); {kept}",
            signals.exit_code,
        ) from None
    except Exception as err:
        from cnnctl.engine.autobatch import is_oom

        if is_oom(err):
            epoch, index = run.stepper.position
            raise RunFailed(
                f"out of memory at epoch {epoch}, batch {index} with data.batch_size {batch_size(cfg)} "
                f"on {run.device}: lower data.batch_size (train.accumulate keeps the effective batch), "
                "or set data.batch_size: auto"
            ) from None
        raise


def _close(sinks: list[Any]) -> None:
    for sink in sinks:
        getattr(sink, "close", lambda: None)()


def _finished(run_dir: Path, state: FitState, cfg: RunConfig) -> bool:
    """True when the run has no epoch left but its test/summary/plots were never written (it was
    killed after its last checkpoint); a run that is done altogether is refused, in one line."""
    if state.stopped_early or state.epoch >= cfg.train.epochs:
        if _summarised_epochs(run_dir) != state.epoch:
            return True
        done = "stopped early" if state.stopped_early else f"finished its {state.epoch} epochs"
        patience = ", and a larger train.patience" if state.stopped_early else ""
        raise ConfigError(
            f"{run_dir}: the run {done}; to train on, resume with a larger train.epochs "
            f"(--set train.epochs=N --force{patience})"
        )
    return False


def _summarised_epochs(run_dir: Path) -> int | None:
    """epochs_run in the run's summary.json (None without a readable one)."""
    import json

    try:
        value = json.loads((run_dir / "summary.json").read_text(encoding="utf-8")).get("epochs_run")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _finish(run: Session, run_dir: Path, state: FitState, say: Callable[[str], None]) -> TrainOutcome:
    """Reload best.pt, evaluate it on the test split, write summary.json and the plots."""
    cfg, splits, dist = run.cfg, run.splits, run.dist
    best = None
    if state.best_epoch:  # rank 0 reads best.pt and hands its weights (and task) to the other ranks
        best = dist.broadcast(_best_of(run_dir, run.run_id) if dist.main else None)
    test_result = val_result = calibration = None
    if best is not None:
        best_weights, record = best
        run.model.load_state_dict(best_weights)
        run.stepper.task = tasks.from_record(record)  # as best.pt decides (multi_label: its thresholds)
        if cfg.train.calibrate:
            calibration = _calibrate(run, run_dir, say)
        if run.test_data is not None:
            test_batches = make_loader(run.test_data, batch_size(cfg), shuffle=False, **run.loader_options)
            test_result = run.stepper.evaluate(test_batches, splits.classes, topk=(1, 5))
        elif cfg.output.plots:  # the confusion plot falls back to val (evaluated on every rank)
            val_result = run.stepper.evaluate(run.val_batches, splits.classes)
    best_row = state.history[state.best_epoch - 1] if state.best_epoch else {}
    summary = {
        "run_dir": str(run_dir),
        "model": cfg.model.name,
        "dataset": cfg.data.source,
        "data_root": cfg.data.root,
        "device": str(run.device),
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "monitor": cfg.train.monitor,
        "best_epoch": state.best_epoch,
        "best_val_loss": best_row.get("val_loss"),
        "best_val_acc": best_row.get("val_acc"),
        "test": test_result.to_plain() if test_result else None,
        "calibration": calibration,
        "classes": list(splits.classes),
        "input": splits.input.to_plain(),
        "train_samples": len(splits.train),
        "val_samples": len(splits.val),
        "test_samples": len(splits.test) if splits.test is not None else 0,
        "total_seconds": sum(r["seconds"] for r in state.history),
        "versions": ckpt.versions(),
    }
    if dist.enabled:
        summary["processes"] = dist.world
    if dist.main:  # summary.json last: its presence says the run is done
        if cfg.output.plots:
            train_plots(run, run_dir, state, test_result or val_result, "test" if test_result else "val", say)
        if cfg.output.report and best is not None:
            write_run_report(run, run_dir, summary, say)
        write_json(run_dir / "summary.json", summary)
    return TrainOutcome(run_dir, state, best_row, test_result, str(run.device), summary, dist.main, splits)


def _calibrate(run: Session, run_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Fit best.pt's temperature on val (every rank), rewrite best.pt with it (rank 0) and
    leave the calibrated task on the stepper; the summary's `calibration` record."""
    chosen = run.cfg.train.threshold == "auto"  # multi_label thresholds chosen on val move with T
    uncalibrated = run.stepper.task.with_temperature(1.0, chosen)  # a finished run resumed: from T = 1
    task, record = calibrate(
        run.stepper, run.val_batches, run.splits.classes, uncalibrated, run.dist, keep_decisions=chosen
    )
    run.stepper.task = task
    if run.dist.main:
        data = load_own_checkpoint(run_dir / "best.pt", run.run_id)
        rewrite_with(run_dir / "best.pt", data, task, record)
        say(
            f"calibrated on val: temperature {record['temperature']:.3f}, ECE {record['ece_before']:.4f} → "
            f"{record['ece_after']:.4f}, NLL {record['nll_before']:.4f} → {record['nll_after']:.4f}"
        )
    return record


def _best_of(run_dir: Path, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """best.pt's weights, and its task record (task, output_kind, classes and the task's keys)."""
    data = load_own_checkpoint(run_dir / "best.pt", run_id)
    keys = ("task", "output_kind", "classes", "thresholds", "label_separator", "temperature")
    return data["model"], {k: data[k] for k in keys if k in data}
