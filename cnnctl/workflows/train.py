"""Library entry points behind the commands: train, evaluate, predict.

Each takes plain arguments (a validated config, a checkpoint path, ...) and returns
results; `cli.py` only parses options and prints through `report.py`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.artifacts.rundir import check_name, create_run_dir, lock_run
from cnnctl.config import TORCHVISION, RunConfig, dump_yaml, load_config, validate
from cnnctl.core.atomic import remove_stale_temps, write_json, write_text
from cnnctl.core.errors import CheckpointError, CnnctlError, ConfigError, DataError, Interrupted, RunFailed
from cnnctl.data import (
    ArrayDataset,
    FileDataset,
    LabelledDataset,
    Splits,
    build_splits,
    decode_workers,
    default_workers,
    folder_eval_set,
    make_loader,
    resolve_workers,
)
from cnnctl.data.transforms import InputSpec, Normalizer, load_for_model
from cnnctl.engine import features, stream
from cnnctl.engine.features import HeadOnly
from cnnctl.engine.loop import (
    EpochRow,
    FitSettings,
    FitState,
    Progress,
    SilentProgress,
    Stepper,
    StopRequested,
    fit,
)
from cnnctl.engine.metrics import EvalResult
from cnnctl.models import ModelSpec, build_model
from cnnctl.report.console import MetricsLog, TensorBoardLog
from cnnctl.runtime.devices import Precision, resolve_device, resolve_precision
from cnnctl.runtime.distributed import Dist, peer_gone
from cnnctl.runtime.interrupt import StopSignals
from cnnctl.runtime.seeding import seed_everything, set_deterministic
from cnnctl.session.optim import (
    Schedule,
    batch_mixer,
    build_optimizer,
    train_loss_fn,
)
from cnnctl.session.resolve import model_spec, resolve_config


@dataclass
class TrainOutcome:
    run_dir: Path
    state: FitState
    best: dict[str, Any]
    test: EvalResult | None
    device: str
    summary: dict[str, Any] = field(default_factory=dict)
    main: bool = True  # False on the other ranks under torchrun: they print nothing


class _SayHandler(logging.Handler):
    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__()
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        self.say(prefix + record.getMessage())


@contextlib.contextmanager
def _logs_to(say: Callable[[str], None] | None) -> Iterator[None]:
    """Show the `cnnctl` logger's lines (weights loaded, head replaced, ...) through `say`;
    with no `say`, they go wherever the logger's own handlers send them (stderr in the CLI)."""
    logger = logging.getLogger("cnnctl")
    level, others = logger.level, list(logger.handlers)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    if say is not None:
        logger.handlers = [_SayHandler(say)]  # through `say` only, not twice
    try:
        yield
    finally:
        logger.handlers = others
        logger.setLevel(level)


@dataclass
class ResumePoint:
    """A run to continue: its directory and its last.pt (loaded on the CPU)."""

    run_dir: Path
    checkpoint: dict[str, Any]
    force: bool = False  # --force: also continue on data that changed since the run started

    @property
    def epoch(self) -> int:
        return int(self.checkpoint["train_state"]["epoch"])


def prepare_resume(
    target: str | Path, config: str | Path | None, overrides: Sequence[str], force: bool
) -> tuple[RunConfig, ResumePoint]:
    """The config and state `cnnctl train --resume TARGET [CONFIG]` continues with.

    TARGET is a run directory or its last.pt. Without CONFIG the run's own config is used
    (plus `--set` overrides); either way the config may differ from the run's only as
    `resume.check_resumable` allows.
    """
    from cnnctl.config.resume import check_resumable

    path = Path(target)
    last = path / "last.pt" if path.is_dir() else path
    last = last.parent.resolve() / last.name  # one lock per real run dir, whatever link leads to it
    from cnnctl.artifacts.rundir import MARKER

    if last.parent.is_dir() and not (last.parent / MARKER).is_file():
        raise ConfigError(
            f"{last.parent}: not a cnnctl run dir (no {MARKER} marker), so resume will not write there; "
            f"if it is a run of a cnnctl from before run markers, create the marker: echo '{{}}' > "
            f"{last.parent / MARKER}"
        )
    if last.parent.is_dir():  # a run another process is writing: say so before reading its files
        lock_run(last.parent.parent, last.parent.name).release()
    if last.name == "best.pt":
        raise ConfigError(f"{last}: resume from last.pt (best.pt holds no optimizer or RNG state)")
    data = ckpt.load_checkpoint(last)
    if "train_state" not in data:
        raise CheckpointError(f"{last}: holds no training state to resume from (not a last.pt?)")
    stored = validate(data["config"], f"{last} (its config)")
    if config is None:
        cfg = load_config(None, overrides, base=data["config"])
    else:
        cfg = load_config(config, overrides)
        if cfg.optimizer.lr == "auto":  # the run's sweep already chose it: keep that number
            cfg = cfg.model_copy(
                update={"optimizer": cfg.optimizer.model_copy(update={"lr": stored.optimizer.lr})}
            )
        cfg = resolve_config(cfg)
    check_resumable(stored.to_plain(), cfg.to_plain(), force, str(config or last))
    if cfg.output != stored.output:  # the run continues where it is
        cfg = cfg.model_copy(update={"output": stored.output})
    return cfg, ResumePoint(last.parent, data, force)


