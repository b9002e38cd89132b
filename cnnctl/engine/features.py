"""Frozen-backbone feature caching (`model.cache_features`).

When only the new head of a torchvision model trains (`model.freeze: backbone`) and the
training images are not randomly augmented, every epoch feeds the backbone the same images
and gets the same outputs back: a frozen part runs in eval mode (`TransferNet.train`), so it
is a fixed function. cnnctl then runs the backbone once over train, val and test, keeps what
enters the head (the "features", float32 on the CPU), and trains the head alone on them:
the same numbers as running the whole network every epoch, at the cost of one pass.

It does not apply (and `auto` says why in the log) when anything of the backbone trains,
when `data.augment` is on (the backbone's input changes every epoch), under
`train.unfreeze_at_epoch`, under torchrun, or when the features would not fit in memory.
Checkpoints hold the whole network as always: evaluate and predict run it end to end.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from cnnctl.config import TORCHVISION, RunConfig
from cnnctl.data import ArrayDataset, LabelledDataset, make_loader

log = logging.getLogger("cnnctl")
MEMORY_LIMIT = 2 * 2**30  # bytes of cached features, all splits together


def why_not(cfg: RunConfig, model: nn.Module, distributed: bool) -> str | None:
    """None when features can be cached for this run, else the reason they are not."""
    if cfg.model.family() != TORCHVISION or cfg.model.cache_features == "off":
        return "off"
    head = getattr(model, "head", None)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if head is None or trainable != {id(p) for p in head.parameters()}:
        return "part of the backbone trains (model.freeze is not backbone)"
    if cfg.train.unfreeze_at_epoch is not None:
        return "train.unfreeze_at_epoch will unfreeze the backbone"
    if cfg.data.augment.enabled:
        return "data.augment changes the backbone's input every epoch"
    if distributed:
        return "not under torchrun"
    return None


class HeadOnly(nn.Module):
    """The trainable end of a TransferNet (its head, and LogSoftmax if any), fed features."""

    def __init__(self, model: Any):
        super().__init__()
        self.head: nn.Module = model.head
        self.log_softmax: nn.Module | None = model.log_softmax

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(features)
        return self.log_softmax(out) if self.log_softmax is not None else out


@torch.inference_mode()
def extract(
    model: Any,
    normalizer: nn.Module,
    dataset: LabelledDataset,
    batch_size: int,
    device: torch.device,
    loader_options: dict[str, Any],
) -> ArrayDataset:
    """What enters `model.head` for every sample of `dataset` (in order), with its labels."""
    captured: list[torch.Tensor] = []

    def grab(module: nn.Module, args: tuple[Any, ...]) -> None:
        captured.append(args[0].detach().float().cpu())

    handle = model.head.register_forward_pre_hook(grab)
    was_training = model.training
    model.eval()
    labels: list[torch.Tensor] = []
    try:
        for x, y in make_loader(dataset, batch_size, shuffle=False, **{**loader_options, "shard": None}):
            model(normalizer(x.to(device)))
            labels.append(y)
    finally:
        handle.remove()
        model.train(was_training)
    features = torch.cat(captured) if captured else torch.empty(0)
    return ArrayDataset(features, torch.cat(labels) if labels else torch.empty(0, dtype=torch.long))


def fits(model: Any, normalizer: nn.Module, sample: torch.Tensor, count: int, device: torch.device) -> bool:
    """Would `count` samples' features fit MEMORY_LIMIT? (one forward of one sample)."""
    captured: list[torch.Tensor] = []
    handle = model.head.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(normalizer(sample[None].to(device)))
    finally:
        handle.remove()
        model.train(was_training)
    return captured[0].numel() * 4 * count <= MEMORY_LIMIT
