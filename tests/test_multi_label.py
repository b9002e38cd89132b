"""task: multi_label: label sets from manifests (text split on data.label_separator, or JSON
lists), sigmoid outputs, per-label thresholds chosen on val and stored in best.pt, and the
same decisions in evaluate, predict, export and predict on the .onnx file."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.data.splits import strata
from cnnctl.data.synthetic import write_multi_label_manifest
from cnnctl.session.build import balanced_weights
from cnnctl.session.optim import class_weights_for, multi_label_loss
from tests.conftest import TINY, invoke

LABELS = ["circle", "square", "triangle"]  # class_names(3), sorted


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 images of one or two of three shapes, and manifest.csv (path,label with 'a|b')."""
    return write_multi_label_manifest(tmp_path_factory.mktemp("multi"), 3, 48, 16, seed=5)


def config(tmp_path: Path, data: dict[str, Any], train: dict[str, Any] | None = None, **top: Any) -> Path:
    cfg = {
        **TINY,
        "task": "multi_label",
        "data": {"source": "manifest", "image_size": 16, "batch_size": 8, "val_fraction": 0.25, **data},
        "train": {"epochs": 2, **(train or {})},
        "output": {"dir": str(tmp_path / "runs"), "plots": False},
        **top,
    }
    path = tmp_path / "ml.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One multi-label run with a test split and plots: its run dir."""
    from typer.testing import CliRunner

    tmp = tmp_path_factory.mktemp("ml_run")
    path = config(tmp, {"train": str(shapes), "test_fraction": 0.25})
    cfg = yaml.safe_load(path.read_text())
    cfg["output"]["plots"] = True
    path.write_text(yaml.safe_dump(cfg))
    result = invoke(CliRunner(), "train", path, "--name", "ml")
    assert result.exit_code == 0, result.output
    return tmp / "runs" / "ml"


def test_a_multi_label_run_stores_its_task_and_thresholds(trained: Path) -> None:
    best = ckpt.load_checkpoint(trained / "best.pt")
    assert best["task"] == "multi_label" and best["output_kind"] == "logits"
    # an older cnnctl says "upgrade" instead of misreading it: 2 for the task, 3 once calibrated
    assert best["format_version"] == (3 if best["temperature"] != 1.0 else 2)
    assert best["classes"] == LABELS and best["model_spec"]["num_outputs"] == 3
    assert len(best["thresholds"]) == 3 and all(0 < t < 1 for t in best["thresholds"])
    assert best["label_separator"] == "|" and best["config"]["train"]["loss"] == "bce_with_logits"
    summary = json.loads((trained / "summary.json").read_text())
    test = summary["test"]
    assert {"map", "micro_f1", "macro_f1", "exact_match", "hamming_loss", "per_label"} <= set(test)
    assert [row["threshold"] for row in test["per_label"]] == pytest.approx(best["thresholds"])
    assert (trained / "plots" / "pr_test.png").stat().st_size > 1000
    page = (trained / "report.html").read_text(encoding="utf-8")  # output.report: on by default
    assert "<h2>per label</h2>" in page and "multi-label: no confusion matrix" in page
    assert summary["calibration"]["temperature"] == best["temperature"]
    members = read_csv(trained / "splits.csv")
    assert len(members) == 48 and {m["split"] for m in members} == {"train", "val", "test"}
    assert all(set(m["label"].split("|")) <= set(LABELS) and m["label"] for m in members)


def test_thresholds_are_chosen_on_val_for_the_best_f1(trained: Path) -> None:
    """best.pt's thresholds are the val pass's best-F1 thresholds of its weights (chosen on the
    uncalibrated probabilities, then moved with the temperature so no decision changes)."""
    from cnnctl.artifacts.loaded import load_model
    from cnnctl.config import validate
    from cnnctl.data import build_splits, make_loader
    from cnnctl.tasks.multi_label_metrics import MultiLabelAccumulator

    loaded = load_model(trained / "best.pt", "cpu")
    cfg = validate(loaded.checkpoint["config"], "stored")
    splits = build_splits(cfg.data, cfg.seed, loaded.input, cfg.label_separator())
    acc = MultiLabelAccumulator(LABELS)
    calibrated = loaded.stepper.task
    loaded.stepper.task = calibrated.with_temperature(1.0)  # the thresholds as chosen, at T = 1
    for x, y in make_loader(splits.val, 8, shuffle=False, seed=0, workers=0, pin=False):
        acc.update(loaded.stepper.predict(x), y, torch.zeros(()))
    assert acc.best_thresholds() == pytest.approx(loaded.stepper.task.thresholds, abs=1e-5)
    assert loaded.checkpoint["thresholds"] == list(calibrated.thresholds)


