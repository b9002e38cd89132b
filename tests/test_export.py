"""Export to ONNX / TorchScript / state_dict, verified with a real runtime.

The torchvision models (alexnet, densenet121) train one epoch at 64 px with random weights
and are exported to ONNX once each (module-scoped): that export is the slow part.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from cnnctl.artifacts.exported import OnnxClassifier, calibrated_graph, sidecar_path
from cnnctl.artifacts.loaded import LoadedModel, load_model
from cnnctl.cli import app
from cnnctl.core.errors import ConfigError, RunFailed
from cnnctl.data.synthetic import write_image_folder
from cnnctl.models import ModelSpec, build_model
from cnnctl.models.architecture import rebuild_plain
from cnnctl.workflows import export
from cnnctl.workflows.export import export_model
from tests.conftest import TINY, invoke, merge

pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4
HEADS: dict[str, dict[str, Any]] = {"alexnet": {}, "densenet121": {"hidden": [8], "dropout": 0.2}}


def loaded(run: Path) -> LoadedModel:
    """The checkpoint as `cnnctl export` loads it (stored layout, not predict's channels_last)."""
    return load_model(run, "cpu", inference_layout=False)


def train_run(root: Path, name: str, changes: dict[str, Any]) -> Path:
    base = {"output": {"dir": str(root / "runs"), "plots": False}, "train": {"epochs": 1}}
    cfg = merge(merge(TINY, base), changes)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path), "--quiet", "--name", name])
    assert result.exit_code == 0, result.output
    return root / "runs" / name


def cli_export(run: Path, *args: Any) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["export", str(run), "--json", *map(str, args)])
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def cli_predict(runner: CliRunner, model: Path, images: Path, out: Path) -> list[dict[str, Any]]:
    result = invoke(runner, "predict", model, images, "--top-k", "2", "--out", out, "--batch-size", "5")
    assert result.exit_code == 0, result.output
    records: list[dict[str, Any]] = json.loads(out.read_text())
    return records


def assert_same_predictions(onnx_rows: list[dict[str, Any]], torch_rows: list[dict[str, Any]]) -> float:
    """Same paths and labels (bar exact ties), top-2 probabilities within 1e-4; returns the worst gap."""
    assert [r["path"] for r in onnx_rows] == [r["path"] for r in torch_rows] and torch_rows
    worst = 0.0
    for got, want in zip(onnx_rows, torch_rows, strict=True):
        assert got["error"] == want["error"]
        if want["error"]:
            continue
        tie = want["top1_probability"] - want["top2_probability"] < 1e-5
        assert got["label"] == want["label"] or tie, (got, want)
        for key in ("top1_probability", "top2_probability"):
            worst = max(worst, abs(got[key] - want[key]))
    assert worst < TOLERANCE
    return worst


