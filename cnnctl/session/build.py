"""A training session from a RunConfig: data, model, loaders, optimizer, schedule and stepper.

`build_session` is the one place `cnnctl train`, `optimizer.lr: auto` and `cnnctl lr-find`
get what they train with, so all three build it the same way. It is cut into the parts
that happen in order (the seeding between them is what makes a resume bit-identical):
runtime (seed, determinism, device, precision) → data and model spec → the network (seeded
again, pretrained weights, DDP) → feeds (loaders, batch size, feature cache) → stepper
(layout, compile, optimizer, schedule, loss, EMA).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.artifacts.resume import ResumePoint, check_same_data, data_fingerprint
from cnnctl.config import TORCHVISION, RunConfig
from cnnctl.core.errors import ConfigError
from cnnctl.data import ArrayDataset, LabelledDataset, Splits, build_splits, make_loader, resolve_workers
from cnnctl.data.splits import strata
from cnnctl.data.transforms import Normalizer
from cnnctl.engine import features
from cnnctl.engine.features import HeadOnly
from cnnctl.engine.schedule import Schedule
from cnnctl.engine.state import FitState
from cnnctl.engine.stepper import Stepper
from cnnctl.models import ModelSpec, build_model
from cnnctl.runtime.devices import Precision, resolve_device, resolve_precision
from cnnctl.runtime.distributed import Dist
from cnnctl.runtime.interrupt import StopSignals
from cnnctl.runtime.seeding import seed_everything, set_deterministic
from cnnctl.session.optim import batch_mixer, build_optimizer, class_weights_for, train_loss_fn
from cnnctl.session.resolve import model_spec, resolve_config
from cnnctl.tasks import Task

log = logging.getLogger("cnnctl")


@dataclass
class Session:
    """Everything one training run works with, built by `build_session`."""

    cfg: RunConfig
    dist: Dist
    device: torch.device
    precision: Precision
    splits: Splits
    spec: ModelSpec
    task: Task  # what the outputs mean: probabilities, decisions, metrics
    model: torch.nn.Module  # the network itself (the stepper's may be its DDP wrapper)
    stepper: Stepper
    train_batches: Any
    val_batches: Any
    loader_options: dict[str, Any]
    test_data: LabelledDataset | None  # the test split as the stepper takes it (features if cached)
    run_id: str = ""  # the run dir's id, known once the run dir is claimed
    on_epoch: Any = None  # called with each epoch's metrics row after its checkpoints (tune)
    tracking: Any = None  # (MLflow experiment, parent run id) a tune or cv asks for

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT,
            "format_version": ckpt.format_version(self.task.record()),
            "run_id": self.run_id,
            "data": data_fingerprint(self.splits),
            "model_spec": self.spec.to_plain(),
            **self.task.record(),  # task, output_kind (and multi_label's thresholds, separator)
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


def build_session(cfg: RunConfig, resume: ResumePoint | None, signals: StopSignals, dist: Dist) -> Session:
    """Data, model (pretrained weights loaded for a new run), loaders, optimizer, schedule.

    `optimizer.lr` must be a number: `auto` is resolved before (`session.lr.resolve_auto_lr`).
    """
    seed_everything(cfg.seed)
    set_deterministic(cfg.train.deterministic)
    device = resolve_device(dist.device_name(cfg.device))
    precision = resolve_precision(cfg.train.amp, device)
    if resume is None:
        cfg = resolve_config(cfg)  # a resumed run's config is resolved already
    splits = build_splits(cfg.data, cfg.seed, separator=cfg.label_separator())
    spec, task = model_spec(cfg, splits)
    if resume is not None:
        _check_resumed_data(resume, splits, spec)
    weights = None  # train.class_weights: none needs no pass over the labels
    if cfg.train.class_weights != "none":
        weights = class_weights_for(cfg.train.class_weights, splits.train.targets(), splits.classes)
    model, wrapped = _network(cfg, spec, resume, dist, device)
    cfg, feeds = _feeds(cfg, model, wrapped, splits, device, dist)
    loss_fn = train_loss_fn(
        cfg.train.loss,
        cfg.train.label_smoothing,
        None if weights is None else weights.to(device),
        cfg.train.focal_gamma,
        multi_label=splits.multi_label,
    )
    stepper = _stepper(cfg, model, feeds, device, precision, task, loss_fn, signals, dist)
    return Session(
        cfg,
        dist,
        device,
        precision,
        splits,
        spec,
        task,
        model,
        stepper,
        feeds.train,
        feeds.val,
        feeds.options,
        feeds.test,
    )


def _check_resumed_data(resume: ResumePoint, splits: Splits, spec: ModelSpec) -> None:
    check_same_data(resume, data_fingerprint(splits))
    if spec.to_plain() != resume.checkpoint["model_spec"]:
        raise ConfigError(
            f"{resume.run_dir}: the data now gives a different model ({spec.to_plain()} vs the run's "
            f"{resume.checkpoint['model_spec']}): classes or input shape changed; start a new run"
        )


def _network(
    cfg: RunConfig, spec: ModelSpec, resume: ResumePoint | None, dist: Dist, device: torch.device
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The network on `device` and what steps it (its DDP wrapper under torchrun)."""
    seed_everything(cfg.seed)  # model init does not depend on how much randomness the data used
    model = build_model(spec)
    if cfg.model.family() == TORCHVISION and resume is None and dist.main:
        from cnnctl.models.pretrained import load_pretrained

        # The only place weights are read or downloaded; under torchrun rank 0 alone loads
        # them and DistributedDataParallel copies rank 0's weights to the others.
        load_pretrained(model, cfg.model.weights)
    model = model.to(device)
    wrapped = dist.wrap(model, device)
    if dist.enabled:
        seed_everything(cfg.seed + dist.rank)  # same init everywhere, own dropout/augmentation
    return model, wrapped