def train(
    cfg: RunConfig,
    run_name: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
    log: Any = None,
    resume: ResumePoint | None = None,
) -> TrainOutcome:
    """Train a model as `cfg` says; write the run directory; evaluate best.pt on test.

    With `resume`, continue that run in its own directory from its last completed epoch.
    SIGINT/SIGTERM stop at the next batch boundary with `Interrupted` (exit 130/143).
    """
    dist = Dist.from_env(cfg.device)  # torchrun: join the process group; else one process
    if not dist.main:  # only rank 0 reports
        progress, log = SilentProgress(), lambda message: None
    say = log or (lambda message: None)
    try:
        with _logs_to(log), StopSignals() as signals:
            check_name(run_name)
            run = _build_session(cfg, resume, signals, dist)
            with contextlib.ExitStack() as held:  # the run's lock, released however it ends
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


@dataclass
class _Session:
    """Everything one training run works with, built by `_build_session`."""

    cfg: RunConfig
    dist: Dist
    device: torch.device
    precision: Precision
    splits: Splits
    spec: ModelSpec
    kind: str
    model: torch.nn.Module  # the network itself (the stepper's may be its DDP wrapper)
    stepper: Stepper
    train_batches: Any
    val_batches: Any
    loader_options: dict[str, Any]
    test_data: LabelledDataset | None  # the test split as the stepper takes it (features if cached)
    run_id: str = ""  # the run dir's id, known once the run dir is claimed

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT,
            "format_version": ckpt.FORMAT_VERSION,
            "run_id": self.run_id,
            "data": data_fingerprint(self.splits),
            "model_spec": self.spec.to_plain(),
            "output_kind": self.kind,
            "classes": list(self.splits.classes),
            "input": self.splits.input.to_plain(),
            "config": self.cfg.to_plain(),
            "versions": ckpt.versions(),
        }

    def resume_state(self, state: FitState) -> dict[str, Any]:
        stepper = self.stepper
        assert stepper.optimizer is not None and stepper.schedule is not None
        return {
            "train_state": state.to_plain(),
            "optimizer": stepper.optimizer.state_dict(),
            "schedule": stepper.schedule.state_dict(),
            "scaler": stepper.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            **({"rng_ranks": self.dist.gather(ckpt.rng_state())} if self.dist.enabled else {}),
        }


