"""`cnnctl summary`: the layers of a model with output shapes, parameter counts and MACs.

The model is built exactly as training builds it (for a config) or rebuilt from a
checkpoint; pretrained weights are never loaded nor downloaded: they change no shape and
no count. One dummy input goes through the model on the CPU, with forward hooks recording
each listed layer's output shape and torch's FlopCounterMode counting FLOPs
(MACs = FLOPs / 2: one multiply-add is two FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnctl.config import RunConfig
from cnnctl.core.errors import ConfigError
from cnnctl.runtime.seeding import seed_everything
from cnnctl.session.resolve import model_spec, resolve_config


@dataclass
class Layer:
    name: str
    type: str
    output_shape: list[int] | None  # None: not called by the forward pass
    params: int
    trainable: int

    def to_plain(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "output_shape": self.output_shape,
            "params": self.params,
            "trainable_params": self.trainable,
        }


@dataclass
class ModelSummary:
    model: str
    source: str  # the config or checkpoint summarised
    input_shape: list[int]  # (C, H, W)
    num_outputs: int
    output_kind: str
    total_params: int
    trainable_params: int
    flops: int
    layers: list[Layer] = field(default_factory=list)

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def macs(self) -> int:
        return self.flops // 2

    def to_plain(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "input_shape": self.input_shape,
            "num_outputs": self.num_outputs,
            "output_kind": self.output_kind,
            "params": {
                "total": self.total_params,
                "trainable": self.trainable_params,
                "frozen": self.frozen_params,
            },
            "macs": self.macs,
            "flops": self.flops,
            "layers": [layer.to_plain() for layer in self.layers],
        }


def _named_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) for every module but the root; a TransferNet names them as torchvision does."""
    display = getattr(model, "display_modules", None)
    if display is not None:
        named: list[tuple[str, nn.Module]] = display()
        return named
    return [(n, m) for n, m in model.named_modules() if n]


def _shape(output: Any) -> list[int] | None:
    if isinstance(output, torch.Tensor):
        return list(output.shape)
    if isinstance(output, tuple | list) and output:
        return _shape(output[0])
    return None


def inspect_model(
    model: nn.Module, input_shape: tuple[int, ...], depth: int
) -> tuple[list[Layer], int, int, int]:
    """Layers down to `depth` (1 = top level), total and trainable params, and FLOPs for one input."""
    if depth < 1:
        raise ConfigError("--depth: must be at least 1")
    listed = [(n, m) for n, m in _named_layers(model) if n.count(".") < depth]
    shapes: dict[str, list[int] | None] = {}

    def hook_for(name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            shapes.setdefault(name, _shape(output))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in listed]
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    layers = [
        Layer(
            name,
            type(module).__name__,
            shapes.get(name),
            sum(p.numel() for p in module.parameters()),
            sum(p.numel() for p in module.parameters() if p.requires_grad),
        )
        for name, module in listed
    ]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return layers, total, trainable, int(counter.get_total_flops())


def summarize_config(cfg: RunConfig, source: str, depth: int = 2) -> ModelSummary:
    """Build the model `cfg` trains (data defaults resolved, no pretrained weights) and summarise it.

    The data splits are built for the class count and input shape; normalisation does not
    change the model, so it is not measured here.
    """
    from cnnctl.data import build_splits
    from cnnctl.models import build_model

    cfg = resolve_config(cfg)
    data = cfg.data.model_copy(update={"normalize": "none"})
    splits = build_splits(data, cfg.seed, separator=cfg.label_separator())
    spec, task = model_spec(cfg, splits)
    seed_everything(cfg.seed)
    model = build_model(spec)
    layers, total, trainable, flops = inspect_model(model, spec.input_shape, depth)
    return ModelSummary(
        cfg.model.name,
        source,
        list(spec.input_shape),
        spec.num_outputs,
        task.output_kind,
        total,
        trainable,
        flops,
        layers,
    )


def summarize_checkpoint(path: str | Path, depth: int = 2) -> ModelSummary:
    """Rebuild a checkpoint's model (no config, no download) and summarise it."""
    from cnnctl.artifacts.loaded import load_model

    loaded = load_model(path, "cpu")
    spec = loaded.checkpoint["model_spec"]
    shape = tuple(int(v) for v in spec["input_shape"])
    layers, total, trainable, flops = inspect_model(loaded.stepper.model, shape, depth)
    return ModelSummary(
        str(spec["config"]["name"]),
        str(path),
        list(shape),
        int(spec["num_outputs"]),
        str(loaded.checkpoint["output_kind"]),
        total,
        trainable,
        flops,
        layers,
    )


def _count(n: int) -> str:
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def summary_table(summary: ModelSummary) -> Table:
    """The layers as a rich table, totals in the caption."""
    shape = "x".join(map(str, summary.input_shape))
    table = Table(
        title=f"{summary.model} · input {shape} · {summary.num_outputs} outputs ({summary.output_kind})",
        caption=(
            f"params {summary.total_params:,} total · {summary.trainable_params:,} trainable · "
            f"{summary.frozen_params:,} frozen · MACs {_count(summary.macs)} per input "
            f"({summary.macs:,}; FLOPs {_count(summary.flops)})"
        ),
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape", justify="right")
    table.add_column("params", justify="right")
    table.add_column("trainable", justify="right")
    for layer in summary.layers:
        out = "x".join(map(str, layer.output_shape)) if layer.output_shape is not None else "-"
        table.add_row(
            "  " * layer.name.count(".") + layer.name,
            layer.type,
            out,
            f"{layer.params:,}",
            f"{layer.trainable:,}",
        )
    return table
