"""The learning-rate range test behind `cnnctl lr-find` and `optimizer.lr: auto`.

The data, model (with its pretrained weights), optimizer, loss, precision and gradient
clipping are built exactly as `cnnctl train` builds them (`cnnctl.session.lr.find_lr`);
this module is the sweep on them: for `steps` optimizer steps (the train loader cycled as
often as needed), the lr grows exponentially from `start` to `end`, one value per step, and each step's training
loss is recorded. The curve is the exponentially smoothed loss (beta 0.98, bias-corrected,
as in Smith's and fastai's finders); the sweep stops early once it exceeds 4x its lowest
value (the loss diverged).

The suggestion is one tenth of the lr at the smoothed loss's minimum (`suggest` says why
not the steepest point); there is none when the smoothed loss fell by no more than the
batch-to-batch noise of the loss (the model did not learn enough in the sweep to tell).
Nothing is written but the plot: no run directory, no checkpoint; the model trained by the
sweep is thrown away.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from cnnctl.core.errors import DataError, Interrupted, RunFailed
from cnnctl.runtime.interrupt import StopSignals

START, END, STEPS = 1e-7, 10.0, 200  # the defaults of `cnnctl lr-find` and `optimizer.lr: auto`
BETA = 0.98  # smoothing of the loss curve
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its lowest value
MIN_STEPS = 10
NOISE_FALLS = 1.0  # for a suggestion the smoothed loss must fall by this many batch-noise SDs ...
MIN_FALL = 0.01  # ... and by this share of its level


@dataclass
class LRFindResult:
    """One range test: the lr of every step, its smoothed and raw loss, and the suggestion."""

    lrs: list[float]
    losses: list[float]  # smoothed (what the suggestion and the plot use)
    raw_losses: list[float]
    suggested_lr: float | None  # None: the loss did not fall enough to suggest one (`problem`)
    steps: int  # requested; len(lrs) is what ran
    diverged: bool  # the sweep stopped early: the loss blew up
    problem: str = ""

    @property
    def lowest_index(self) -> int:
        """The step of the lowest smoothed loss (past the first 10% of the steps)."""
        return _lowest(self.losses)

    @property
    def lowest_lr(self) -> float:
        """The lr at the lowest smoothed loss (past the first 10% of the steps)."""
        return self.lrs[self.lowest_index]

    def suggestion(self) -> float:
        """The suggested lr; RunFailed (naming what to do) when there is none."""
        if self.suggested_lr is None:
            raise RunFailed(self.problem)
        return self.suggested_lr

    def to_plain(self) -> dict[str, Any]:
        return {
            "suggested_lr": self.suggested_lr,
            "problem": self.problem or None,
            "lowest_loss_lr": self.lowest_lr,
            "lrs": self.lrs,
            "losses": self.losses,
            "raw_losses": self.raw_losses,
            "steps_run": len(self.lrs),
            "steps": self.steps,
            "diverged": self.diverged,
        }


def sweep(
    stepper: Any, train_batches: Any, start: float, end: float, steps: int, signals: StopSignals
) -> tuple[list[float], list[float]]:
    """`steps` optimizer steps of `stepper` on the train batches (cycled), the lr growing
    exponentially from `start` to `end`; the lrs stepped and each step's raw loss."""
    optimizer = stepper.optimizer
    assert optimizer is not None and stepper.loss_fn is not None
    # The schedule has already scaled the groups (warmup, onecycle); their own lrs are kept
    # as `initial_lr`.
    ratios = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
    stepper.model.train()
    batches = _cycle(train_batches)
    lrs: list[float] = []
    raw: list[float] = []
    smoothed = best = math.inf
    average = 0.0
    for step in range(steps):
        if signals.requested():
            raise Interrupted(
                f"{signals.name}: lr-find stopped at step {step + 1} of {steps}; nothing was written",
                signals.exit_code,
            )
        lr = start * (end / start) ** (step / (steps - 1))
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = lr * ratio
        value = _accumulate(stepper, batches)
        if not math.isfinite(value):
            break  # diverged
        if stepper.grad_clip is not None:
            stepper.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(stepper.model.parameters(), stepper.grad_clip)
        stepper.scaler.step(optimizer)
        stepper.scaler.update()
        lrs.append(lr)
        raw.append(value)
        average = BETA * average + (1 - BETA) * value
        smoothed = average / (1 - BETA ** len(raw))
        best = min(best, smoothed)
        if smoothed > DIVERGED * best:
            break
    return lrs, raw