@dataclass
class Feeds:
    """What the stepper is fed: the module it steps, its input normalizer, the batches."""

    stepped: torch.nn.Module  # the (wrapped) network, or its head on cached features
    normalizer: torch.nn.Module
    train: Any
    val: Any
    test: LabelledDataset | None  # the test split as the stepper takes it (features if cached)
    options: dict[str, Any]  # make_loader's options (seed, workers, pin, shard)
    on_features: bool  # model.cache_features: the frozen backbone ran once, the head trains
    classes: list[str]


def _feeds(
    cfg: RunConfig,
    model: torch.nn.Module,
    wrapped: torch.nn.Module,
    splits: Splits,
    device: torch.device,
    dist: Dist,
) -> tuple[RunConfig, Feeds]:
    """The loaders (data.batch_size: auto resolved here, so the config comes back with it)."""
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
    cached = _cached_features(cfg, model, normalizer, splits, device, options, dist.enabled)
    train_set: LabelledDataset
    val_set: LabelledDataset
    if cached is not None:  # the frozen backbone ran once: the stepper trains the head on features
        train_set, val_set = cached["train"], cached["val"]
        feeds = Feeds(
            HeadOnly(model),
            torch.nn.Identity(),
            None,
            None,
            cached.get("test"),
            options,
            True,
            splits.classes,
        )
    else:
        train_set, val_set = splits.train, splits.val
        feeds = Feeds(wrapped, normalizer, None, None, splits.test, options, False, splits.classes)
    balanced = balanced_weights(train_set.targets()) if cfg.data.sampler == "balanced" else None
    feeds.train = make_loader(train_set, batch, shuffle=True, weights=balanced, **options)
    feeds.val = make_loader(val_set, batch, shuffle=False, **options)
    return cfg, feeds


def _stepper(
    cfg: RunConfig,
    model: torch.nn.Module,
    feeds: Feeds,
    device: torch.device,
    precision: Precision,
    task: Task,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    signals: StopSignals,
    dist: Dist,
) -> Stepper:
    """Memory layout, torch.compile, optimizer, schedule, loss and EMA around the fed module."""
    channels_last = cfg.train.channels_last is True or (
        cfg.train.channels_last == "auto" and device.type == "cuda"
    )
    if channels_last:
        model.to(memory_format=torch.channels_last)  # in place: the DDP wrapper and HeadOnly share it
    stepped = feeds.stepped
    if cfg.train.compile:
        stepped = torch.compile(stepped)  # type: ignore[assignment]
    optimizer = build_optimizer(cfg.optimizer, _optimizer_params(model, cfg), device)
    steps_per_epoch = -(-len(feeds.train) // cfg.train.accumulate)  # optimizer steps
    schedule = Schedule(cfg.scheduler, optimizer, cfg.train.epochs, steps_per_epoch)
    _log_setup(cfg, feeds, optimizer, precision, channels_last, dist, device)
    return Stepper(
        stepped,
        feeds.normalizer,
        device,
        precision,
        task,
        optimizer=optimizer,
        loss_fn=loss_fn,
        schedule=schedule,
        grad_clip=cfg.train.grad_clip,
        nan_policy=cfg.train.nan_policy,
        should_stop=signals.requested,
        dist=dist,
        channels_last=channels_last and not feeds.on_features,
        accumulate=cfg.train.accumulate,
        mixer=batch_mixer(cfg.train.mixup_alpha, cfg.train.cutmix_alpha, len(feeds.classes)),
        **_ema(cfg, model, feeds.on_features),
    )


def _log_setup(
    cfg: RunConfig,
    feeds: Feeds,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    channels_last: bool,
    dist: Dist,
    device: torch.device,
) -> None:
    """The session's shape on the log: loaders and optimizer at debug, DDP at info."""
    batch = batch_size(cfg)
    log.debug(
        f"loaders: {type(feeds.train).__name__}, {feeds.options['workers']} worker process(es), "
        f"pin_memory {feeds.options['pin']}, {len(feeds.train)} train / {len(feeds.val)} val batches of {batch}"
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


def balanced_weights(targets: torch.Tensor) -> torch.Tensor:
    """data.sampler: balanced: one weight per sample, 1 / (its class's count), so every class is
    drawn equally often; multi-hot targets are grouped by each image's rarest label (images
    with no label are one more group), so every label's rarest-label group is drawn equally."""
    groups = torch.as_tensor(strata(targets), dtype=torch.long)
    counts = torch.bincount(groups).double()
    return 1.0 / counts[groups]
