"""Export a checkpoint to ONNX, TorchScript or a plain state_dict, verified before it is kept.

Every export writes the model file plus `<file>.json`, a sidecar that tells a consumer how
to prepare inputs and read outputs: class names, input shape, resize / crop, mean / std,
what the outputs are (logits, log-probabilities or one binary logit), and how to rebuild
the architecture a state_dict loads into.

The exported graph takes float32 NCHW input already normalised:
`x = (pixels / 255 - mean) / std`, pixels resized as `input.resize` / `input.size` say.
Every export is checked before it is kept: ONNX by `onnx.checker` and by running the same
batch through onnxruntime and through PyTorch, TorchScript by reloading it with torch.jit,
a state_dict by loading it with `strict=True` into the plain model rebuilt from the
sidecar's `architecture` (for torchvision models: `torchvision.models.get_model(name)` with
its classifier replaced by the same head, keys without cnnctl's `net.` prefix). An output
difference above the tolerance fails the export and leaves no file behind.

`OnnxClassifier` is the other side: it runs an exported `.onnx` model (and its sidecar) on
onnxruntime's CPU provider, for `cnnctl predict MODEL.onnx ...`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnctl import __version__
from cnnctl.core.atomic import atomic_path, describe
from cnnctl.core.errors import CheckpointError, ConfigError, RunFailed
from cnnctl.data.transforms import InputSpec, Normalizer
from cnnctl.models import ModelSpec
from cnnctl.session.optim import BINARY_LOGIT, LOG_PROBS, probabilities

FORMATS = ("onnx", "torchscript", "state_dict")
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts.pt", "state_dict": ".state_dict.pt"}
OPSET = 18  # the default; the dynamo exporter writes opset 18 or later
MIN_OPSET = 18
SIDECAR_FORMAT = "cnnctl-export"
INSTALL_HINT = "pip install 'cnnctl[export]'"
INPUT_NAME, OUTPUT_NAME = "input", "output"

# Head layers a sidecar may describe (and `rebuild_plain` may build): nothing else is constructed.
_HEAD_LAYERS = ("Linear", "Conv2d", "Dropout", "ReLU", "GELU", "SiLU", "Tanh", "LeakyReLU")


@dataclass
class ExportReport:
    path: Path
    sidecar: Path
    format: str
    max_abs_diff: float | None
    opset: int | None
    tolerance: float | None = None
    verified_with: str = ""
    dynamic_batch: bool | None = None

    def to_plain(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sidecar": str(self.sidecar),
            "format": self.format,
            "opset": self.opset,
            "dynamic_batch": self.dynamic_batch,
            "verified_with": self.verified_with,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
        }


def sidecar_path(model_file: Path) -> Path:
    return model_file.with_name(model_file.name + ".json")


def default_out(checkpoint: str | Path, fmt: str) -> Path:
    """Next to the checkpoint: `<run>/model.onnx` for a run dir or its best.pt, `<run>/last.onnx`
    for last.pt (the suffix per format: .onnx, .ts.pt, .state_dict.pt)."""
    path = Path(checkpoint)
    if path.is_dir():
        return path / f"model{SUFFIX[fmt]}"
    stem = "model" if path.name == "best.pt" else path.name.split(".")[0] or "model"
    return path.with_name(stem + SUFFIX[fmt])


def _need(module: str, purpose: str = "exporting to ONNX") -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs the '{module}' package: {INSTALL_HINT}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or err.__class__.__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------------------
# Exporting
# --------------------------------------------------------------------------------------


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str = "onnx",
    out: Path | None = None,
    *,
    dynamic_batch: bool = False,
    tolerance: float = 1e-4,
    opset: int = OPSET,
    force: bool = False,
) -> ExportReport:
    """`cnnctl export`: rebuild a checkpoint (or a run dir's best.pt) on the CPU and export it.

    The model file and its sidecar never replace the checkpoint, a run's files or an existing
    file (that one only with `force`)."""
    from cnnctl.artifacts.outputs import claim_output
    from cnnctl.workflows.train import load_model

    _check_format(fmt, opset)
    if fmt == "onnx":
        _need_onnx(opset)  # before the (slow) checkpoint load
    target = default_out(checkpoint, fmt) if out is None else out
    if out is not None and out.is_dir():
        target = out / default_out(checkpoint, fmt).name
    if fmt == "onnx" and target.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {target}: an ONNX model file must end in .onnx (predict knows it by that)")
    source_file = Path(checkpoint) / "best.pt" if Path(checkpoint).is_dir() else Path(checkpoint)
    for path in (target, sidecar_path(target)):
        claim_output(path, force=force, inputs=[source_file], option="--out")
    loaded = load_model(checkpoint, "cpu", inference_layout=False)
    data = loaded.checkpoint
    source = {
        "checkpoint": str(checkpoint),
        "epoch": data.get("epoch"),
        "model": data["model_spec"]["config"].get("name"),
    }
    return export_model(
        loaded.stepper.model,
        loaded.input,
        loaded.classes,
        str(data["output_kind"]),
        fmt,
        target,
        dynamic_batch=dynamic_batch,
        tolerance=tolerance,
        opset=opset,
        model_spec=ModelSpec.from_plain(data["model_spec"]),
        extra={"source": source},
    )


def _check_format(fmt: str, opset: int) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: allowed: {', '.join(FORMATS)}")
    if opset < MIN_OPSET:
        raise ConfigError(f"--opset {opset}: torch.onnx's exporter writes opset {MIN_OPSET} or later")


def _need_onnx(opset: int) -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        _need(module)
    newest = int(_need("onnx").defs.onnx_opset_version())
    if opset > newest:
        raise ConfigError(f"--opset {opset}: the installed onnx knows opsets {MIN_OPSET} to {newest}")


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
    opset: int = OPSET,
    model_spec: ModelSpec | None = None,
    extra: dict[str, Any] | None = None,
) -> ExportReport:
    """Write `model` in `fmt` to `out` (+ sidecar) after verifying it against PyTorch.

    `model_spec` (what the checkpoint stores) lets the sidecar describe a small_cnn / mlp
    architecture; a torchvision model describes itself.
    """
    _check_format(fmt, opset)
    if fmt == "onnx":
        _need_onnx(opset)
    model = model.cpu().eval()
    architecture = describe_architecture(model, model_spec)
    generator = torch.Generator().manual_seed(0)
    # A fixed-batch ONNX graph takes one image at a time; a dynamic one is traced with 2.
    sample = torch.randn(2 if dynamic_batch else 1, *spec.shape, generator=generator)
    diff: float | None = None
    scale = 0.0  # the largest |output| compared, for the failure message
    verified_with = "none"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        raise RunFailed(f"{out.parent}: cannot create the folder ({describe(err)})") from None
    sidecar = sidecar_path(out)
    # Both files appear only once verified, the model first; a failure leaves neither temp file.
    with atomic_path(sidecar, "export sidecar") as sidecar_tmp, atomic_path(out, "export") as tmp:
        if fmt == "onnx":
            _export_onnx(model, sample, tmp, dynamic_batch, opset)
            diff, scale = _verify_onnx(model, tmp, spec, dynamic_batch, generator)
            verified_with = f"onnxruntime {_need('onnxruntime').__version__} (CPUExecutionProvider)"
        elif fmt == "torchscript":
            _export_torchscript(model, sample, tmp)
            (diff, scale), verified_with = _verify_torchscript(model, tmp, spec, generator), "torch.jit"
        else:
            torch.save({k: v.detach().cpu() for k, v in plain_module(model).state_dict().items()}, tmp)
            if architecture is not None:
                diff, scale = _verify_state_dict(model, tmp, architecture, spec, generator)
                verified_with = f"load_state_dict(strict=True) into {architecture['rebuild_with']}"
        if diff is not None and not diff <= tolerance:  # NaN fails too
            raise RunFailed(
                f"{out}: the exported model differs from PyTorch by {diff:.3g} (> tolerance {tolerance:g}; "
                f"outputs reach {scale:.3g}); nothing was written"
            )
        meta = _sidecar(out, fmt, classes, output_kind, spec, dynamic_batch, opset, diff, architecture)
        sidecar_tmp.write_text(json.dumps({**meta, **(extra or {})}, indent=2) + "\n", encoding="utf-8")
    return ExportReport(
        out,
        sidecar,
        fmt,
        diff,
        opset if fmt == "onnx" else None,
        tolerance,
        verified_with,
        _dynamic(fmt, dynamic_batch),
    )


def _dynamic(fmt: str, dynamic_batch: bool) -> bool | None:
    """Any batch size? A traced TorchScript module is (it is verified with another batch)."""
    return {"onnx": dynamic_batch, "torchscript": True}.get(fmt)


def _sidecar(
    out: Path,
    fmt: str,
    classes: list[str],
    output_kind: str,
    spec: InputSpec,
    dynamic_batch: bool,
    opset: int,
    diff: float | None,
    architecture: dict[str, Any] | None,
) -> dict[str, Any]:
    batch: Any = 1 if fmt == "onnx" and not dynamic_batch else "batch"
    return {
        "format": SIDECAR_FORMAT,
        "model_file": out.name,
        "model_format": fmt,
        "classes": list(classes),
        "output_kind": output_kind,
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
            "shape": [batch, 1 if output_kind == BINARY_LOGIT else len(classes)],
            "to_probabilities": _to_probabilities(output_kind),
        },
        "dynamic_batch": _dynamic(fmt, dynamic_batch),
        "opset": opset if fmt == "onnx" else None,
        "max_abs_diff": diff,
        "architecture": architecture,
        "cnnctl": __version__,
        "torch": str(torch.__version__),
    }


def _to_probabilities(output_kind: str) -> str:
    if output_kind == BINARY_LOGIT:
        return "p = sigmoid(output[:, 0]) is the probability of classes[1]; 1 - p of classes[0]"
    if output_kind == LOG_PROBS:
        return "exp(output): the outputs are log-probabilities"
    return "softmax(output, dim=1): the outputs are logits"


# --------------------------------------------------------------------------------------
# The plain model a state_dict loads into
# --------------------------------------------------------------------------------------


def _transfer_net(model: nn.Module) -> Any:
    """The model as a TransferNet (torchvision network + new head), or None."""
    if not hasattr(model, "net") or not hasattr(model, "head_name"):
        return None
    from cnnctl.models.transfer import TransferNet

    return model if isinstance(model, TransferNet) else None


def plain_module(model: nn.Module) -> nn.Module:
    """The module whose state_dict a plain (torchvision / nn) model loads with strict=True:
    the torchvision network of a transfer model (keys without `net.`), else the model."""
    transfer = _transfer_net(model)
    return transfer.net if transfer is not None else model


def describe_architecture(model: nn.Module, model_spec: ModelSpec | None = None) -> dict[str, Any] | None:
    """How to rebuild the plain model a state_dict export loads into (None when unknown)."""
    transfer = _transfer_net(model)
    if transfer is not None:
        kwargs: dict[str, Any] = {}
        if model_spec is not None:
            from cnnctl.models.transfer import arch_kwargs, enum_member

            weights = str(model_spec.config.get("weights", "none"))
            kwargs = arch_kwargs(transfer.arch, model_spec, enum_member(transfer.arch, weights) is not None)
        head = transfer.head
        return {
            "family": "torchvision",
            "name": transfer.arch,
            "kwargs": kwargs,
            "head_module": transfer.head_name,
            "head": [_layer_plain(layer) for layer in head] if isinstance(head, nn.Sequential) else [],
            "log_softmax": transfer.log_softmax is not None,
            "expand_grey": bool(transfer.expand_grey),
            "rebuild_with": f"torchvision.models.get_model({transfer.arch!r}, weights=None)",
            "rebuild": "net = torchvision.models.get_model(name, weights=None, **kwargs); "
            "net.set_submodule(head_module, torch.nn.Sequential(*head layers, in order)); "
            "net.load_state_dict(state_dict, strict=True). The model's output is net(x) "
            "(x.expand(-1, 3, -1, -1) first when expand_grey; log_softmax(dim=1) after when log_softmax)",
        }
    if model_spec is None:
        return None
    return {
        "family": "cnnctl",
        "name": str(model_spec.config.get("name")),
        "model_spec": model_spec.to_plain(),
        "modules": {name: repr(m) for name, m in model.named_modules() if name and not list(m.children())},
        "rebuild_with": "cnnctl.models.build_model(ModelSpec.from_plain(model_spec))",
        "rebuild": "model = cnnctl.models.build_model(cnnctl.models.ModelSpec.from_plain(model_spec)) "
        "(a plain torch.nn.Sequential whose leaf modules are listed in `modules`); "
        "model.load_state_dict(state_dict, strict=True)",
    }


def _layer_plain(layer: nn.Module) -> dict[str, Any]:
    name = type(layer).__name__
    if isinstance(layer, nn.Linear):
        return {"type": name, "in_features": layer.in_features, "out_features": layer.out_features}
    if isinstance(layer, nn.Conv2d):
        return {
            "type": name,
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "kernel_size": 1,
        }
    if isinstance(layer, nn.Dropout):
        return {"type": name, "p": layer.p}
    return {"type": name}


def rebuild_plain(architecture: dict[str, Any]) -> nn.Module:
    """The plain model a state_dict export loads into, built from the sidecar's `architecture`.

    torchvision: `get_model(name, weights=None, **kwargs)` with `head_module` replaced by
    `nn.Sequential(*head)`, so keys are torchvision's own; cnnctl: `build_model(model_spec)`.
    """
    if architecture.get("family") == "cnnctl":
        from cnnctl.models import build_model

        return build_model(ModelSpec.from_plain(architecture["model_spec"]))
    import torchvision

    layers: list[nn.Module] = []
    for layer in architecture["head"]:
        kind = str(layer["type"])
        if kind not in _HEAD_LAYERS:
            raise CheckpointError(f"architecture.head: unknown layer type {kind!r}")
        layers.append(getattr(nn, kind)(**{k: v for k, v in layer.items() if k != "type"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net: nn.Module = torchvision.models.get_model(
            architecture["name"], weights=None, **architecture.get("kwargs", {})
        )
    net.set_submodule(architecture["head_module"], nn.Sequential(*layers))
    return net


def _verify_state_dict(
    model: nn.Module,
    path: Path,
    architecture: dict[str, Any],
    spec: InputSpec,
    generator: torch.Generator,
) -> tuple[float, float]:
    plain = rebuild_plain(architecture)
    try:
        plain.load_state_dict(torch.load(path, weights_only=True), strict=True)
    except RuntimeError as err:
        raise RunFailed(
            f"the exported state_dict does not load strictly into {architecture['rebuild_with']}: "
            f"{_first_line(err)}"
        ) from None
    plain.eval()
    x = torch.randn(3, *spec.shape, generator=generator)
    with torch.inference_mode():
        inputs = x.expand(-1, 3, -1, -1) if architecture.get("expand_grey") else x
        got = plain(inputs)
        if architecture.get("log_softmax"):
            got = got.log_softmax(dim=1)
        return _gap(got, model(x))


# --------------------------------------------------------------------------------------
# ONNX and TorchScript
# --------------------------------------------------------------------------------------


def _export_onnx(model: nn.Module, sample: torch.Tensor, path: Path, dynamic_batch: bool, opset: int) -> None:
    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
    }
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            # One self-contained file (weights inline): the temp file is renamed afterwards.
            torch.onnx.export(model, (sample,), str(path), dynamo=True, external_data=False, **kwargs)
        except Exception as err:  # noqa: BLE001 - report the exporter's reason in one line
            raise RunFailed(f"ONNX export failed: {_first_line(err)}") from None
    onnx = _need("onnx")
    try:
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
    except Exception as err:  # noqa: BLE001
        raise RunFailed(f"the exported ONNX graph fails onnx.checker: {_first_line(err)}") from None
    written = [entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")]
    if written != [opset]:
        raise RunFailed(f"--opset {opset}: the exporter wrote opset {written[0] if written else '?'} instead")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The dynamo exporter prints progress lines to stdout and logs tracebacks of what it
    recovers from; keep the CLI's output clean (a failure is reported in one line)."""
    disabled = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield
    finally:
        logging.disable(disabled)


def _verify_onnx(
    model: nn.Module, path: Path, spec: InputSpec, dynamic_batch: bool, generator: torch.Generator
) -> tuple[float, float]:
    """The same random batches through onnxruntime (CPU) and PyTorch: the worst abs difference
    and the largest |output|."""
    ort = _need("onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001
        raise RunFailed(f"onnxruntime cannot load the exported model: {_first_line(err)}") from None
    worst = scale = 0.0
    for batch in (2, 3) if dynamic_batch else (1,):
        x = torch.randn(batch, *spec.shape, generator=generator)
        with torch.inference_mode():
            expected = model(x)
        got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
        diff, size = _gap(got, expected)
        worst, scale = max(worst, diff), max(scale, size)
    return worst, scale


def _export_torchscript(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated, still supported
            scripted = torch.jit.trace(model, sample, check_trace=False)
            buffer = io.BytesIO()  # torch's C++ writer aborts the process on a full disk: write in Python
            torch.jit.save(scripted, buffer)
    except Exception as err:  # noqa: BLE001
        raise RunFailed(f"TorchScript export failed: {_first_line(err)}") from None
    path.write_bytes(buffer.getvalue())  # an OSError here is one line (cnnctl.core.atomic)


def _verify_torchscript(
    model: nn.Module, path: Path, spec: InputSpec, generator: torch.Generator
) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path)).eval()
    x = torch.randn(3, *spec.shape, generator=generator)
    with torch.inference_mode():
        return _gap(loaded(x), model(x))


def _gap(got: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """Max abs difference, and the largest |expected| (float32 resolves about 1e-7 of it)."""
    return float((got - expected).abs().max()), float(expected.abs().max())


# --------------------------------------------------------------------------------------
# Running an exported ONNX model
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
    problem = io_problem(meta["classes"], meta["input"], meta["output_kind"], outputs)
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
        try:
            self.classes: list[str] = [str(c) for c in meta["classes"]]
            self.input = InputSpec.from_plain(meta["input"])
            self.output_kind = str(meta["output_kind"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{sidecar_path(path)}: bad entry ({_first_line(err)})") from None
        ort = _need("onnxruntime", "running an ONNX model")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001
            raise CheckpointError(f"{path}: onnxruntime cannot load it: {_first_line(err)}") from None
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
            return probabilities(self.outputs(self.normalizer(images)), self.output_kind)
