"""An exported model's sidecar (written and read here: one place knows its keys) and
`OnnxClassifier`, which runs an exported `.onnx` model on onnxruntime's CPU provider.

Every export writes the model file plus `<file>.json`, a sidecar that tells a consumer how
to prepare inputs and read outputs: class names, input shape, resize / crop, mean / std,
what the outputs are (logits, log-probabilities or one binary logit; task multi_label: one
logit per label with the thresholds that decide them), and how to rebuild
the architecture a state_dict loads into. The exported graph takes float32 NCHW input
already normalised: `x = (pixels / 255 - mean) / std`, pixels resized as `input.resize` /
`input.size` say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cnnctl import __version__
from cnnctl.core.errors import CheckpointError, ConfigError
from cnnctl.data.transforms import InputSpec, Normalizer
from cnnctl.models.weights import first_line
from cnnctl.tasks import from_record

SIDECAR_FORMAT = "cnnctl-export"
INSTALL_HINT = "pip install 'cnnctl[export]'"
INPUT_NAME, OUTPUT_NAME = "input", "output"


def sidecar_path(model_file: Path) -> Path:
    return model_file.with_name(model_file.name + ".json")


def need_module(module: str, purpose: str = "exporting to ONNX") -> Any:
    """The optional package `module` (onnx, onnxscript, onnxruntime), or a ConfigError naming the extra."""
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs the '{module}' package: {INSTALL_HINT}") from None


class Tempered(torch.nn.Module):
    """A network whose outputs come out calibrated: divided by the temperature (log-probabilities
    renormalised), so an exported graph needs no step a consumer could forget."""

    def __init__(self, net: torch.nn.Module, temperature: float, log_probs: bool):
        super().__init__()
        self.net, self.temperature, self.log_probs = net, float(temperature), log_probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x) / self.temperature
        return torch.log_softmax(out, dim=1) if self.log_probs else out


def calibrated_graph(
    model: torch.nn.Module, record: dict[str, Any], in_graph: bool
) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any] | None]:
    """The module to export, the task record its sidecar gets and the sidecar's `calibration`
    (None when uncalibrated). `in_graph` (ONNX, TorchScript): the graph divides by the
    temperature and the record says 1; else (a state_dict) the record keeps it."""
    temperature = float(record.get("temperature", 1.0))
    if temperature == 1.0:
        return model, record, None
    if not in_graph:
        return model, record, {"temperature": temperature, "applied": "by the consumer (to_probabilities)"}
    tempered = Tempered(model, temperature, record.get("output_kind") == "log_probs")
    return tempered, {**record, "temperature": 1.0}, {"temperature": temperature, "applied": "in the graph"}


def dynamic_batch_of(fmt: str, dynamic_batch: bool) -> bool | None:
    """Any batch size? A traced TorchScript module is (it is verified with another batch)."""
    return {"onnx": dynamic_batch, "torchscript": True}.get(fmt)


# --------------------------------------------------------------------------------------
# Writing the sidecar
# --------------------------------------------------------------------------------------


def sidecar_data(
    out: Path,
    fmt: str,
    classes: list[str],
    record: dict[str, Any],
    spec: InputSpec,
    dynamic_batch: bool,
    opset: int,
    diff: float | None,
    architecture: dict[str, Any] | None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar of model file `out`, as plain data (the caller adds its extra keys); `record`
    is the task's (`Task.record()`: task, output_kind, temperature, multi_label's thresholds and
    separator); `calibration` says where the temperature is applied (`calibrated_graph`)."""
    batch: Any = 1 if fmt == "onnx" and not dynamic_batch else "batch"
    task = from_record({**record, "classes": list(classes)})
    return {
        "format": SIDECAR_FORMAT,
        "model_file": out.name,
        "model_format": fmt,
        "classes": list(classes),
        **record,
        "input": {
            **spec.to_plain(),
            "name": INPUT_NAME,
            "shape": list(spec.shape),
            "dtype": "float32",
            "layout": "NCHW",
            "preprocess": "resize (shorter side to `resize` then centre crop to `size`, or straight to "
            "`size` when `resize` is null), pixels / 255, then (x - mean) / std per channel",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": [batch, task.num_outputs(len(classes))],
            "to_probabilities": task.describe_outputs(),
        },
        "dynamic_batch": dynamic_batch_of(fmt, dynamic_batch),
        "opset": opset if fmt == "onnx" else None,
        "max_abs_diff": diff,
        "architecture": architecture,
        "calibration": calibration,
        "cnnctl": __version__,
        "torch": str(torch.__version__),
    }


