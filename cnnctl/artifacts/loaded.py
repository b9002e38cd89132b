"""A checkpoint or an exported model turned back into something that scores images.

`load_model` rebuilds the network from a checkpoint alone (no config, no downloads);
`load_scorer` gives `predict` one interface over a checkpoint and an exported `.onnx` model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnctl import tasks
from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.core.errors import CheckpointError, ConfigError
from cnnctl.data.transforms import InputSpec, Normalizer
from cnnctl.engine.stepper import Stepper
from cnnctl.models import ModelSpec, build_model
from cnnctl.runtime.devices import Precision, resolve_device, resolve_precision
from cnnctl.tasks import Task
from cnnctl.tasks.single_label import SingleLabel


@dataclass
class LoadedModel:
    """A checkpoint turned back into something that can score images."""

    stepper: Stepper
    classes: list[str]
    input: InputSpec
    checkpoint: dict[str, Any]


def load_model(path: str | Path, device_name: str = "auto", inference_layout: bool = True) -> LoadedModel:
    """Rebuild the network from a checkpoint alone (no config file, no downloads).

    `build_model` makes the architecture with random weights (it never reads `model.weights`),
    then the stored state_dict replaces them. With `inference_layout`, a convolutional network
    runs in channels_last, which oneDNN and cuDNN run faster for inference (measured on this
    project's 2-core CPU: resnet18 +15%, densenet121 +22%, efficientnet_b0 +50%, convnext_tiny
    even); the values it computes are the same up to float rounding. `export` asks for the
    stored layout instead.
    """
    data = ckpt.load_checkpoint(path)
    device = resolve_device(device_name)
    try:
        spec = ModelSpec.from_plain(data["model_spec"])
        model = build_model(spec)
        model.load_state_dict(data["model"])
        input_spec = InputSpec.from_plain(data["input"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the model: {str(err).splitlines()[0]}") from None
    model.to(device).eval()
    channels_last = inference_layout and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if channels_last:
        model.to(memory_format=torch.channels_last)
    precision = Precision(None) if device.type != "cuda" else resolve_precision("auto", device)
    stepper = Stepper(
        model,
        Normalizer(input_spec),
        device,
        precision,
        tasks.from_record(data),
        channels_last=channels_last,
    )
    return LoadedModel(stepper, list(data["classes"]), input_spec, data)


@dataclass
class Scorer:
    """What `predict` runs images through: a checkpoint's network or an exported ONNX model."""

    classes: list[str]
    input: InputSpec  # how a file becomes a uint8 input (the same path for both kinds)
    score: Callable[[torch.Tensor], torch.Tensor]  # uint8 (N, C, H, W) → (N, classes) probabilities
    device: str = "cpu"  # where `score` computes: "cpu" (torch or onnxruntime), "cuda", "mps"
    torch_threads: bool = False  # does torch's thread count set how fast `score` runs (torch on the CPU)?
    task: Task = field(default_factory=SingleLabel)  # how probabilities become a prediction
    tta: list[str] = field(default_factory=list)  # the default test-time augmentation views (data.tta)
    tta_shift: int = 0  # how far the `shifts` view moves (0: 1/16 of the side)


def load_scorer(path: str | Path, device: str = "auto") -> Scorer:
    """A checkpoint / run dir on `device`, or an exported `.onnx` model (read with its sidecar)
    on onnxruntime's CPU provider."""
    if Path(path).suffix.lower() == ".onnx":
        if device not in ("auto", "cpu"):
            raise ConfigError(
                f"--device {device}: an .onnx model runs on onnxruntime's CPU provider; leave --device out"
            )
        from cnnctl.artifacts.exported import OnnxClassifier

        exported = OnnxClassifier(path)
        names, shift = tta_of(exported.meta.get("tta"))
        return Scorer(
            exported.classes, exported.input, exported.predict, task=exported.task, tta=names, tta_shift=shift
        )
    loaded = load_model(path, device)
    kind = loaded.stepper.device.type
    names, shift = tta_of(tta_record(loaded.checkpoint["config"], str(path)))
    return Scorer(
        loaded.classes,
        loaded.input,
        loaded.stepper.predict,
        kind,
        kind == "cpu",
        loaded.stepper.task,
        names,
        shift,
    )


def tta_record(config: Any, source: str) -> dict[str, Any]:
    """The default test-time augmentation of a run's stored config: {views, shift} (what an
    export sidecar records as `tta`); none when the stored config no longer validates (predict
    and export never needed it to)."""
    from cnnctl.config import validate
    from cnnctl.core.errors import CnnctlError
    from cnnctl.data import tta

    try:
        cfg = validate(config, f"{source} (stored config)")
    except CnnctlError:
        return {"views": [], "shift": 0}
    return {"views": tta.default_names(cfg.data), "shift": tta.shift_pixels(cfg.data)}


def tta_of(record: Any) -> tuple[list[str], int]:
    """(view names, shift) from a `tta` record; none from an older sidecar (or a bad record)."""
    from cnnctl.data import tta

    if not isinstance(record, dict):
        return [], 0
    names = record.get("views")
    shift = record.get("shift", 0)
    if not isinstance(names, list) or not all(n in tta.NAMES for n in names):
        return [], 0
    return list(names), shift if isinstance(shift, int) and 0 <= shift <= 64 else 0