@pytest.fixture(scope="module")
def small_runs(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """small_cnn (the shared tiny run) and an mlp run, 16 px."""
    mlp = train_run(tmp_path_factory.mktemp("mlp"), "mlp", {"model": {"name": "mlp", "hidden": [16]}})
    return {"small_cnn": trained_run, "mlp": mlp}


@pytest.fixture(scope="module")
def small_exports(small_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each exported once through the CLI: small_cnn with a fixed batch, mlp with a dynamic one.
    name → the `--json` report."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        "small_cnn": cli_export(small_runs["small_cnn"], "--out", folder / "small_cnn.onnx"),
        "mlp": cli_export(small_runs["mlp"], "--out", folder / "mlp.onnx", "--dynamic-batch"),
    }


@pytest.fixture(scope="module")
def images16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images16") / "imgs"
    write_image_folder(folder, 3, 4, 20, seed=7, noise=0.05)
    (folder / "circle" / "broken.png").write_bytes(b"not a png")
    return folder


# --------------------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------------------


def test_onnx_export_matches_pytorch_in_onnxruntime(trained_run: Path, tmp_path: Path) -> None:
    m = loaded(trained_run)
    out = tmp_path / "model.onnx"
    record = m.stepper.task.record()  # calibrated: the graph divides by the temperature
    report = export_model(m.stepper.model, m.input, m.classes, record, "onnx", out, dynamic_batch=True)
    assert out.is_file() and report.max_abs_diff is not None and report.max_abs_diff < TOLERANCE
    meta = json.loads(sidecar_path(out).read_text())
    assert record["temperature"] != 1.0 and meta["temperature"] == 1.0
    assert meta["calibration"] == {"temperature": record["temperature"], "applied": "in the graph"}
    assert meta["classes"] == ["circle", "square", "triangle"]
    assert meta["input"]["shape"] == [3, 16, 16] and meta["input"]["mean"] == list(m.input.mean)
    assert meta["opset"] == 18 and meta["dynamic_batch"] is True
    assert meta["output"] == {
        "name": "output",
        "shape": ["batch", 3],
        "to_probabilities": "softmax(output, dim=1): the outputs are logits",
    }
    onnx_model = OnnxClassifier(out)
    assert onnx_model.batch is None
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(onnx_model.predict(images), m.stepper.predict(images), atol=1e-5)


def test_a_fixed_batch_graph_runs_in_padded_chunks(trained_run: Path, small_exports, tmp_path: Path) -> None:
    """A static-batch ONNX model of batch 4 scores 5 images: chunks of 4, the last one padded."""
    m = loaded(trained_run)
    fixed4 = tmp_path / "batch4.onnx"
    graph, _, _ = calibrated_graph(m.stepper.model, m.stepper.task.record(), in_graph=True)  # as export's
    with export._quiet():
        torch.onnx.export(
            graph,
            (torch.zeros(4, 3, 16, 16),),
            str(fixed4),
            dynamo=True,
            input_names=["input"],
            output_names=["output"],
            external_data=False,
        )
    shutil.copy(small_exports["small_cnn"]["sidecar"], sidecar_path(fixed4))
    onnx_model = OnnxClassifier(fixed4)
    assert onnx_model.batch == 4
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(onnx_model.predict(images), m.stepper.predict(images), atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
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
    spec = ModelSpec.from_plain(m.checkpoint["model_spec"])
    report = export_model(m.stepper.model, m.input, m.classes, "logits", "state_dict", out, model_spec=spec)
    assert report.max_abs_diff == 0.0
    fresh = build_model(ModelSpec.from_plain(m.checkpoint["model_spec"]))
    fresh.load_state_dict(torch.load(out, weights_only=True), strict=True)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(fresh.eval()(x), m.stepper.model(x))
    architecture = json.loads(sidecar_path(out).read_text())["architecture"]
    assert architecture["family"] == "cnnctl" and architecture["model_spec"] == m.checkpoint["model_spec"]
    with_weights = {k.rsplit(".", 1)[0] for k in fresh.state_dict()}
    assert with_weights <= set(architecture["modules"])


def test_a_verification_failure_writes_nothing(trained_run: Path, tmp_path: Path) -> None:
    m = loaded(trained_run)
    out = tmp_path / "model.ts.pt"
    with pytest.raises(RunFailed, match="differs from PyTorch"):
        export_model(m.stepper.model, m.input, m.classes, "logits", "torchscript", out, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_is_a_clear_message(trained_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    m = loaded(trained_run)
    with pytest.raises(ConfigError, match=r"pip install 'cnnctl\[export\]'"):
        export_model(m.stepper.model, m.input, m.classes, "logits", "onnx", tmp_path / "m.onnx")


# --------------------------------------------------------------------------------------
# CLI: small_cnn and mlp
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "dynamic"), [("small_cnn", False), ("mlp", True)])
def test_cli_onnx_export_then_predict_gives_the_checkpoints_labels(
    name: str, dynamic: bool, small_runs, small_exports, images16: Path, tmp_path: Path, runner
) -> None:
    report = small_exports[name]
    out = Path(report["path"])
    assert out.name == f"{name}.onnx" and report["sidecar"] == str(sidecar_path(out))
    assert report["format"] == "onnx" and report["opset"] == 18 and report["dynamic_batch"] is dynamic
    assert report["max_abs_diff"] < TOLERANCE and report["tolerance"] == TOLERANCE
    assert report["verified_with"].startswith("onnxruntime")
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["source"]["model"] == name and meta["architecture"]["name"] == name
    assert meta["output"]["shape"] == ["batch" if dynamic else 1, 3]
    onnx_rows = cli_predict(runner, out, images16, tmp_path / "onnx.json")
    torch_rows = cli_predict(runner, small_runs[name], images16, tmp_path / "torch.json")
    assert_same_predictions(onnx_rows, torch_rows)
    assert sum(bool(r["error"]) for r in onnx_rows) == 1


def test_cli_export_defaults_next_to_the_checkpoint(small_runs: dict[str, Path], runner) -> None:
    run = small_runs["mlp"]
    result = invoke(runner, "export", run, "--format", "torchscript")
    assert result.exit_code == 0, result.output
    assert f"→ {run / 'model.ts.pt'}" in result.output and "max abs diff 0" in result.output
    result = invoke(runner, "export", run / "last.pt", "--format", "state_dict")
    assert result.exit_code == 0, result.output
    assert (run / "last.state_dict.pt").is_file() and (run / "last.state_dict.pt.json").is_file()
    assert "strict=True" in result.output


def test_cli_verification_failure_exits_1_and_writes_nothing(
    trained_run: Path, tmp_path: Path, runner, monkeypatch
) -> None:
    """The exported graph really differs (its weights are nudged): onnxruntime disagrees."""
    original = export._export_onnx

    def skewed(model: nn.Module, *args: Any) -> None:
        twin = copy.deepcopy(model)
        with torch.no_grad():
            for p in twin.parameters():
                p.add_(0.05)
        original(twin, *args)

    monkeypatch.setattr(export, "_export_onnx", skewed)
    result = invoke(runner, "export", trained_run, "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "differs from PyTorch" in result.output
    assert "nothing was written" in result.output and len(result.output.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_without_onnx_names_the_extra(trained_run: Path, tmp_path: Path, runner, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = invoke(runner, "export", trained_run, "--out", tmp_path / "m.onnx")
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1
    assert "needs the 'onnx' package: pip install 'cnnctl[export]'" in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_predict_onnx_errors(small_exports, images16: Path, tmp_path: Path, runner, monkeypatch) -> None:
    exported = Path(small_exports["small_cnn"]["path"])
    lone = tmp_path / "lone.onnx"
    shutil.copy(exported, lone)
    result = invoke(runner, "predict", lone, images16)
    assert result.exit_code == 2 and f"its sidecar {sidecar_path(lone)} is missing" in result.output
    result = invoke(runner, "predict", exported, images16, "--device", "cuda")
    assert result.exit_code == 2 and "CPU provider" in result.output
    result = invoke(runner, "predict", tmp_path / "nope.onnx", images16)
    assert result.exit_code == 2 and "ONNX model not found" in result.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = invoke(runner, "predict", exported, images16)
    assert result.exit_code == 2 and "pip install 'cnnctl[export]'" in result.output
    assert "Traceback" not in result.output


def test_cli_export_usage_errors(trained_run: Path, tmp_path: Path, runner) -> None:
    result = invoke(runner, "export", trained_run, "--format", "keras")
    assert result.exit_code == 2 and "allowed: onnx, torchscript, state_dict" in result.output
    result = invoke(runner, "export", trained_run, "--out", tmp_path / "m.pt")
    assert result.exit_code == 2 and "must end in .onnx" in result.output
    result = invoke(runner, "export", tmp_path / "nope")
    assert result.exit_code == 2 and "checkpoint not found" in result.output
    result = invoke(runner, "export", trained_run, "--opset", "99", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 2 and "--opset 99: the installed onnx knows opsets 18 to" in result.output
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# CLI: torchvision models (alexnet, densenet121)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transfer_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """alexnet and densenet121 at 64 px (random weights, 1 epoch), each exported to ONNX once:
    alexnet with a fixed batch, densenet121 with a dynamic one. name → (run dir, export report)."""
    root = tmp_path_factory.mktemp("transfer")
    runs = {}
    for name, head in HEADS.items():
        changes = {
            "data": {"image_size": 64, "channels": 3, "samples_per_class": 4, "normalize": "imagenet"},
            "model": {"name": name, "weights": "none", "head": head},
            "optimizer": {"name": "adam", "lr": 1e-4},  # keeps the logits O(1), as trained models have
        }
        run = train_run(root, name, changes)
        runs[name] = (run, cli_export(run, *(["--dynamic-batch"] if name == "densenet121" else [])))
    return runs


@pytest.fixture(scope="module")
def images64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images64") / "imgs"
    write_image_folder(folder, 3, 3, 64, seed=11, noise=0.05)
    return folder


@pytest.mark.parametrize("name", list(HEADS))
def test_cli_transfer_onnx_export_is_verified_and_predicts_like_the_checkpoint(
    name: str, transfer_runs, images64: Path, tmp_path: Path, runner
) -> None:
    run, report = transfer_runs[name]
    assert report["path"] == str(run / "model.onnx") and report["max_abs_diff"] < TOLERANCE
    print(f"{name}: onnx max abs diff {report['max_abs_diff']:.3g}")
    meta = json.loads(sidecar_path(run / "model.onnx").read_text())
    assert meta["input"]["shape"] == [3, 64, 64] and meta["input"]["std"] == [0.229, 0.224, 0.225]
    assert meta["dynamic_batch"] is (name == "densenet121")
    onnx_rows = cli_predict(runner, run / "model.onnx", images64, tmp_path / "onnx.json")
    torch_rows = cli_predict(runner, run, images64, tmp_path / "torch.json")
    worst = assert_same_predictions(onnx_rows, torch_rows)
    print(f"{name}: predict probability max abs diff {worst:.3g}")


def hand_built(name: str) -> nn.Module:
    """The plain torchvision model with its classifier replaced by the head cnnctl trained."""
    import torchvision

    net = torchvision.models.get_model(name, weights=None)
    if name == "alexnet":  # classifier.6: Linear(4096, 1000) → Sequential(Linear(4096, 3))
        net.classifier[6] = nn.Sequential(nn.Linear(4096, 3))
    else:  # classifier: Linear(1024, 1000) → dropout, 1024→8, relu, dropout, 8→3
        net.classifier = nn.Sequential(
            nn.Dropout(0.2), nn.Linear(1024, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3)
        )
    return net


@pytest.mark.parametrize("name", list(HEADS))
def test_cli_transfer_state_dict_loads_strictly_into_torchvision(name: str, transfer_runs, runner) -> None:
    run, _ = transfer_runs[name]
    result = invoke(runner, "export", run, "--format", "state_dict")
    assert result.exit_code == 0, result.output
    state = torch.load(run / "model.state_dict.pt", weights_only=True)
    assert not any(k.startswith("net.") for k in state)
    net = hand_built(name)
    net.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), loaded(run).stepper.model(x), atol=1e-6)
    architecture = json.loads((run / "model.state_dict.pt.json").read_text())["architecture"]
    assert architecture["family"] == "torchvision" and architecture["name"] == name
    assert architecture["head_module"] == ("classifier.6" if name == "alexnet" else "classifier")
    assert [layer["type"] for layer in architecture["head"]] == [
        type(m).__name__ for m in net.get_submodule(architecture["head_module"])
    ]
    rebuilt = rebuild_plain(architecture)
    rebuilt.load_state_dict(state, strict=True)


def test_cli_transfer_torchscript(transfer_runs, runner) -> None:
    run, _ = transfer_runs["alexnet"]
    result = invoke(runner, "export", run, "--format", "torchscript")
    assert result.exit_code == 0, result.output
    assert "max abs diff 0 " in result.output
