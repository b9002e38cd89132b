"""`data.batch_size: auto`: the largest batch that trains on this device.

On CUDA the model takes a few forward + backward passes at growing powers of two (16, 32,
...) until the GPU runs out of memory or the train split is exhausted; the last size that
fit, minus a margin of one step, is used and logged. On the CPU and MPS, where running out
of memory means swapping rather than an error, auto is 64 (capped by the train split).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger("cnnctl")
CPU_DEFAULT = 64
LARGEST = 4096


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def choose(
    model: nn.Module,
    normalizer: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device,
    train_size: int,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
) -> int:
    """The batch size for `data.batch_size: auto` (see the module docstring)."""
    cap = max(1, min(train_size, LARGEST))
    if device.type != "cuda":
        size = min(CPU_DEFAULT, cap)
        log.info(f"data.batch_size auto: {size} (memory is probed on CUDA only)")
        return size
    fits, size = 0, 16
    while size <= cap:
        if not _trains(model, normalizer, input_shape, device, size, loss_of):
            break
        fits, size = size, size * 2
    if fits == 0:
        fits = 1 if _trains(model, normalizer, input_shape, device, 1, loss_of) else 0
        if fits == 0:
            from cnnctl.core.errors import RunFailed

            raise RunFailed(
                "data.batch_size auto: even one image does not fit in GPU memory; use a smaller model or input"
            )
    chosen = min(fits, cap)
    log.info(
        f"data.batch_size auto: {chosen} (largest power of two that trained on {device}, probed up to {size})"
    )
    return chosen


def _trains(
    model: nn.Module,
    normalizer: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device,
    size: int,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
) -> bool:
    """Does one forward + backward of a `size` batch fit? Gradients are dropped afterwards."""
    try:
        x = normalizer(torch.randint(0, 256, (size, *input_shape), dtype=torch.uint8, device=device))
        loss_of(model(x)).backward()
        return True
    except Exception as err:  # noqa: BLE001 - only an OOM means "too big"
        if not is_oom(err):
            raise
        return False
    finally:
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
