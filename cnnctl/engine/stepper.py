"""The stepper: one object that moves batches to the device and runs forward, backward and
the optimizer step (AMP, gradient accumulation, clipping, EMA, the non-finite-loss policy),
and evaluates or predicts a split. It knows no config and no files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cnnctl.core.errors import RunFailed
from cnnctl.data import Batches
from cnnctl.engine.schedule import Schedule
from cnnctl.engine.state import Progress
from cnnctl.runtime.devices import Precision
from cnnctl.runtime.distributed import Dist
from cnnctl.tasks import Task

LR_ADVICE = "lower optimizer.lr (`cnnctl lr-find CONFIG` suggests one)"


class Stepper:
    """Moves batches to the device, runs forward/backward/step with AMP and clipping; what the
    outputs mean (probabilities, decisions, val loss, metrics) it asks its `task`."""

    def __init__(
        self,
        model: nn.Module,
        normalizer: nn.Module,
        device: torch.device,
        precision: Precision,
        task: Task,
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
        self.model, self.device, self.precision, self.task = model, device, precision, task
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
            correct += self.task.correct(outputs.detach(), y)
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
        views: Sequence[Callable[[torch.Tensor], torch.Tensor]] = (),
    ) -> Any:
        """The task's metrics (an EvalResult for single_label): loss (unsmoothed NLL), accuracy, top-k and confusion matrix over a split; with
        `keep_wrong`, also the indices of that many most confidently wrong samples. `model`
        replaces the stepper's own (the EMA weights). `views` (test-time augmentation, each a
        uint8 batch → uint8 batch, the identity among them): the probabilities averaged over
        them, the loss the NLL of that average."""
        net = model or self.model
        net.eval()
        acc = self.task.metrics(classes, topk, keep_wrong)
        for x_cpu, y_cpu in batches:
            self._poll_stop()
            if views:
                y = y_cpu.to(self.device, non_blocking=self.non_blocking)
                probs = torch.stack([self._probs(net, view(x_cpu)) for view in views]).mean(dim=0)
                acc.update(probs, y, self.task.probs_loss_sum(probs, y))
                continue
            x, y = self.to_device(x_cpu, y_cpu)
            with self._autocast():
                outputs = net(x)
            acc.update(self.task.probabilities(outputs), y, self.task.eval_loss_sum(outputs, y))
        if self.dist.enabled:
            acc.all_reduce(self.dist.all_reduce_, self.device)
        return acc.result()

    def _probs(self, net: nn.Module, x_cpu: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            outputs = net(self.model_input(x_cpu))
        return self.task.probabilities(outputs)

    @torch.inference_mode()
    def outputs(self, batches: Batches, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw outputs (float32) and the targets of every batch, on the CPU: what a fit on a
        split's outputs (calibration) needs. Under DDP each rank holds its own shard."""
        net = model or self.model
        net.eval()
        outputs, targets = [], []
        for x_cpu, y_cpu in batches:
            self._poll_stop()
            with self._autocast():
                out = net(self.model_input(x_cpu))
            outputs.append(out.float().cpu())
            targets.append(y_cpu)
        if not outputs:
            return torch.zeros(0), torch.zeros(0)
        return torch.cat(outputs), torch.cat(targets)

    @torch.inference_mode()
    def predict(self, x_cpu: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities for a uint8 batch, on the CPU."""
        self.model.eval()
        return self.task.probabilities(self.forward(self.model_input(x_cpu))).cpu()


class StopRequested(Exception):
    """Raised at a batch boundary when `should_stop` says so (a signal arrived)."""

    def __init__(self, epoch: int, batch: int):
        super().__init__(f"stop requested at epoch {epoch}, batch {batch}")
        self.epoch, self.batch = epoch, batch