def _accumulate(stepper: Any, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The gradients of one optimizer step as training makes them (train.accumulate batches,
    no mixup / cutmix: see session.lr.find_lr); returns their mean loss (not finite: no gradient kept)."""
    stepper.optimizer.zero_grad(set_to_none=True)
    k, total = stepper.accumulate, 0.0
    for _ in range(k):
        x, y = stepper.to_device(*next(batches))
        loss = stepper.loss_fn(stepper.forward(x).float(), y)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        stepper.scaler.scale(loss / k).backward()
        total += value / k
    return total


def _cycle(batches: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The train batches epoch after epoch (each epoch in its own seeded order)."""
    epoch = 1
    while True:
        batches.set_epoch(epoch)
        empty = True
        for item in batches:
            empty = False
            yield item
        if empty:
            raise DataError("lr-find: the train split gives no batches")
        epoch += 1


def smooth(raw: list[float], beta: float = BETA) -> list[float]:
    """Exponential moving average of `raw`, bias-corrected (the first values are not pulled to 0)."""
    out: list[float] = []
    average = 0.0
    for i, value in enumerate(raw, start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**i))
    return out


def suggest(lrs: list[float], losses: list[float], raw: list[float]) -> float:
    """The suggested lr: one tenth of the lr where the smoothed loss is lowest.

    Not the steepest point of the smoothed curve: the moving average lags the raw loss by
    about 1 / (1 - beta) = 50 steps (two decades of lr with the default sweep), so its
    steepest fall sits near the raw loss's minimum, too high to train at; a tenth of the
    minimum lands, on the problems measured, within a factor of ~4 of where the raw loss
    falls fastest. The first 10% of the points (the least averaged) are left out.

    Refuses (RunFailed) when the smoothed loss fell, on its way to that minimum, by less than
    the batch-to-batch noise of the raw loss (or 1%): a moving average of pure noise dips by
    up to ~0.9 of that noise over a 200-step sweep, so such a "minimum" says nothing.
    """
    n = len(losses)
    skip = max(1, n // 10)
    lowest = _lowest(losses)
    top = max(losses[skip : lowest + 1])
    fall, noise = top - losses[lowest], batch_noise(raw[: lowest + 1])
    if fall < max(NOISE_FALLS * noise, MIN_FALL * abs(top)):
        raise RunFailed(
            f"lr-find: over {n} steps (lr {lrs[0]:.3g} to {lrs[-1]:.3g}) the smoothed loss fell by "
            f"{fall:.3g} only ({fall / top if top else 0:.1%}), within the batch-to-batch noise of the "
            f"loss (±{noise:.2g}): the model barely learns in so few steps, so there is no lr to "
            "suggest; look at `cnnctl lr-find CONFIG --steps 500` (or another --start/--end, or "
            "milder data.augment) and set optimizer.lr by hand"
        )
    return lrs[lowest] / 10


def batch_noise(raw: list[float]) -> float:
    """Robust standard deviation of the per-batch loss around its trend (from step-to-step
    differences: 1.4826 x median |difference| / sqrt 2)."""
    steps = sorted(abs(b - a) for a, b in zip(raw, raw[1:], strict=False))
    if not steps:
        return 0.0
    middle = len(steps) // 2
    median = steps[middle] if len(steps) % 2 else (steps[middle - 1] + steps[middle]) / 2
    return 1.4826 * median / math.sqrt(2)


def _lowest(losses: list[float]) -> int:
    """Index of the lowest smoothed loss, the first 10% (the least averaged) left out."""
    return min(range(max(1, len(losses) // 10), len(losses)), key=losses.__getitem__)


def result_of(lrs: list[float], raw: list[float], steps: int) -> LRFindResult:
    if len(raw) < MIN_STEPS:
        raise RunFailed(
            f"lr-find: the training loss was not finite after {len(raw)} step(s) (at lr "
            f"{lrs[-1] if lrs else 0:.3g}): lower the start lr or check the data and model"
        )
    losses = smooth(raw)
    try:
        return LRFindResult(lrs, losses, raw, suggest(lrs, losses, raw), steps, len(raw) < steps)
    except RunFailed as err:  # the curve is still worth a look
        return LRFindResult(lrs, losses, raw, None, steps, len(raw) < steps, str(err))