def test_evaluate_reports_every_multi_label_metric(runner, trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = invoke(runner, "evaluate", trained, "--json", out, "--plots", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("map", "micro_f1", "macro_f1", "exact_match", "hamming_loss"):
        assert 0 <= data[key] <= 1
    thresholds = ckpt.load_checkpoint(trained / "best.pt")["thresholds"]
    rows = data["per_label"]
    assert [r["label"] for r in rows] == LABELS
    assert [r["threshold"] for r in rows] == pytest.approx(thresholds)
    assert {"support", "precision", "recall", "f1", "ap", "threshold"} <= set(rows[0])
    assert (tmp_path / "plots" / "eval_test_pr.png").is_file()
    assert not (tmp_path / "plots" / "eval_test_confusion.png").exists()
    table = invoke(runner, "evaluate", trained)
    assert "mAP" in table.output and "exact match" in table.output and "per label" in table.output


def test_predict_decides_at_the_stored_thresholds(
    runner, trained: Path, shapes: Path, tmp_path: Path
) -> None:
    images = sorted((shapes.parent / "images").glob("*.png"))[:6]
    out = tmp_path / "p.csv"
    result = invoke(runner, "predict", trained, *images, "--out", out)
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert list(rows[0]) == ["path", "labels", *(f"p_{n}" for n in LABELS), "error"]
    thresholds = ckpt.load_checkpoint(trained / "best.pt")["thresholds"]
    for row in rows:
        wanted = [n for n, t in zip(LABELS, thresholds, strict=True) if float(row[f"p_{n}"]) >= t - 1e-6]
        assert row["labels"] == "|".join(wanted)
    # the thresholds in best.pt are what decides: at 0 every label is predicted
    data = torch.load(trained / "best.pt", weights_only=True)
    lowered = tmp_path / "low.pt"
    torch.save({**data, "thresholds": [0.0, 0.0, 0.0], "label_separator": ";"}, lowered)
    result = invoke(runner, "predict", lowered, *images, "--out", tmp_path / "low.json")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "low.json").read_text())
    assert [r["labels"] for r in records] == ["circle;square;triangle"] * len(images)


