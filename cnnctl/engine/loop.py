"""The loops: train one epoch, evaluate a split, predict batches, and `fit` over epochs.

The engine takes objects (model, loaders, optimizer, ...) and knows nothing of YAML,
files or the terminal: it reports through the `Progress` hooks, `on_epoch_start` and
`on_epoch_end`.

A diverging run says so (`divergence`): the epoch's row carries the reason, which the
epoch line shows, and `fit` ends with one warning naming `optimizer.lr`, the value used and
`cnnctl lr-find`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from cnnctl.core.errors import RunFailed
from cnnctl.data import Batches
from cnnctl.engine.metrics import EvalResult, MetricAccumulator
from cnnctl.runtime.devices import Precision
from cnnctl.runtime.distributed import Dist
from cnnctl.session.optim import BINARY_LOGIT, Schedule, eval_loss_sum, probabilities


class Progress(Protocol):
    """Hooks the engine calls; `report.py` draws bars or prints lines from them."""

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None: ...
    def batch(self, samples: int, loss: float | None) -> None: ...
    def end_epoch(self, row: EpochRow) -> None: ...


class SilentProgress:
    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        pass

    def batch(self, samples: int, loss: float | None) -> None:
        pass

    def end_epoch(self, row: EpochRow) -> None:
        pass


@dataclass
class EpochRow:
    """One line of metrics.csv."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    weights: str = "raw"  # which weights the val figures are of: raw, or ema (train.ema)
    diverging: str = ""  # why this epoch says the run is diverging ('' when it does not)

    def to_plain(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitState:
    """What `fit` carries from epoch to epoch (and what resume restores)."""

    epoch: int = 0  # epochs completed
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_plain(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    monitor: str = "val_loss"  # or val_acc
    patience: int | None = None
    min_delta: float = 0.0


class Stepper:
    """Moves batches to the device, runs forward/backward/step with AMP and clipping."""

    def __init__(
        self,
        model: nn.Module,
        normalizer: nn.Module,
        device: torch.device,
        precision: Precision,
        kind: str,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        schedule: Schedule | None = None,
        grad_clip: float | None = None,
        nan_policy: str = "stop",
        should_stop: Callable[[], bool] | None = None,
        dist: Dist | None = None,
        channels_last: bool = False,
        accumulate: int = 1,
        mixer: Callable[..., Any] | None = None,
        ema: Any = None,
        ema_source: nn.Module | None = None,
        ema_eval: nn.Module | None = None,
    ):
        self.model, self.device, self.precision, self.kind = model, device, precision, kind
        self.normalizer = normalizer.to(device)
        self.optimizer, self.loss_fn, self.schedule, self.grad_clip = optimizer, loss_fn, schedule, grad_clip
        self.nan_policy = nan_policy
        self.dist = dist or Dist()  # several processes: metrics are summed over them
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.accumulate = accumulate  # batches per optimizer step
        self.mixer = mixer  # mixup / cutmix: (x, y) → (mixed x, soft targets)
        self.ema = ema  # torch.optim.swa_utils.AveragedModel, updated after every optimizer step
        self.ema_source = ema_source  # the network whose weights it averages
        self.ema_eval = ema_eval  # what runs the EMA weights on a batch (the EMA model, or its head)
        self.should_stop = should_stop  # polled before every batch: a signal asked the run to stop
        self.skipped = 0  # batches skipped for a non-finite loss (nan_policy skip_batch), this epoch
        self.position = (0, 0)  # (epoch, batch) being worked on, for messages
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
        self.non_blocking = device.type == "cuda"

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.precision.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision.dtype)

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model_input(x), y.to(self.device, non_blocking=self.non_blocking)

    def model_input(self, x_cpu: torch.Tensor) -> torch.Tensor:
        """A uint8 (or cached-feature) batch on the device, normalised, in the model's layout."""
        x: torch.Tensor = self.normalizer(x_cpu.to(self.device, non_blocking=self.non_blocking))
        if x.dim() == 4 and self.memory_format is torch.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            outputs: torch.Tensor = self.model(x)
        return outputs

    def train_epoch(self, batches: Batches, epoch: int, progress: Progress) -> tuple[float, float]:
        """One pass over the train batches; returns (mean loss, accuracy)."""
        assert self.optimizer is not None and self.loss_fn is not None
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        self.skipped = 0
        total, k = len(batches), self.accumulate
        pending = False  # gradients accumulated since the last optimizer step
        unchecked: list[tuple[int, torch.Tensor]] = []  # losses not yet checked for finiteness
        for index, (x_cpu, y_cpu) in enumerate(batches, start=1):
            self.position = (epoch, index)
            self._poll_stop()
            x, y = self.to_device(x_cpu, y_cpu)
            targets = y
            if self.mixer is not None:
                x, targets = self.mixer(x, y)
            group_start = (index - 1) // k * k  # batches index-1 .. of this optimizer step
            group = min(k, total - group_start)
            last = index == group_start + group
            if index - 1 == group_start:
                self.optimizer.zero_grad(set_to_none=True)
            with self._sync(last):
                outputs = self.forward(x)
                loss = self.loss_fn(outputs.float(), targets)
                finite = self._finite_now(loss, index, unchecked)
                if finite:
                    self.scaler.scale(loss / group).backward()
                    pending = True
            if not finite:
                self._non_finite(loss, epoch, index)
            if last:
                self._step(pending)
                pending = False
            if not finite:
                progress.batch(int(y.shape[0]), None)
                continue
            n = int(y.shape[0])
            seen += n
            loss_sum += loss.detach() * n
            correct += (predicted_labels(outputs.detach(), self.kind) == y).sum()
            shown = float(loss.detach()) if self.device.type == "cpu" or index % 20 == 0 else None
            if unchecked and (index % 20 == 0 or index == total):
                self._check_losses(unchecked, epoch)
            progress.batch(n, shown)
        if self.skipped and not seen:
            raise RunFailed(
                f"every training batch of epoch {epoch} had a non-finite loss ({self.skipped} "
                f"skipped): the run diverged; {LR_ADVICE} or set train.grad_clip; best.pt is kept as it was"
            )
        if self.dist.enabled:
            totals = torch.stack(
                [loss_sum.double(), correct.double(), torch.tensor(float(seen), device=self.device)]
            )
            self.dist.all_reduce_(totals)
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
        return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)

    @property
    def check_every_batch(self) -> bool:
        """Is each loss checked for NaN/inf as soon as it is computed? On the CPU that is free;
        on a GPU it waits for the batch to finish (a sync per batch), so with nan_policy stop
        the losses are checked together every 20 batches and at the end of the epoch: the
        run still stops with the first bad batch named, before any checkpoint is written
        (skip_batch has to know before the backward pass, so it checks every batch)."""
        return self.device.type == "cpu" or self.nan_policy == "skip_batch"

    def _finite_now(self, loss: torch.Tensor, index: int, unchecked: list[tuple[int, torch.Tensor]]) -> bool:
        """Is the loss finite, as far as is known now? Deferred losses join `unchecked`."""
        if self.check_every_batch:
            return bool(torch.isfinite(loss))
        unchecked.append((index, loss.detach()))
        return True

    def _check_losses(self, unchecked: list[tuple[int, torch.Tensor]], epoch: int) -> None:
        finite = torch.isfinite(torch.stack([loss for _, loss in unchecked])).tolist()
        bad = next((i for i, ok in enumerate(finite) if not ok), None)
        if bad is not None:
            index, loss = unchecked[bad]
            self._non_finite(loss, epoch, index)
        unchecked.clear()

    def _non_finite(self, loss: torch.Tensor, epoch: int, index: int) -> None:
        """train.nan_policy: stop (raise) or skip_batch (count it; the batch added no gradient)."""
        assert self.optimizer is not None
        if self.nan_policy != "skip_batch":
            raise RunFailed(
                f"non-finite training loss ({float(loss.detach())}) at epoch {epoch}, batch {index}, "
                f"lr {self.optimizer.param_groups[0]['lr']:.3g}: the run diverged; {LR_ADVICE}, set "
                "train.grad_clip, or train.nan_policy: skip_batch; best.pt is kept as it was"
            )
        self.skipped += 1

    def _step(self, pending: bool) -> None:
        """End of an accumulation group: clip, optimizer step (if any gradient), lr step."""
        assert self.optimizer is not None
        if pending:
            if self.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update_parameters(self.ema_source)
        if self.schedule is not None:
            self.schedule.step_batch()  # the lr follows the step count, skipped or not

    def _sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Under DDP, skip the gradient all-reduce on batches that do not end an accumulation."""
        no_sync = getattr(self.model, "no_sync", None)
        if last or no_sync is None:
            return contextlib.nullcontext()
        context: contextlib.AbstractContextManager[Any] = no_sync()
        return context

    def _poll_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise StopRequested(*self.position)

    @torch.inference_mode()
    def evaluate(
        self,
        batches: Batches,
        classes: list[str],
        topk: tuple[int, ...] = (1,),
        keep_wrong: int = 0,
        model: nn.Module | None = None,
    ) -> EvalResult:
        """Loss (unsmoothed NLL), accuracy, top-k and confusion matrix over a split; with
        `keep_wrong`, also the indices of that many most confidently wrong samples. `model`
        replaces the stepper's own (the EMA weights)."""
        net = model or self.model
        net.eval()
        acc = MetricAccumulator(classes, topk, keep_wrong=keep_wrong)
        for x_cpu, y_cpu in batches:
            self._poll_stop()
            x, y = self.to_device(x_cpu, y_cpu)
            with self._autocast():
                outputs = net(x)
            acc.update(probabilities(outputs, self.kind), y, eval_loss_sum(outputs, y, self.kind))
        if self.dist.enabled:
            acc.all_reduce(self.dist.all_reduce_, self.device)
        return acc.result()

    @torch.inference_mode()
    def predict(self, x_cpu: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities for a uint8 batch, on the CPU."""
        self.model.eval()
        return probabilities(self.forward(self.model_input(x_cpu)), self.kind).cpu()


class StopRequested(Exception):
    """Raised at a batch boundary when `should_stop` says so (a signal arrived)."""

    def __init__(self, epoch: int, batch: int):
        super().__init__(f"stop requested at epoch {epoch}, batch {batch}")
        self.epoch, self.batch = epoch, batch


def predicted_labels(outputs: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == BINARY_LOGIT:
        return (outputs.squeeze(1) > 0).long()
    return outputs.argmax(dim=1)


def improved(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    """Does `value` beat `best` by more than min_delta? Ties keep the earlier epoch."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    if monitor == "val_acc":
        return value > best + min_delta
    return value < best - min_delta


LR_ADVICE = "lower optimizer.lr (`cnnctl lr-find CONFIG` suggests one)"
BLOW_UP = 4.0  # a train loss this many times its lowest (or chance level) is diverging ...
BLOW_UP_FLOOR = 0.5  # ... once it is also at least this share of chance level
LEARNED = 0.75  # an epoch whose train loss was below this share of chance had learned something
CHANCE_TOLERANCE = 0.05  # within this share of chance level is "at chance"


def divergence(
    history: Sequence[Mapping[str, Any]],
    train_loss: float,
    val_loss: float,
    classes: int,
    skipped: int = 0,
    batches: int = 0,
) -> str:
    """'' for a healthy epoch, else why the run is diverging, for the epoch line.

    `history` holds the earlier epochs' rows; chance level is ln(classes) (the loss of a
    uniform guess, for cross-entropy, nll and binary cross-entropy alike). The epoch is
    diverging when
    - a loss is non-finite, or batches were skipped for a non-finite loss (nan_policy
      skip_batch; with stop, the run ends at the first one);
    - the train loss is above BLOW_UP (4) times its lowest earlier value, that lowest capped
      at chance level (an untrained classifier starts at about chance, so the first epoch is
      judged too), and at least half of chance level: the 4x is lr-find's own stop rule,
      the floor keeps a well-fitted run's wobble near zero (0.01 → 0.05) from counting;
    - or the train loss is back at (within 5%) or above chance level after an earlier epoch
      was below 0.75 of it: the network forgot what it had learned, typically collapsed to a
      constant guess, which the 4x rule misses when the lowest loss was not far below chance
      (when both rules hold, "at chance" is the reason given: it says more).
    """
    chance = math.log(max(classes, 2))
    level = f"ln {classes} = {chance:.2f}"
    if not math.isfinite(train_loss):
        return f"train loss is {train_loss}"
    if skipped:
        of = f" of {batches}" if batches else ""
        return f"{skipped}{of} batch(es) had a non-finite loss (skipped, train.nan_policy: skip_batch)"
    if not math.isfinite(val_loss):
        return f"val loss is {val_loss}"
    earlier = [(float(r["train_loss"]), int(r["epoch"])) for r in history]
    lowest, when = min(((v, e) for v, e in earlier if math.isfinite(v)), default=(math.inf, 0))
    reference = min(lowest, chance)
    loss = _shown(train_loss)
    learned = lowest < LEARNED * chance
    after = f"after {_shown(lowest)} at epoch {when}"
    if learned and abs(train_loss - chance) <= CHANCE_TOLERANCE * chance:
        return f"train loss {loss} is at chance ({level}) {after}"
    if train_loss > BLOW_UP * reference and train_loss >= BLOW_UP_FLOOR * chance:
        if lowest >= chance:
            return f"train loss {loss} is {_shown(train_loss / chance)}x chance level ({level})"
        return f"train loss {loss} is {_shown(train_loss / lowest)}x its lowest, {_shown(lowest)} at epoch {when}"
    if learned and train_loss > chance:
        return f"train loss {loss} is above chance ({level}) {after}"
    return ""


def _shown(value: float) -> str:
    """A loss or ratio for a message: 2.30, 0.0042, 2.26e+04."""
    return f"{value:.2f}" if 0.1 <= abs(value) < 1000 else f"{value:.3g}"


def divergence_advice(history: Sequence[Mapping[str, Any]], optimizer: torch.optim.Optimizer | None) -> str:
    """The end-of-run line for a run with diverging epochs ('' when there were none)."""
    flagged = [r for r in history if r.get("diverging")]
    if not flagged:
        return ""
    first = flagged[0]
    used = ""
    if optimizer is not None and optimizer.param_groups:
        group = optimizer.param_groups[0]
        lr = float(group.get("initial_lr", group["lr"]))  # the base lr a schedule scales
        used = f" (this run: {lr:g}, {type(optimizer).__name__})"
    epochs = f"{len(flagged)} of {len(history)} epochs" if len(flagged) > 1 else f"epoch {first['epoch']}"
    return (
        f"training diverged ({epochs}; first at epoch {first['epoch']}: {first['diverging']}): "
        f"lower optimizer.lr{used}, e.g. tenfold, or run `cnnctl lr-find CONFIG` for a suggestion; "
        "train.grad_clip also steadies it"
    )


def _monitored(result: EvalResult, settings: FitSettings) -> float:
    return result.loss if settings.monitor == "val_loss" else result.accuracy


def fit(
    stepper: Stepper,
    train: Batches,
    val: Batches,
    classes: list[str],
    settings: FitSettings,
    state: FitState,
    progress: Progress,
    on_epoch_end: Callable[[EpochRow, FitState, bool], None],
    on_epoch_start: Callable[[int], None] | None = None,
) -> FitState:
    """Train → validate each epoch from `state.epoch + 1`; `on_epoch_end` saves checkpoints.

    `on_epoch_start(epoch)` runs before an epoch's first batch (e.g. to unfreeze layers).
    `on_epoch_end(row, state, is_best)` is called after the state is updated, so a
    checkpoint written there holds everything a resume needs. An epoch that `divergence`
    flags carries the reason in `row.diverging`; if any epoch of the run (resumed ones
    included) was flagged, the run ends with one warning on the `cnnctl` logger naming
    optimizer.lr, its value and `cnnctl lr-find`.
    """
    assert stepper.schedule is not None
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        started = time.perf_counter()
        lr = stepper.schedule.lr
        train.set_epoch(epoch)
        progress.start_epoch(epoch, settings.epochs, len(train))
        train_loss, train_acc = stepper.train_epoch(train, epoch, progress)
        result = stepper.evaluate(val, classes)
        weights = "raw"
        if stepper.ema_eval is not None:  # train.ema: the better of raw and EMA weights stands
            averaged = stepper.evaluate(val, classes, model=stepper.ema_eval)
            if improved(_monitored(averaged, settings), _monitored(result, settings), settings.monitor, 0.0):
                result, weights = averaged, "ema"
        stepper.schedule.step_epoch(result.loss)
        row = EpochRow(
            epoch,
            train_loss,
            train_acc,
            result.loss,
            result.accuracy,
            lr,
            time.perf_counter() - started,
            weights,
            divergence(state.history, train_loss, result.loss, len(classes), stepper.skipped, len(train)),
        )
        value = _monitored(result, settings)
        is_best = improved(value, state.best_value, settings.monitor, settings.min_delta)
        state.epoch = epoch
        state.history.append(row.to_plain())
        if is_best:
            state.best_value, state.best_epoch, state.bad_epochs = value, epoch, 0
        else:
            state.bad_epochs += 1
        if settings.patience is not None and state.bad_epochs >= settings.patience:
            state.stopped_early = epoch < settings.epochs
        progress.end_epoch(row)
        on_epoch_end(row, state, is_best)
        if state.stopped_early:
            break
    advice = divergence_advice(state.history, stepper.optimizer)
    if advice and stepper.dist.main:
        logging.getLogger("cnnctl").warning(advice)
    return state