def _build_session(cfg: RunConfig, resume: ResumePoint | None, signals: StopSignals, dist: Dist) -> _Session:
    """Data, model (pretrained weights loaded for a new run), loaders, optimizer, schedule."""
    cfg = resolve_auto_lr(cfg, dist, signals)  # optimizer.lr: auto → an lr-find sweep first (lrfind.py)
    seed_everything(cfg.seed)
    set_deterministic(cfg.train.deterministic)
    device = resolve_device(dist.device_name(cfg.device))
    precision = resolve_precision(cfg.train.amp, device)
    if resume is None:
        cfg = resolve_config(cfg)  # a resumed run's config is resolved already
    splits = build_splits(cfg.data, cfg.seed)
    spec, kind = model_spec(cfg, splits)
    if resume is not None:
        check_same_data(resume, data_fingerprint(splits))
    if resume is not None and spec.to_plain() != resume.checkpoint["model_spec"]:
        raise ConfigError(
            f"{resume.run_dir}: the data now gives a different model ({spec.to_plain()} vs the run's "
            f"{resume.checkpoint['model_spec']}): classes or input shape changed; start a new run"
        )
    seed_everything(cfg.seed)  # model init does not depend on how much randomness the data used
    model = build_model(spec)
    if cfg.model.family() == TORCHVISION and resume is None and dist.main:
        from cnnctl.models.transfer import load_pretrained

        # The only place weights are read or downloaded; under torchrun rank 0 alone loads
        # them and DistributedDataParallel copies rank 0's weights to the others.
        load_pretrained(model, cfg.model.weights)
    model = model.to(device)
    wrapped = dist.wrap(model, device)
    if dist.enabled:
        seed_everything(cfg.seed + dist.rank)  # same init everywhere, own dropout/augmentation

    pin = cfg.data.pin_memory is True or (cfg.data.pin_memory == "auto" and device.type == "cuda")
    options: dict[str, Any] = {
        "seed": cfg.seed,
        "workers": resolve_workers(cfg.data, splits.in_memory),
        "pin": pin,
        "shard": dist.shard,
    }
    normalizer: torch.nn.Module = Normalizer(splits.input).to(device)
    if cfg.data.batch_size == "auto":
        from cnnctl.engine import autobatch

        size = autobatch.choose(
            wrapped, normalizer, splits.input.shape, device, len(splits.train), lambda out: out.float().sum()
        )
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"batch_size": size})})
    batch = batch_size(cfg)
    stepped, test_data = wrapped, splits.test
    cached = _cached_features(cfg, model, normalizer, splits, device, options, dist.enabled)
    if cached is not None:  # the frozen backbone ran once: the stepper trains the head on features
        stepped, normalizer, test_data = HeadOnly(model), torch.nn.Identity(), cached.get("test")
        train_batches = make_loader(cached["train"], batch, shuffle=True, **options)
        val_batches = make_loader(cached["val"], batch, shuffle=False, **options)
    else:
        train_batches = make_loader(splits.train, batch, shuffle=True, **options)
        val_batches = make_loader(splits.val, batch, shuffle=False, **options)
    channels_last = cfg.train.channels_last is True or (
        cfg.train.channels_last == "auto" and device.type == "cuda"
    )
    if channels_last:
        model.to(memory_format=torch.channels_last)  # in place: the DDP wrapper and HeadOnly share it
    if cfg.train.compile:
        stepped = torch.compile(stepped)  # type: ignore[assignment]
    optimizer = build_optimizer(cfg.optimizer, _optimizer_params(model, cfg), device)
    steps_per_epoch = -(-len(train_batches) // cfg.train.accumulate)  # optimizer steps
    schedule = Schedule(cfg.scheduler, optimizer, cfg.train.epochs, steps_per_epoch)
    log = logging.getLogger("cnnctl")
    log.debug(
        f"loaders: {type(train_batches).__name__}, {options['workers']} worker process(es), "
        f"pin_memory {pin}, {len(train_batches)} train / {len(val_batches)} val batches of {batch}"
    )
    groups = ", ".join(
        f"{g.get('name', 'all')}: {sum(p.numel() for p in g['params']):,} params at lr {g['lr']:g}"
        for g in optimizer.param_groups
    )
    log.debug(
        f"optimizer {type(optimizer).__name__} ({groups}); precision {precision.name}; "
        f"channels_last {channels_last}; compile {cfg.train.compile}"
    )
    if dist.enabled:
        log.info(
            f"distributed: {dist.world} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), "
            f"batch {batch} per process = {batch * dist.world} per optimizer step"
        )
    stepper = Stepper(
        stepped,
        normalizer,
        device,
        precision,
        kind,
        optimizer=optimizer,
        loss_fn=train_loss_fn(cfg.train.loss, cfg.train.label_smoothing),
        schedule=schedule,
        grad_clip=cfg.train.grad_clip,
        nan_policy=cfg.train.nan_policy,
        should_stop=signals.requested,
        dist=dist,
        channels_last=channels_last and cached is None,
        accumulate=cfg.train.accumulate,
        mixer=batch_mixer(cfg.train.mixup_alpha, cfg.train.cutmix_alpha, len(splits.classes)),
        **_ema(cfg, model, cached is not None),
    )
    return _Session(
        cfg,
        dist,
        device,
        precision,
        splits,
        spec,
        kind,
        model,
        stepper,
        train_batches,
        val_batches,
        options,
        test_data,
    )


def resolve_auto_lr(
    cfg: RunConfig, dist: Dist | None = None, signals: StopSignals | None = None
) -> RunConfig:
    """`optimizer.lr: auto`: the config (resolved as `resolve_config` does) with the lr that
    `cnnctl lr-find`'s range test suggests for it; any other config is returned unchanged.

    The sweep trains a throwaway copy of the model (nothing is written); under torchrun rank
    0 runs it alone and hands the lr to the other ranks. Logs `lr auto: suggested X (...)`.
    """
    if cfg.optimizer.lr != "auto":
        return cfg
    from cnnctl.core.errors import CnnctlError
    from cnnctl.engine.lr_range import find_lr

    dist = dist or Dist()
    cfg = resolve_config(cfg)
    outcome: Any = None
    if dist.main:
        try:
            found = find_lr(cfg, signals=signals)
            outcome = (found.suggestion(), len(found.lrs))
        except CnnctlError as err:
            dist.broadcast(str(err))  # the other ranks stop too instead of waiting
            if isinstance(err, RunFailed):
                raise RunFailed(f"optimizer.lr: auto: {err}") from None
            raise
    outcome = dist.broadcast(outcome)
    if isinstance(outcome, str):
        raise RunFailed(f"optimizer.lr: auto: rank 0's lr-find failed: {outcome}")
    lr, steps = outcome
    logging.getLogger("cnnctl").info(f"lr auto: suggested {lr:.3g} (lr-find over {steps} steps)")
    return cfg.model_copy(update={"optimizer": cfg.optimizer.model_copy(update={"lr": float(lr)})})


def _ema(cfg: RunConfig, model: torch.nn.Module, on_features: bool) -> dict[str, Any]:
    """train.ema: the AveragedModel of `model` and what evaluates it (its head, on cached features)."""
    if cfg.train.ema is None:
        return {}
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema.decay), use_buffers=True)
    return {
        "ema": ema,
        "ema_source": model,
        "ema_eval": HeadOnly(ema.module) if on_features else ema.module,
    }


def batch_size(cfg: RunConfig) -> int:
    """data.batch_size as a number: `auto` is resolved when the session is built (autobatch.py);
    an unresolved auto (evaluating with another config's data) reads as 64."""
    size = cfg.data.batch_size
    return size if isinstance(size, int) else 64


batch_of = batch_size  # for functions whose own parameter is called batch_size


def _cached_features(
    cfg: RunConfig,
    model: torch.nn.Module,
    normalizer: torch.nn.Module,
    splits: Splits,
    device: torch.device,
    options: dict[str, Any],
    distributed: bool,
) -> dict[str, ArrayDataset] | None:
    """model.cache_features: the head's inputs for every split, or None (see features.py)."""
    reason = features.why_not(cfg, model, distributed)
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    total = sum(len(d) for d in parts.values() if d is not None)
    if reason is None and not features.fits(model, normalizer, splits.train[0][0], total, device):
        reason = f"the features of {total} images would not fit in {features.MEMORY_LIMIT // 2**30} GiB"
    log = logging.getLogger("cnnctl")
    if reason is not None:
        if reason != "off" and cfg.model.freeze == "backbone":
            log.info(f"model.cache_features: running the frozen backbone every epoch ({reason})")
        return None
    started = time.perf_counter()
    batch = batch_size(cfg)
    out = {
        name: features.extract(model, normalizer, data, batch, device, options)
        for name, data in parts.items()
        if data is not None
    }
    width = "x".join(map(str, out["train"].images.shape[1:]))
    log.info(
        f"model.cache_features: frozen backbone run once over {total} images in "
        f"{time.perf_counter() - started:.1f}s; the head trains on their {width} features"
    )
    return out


