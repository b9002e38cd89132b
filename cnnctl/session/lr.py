"""The learning-rate range test on a session built as `cnnctl train` builds it: behind
`cnnctl lr-find` and `optimizer.lr: auto` (the sweep itself is `cnnctl.engine.lr_range`)."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from cnnctl.config import RunConfig
from cnnctl.core.errors import CnnctlError, ConfigError, RunFailed
from cnnctl.engine import lr_range
from cnnctl.engine.lr_range import LRFindResult, result_of, sweep
from cnnctl.runtime.distributed import Dist
from cnnctl.runtime.interrupt import StopSignals
from cnnctl.session.build import build_session
from cnnctl.session.resolve import resolve_config


def find_lr(
    cfg: RunConfig,
    start: float = lr_range.START,
    end: float = lr_range.END,
    steps: int = lr_range.STEPS,
    signals: StopSignals | None = None,
) -> LRFindResult:
    """Run the LR range test for `cfg` (its `optimizer.lr` is ignored, `auto` included).

    One step is one optimizer step: `train.accumulate` batches. MixUp / CutMix are left out
    of the sweep: the soft targets add enough noise to hide the loss curve in a few hundred
    steps, and the lr they train best with is close to the plain one (the EMA of the weights,
    which does not change them, is not kept either).

    `signals` (a StopSignals in effect): a SIGINT/SIGTERM stops the sweep at the next step
    with `Interrupted`. A loss that is not finite from the first steps is a RunFailed; one
    that hardly falls gives a result without a suggestion (`problem` says what to try).
    """
    if not 0 < start < end or not math.isfinite(end):
        raise ConfigError(f"lr-find: need 0 < start < end (got start {start:g}, end {end:g})")
    if steps < lr_range.MIN_STEPS:
        raise ConfigError(f"lr-find: need at least {lr_range.MIN_STEPS} steps (got {steps})")
    signals = signals or StopSignals()
    # lr 1.0 as a stand-in: each param group's lr is then its multiple of the swept lr
    # (a transfer model's backbone group keeps lr x optimizer.backbone_lr_mult).
    unit = cfg.model_copy(update={"optimizer": cfg.optimizer.model_copy(update={"lr": 1.0})})
    session = build_session(unit, None, signals, Dist())
    try:
        lrs, raw = sweep(session.stepper, session.train_batches, start, end, steps, signals)
    finally:
        device = session.device
        del session
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result_of(lrs, raw, steps)


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