# --------------------------------------------------------------------------------------
# Reading it, and running an exported ONNX model
# --------------------------------------------------------------------------------------


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of an exported model file; missing or not cnnctl's → CheckpointError."""
    sidecar = sidecar_path(path)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: its sidecar {sidecar} is missing (`cnnctl export` writes it next to the model)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{sidecar}: cannot read it ({err})") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{sidecar}: not valid JSON ({err.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(f"{sidecar}: not a cnnctl export sidecar (no '{SIDECAR_FORMAT}' marker)")
    missing = [k for k in ("classes", "input", "output_kind") if k not in meta]
    if missing:
        raise CheckpointError(f"{sidecar}: lacks {', '.join(missing)}")
    from cnnctl.artifacts.checkpoint import io_problem

    shape = (meta.get("output") or {}).get("shape") if isinstance(meta.get("output"), dict) else None
    outputs = shape[-1] if isinstance(shape, list) and shape else None
    problem = io_problem(meta["classes"], meta["input"], meta, outputs)
    if problem:
        raise CheckpointError(f"{sidecar}: not a usable sidecar: {problem}")
    return meta


class OnnxClassifier:
    """An exported ONNX model + sidecar on onnxruntime's CPU provider, scoring uint8 image
    batches exactly as a checkpoint does (same normalisation, same probabilities)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        meta = read_sidecar(path)
        self.meta = meta
        try:
            self.classes: list[str] = [str(c) for c in meta["classes"]]
            self.input = InputSpec.from_plain(meta["input"])
            self.output_kind = str(meta["output_kind"])
            self.task = from_record(meta)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{sidecar_path(path)}: bad entry ({first_line(err)})") from None
        ort = need_module("onnxruntime", "running an ONNX model")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001
            raise CheckpointError(f"{path}: onnxruntime cannot load it: {first_line(err)}") from None
        first = self.session.get_inputs()[0]
        self.input_name: str = first.name
        shape = list(first.shape)
        if len(shape) != 4 or any(
            isinstance(got, int) and got != want
            for got, want in zip(shape[1:], self.input.shape, strict=True)
        ):
            raise CheckpointError(
                f"{path}: the model takes input {shape} but its sidecar says {list(self.input.shape)}"
            )
        # A fixed-batch graph runs in chunks of its batch size (the last one padded).
        self.batch: int | None = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.normalizer = Normalizer(self.input)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Raw model outputs for a normalised float32 (N, C, H, W) batch."""
        x = x.float().contiguous()
        if self.batch is None:
            return torch.from_numpy(self.session.run(None, {self.input_name: x.numpy()})[0])
        chunks = []
        for start in range(0, len(x), self.batch):
            chunk = x[start : start + self.batch]
            n = len(chunk)
            if n < self.batch:
                chunk = torch.cat([chunk, chunk.new_zeros(self.batch - n, *chunk.shape[1:])])
            chunks.append(torch.from_numpy(self.session.run(None, {self.input_name: chunk.numpy()})[0])[:n])
        return torch.cat(chunks)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities for a uint8 (N, C, H, W) batch."""
        with torch.inference_mode():
            return self.task.probabilities(self.outputs(self.normalizer(images)))