def _claim(
    run: _Session, run_name: str, force: bool, resume: ResumePoint | None, held: contextlib.ExitStack
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
    run: _Session,
    run_name: str,
    force: bool,
    progress: Progress,
    say: Callable[[str], None],
    resume: ResumePoint | None,
    signals: StopSignals,
    held: contextlib.ExitStack,
) -> TrainOutcome:
    cfg, splits, dist = run.cfg, run.splits, run.dist
    state = FitState()
    if cfg.logging.tensorboard:
        TensorBoardLog.require()
    run_dir, run.run_id = _claim(run, run_name, force, resume, held)
    if resume is not None:
        state = _restore(resume, run.model, run.stepper, run.run_id, write=dist.main)
        if _finished(run_dir, state, cfg):  # killed after its last checkpoint: finish it
            say(
                f"resuming {run_dir}: its {state.epoch} epochs are done; testing best.pt and writing its summary"
            )
            return _finish(run, run_dir, state, say)
        say(f"resuming {run_dir} after epoch {state.epoch} (best so far: epoch {state.best_epoch})")
    if dist.main:
        write_text(run_dir / "config.yaml", dump_yaml(cfg), "config")
    say(
        f"run dir {run_dir} · device {run.device} · amp {run.precision.name} · "
        f"{len(splits.train)} train / {len(splits.val)} val / "
        f"{len(splits.test) if splits.test is not None else 0} test images · "
        f"{len(splits.classes)} classes · input {'x'.join(map(str, splits.input.shape))}"
    )
    sinks: list[Any] = []
    if dist.main:
        sinks.append(MetricsLog(run_dir / "metrics.csv", rows=state.history))
        if cfg.logging.tensorboard:
            sinks.append(TensorBoardLog(run_dir / "tensorboard"))
    on_epoch_end = _checkpointer(run, run_dir, sinks)
    settings = FitSettings(cfg.train.epochs, cfg.train.monitor, cfg.train.patience, cfg.train.min_delta)
    if resume is not None:  # last: building the session used the RNGs too
        per_rank = resume.checkpoint.get("rng_ranks") or []
        with _unusable(run_dir / "last.pt"):
            ckpt.restore_rng(per_rank[dist.rank] if len(per_rank) == dist.world else resume.checkpoint["rng"])
    try:
        state = fit(
            run.stepper,
            run.train_batches,
            run.val_batches,
            splits.classes,
            settings,
            state,
            progress,
            on_epoch_end,
            on_epoch_start=_unfreezer(run, cfg),
        )
    except StopRequested as stop:
        getattr(progress, "close", lambda: None)()
        _close(sinks)
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
        _close(sinks)
        from cnnctl.engine.autobatch import is_oom

        if is_oom(err):
            epoch, index = run.stepper.position
            raise RunFailed(
                f"out of memory at epoch {epoch}, batch {index} with data.batch_size {batch_size(cfg)} "
                f"on {run.device}: lower data.batch_size (train.accumulate keeps the effective batch), "
                "or set data.batch_size: auto"
            ) from None
        raise
    except BaseException:
        _close(sinks)
        raise
    _close(sinks)
    return _finish(run, run_dir, state, say)


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


