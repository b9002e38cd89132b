"""The hooks a training run's loop calls: `checkpointer` at each epoch's end (metrics row,
last.pt, best.pt) and `unfreezer` at each epoch's start (train.unfreeze_at_epoch)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.config import RunConfig
from cnnctl.core.errors import ConfigError, RunFailed
from cnnctl.engine.state import EpochRow, FitState
from cnnctl.session.build import Session


def checkpointer(
    run: Session, run_dir: Path, sinks: list[Any]
) -> Callable[[EpochRow, FitState, bool, Any], None]:
    """The on_epoch_end hook: metrics.csv row (and TensorBoard), last.pt, and best.pt when best
    (with what the task chose on that val pass: multi_label's thresholds)."""
    meta = run.checkpoint_meta()

    def on_epoch_end(row: EpochRow, state: FitState, is_best: bool, result: Any = None) -> None:
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
        tuned = run.task.tuned(result).record() if result is not None else {}  # this val pass's thresholds
        taken = {**meta, **tuned, "model": weights, "epoch": row.epoch, "metrics": row.to_plain()}
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


def unfreezer(run: Session, cfg: RunConfig) -> Callable[[int], None] | None:
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
