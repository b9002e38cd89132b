"""Pretrained weights into a freshly built `TransferNet` (training only, once, before the first epoch).

`load_pretrained` reads what `model.weights` names (`weights.py`: torch.hub's cache or a
state_dict file) and `load_backbone` fits it to the network: every backbone tensor must
fit exactly; the pretrained classifier is kept only when the new head has its shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from cnnctl.core.errors import ConfigError
from cnnctl.models.torchvision import TransferNet, layer_width
from cnnctl.models.weights import hub_state, read_state_dict, resolve_weights, weights_file_name

log = logging.getLogger("cnnctl")


def load_pretrained(model: nn.Module, weights: str) -> None:
    """Load `model.weights` into a freshly built TransferNet; `none` does nothing.

    torchvision weights come from torch.hub's cache ($TORCH_HOME/hub/checkpoints), downloaded
    there when missing; offline with no cached file is one ConfigError naming the file and
    the folder to put it in.
    """
    if not isinstance(model, TransferNet):
        raise TypeError("load_pretrained needs a TransferNet")
    choice = resolve_weights(model.arch, weights)
    if choice.kind == "torchvision":
        state, origin = (
            hub_state(model.arch, choice.enum),
            f"{choice.enum} ({weights_file_name(choice.enum)})",
        )
    elif choice.kind == "file":
        assert choice.path is not None
        state, origin = read_state_dict(choice.path), str(choice.path)
    else:
        return
    load_backbone(model, state, origin)
    log.info(f"{model.arch}: loaded pretrained weights {origin}")


def load_backbone(model: TransferNet, state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load a torchvision-layout state_dict into the backbone; the head as it fits.

    Every backbone key must be present with the model's shape (else one ConfigError
    naming `origin` and the first mismatches). The pretrained classifier is kept only
    when the new head is a single layer of the same shape; otherwise it is replaced
    (logged), never partly loaded.
    """
    target = model.net.state_dict()
    prefix = model.head_name + "."
    body = {k: v for k, v in state.items() if not k.startswith(prefix)}
    old_head = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    problems = _misfits(body, target, [k for k in target if not k.startswith(prefix)])
    if problems:
        raise ConfigError(f"model.weights: {origin} does not fit {model.arch}: {'; '.join(problems)}")
    merged = {**target, **body}
    merged.update(_head_from(model, old_head, prefix, target))
    model.net.load_state_dict(merged)


def _misfits(body: dict[str, torch.Tensor], target: dict[str, torch.Tensor], wanted: list[str]) -> list[str]:
    """What keeps `body` from loading into the `wanted` keys of `target`, up to 3 keys per kind."""
    missing = [k for k in wanted if k not in body]
    unexpected = [k for k in body if k not in target]
    wrong = [
        f"{k} {list(body[k].shape)} vs {list(target[k].shape)}"
        for k in wanted
        if k in body and tuple(body[k].shape) != tuple(target[k].shape)
    ]
    return [
        f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatch (file vs model)", wrong),
        )
        if keys
    ]


def _head_from(
    model: TransferNet, old: dict[str, torch.Tensor], prefix: str, target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The pretrained classifier's tensors when they fit the new head exactly, else {}."""
    head = model.head
    layers = [m for m in head.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    shape = "→".join([str(layer_width(layers[0], 0)), *(str(layer_width(m, 1)) for m in layers)])
    last = f"{prefix}{len(head) - 1}." if isinstance(head, nn.Sequential) else prefix
    new = {k[len(last) :]: v for k, v in target.items() if k.startswith(last)}
    if not old:
        log.info(f"{model.arch}: the weights have no {model.head_name}; the new head ({shape}) starts random")
        return {}
    if len(layers) == 1 and set(old) == set(new) and all(old[k].shape == new[k].shape for k in new):
        log.info(f"{model.arch}: kept the pretrained classifier {model.head_name} ({shape})")
        return {last + k: v for k, v in old.items()}
    was = old.get("weight")
    was_shape = f"{was.shape[1]}→{was.shape[0]}" if was is not None and was.dim() >= 2 else "?"
    log.info(
        f"{model.arch}: pretrained classifier {model.head_name} ({was_shape}) replaced by a new head "
        f"({shape}, random init)"
    )
    return {}