def _checkpointer(
    run: _Session, run_dir: Path, sinks: list[Any]
) -> Callable[[EpochRow, FitState, bool], None]:
    """The on_epoch_end hook: metrics.csv row (and TensorBoard), last.pt, and best.pt when best."""
    meta = run.checkpoint_meta()

    def on_epoch_end(row: EpochRow, state: FitState, is_best: bool) -> None:
        if run.stepper.skipped:
            logging.getLogger("cnnctl").warning(
                f"epoch {row.epoch}: skipped {run.stepper.skipped} batch(es) with a non-finite loss "
                "(train.nan_policy: skip_batch)"
            )
        weights = ckpt.plain_state_dict(run.model)
        ema = run.stepper.ema
        chosen = ckpt.plain_state_dict(ema.module) if ema is not None and row.weights == "ema" else weights
        bad = [
            k
            for state_dict in (weights, chosen)
            for k, v in state_dict.items()
            if v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:
            raise RunFailed(
                f"epoch {row.epoch}: the weights became non-finite ({', '.join(bad[:3])}); nothing "
                "saved for this epoch, best.pt and last.pt are kept: lower optimizer.lr or set "
                "train.grad_clip"
            )
        resume_state = run.resume_state(state)  # a collective under torchrun: every rank calls it
        if not run.dist.main:
            return
        for sink in sinks:
            sink.append(row.to_plain())
        taken = {**meta, "model": weights, "epoch": row.epoch, "metrics": row.to_plain()}
        if ema is not None:
            resume_state["ema"] = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
        # last.pt first: if the process dies between the two writes, last.pt (whose weights
        # are then the best ones) is enough for a resume to rewrite best.pt.
        started = time.perf_counter()
        ckpt.save_atomic({**taken, **resume_state}, run_dir / "last.pt")
        if is_best:  # the weights the epoch's val figures are of: raw, or the EMA's
            ckpt.save_atomic({**taken, "model": chosen, "weights": row.weights}, run_dir / "best.pt")
        logging.getLogger("cnnctl").debug(
            f"epoch {row.epoch}: checkpoint(s) written in {time.perf_counter() - started:.2f}s"
            f"{' (new best)' if is_best else ''}"
        )

    return on_epoch_end


def _finish(run: _Session, run_dir: Path, state: FitState, say: Callable[[str], None]) -> TrainOutcome:
    """Reload best.pt, evaluate it on the test split, write summary.json and the plots."""
    cfg, splits, dist = run.cfg, run.splits, run.dist
    best_weights = None
    if state.best_epoch:  # rank 0 reads best.pt and hands its weights to the other ranks
        best_weights = dist.broadcast(
            load_own_checkpoint(run_dir / "best.pt", run.run_id)["model"] if dist.main else None
        )
    test_result = val_result = None
    if best_weights is not None:
        run.model.load_state_dict(best_weights)
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
            _train_plots(
                run, run_dir, state, test_result or val_result, "test" if test_result else "val", say
            )
        write_json(run_dir / "summary.json", summary)
    return TrainOutcome(run_dir, state, best_row, test_result, str(run.device), summary, dist.main)


def _train_plots(
    run: _Session,
    run_dir: Path,
    state: FitState,
    result: EvalResult | None,
    split: str,
    say: Callable[[str], None],
) -> None:
    """curves.png and the confusion matrix of best.pt on `split`; a plot that cannot be drawn
    is a warning, never a failed run."""
    from cnnctl.report import plots

    try:
        plots.curves(state.history, state.best_epoch, run_dir / "plots" / "curves.png")
        if result is not None:
            plots.confusion(
                result.confusion.tolist(),
                run.splits.classes,
                run_dir / "plots" / f"confusion_{split}.png",
                title=f"best.pt, {split}",
            )
        say(f"plots in {run_dir / 'plots'}")
    except Exception as err:  # noqa: BLE001 - plots are a convenience, the run is done
        logging.getLogger("cnnctl").warning(f"plots not drawn: {err.__class__.__name__}: {err}")


def _restore(
    resume: ResumePoint, model: torch.nn.Module, stepper: Stepper, run_id: str, write: bool = True
) -> FitState:
    """Put last.pt's model, optimizer, schedule and scaler state back; return the fit state.

    If the previous process died between writing last.pt and best.pt, best.pt is older
    than the best epoch last.pt records, and last.pt's weights are the best ones: best.pt
    is rewritten from them.
    """
    data = resume.checkpoint
    with _unusable(resume.run_dir / "last.pt"):
        model.load_state_dict(data["model"])
        assert stepper.optimizer is not None and stepper.schedule is not None
        stepper.optimizer.load_state_dict(data["optimizer"])
        stepper.schedule.load_state_dict(data["schedule"])
        stepper.scaler.load_state_dict(data["scaler"])
        if stepper.ema is not None and "ema" in data:
            stepper.ema.load_state_dict(data["ema"])
        state = FitState(**data["train_state"])
        if not (isinstance(state.epoch, int) and state.epoch >= 1 and len(state.history) == state.epoch):
            raise ValueError(f"train_state.epoch {state.epoch!r} does not match its history")
    best = resume.run_dir / "best.pt"
    best_epoch = load_own_checkpoint(best, run_id)["epoch"] if write and best.is_file() else state.best_epoch
    if write and state.best_epoch and best_epoch != state.best_epoch:
        if state.best_epoch != state.epoch:
            raise CheckpointError(
                f"{best}: holds epoch {best_epoch} but the run's best is epoch {state.best_epoch}, "
                "and last.pt cannot replace it; start a new run"
            )
        lean = {k: v for k, v in data.items() if k not in ckpt.RESUME_KEYS}
        if state.history[-1].get("weights") == "ema" and "ema" in data:  # the EMA weights had won
            lean["model"] = {k[7:]: v for k, v in data["ema"].items() if k.startswith("module.")}
            lean["weights"] = "ema"
        ckpt.save_atomic(lean, best)
    return state


@contextlib.contextmanager
def _unusable(path: Path) -> Iterator[None]:
    """A last.pt whose training state cannot be put back (crafted or damaged) is one line."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path}: its training state cannot be restored ({reason}); start a new run"
        ) from None


def load_own_checkpoint(path: Path, run_id: str) -> dict[str, Any]:
    """A checkpoint of the run whose id is `run_id` (a run of a cnnctl before run ids has
    none: anything goes); one copied in from another run is refused."""
    data = ckpt.load_checkpoint(path)
    if run_id and data.get("run_id") != run_id:
        raise CheckpointError(
            f"{path}: belongs to another run (run id {data.get('run_id') or 'none'}, this run's is "
            f"{run_id}); put this run's own file back, or start a new run"
        )
    return data


def own_run_id(resume: ResumePoint, write: bool) -> str:
    """The resumed run's id: its marker's and last.pt's must agree ("" for a run from before run
    ids: nothing to check)."""
    from cnnctl.artifacts.rundir import run_id

    marked, stored = run_id(resume.run_dir), resume.checkpoint.get("run_id")
    if marked and stored and marked != stored:
        raise CheckpointError(
            f"{resume.run_dir / 'last.pt'}: belongs to another run (run id {stored}, the folder's is "
            f"{marked}); put this run's own last.pt back, or start a new run"
        )
    return str(marked or stored or "")


def data_fingerprint(splits: Splits) -> dict[str, Any]:
    """What a resume compares to know the data is the run's: the size of each split and, for
    file-based sources, a digest of which files are in which split."""
    import hashlib

    sizes = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test or ())}
    digest = None
    if splits.files:
        h = hashlib.sha256()
        for name in sorted(splits.files):
            h.update(
                name.encode()
                + b"\0"
                + "\0".join(sorted(splits.files[name])).encode("utf-8", "surrogateescape")
            )
        digest = h.hexdigest()
    return {**sizes, "files_sha256": digest}


def check_same_data(resume: ResumePoint, now: dict[str, Any]) -> None:
    """Refuse (or with --force, say) a resume whose data differs from the run's at its start."""
    then = resume.checkpoint.get("data")
    if not isinstance(then, dict) or then == now:
        return
    counts = ", ".join(
        f"{name} {then.get(name)} → {now[name]}"
        for name in ("train", "val", "test")
        if then.get(name) != now[name]
    )
    what = counts or "the same counts, but other files"
    if not resume.force:
        raise DataError(
            f"{resume.run_dir}: the data changed since the run started ({what} images); resume with "
            "--force to continue on the data as it is now, or start a new run"
        )
    logging.getLogger("cnnctl").warning(
        f"the data changed since the run started ({what} images); --force: continuing"
    )