def test_onnx_export_keeps_the_thresholds(runner, trained: Path, shapes: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = tmp_path / "m.onnx"
    result = invoke(runner, "export", trained, "--out", model)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((tmp_path / "m.onnx.json").read_text())
    assert sidecar["task"] == "multi_label"
    assert sidecar["thresholds"] == pytest.approx(ckpt.load_checkpoint(trained / "best.pt")["thresholds"])
    assert sidecar["output"]["shape"][-1] == 3 and "sigmoid" in sidecar["output"]["to_probabilities"]
    images = sorted((shapes.parent / "images").glob("*.png"))[:5]
    for source, name in ((trained, "a.csv"), (model, "b.csv")):
        assert invoke(runner, "predict", source, *images, "--out", tmp_path / name).exit_code == 0
    a, b = read_csv(tmp_path / "a.csv"), read_csv(tmp_path / "b.csv")
    assert [r["labels"] for r in a] == [r["labels"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for name in LABELS:
            assert float(ra[f"p_{name}"]) == pytest.approx(float(rb[f"p_{name}"]), abs=1e-4)
    sidecar["thresholds"] = [0.5]  # one for three labels: refused, in one line
    (tmp_path / "m.onnx.json").write_text(json.dumps(sidecar))
    result = invoke(runner, "predict", model, images[0])
    assert result.exit_code != 0 and "thresholds" in result.output and "Traceback" not in result.output


def test_a_fixed_threshold_and_jsonl_list_labels(runner, shapes: Path, tmp_path: Path) -> None:
    rows = read_csv(shapes)
    lines = []
    for n, row in enumerate(rows):
        labels: list[str] = row["label"].split("|")
        lines.append({"path": str(shapes.parent / row["path"]), "label": [] if n % 8 == 0 else labels})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    path = config(tmp_path, {"train": str(manifest), "label_separator": ","}, {"threshold": 0.3, "epochs": 1})
    result = invoke(runner, "train", path, "--name", "fixed")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "fixed"
    assert ckpt.load_checkpoint(run / "best.pt")["thresholds"] == [0.3, 0.3, 0.3]
    members = {Path(m["path"]).name: m["label"] for m in read_csv(run / "splits.csv")}
    assert members["00000.png"] == ""  # an empty list: an image with none of the labels
    assert members["00001.png"] == ",".join(lines[1]["label"])


def test_data_check_counts_images_per_label(runner, shapes: Path, tmp_path: Path) -> None:
    path = config(tmp_path, {"train": str(shapes)})
    result = invoke(runner, "data", "check", path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    counted = {name: sum(report["splits"][s][name] for s in report["splits"]) for name in LABELS}
    truth = {name: sum(name in r["label"].split("|") for r in read_csv(shapes)) for name in LABELS}
    assert counted == truth


@pytest.mark.parametrize(
    ("data", "train", "top", "expected"),
    [
        ({"source": "image_folder", "root": "x"}, {}, {}, "task: multi_label needs data.source: manifest"),
        ({}, {"loss": "cross_entropy"}, {}, "train.loss: cross_entropy is single-label"),
        ({}, {"loss": "focal", "mixup_alpha": 0.2}, {}, "train.mixup_alpha"),
        ({}, {"label_smoothing": 0.1, "loss": "focal"}, {}, "label_smoothing"),
        ({}, {"threshold": 1.5}, {}, "train.threshold"),
        ({"label_separator": ""}, {}, {}, "data.label_separator"),
        ({}, {"threshold": 0.4}, {"task": "single_label"}, "train.threshold: applies to task: multi_label"),
    ],
)
def test_config_errors_are_one_line(
    runner, shapes: Path, tmp_path: Path, data: dict, train: dict, top: dict, expected: str
) -> None:
    path = config(tmp_path, {"train": str(shapes), **data}, train, **top)
    if data.get("source") == "image_folder":
        cfg = yaml.safe_load(path.read_text())
        cfg["data"] = {"source": "image_folder", "root": str(tmp_path)}
        path.write_text(yaml.safe_dump(cfg))
    result = invoke(runner, "config", "validate", path)
    assert result.exit_code == 2, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1


def test_label_errors_name_the_row(runner, shapes: Path, tmp_path: Path) -> None:
    base = str(shapes.parent / "images" / "00001.png")
    cases = [
        ({"path": base, "label": ["circle", "a|b"]}, "holds data.label_separator"),
        ({"path": base, "label": ["circle", ""]}, "non-empty text"),
        ({"path": base, "label": ""}, "empty label"),
    ]
    for row, expected in cases:
        manifest = tmp_path / "bad.jsonl"
        manifest.write_text(json.dumps({"path": str(shapes.parent / "images" / "00000.png"), "label": "circle"})
                            + "\n" + json.dumps(row) + "\n")  # fmt: skip
        result = invoke(
            runner, "train", config(tmp_path, {"train": str(manifest)}), "--name", "bad", "--force"
        )
        assert result.exit_code != 0 and "row 2" in result.output and expected in result.output, result.output
        assert "Traceback" not in result.output
    single = config(tmp_path, {"train": str(manifest)}, task="single_label")
    manifest.write_text(json.dumps({"path": base, "label": ["circle", "square"]}) + "\n")
    result = invoke(runner, "train", single, "--name", "one", "--force")
    assert result.exit_code != 0 and "set task: multi_label" in result.output


def test_a_multi_label_checkpoint_is_not_evaluated_on_a_folder(runner, trained: Path, tmp_path: Path) -> None:
    (tmp_path / "circle").mkdir()
    result = invoke(runner, "evaluate", trained, "--data", tmp_path)
    assert result.exit_code != 0 and "one label per image" in result.output


def test_a_multi_label_run_resumes(runner, shapes: Path, tmp_path: Path) -> None:
    path = config(tmp_path, {"train": str(shapes)}, {"epochs": 1})
    assert invoke(runner, "train", path, "--name", "r").exit_code == 0
    run = tmp_path / "runs" / "r"
    result = invoke(runner, "train", "--resume", run, "--set", "train.epochs=2", "--force")
    assert result.exit_code == 0, result.output
    assert len(read_csv(run / "metrics.csv")) == 2
    assert ckpt.load_checkpoint(run / "best.pt")["task"] == "multi_label"


def test_the_multi_label_loss() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 3), (torch.rand(6, 3) > 0.5).float()
    assert multi_label_loss(logits, targets) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, targets))
    )
    weight = torch.tensor([1.0, 3.0, 0.5])
    assert multi_label_loss(logits, targets, pos_weight=weight) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight))
    )
    easy, hard = torch.tensor([[4.0]]), torch.tensor([[-0.5]])
    one = torch.ones(1, 1)
    ratio_easy = multi_label_loss(easy, one, gamma=2.0) / multi_label_loss(easy, one)
    ratio_hard = multi_label_loss(hard, one, gamma=2.0) / multi_label_loss(hard, one)
    assert ratio_easy < 0.01 < ratio_hard  # focal leaves the hard decision nearly whole


def test_multi_hot_strata_weights_and_sampling() -> None:
    targets = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.float32)
    # rarest label of each image (label counts 4, 1, 1); no label: one more stratum
    assert strata(targets) == [0, 1, 2, 0, 3]
    assert balanced_weights(targets).tolist() == [0.5, 1.0, 1.0, 0.5, 1.0]
    weights = class_weights_for("auto", targets, ["a", "b", "c"])
    assert weights is not None and weights.tolist() == pytest.approx(
        [1 / 4, 4.0, 4.0]
    )  # negatives / positives
    assert class_weights_for({"b": 2.0}, targets, ["a", "b", "c"]).tolist() == [1.0, 2.0, 1.0]  # type: ignore[union-attr]


def test_class_weights_and_the_balanced_sampler_train(runner, shapes: Path, tmp_path: Path) -> None:
    path = config(tmp_path, {"train": str(shapes), "sampler": "balanced"},
                  {"class_weights": "auto", "loss": "focal", "epochs": 1})  # fmt: skip
    result = invoke(runner, "train", path, "--name", "w")
    assert result.exit_code == 0, result.output
    assert "class weights auto" in result.output and "sampler balanced" in result.output
