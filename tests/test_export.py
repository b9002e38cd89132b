"""Export to ONNX / TorchScript / state_dict, verified with a real runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from cnnctl import workflows
from cnnctl.errors import ConfigError, RunFailed
from cnnctl.export import OnnxClassifier, export_model, sidecar_path
from cnnctl.models import ModelSpec, build_model

pytest.importorskip("onnxruntime")


def loaded(run: Path):
    return workflows.load_model(run, "cpu")


@pytest.mark.parametrize("dynamic", [False, True])
def test_onnx_export_matches_pytorch_in_onnxruntime(trained_run: Path, tmp_path: Path, dynamic: bool) -> None:
    m = loaded(trained_run)
    out = tmp_path / "model.onnx"
    report = export_model(m.stepper.model, m.input, m.classes, "logits", "onnx", out, dynamic_batch=dynamic)
    assert out.is_file() and report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["classes"] == ["circle", "square", "triangle"]
    assert meta["input"]["shape"] == [3, 16, 16] and meta["input"]["mean"] == list(m.input.mean)
    assert meta["opset"] == 18 and meta["dynamic_batch"] is dynamic
    onnx_model = OnnxClassifier(out)
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(onnx_model.predict(images), m.stepper.predict(images), atol=1e-5)


def test_torchscript_export_round_trips(trained_run: Path, tmp_path: Path) -> None:
    m = loaded(trained_run)
    out = tmp_path / "model.ts.pt"
    report = export_model(m.stepper.model, m.input, m.classes, "logits", "torchscript", out)
    assert report.max_abs_diff == 0.0
    scripted = torch.jit.load(str(out))
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(scripted(x), m.stepper.model(x))


def test_state_dict_export_loads_strictly_into_the_plain_model(trained_run: Path, tmp_path: Path) -> None:
    m = loaded(trained_run)
    out = tmp_path / "weights.pt"
    export_model(m.stepper.model, m.input, m.classes, "logits", "state_dict", out)
    fresh = build_model(ModelSpec.from_plain(m.checkpoint["model_spec"]))
    fresh.load_state_dict(torch.load(out, weights_only=True), strict=True)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(fresh.eval()(x), m.stepper.model(x))


def test_a_verification_failure_writes_nothing(trained_run: Path, tmp_path: Path, monkeypatch) -> None:
    m = loaded(trained_run)
    out = tmp_path / "model.onnx"
    with pytest.raises(RunFailed, match="differs from PyTorch"):
        export_model(m.stepper.model, m.input, m.classes, "logits", "onnx", out, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_is_a_clear_message(trained_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    m = loaded(trained_run)
    with pytest.raises(ConfigError, match=r"pip install 'cnnctl\[export\]'"):
        export_model(m.stepper.model, m.input, m.classes, "logits", "onnx", tmp_path / "m.onnx")