def _optimizer_params(model: torch.nn.Module, cfg: RunConfig) -> list[Any]:
    """What the optimizer gets: the trainable parameters, or per-group dicts for a TransferNet
    (head at optimizer.lr, backbone at lr x backbone_lr_mult; the frozen backbone joins its
    group from the start when train.unfreeze_at_epoch will unfreeze it)."""
    param_groups = getattr(model, "param_groups", None)
    if param_groups is not None:
        keep_frozen = cfg.train.unfreeze_at_epoch is not None
        groups: list[Any] = param_groups(cfg.optimizer.lr, cfg.optimizer.backbone_lr_mult, keep_frozen)
        return groups
    return [p for p in model.parameters() if p.requires_grad]


def _unfreezer(run: _Session, cfg: RunConfig) -> Callable[[int], None] | None:
    """The on_epoch_start hook of train.unfreeze_at_epoch: unfreeze the backbone at that epoch
    (under torchrun the DDP wrapper is rebuilt, as it only syncs what trained when it was made)."""
    model = run.model
    at = cfg.train.unfreeze_at_epoch
    if at is None:
        return None
    unfreeze = getattr(model, "unfreeze", None)
    has_frozen = getattr(model, "has_frozen", None)
    if unfreeze is None or has_frozen is None:
        raise ConfigError(
            "train.unfreeze_at_epoch: applies to torchvision models with model.freeze set; remove it"
        )
    if not has_frozen():
        raise ConfigError("train.unfreeze_at_epoch: nothing is frozen (model.freeze: none); remove it")
    if at > cfg.train.epochs:
        logging.getLogger("cnnctl").info(
            f"train.unfreeze_at_epoch {at} is after the last epoch ({cfg.train.epochs}): "
            "the backbone stays frozen"
        )

    def on_epoch_start(epoch: int) -> None:
        if epoch >= at and has_frozen():
            count = unfreeze()
            if run.dist.enabled:
                run.stepper.model = run.dist.wrap(model, run.device)
            logging.getLogger("cnnctl").info(
                f"epoch {epoch}: backbone unfrozen ({count:,} parameters now train at lr x "
                f"{cfg.optimizer.backbone_lr_mult:g})"
            )

    return on_epoch_start


# --------------------------------------------------------------------------------------
# Rebuilding from a checkpoint
# --------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A checkpoint turned back into something that can score images."""

    stepper: Stepper
    classes: list[str]
    input: InputSpec
    checkpoint: dict[str, Any]


