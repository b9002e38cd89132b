"""Export a checkpoint to ONNX, TorchScript or a plain state_dict, verified before it is kept.

Every export writes the model file plus `<file>.json`, a sidecar that tells a consumer how
to prepare inputs and read outputs: class names, input shape, resize / crop, mean / std,
and what the outputs are (logits, log-probabilities or one binary logit).

The exported graph takes float32 NCHW input already normalised:
`x = (pixels / 255 - mean) / std`, pixels resized as `input.resize` / `input.size` say.
ONNX and TorchScript exports are checked by running the same batch through the exported
model (onnxruntime / torch.jit) and through PyTorch; a difference above the tolerance
fails the export and leaves no file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnctl import __version__
from cnnctl.data.transforms import InputSpec
from cnnctl.errors import CnnctlError, ConfigError, RunFailed
from cnnctl.optim import probabilities

FORMATS = ("onnx", "torchscript", "state_dict")
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts.pt", "state_dict": ".state_dict.pt"}
OPSET = 18
SIDECAR_FORMAT = "cnnctl-export"


@dataclass
class ExportReport:
    path: Path
    sidecar: Path
    format: str
    max_abs_diff: float | None
    opset: int | None


def sidecar_path(model_file: Path) -> Path:
    return model_file.with_name(model_file.name + ".json")


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(
            f"exporting to ONNX needs the '{module}' package: pip install 'cnnctl[export]'"
        ) from None


def export_model(
    model: nn.Module,
    spec: InputSpec,
    classes: list[str],
    output_kind: str,
    fmt: str,
    out: Path,
    *,
    dynamic_batch: bool = False,
    tolerance: float = 1e-4,
    extra: dict[str, Any] | None = None,
) -> ExportReport:
    """Write `model` in `fmt` to `out` (+ sidecar) after verifying it against PyTorch."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: allowed: {', '.join(FORMATS)}")
    model = model.cpu().eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    generator = torch.Generator().manual_seed(0)
    # A fixed-batch graph takes one image at a time; a dynamic one is traced with 2.
    sample = torch.randn(2 if dynamic_batch else 1, *spec.shape, generator=generator)
    diff: float | None = None
    try:
        if fmt == "onnx":
            _export_onnx(model, sample, tmp, dynamic_batch)
            diff = _verify_onnx(model, tmp, spec, dynamic_batch, generator)
        elif fmt == "torchscript":
            _export_torchscript(model, sample, tmp)
            diff = _verify_torchscript(model, tmp, spec, generator)
        else:
            torch.save({k: v.detach().cpu() for k, v in exportable(model).state_dict().items()}, tmp)
        if diff is not None and diff > tolerance:
            raise RunFailed(
                f"{out}: the exported model differs from PyTorch by {diff:.3g} (> tolerance {tolerance:g}); "
                "nothing was written"
            )
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    sidecar = sidecar_path(out)
    meta = {
        "format": SIDECAR_FORMAT,
        "model_file": out.name,
        "model_format": fmt,
        "classes": list(classes),
        "output_kind": output_kind,
        "input": {
            **spec.to_plain(),
            "shape": list(spec.shape),
            "dtype": "float32",
            "layout": "NCHW",
            "preprocess": "resize (shorter side to `resize` then centre crop, or straight to `size`), "
            "pixels / 255, then (x - mean) / std per channel",
        },
        "dynamic_batch": dynamic_batch if fmt != "state_dict" else None,
        "opset": OPSET if fmt == "onnx" else None,
        "max_abs_diff": diff,
        "cnnctl": __version__,
        "torch": str(torch.__version__),
        **(extra or {}),
    }
    sidecar.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return ExportReport(out, sidecar, fmt, diff, OPSET if fmt == "onnx" else None)


def exportable(model: nn.Module) -> nn.Module:
    """The module whose state_dict a plain (torchvision / nn) model loads with strict=True."""
    inner = getattr(model, "export_module", None)
    return inner() if callable(inner) else model


def _export_onnx(model: nn.Module, sample: torch.Tensor, path: Path, dynamic_batch: bool) -> None:
    _need("onnx")
    _need("onnxscript")
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["output"], "opset_version": OPSET}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            # One self-contained file (weights inline): the temp file is renamed afterwards.
            torch.onnx.export(model, (sample,), str(path), dynamo=True, external_data=False, **kwargs)
        except Exception as err:  # noqa: BLE001 - report the exporter's reason in one line
            raise RunFailed(f"ONNX export failed: {str(err).splitlines()[0]}") from None
    onnx = _need("onnx")
    try:
        onnx.checker.check_model(onnx.load(str(path)))
    except Exception as err:  # noqa: BLE001
        raise RunFailed(f"the exported ONNX graph fails onnx.checker: {str(err).splitlines()[0]}") from None


@contextlib.contextmanager
def _quiet() -> Any:
    """The dynamo exporter prints progress lines to stdout; keep the CLI's output clean."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def _verify_onnx(
    model: nn.Module, path: Path, spec: InputSpec, dynamic_batch: bool, generator: torch.Generator
) -> float:
    ort = _need("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (2, 3) if dynamic_batch else (1,):
        x = torch.randn(batch, *spec.shape, generator=generator)
        with torch.inference_mode():
            expected = model(x)
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        worst = max(worst, float((got - expected).abs().max()))
    return worst


def _export_torchscript(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
            scripted = torch.jit.trace(model, sample, check_trace=False)
        scripted.save(str(path))
    except Exception as err:  # noqa: BLE001
        raise RunFailed(f"TorchScript export failed: {str(err).splitlines()[0]}") from None


def _verify_torchscript(model: nn.Module, path: Path, spec: InputSpec, generator: torch.Generator) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path)).eval()
    x = torch.randn(3, *spec.shape, generator=generator)
    with torch.inference_mode():
        return float((loaded(x) - model(x)).abs().max())


class OnnxClassifier:
    """An exported ONNX model + sidecar, scoring uint8 image batches like a checkpoint does."""

    def __init__(self, path: Path):
        sidecar = sidecar_path(path)
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CnnctlError(
                f"{path}: its sidecar {sidecar.name} is missing (written by `cnnctl export`)"
            ) from None
        except json.JSONDecodeError as err:
            raise CnnctlError(f"{sidecar}: not valid JSON ({err.msg})") from None
        if meta.get("format") != SIDECAR_FORMAT:
            raise CnnctlError(f"{sidecar}: not a cnnctl export sidecar")
        ort = _need("onnxruntime")
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.classes: list[str] = list(meta["classes"])
        self.input = InputSpec.from_plain(meta["input"])
        self.output_kind = str(meta["output_kind"])
        self.dynamic = bool(meta.get("dynamic_batch"))
        c = self.input.channels
        self.mean = torch.tensor(self.input.mean).expand(c).reshape(1, c, 1, 1)
        self.std = torch.tensor(self.input.std).expand(c).reshape(1, c, 1, 1)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities for a uint8 (N, C, H, W) batch."""
        x = ((images.float() / 255.0 - self.mean) / self.std).contiguous()
        if self.dynamic:
            outputs = torch.from_numpy(self.session.run(None, {"input": x.numpy()})[0])
        else:  # a fixed-batch graph: feed it one image at a time
            outputs = torch.cat(
                [
                    torch.from_numpy(self.session.run(None, {"input": x[i : i + 1].numpy()})[0])
                    for i in range(len(x))
                ]
            )
        return probabilities(outputs, self.output_kind)
