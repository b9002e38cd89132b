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

The sidecar's keys and `OnnxClassifier` (the other side: it runs an exported `.onnx` model
and its sidecar on onnxruntime's CPU provider, for `cnnctl predict MODEL.onnx ...`) live in
`cnnctl.artifacts.exported`; describing and rebuilding the plain architecture in
`cnnctl.models.architecture`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnctl.artifacts.exported import (
    INPUT_NAME,
    OUTPUT_NAME,
    calibrated_graph,
    dynamic_batch_of,
    need_module,
    sidecar_data,
    sidecar_path,
)
from cnnctl.core.atomic import atomic_path, describe
from cnnctl.core.errors import ConfigError, RunFailed
from cnnctl.data.transforms import InputSpec
from cnnctl.models import ModelSpec
from cnnctl.models.architecture import describe_architecture, plain_module, rebuild_plain
from cnnctl.models.weights import first_line

FORMATS = ("onnx", "torchscript", "state_dict")
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts.pt", "state_dict": ".state_dict.pt"}
OPSET = 18  # the default; the dynamo exporter writes opset 18 or later
MIN_OPSET = 18


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


def default_out(checkpoint: str | Path, fmt: str) -> Path:
    """Next to the checkpoint: `<run>/model.onnx` for a run dir or its best.pt, `<run>/last.onnx`
    for last.pt (the suffix per format: .onnx, .ts.pt, .state_dict.pt)."""
    path = Path(checkpoint)
    if path.is_dir():
        return path / f"model{SUFFIX[fmt]}"
    stem = "model" if path.name == "best.pt" else path.name.split(".")[0] or "model"
    return path.with_name(stem + SUFFIX[fmt])


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
    from cnnctl.artifacts.loaded import load_model, tta_record
    from cnnctl.artifacts.outputs import claim_output

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
        loaded.stepper.task.record(),
        fmt,
        target,
        dynamic_batch=dynamic_batch,
        tolerance=tolerance,
        opset=opset,
        model_spec=ModelSpec.from_plain(data["model_spec"]),
        extra={"source": source, "tta": tta_record(data["config"], str(checkpoint))},
    )


def _check_format(fmt: str, opset: int) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: allowed: {', '.join(FORMATS)}")
    if opset < MIN_OPSET:
        raise ConfigError(f"--opset {opset}: torch.onnx's exporter writes opset {MIN_OPSET} or later")


def _need_onnx(opset: int) -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        need_module(module)
    newest = int(need_module("onnx").defs.onnx_opset_version())
    if opset > newest:
        raise ConfigError(f"--opset {opset}: the installed onnx knows opsets {MIN_OPSET} to {newest}")


def export_model(
    model: nn.Module,
    spec: InputSpec,
    classes: list[str],
    task: str | Mapping[str, Any],
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

    `task` is what the outputs are: a task record (`Task.record()`: task, output_kind,
    multi_label's thresholds) or a single-label output kind. `model_spec` (what the
    checkpoint stores) lets the sidecar describe a small_cnn / mlp architecture; a
    torchvision model describes itself.
    """
    record = {"task": "single_label", "output_kind": task} if isinstance(task, str) else dict(task)
    _check_format(fmt, opset)
    if fmt == "onnx":
        _need_onnx(opset)
    model = model.cpu().eval()
    architecture = describe_architecture(model, model_spec)
    graph, record, calibration = calibrated_graph(model, record, in_graph=fmt != "state_dict")
    _make_folder(out.parent)
    sidecar = sidecar_path(out)
    # Both files appear only once verified, the model first; a failure leaves neither temp file.
    with atomic_path(sidecar, "export sidecar") as sidecar_tmp, atomic_path(out, "export") as tmp:
        diff, scale, verified_with = _write_verified(
            graph, spec, fmt, tmp, dynamic_batch, opset, architecture
        )
        if diff is not None and not diff <= tolerance:  # NaN fails too
            raise RunFailed(
                f"{out}: the exported model differs from PyTorch by {diff:.3g} (> tolerance {tolerance:g}; "
                f"outputs reach {scale:.3g}); nothing was written"
            )
        meta = sidecar_data(
            out, fmt, classes, record, spec, dynamic_batch, opset, diff, architecture, calibration
        )
        sidecar_tmp.write_text(json.dumps({**meta, **(extra or {})}, indent=2) + "\n", encoding="utf-8")
    return ExportReport(
        out,
        sidecar,
        fmt,
        diff,
        opset if fmt == "onnx" else None,
        tolerance,
        verified_with,
        dynamic_batch_of(fmt, dynamic_batch),
    )


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        raise RunFailed(f"{folder}: cannot create the folder ({describe(err)})") from None


def _write_verified(
    model: nn.Module,
    spec: InputSpec,
    fmt: str,
    tmp: Path,
    dynamic_batch: bool,
    opset: int,
    architecture: dict[str, Any] | None,
) -> tuple[float | None, float, str]:
    """Write the model file to `tmp` and check it against PyTorch: (max abs diff or None when
    nothing could be compared, the largest |output| compared, what it was verified with)."""
    generator = torch.Generator().manual_seed(0)
    # A fixed-batch ONNX graph takes one image at a time; a dynamic one is traced with 2.
    sample = torch.randn(2 if dynamic_batch else 1, *spec.shape, generator=generator)
    if fmt == "onnx":
        _export_onnx(model, sample, tmp, dynamic_batch, opset)
        diff, scale = _verify_onnx(model, tmp, spec, dynamic_batch, generator)
        return diff, scale, f"onnxruntime {need_module('onnxruntime').__version__} (CPUExecutionProvider)"
    if fmt == "torchscript":
        _export_torchscript(model, sample, tmp)
        diff, scale = _verify_torchscript(model, tmp, spec, generator)
        return diff, scale, "torch.jit"
    torch.save({k: v.detach().cpu() for k, v in plain_module(model).state_dict().items()}, tmp)
    if architecture is None:
        return None, 0.0, "none"
    diff, scale = _verify_state_dict(model, tmp, architecture, spec, generator)
    return diff, scale, f"load_state_dict(strict=True) into {architecture['rebuild_with']}"


# --------------------------------------------------------------------------------------
# Verifying a state_dict export
# --------------------------------------------------------------------------------------


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
            f"{first_line(err)}"
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
            raise RunFailed(f"ONNX export failed: {first_line(err)}") from None
    onnx = need_module("onnx")
    try:
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
    except Exception as err:  # noqa: BLE001
        raise RunFailed(f"the exported ONNX graph fails onnx.checker: {first_line(err)}") from None
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
    ort = need_module("onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001
        raise RunFailed(f"onnxruntime cannot load the exported model: {first_line(err)}") from None
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
        raise RunFailed(f"TorchScript export failed: {first_line(err)}") from None
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