def load_model(path: str | Path, device_name: str = "auto", inference_layout: bool = True) -> LoadedModel:
    """Rebuild the network from a checkpoint alone (no config file, no downloads).

    `build_model` makes the architecture with random weights (it never reads `model.weights`),
    then the stored state_dict replaces them. With `inference_layout`, a convolutional network
    runs in channels_last, which oneDNN and cuDNN run faster for inference (measured on this
    project's 2-core CPU: resnet18 +15%, densenet121 +22%, efficientnet_b0 +50%, convnext_tiny
    even); the values it computes are the same up to float rounding. `export` asks for the
    stored layout instead.
    """
    data = ckpt.load_checkpoint(path)
    device = resolve_device(device_name)
    try:
        spec = ModelSpec.from_plain(data["model_spec"])
        model = build_model(spec)
        model.load_state_dict(data["model"])
        input_spec = InputSpec.from_plain(data["input"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the model: {str(err).splitlines()[0]}") from None
    model.to(device).eval()
    channels_last = inference_layout and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if channels_last:
        model.to(memory_format=torch.channels_last)
    precision = Precision(None) if device.type != "cuda" else resolve_precision("auto", device)
    stepper = Stepper(
        model,
        Normalizer(input_spec),
        device,
        precision,
        str(data["output_kind"]),
        channels_last=channels_last,
    )
    return LoadedModel(stepper, list(data["classes"]), input_spec, data)


def check_data(cfg: RunConfig) -> dict[str, Any]:
    """What `cnnctl data check` reports: per split, the images per class and the unusable files.

    An image folder is scanned and every file decoded (cached verdicts reused); other
    sources are loaded as training loads them. Blocking problems raise DataError.
    Returns {"source", "splits": {name: {"classes": {class: count}, "images"}}, "unreadable": [...]}.
    """
    from cnnctl.data import folder
    from cnnctl.data.check import check_files

    if cfg.data.source != "image_folder":
        splits = build_splits(cfg.data, cfg.seed)
        parts = {"train": splits.train, "val": splits.val, "test": splits.test}
        counts = {
            name: _class_counts(part.targets(), splits.classes)
            for name, part in parts.items()
            if part is not None
        }
        return {"source": cfg.data.source, "splits": counts, "unreadable": []}
    assert cfg.data.root is not None
    root = Path(cfg.data.root)
    dirs = folder.find_split_dirs(root) or {"all (split by fraction)": root}
    extensions = folder.normalise_extensions(cfg.data.extensions)
    scanned = {name: folder.scan_split(path, extensions) for name, path in dirs.items()}
    first = next(iter(scanned.values())).classes_present
    for name, split in scanned.items():
        if set(split.classes_present) != set(first):
            raise DataError(f"{dirs[name]}: its classes {split.classes_present} differ from train's {first}")
    report = check_files([f for s in scanned.values() for f in s.files], workers=decode_workers(cfg.data))
    bad = dict(report.bad)
    result: dict[str, Any] = {"source": "image_folder", "splits": {}, "unreadable": []}
    for name, split in scanned.items():
        good = [c for f, c in zip(split.files, split.class_of_file, strict=True) if f not in bad]
        result["splits"][name] = {c: good.count(c) for c in split.classes_present}
    result["unreadable"] = [{"path": p, "reason": r} for p, r in report.bad]
    result["cached"] = report.cached
    return result


def _class_counts(labels: list[int], classes: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(classes, 0)
    for label in labels:
        counts[classes[label]] += 1
    return counts


def evaluate(
    checkpoint_path: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    topk: int = 5,
    batch_size: int | None = None,
    device: str = "auto",
    plots_dir: Path | None = None,
) -> tuple[EvalResult, str]:
    """Metrics of a checkpoint on a split: of its own dataset, an image folder or a config's.

    Returns the result and a description of what was evaluated. With `plots_dir`, also
    draws the confusion matrix and a grid of the most confidently wrong images there.
    """
    loaded = load_model(checkpoint_path, device)
    cfg = validate(loaded.checkpoint["config"], f"{checkpoint_path} (stored config)")
    dataset, what = _eval_dataset(loaded, cfg, data, split)
    batches = make_loader(
        dataset,
        batch_size or batch_of(cfg),
        shuffle=False,
        seed=cfg.seed,
        workers=resolve_workers(cfg.data, isinstance(dataset, ArrayDataset)),
        pin=loaded.stepper.device.type == "cuda",
    )
    ks = tuple(sorted({1, max(1, topk)}))
    keep = WRONG_SHOWN if plots_dir is not None else 0
    result = loaded.stepper.evaluate(batches, loaded.classes, topk=ks, keep_wrong=keep)
    if not math.isfinite(result.loss):
        raise RunFailed(
            f"{checkpoint_path}: the model's loss on {what} is not finite (NaN or inf outputs); its "
            "weights or the data are broken"
        )
    if isinstance(dataset, FileDataset):
        for wrong in result.wrong:
            wrong["path"] = dataset.files[wrong["index"]]
    if plots_dir is not None:
        _eval_plots(result, dataset, split, plots_dir)
    return result, what


WRONG_SHOWN = 16  # images in evaluate's "most confidently wrong" grid


def _eval_plots(result: EvalResult, dataset: LabelledDataset, split: str, folder: Path) -> None:
    """confusion_<split>.png and wrong_<split>.png; failures are warnings, not errors."""
    from cnnctl.report import plots

    try:
        plots.confusion(
            result.confusion.tolist(), result.classes, folder / f"eval_{split}_confusion.png", split
        )
        images = [dataset[w["index"]][0] for w in result.wrong]
        captions = [f"true {w['true']}\npred {w['predicted']} ({w['confidence']:.2f})" for w in result.wrong]
        plots.wrong_grid(
            images, captions, folder / f"eval_{split}_wrong.png", f"most confidently wrong ({split})"
        )
    except Exception as err:  # noqa: BLE001 - plots are a convenience
        logging.getLogger("cnnctl").warning(f"plots not drawn: {err.__class__.__name__}: {err}")


def _eval_dataset(
    loaded: LoadedModel, cfg: RunConfig, data: str | Path | None, split: str
) -> tuple[LabelledDataset, str]:
    if data is not None and Path(data).is_dir():
        extensions = cfg.data.extensions if cfg.data.source == "image_folder" else None
        dataset = folder_eval_set(Path(data), split, loaded.input, loaded.classes, extensions)
        return dataset, f"{data} ({len(dataset)} images)"
    if data is not None:
        cfg = load_config(data)
    splits = build_splits(cfg.data, cfg.seed, loaded.input)
    chosen = {"train": splits.train, "val": splits.val, "test": splits.test}[split]
    source = f"{data}" if data is not None else "the checkpoint's own dataset"
    if chosen is None:
        raise DataError(f"{source} has no {split} split; use --split val, or --data DIR")
    if split == "train" and isinstance(chosen, ArrayDataset | FileDataset):
        chosen = chosen.subset(range(len(chosen)))  # the train split without augmentation
    return _match_classes(
        chosen, splits.classes, loaded.classes, source
    ), f"{source}, {split} split ({len(chosen)} images)"


def _match_classes(
    dataset: LabelledDataset, classes: list[str], wanted: list[str], source: str
) -> LabelledDataset:
    if classes == wanted:
        return dataset
    if set(classes) != set(wanted):
        raise DataError(f"{source}: its classes {classes} differ from the checkpoint's {wanted}")
    position = {name: i for i, name in enumerate(wanted)}
    mapping = [position[name] for name in classes]
    if isinstance(dataset, ArrayDataset):
        return ArrayDataset(dataset.images, torch.tensor(mapping)[dataset.labels], dataset.augment)
    if isinstance(dataset, FileDataset):
        return FileDataset(dataset.files, [mapping[y] for y in dataset.labels], dataset.spec, dataset.augment)
    raise DataError(f"{source}: cannot reorder its classes to the checkpoint's")


# --------------------------------------------------------------------------------------
# Predict
# --------------------------------------------------------------------------------------


@dataclass
class Prediction:
    path: str
    label: str
    probability: float | None
    topk: list[tuple[str, float]]
    error: str


def collect_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for image files, with training's link
    policy (data.folder.collect_images: loops skipped, each file once, FIFOs never opened)."""
    from cnnctl.data.folder import collect_images as collect

    return collect(paths)


class _PredictFiles(Dataset[tuple[torch.Tensor, int, str]]):
    def __init__(self, files: list[Path], spec: InputSpec):
        self.files, self.spec = files, spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            return load_for_model(self.files[i], self.spec), i, ""
        except Exception as err:  # noqa: BLE001 - a bad file becomes a row with its reason
            reason = f"{err.__class__.__name__}: {err}".splitlines()[0]
            return torch.zeros(self.spec.shape, dtype=torch.uint8), i, reason


@dataclass
class Scorer:
    """What `predict` runs images through: a checkpoint's network or an exported ONNX model."""

    classes: list[str]
    input: InputSpec  # how a file becomes a uint8 input (the same path for both kinds)
    score: Callable[[torch.Tensor], torch.Tensor]  # uint8 (N, C, H, W) → (N, classes) probabilities
    device: str = "cpu"  # where `score` computes: "cpu" (torch or onnxruntime), "cuda", "mps"
    torch_threads: bool = False  # does torch's thread count set how fast `score` runs (torch on the CPU)?


def load_scorer(path: str | Path, device: str = "auto") -> Scorer:
    """A checkpoint / run dir on `device`, or an exported `.onnx` model (read with its sidecar)
    on onnxruntime's CPU provider."""
    if Path(path).suffix.lower() == ".onnx":
        if device not in ("auto", "cpu"):
            raise ConfigError(
                f"--device {device}: an .onnx model runs on onnxruntime's CPU provider; leave --device out"
            )
        from cnnctl.workflows.export import OnnxClassifier

        exported = OnnxClassifier(path)
        return Scorer(exported.classes, exported.input, exported.predict)
    loaded = load_model(path, device)
    kind = loaded.stepper.device.type
    return Scorer(loaded.classes, loaded.input, loaded.stepper.predict, kind, kind == "cpu")


def predict(
    checkpoint_path: str | Path,
    paths: Sequence[str | Path],
    topk: int = 1,
    batch_size: int = 64,
    device: str = "auto",
    workers: int | None = None,
) -> Iterator[Prediction]:
    """Label every image under `paths`, streaming results batch by batch (flat memory).

    `checkpoint_path` is a checkpoint, a run dir, or an exported `.onnx` model with its sidecar.
    On the CPU, files are decoded in a background thread while the model runs (see
    `cnnctl.engine.stream`); on a GPU, or with `workers` given, by DataLoader worker processes.
    A torch model on the CPU changes torch's (process-wide) intra-op thread count while the
    iterator runs; the count from before is put back when it ends or is closed.
    """
    model = load_scorer(checkpoint_path, device)
    files = collect_images(paths)
    k = max(1, min(topk, len(model.classes)))
    dataset = _PredictFiles(files, model.input)
    tuner: stream.ThreadTuner | None = None
    prefetch: stream.Prefetch[Any] | None = None
    tick: Callable[[int], None] | None = None
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, Sequence[str]]]
    if workers is None and model.device == "cpu":
        batch_bytes = batch_size * math.prod(model.input.shape)  # uint8
        batches = prefetch = stream.Prefetch(
            (
                functools.partial(_collate, dataset, range(start, min(start + batch_size, len(files))))
                for start in range(0, len(files), batch_size)
            ),
            ahead=max(2, min(64, PREFETCH_BYTES // batch_bytes)),
        )
        if model.torch_threads:
            tuner = stream.ThreadTuner(stream.inference_threads())
            tick = functools.partial(_tick, tuner, prefetch)
    else:
        if workers is None:
            workers = default_workers() if len(files) > batch_size else 0
        batches = DataLoader(
            dataset, batch_size=batch_size, num_workers=workers, pin_memory=model.device == "cuda"
        )
    try:
        yield from _label(batches, files, model, k, tick)
    finally:
        if prefetch is not None:
            prefetch.close()
        if tuner is not None:
            tuner.close()


def _tick(tuner: stream.ThreadTuner, prefetch: stream.Prefetch[Any], images: int) -> None:
    tuner.tick(images, prefetch.idle())


PREFETCH_BYTES = 8 * 2**20  # decoded batches predict may hold ahead of the model (flat in the folder size)


def _collate(dataset: _PredictFiles, indices: range) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    items = [dataset[i] for i in indices]
    return torch.stack([x for x, _, _ in items]), torch.tensor(list(indices)), [e for _, _, e in items]


def _label(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, Sequence[str]]],
    files: list[Path],
    model: Scorer,
    k: int,
    tick: Callable[[int], None] | None,
) -> Iterator[Prediction]:
    """Predictions for each batch; `tick(images of the batch just done)` before each one."""
    done = 0
    for images, indices, errors in batches:
        if tick is not None:
            tick(done)
        done = len(indices)
        probs = model.score(images)
        readable = [row for row, error in enumerate(errors) if not error]
        if readable and not bool(torch.isfinite(probs[readable]).all()):
            first = files[int(indices[readable[0]])]
            raise RunFailed(
                f"the model gives non-finite probabilities (NaN or inf), e.g. for {first}: its weights "
                "are broken; no predictions written"
            )
        top_p, top_i = probs.topk(k, dim=1)
        for row, (index, error) in enumerate(zip(indices.tolist(), errors, strict=True)):
            path = str(files[index])
            if error:
                yield Prediction(path, "", None, [], error)
                continue
            pairs = [
                (model.classes[c], float(p))
                for c, p in zip(top_i[row].tolist(), top_p[row].tolist(), strict=True)
            ]
            yield Prediction(path, pairs[0][0], pairs[0][1], pairs, "")
