"""The loops: train one epoch, evaluate a split, predict batches, and `fit` over epochs.

The engine takes objects (model, loaders, optimizer, ...) and knows nothing of YAML,
files or the terminal: it reports through the `Progress` hooks, `on_epoch_start` and
`on_epoch_end`.

A diverging run says so (`divergence`): the epoch's row carries the reason, which the
epoch line shows, and `fit` ends with one warning naming `optimizer.lr`, the value used and
`cnnctl lr-find`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from cnnctl.data import Batches
from cnnctl.engine.state import EpochRow, FitSettings, FitState, Progress
from cnnctl.engine.stepper import Stepper

BLOW_UP = 4.0  # a train loss this many times its lowest (or chance level) is diverging ...
BLOW_UP_FLOOR = 0.5  # ... once it is also at least this share of chance level
LEARNED = 0.75  # an epoch whose train loss was below this share of chance had learned something
CHANCE_TOLERANCE = 0.05  # within this share of chance level is "at chance"


def improved(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    """Does `value` beat `best` by more than min_delta? Ties keep the earlier epoch."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    if monitor == "val_acc":
        return value > best + min_delta
    return value < best - min_delta


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


def _monitored(result: Any, settings: FitSettings) -> float:
    return float(result.loss if settings.monitor == "val_loss" else result.accuracy)


def fit(
    stepper: Stepper,
    train: Batches,
    val: Batches,
    classes: list[str],
    settings: FitSettings,
    state: FitState,
    progress: Progress,
    on_epoch_end: Callable[[EpochRow, FitState, bool, Any], None],
    on_epoch_start: Callable[[int], None] | None = None,
) -> FitState:
    """Train → validate each epoch from `state.epoch + 1`; `on_epoch_end` saves checkpoints.

    `on_epoch_start(epoch)` runs before an epoch's first batch (e.g. to unfreeze layers).
    `on_epoch_end(row, state, is_best, result)` is called after the state is updated, so a
    checkpoint written there holds everything a resume needs; `result` is the epoch's val
    metrics (the task's result object, of the weights the row is of). An epoch that `divergence`
    flags carries the reason in `row.diverging`; if any epoch of the run (resumed ones
    included) was flagged, the run ends with one warning on the `cnnctl` logger naming
    optimizer.lr, its value and `cnnctl lr-find`.
    """
    assert stepper.schedule is not None
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        row, result = _epoch(stepper, train, val, classes, settings, state, progress, epoch)
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
        on_epoch_end(row, state, is_best, result)
        if state.stopped_early:
            break
    advice = divergence_advice(state.history, stepper.optimizer)
    if advice and stepper.dist.main:
        logging.getLogger("cnnctl").warning(advice)
    return state


def _epoch(
    stepper: Stepper,
    train: Batches,
    val: Batches,
    classes: list[str],
    settings: FitSettings,
    state: FitState,
    progress: Progress,
    epoch: int,
) -> tuple[EpochRow, Any]:
    """Train one epoch, validate (raw weights, and the EMA's with train.ema), step the schedule."""
    assert stepper.schedule is not None
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
    return row, result
