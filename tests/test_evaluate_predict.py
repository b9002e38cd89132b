"""`cnnctl evaluate` and `cnnctl predict`, which need nothing but the checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cnnctl.data.synthetic import write_image_folder
from cnnctl.workflows.evaluate import evaluate
from cnnctl.workflows.predict import predict
from tests.conftest import invoke


def test_evaluate_own_dataset_defaults_to_test(runner, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = invoke(runner, "evaluate", trained_run, "--json", out, "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert "the checkpoint's own dataset, test split (9 images)" in result.output
    assert "confusion matrix" in result.output and "per class" in result.output
    metrics = json.loads(out.read_text())
    summary = json.loads((trained_run / "summary.json").read_text())
    assert metrics["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert metrics["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["count"] == 9
    assert [r["support"] for r in metrics["per_class"]] == [3, 3, 3]
    assert set(metrics["topk"]) == {"1", "2"} and metrics["topk"]["2"] >= metrics["accuracy"]


def test_evaluate_val_split_matches_training_log(trained_run: Path) -> None:
    result, what = evaluate(trained_run / "best.pt", split="val", device="cpu")
    summary = json.loads((trained_run / "summary.json").read_text())
    assert "val split" in what
    # best.pt's val loss as the epoch logged it (T = 1), and as evaluate reads it (calibrated)
    calibration = summary["calibration"]
    assert calibration["nll_before"] == pytest.approx(summary["best_val_loss"], rel=1e-5)
    assert result.loss == pytest.approx(calibration["nll_after"], rel=1e-5)
    assert result.loss <= summary["best_val_loss"] + 1e-9
    assert result.accuracy == pytest.approx(summary["best_val_acc"])  # no decision changed


def test_evaluate_on_an_image_folder(runner, trained_run: Path, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imgs", 3, 4, 16, seed=9, noise=0.05)
    result = invoke(runner, "evaluate", trained_run / "best.pt", "--data", tmp_path / "imgs")
    assert result.exit_code == 0, result.output
    assert "(12 images)" in result.output


def test_evaluate_folder_with_other_classes_is_an_error(runner, trained_run: Path, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imgs", 4, 2, 16, seed=9, noise=0.05)  # adds "cross"
    result = invoke(runner, "evaluate", trained_run, "--data", tmp_path / "imgs")
    assert result.exit_code == 2
    assert "differ from the checkpoint's ['circle', 'square', 'triangle']" in result.output


def test_evaluate_missing_or_bad_checkpoint(runner, tmp_path: Path) -> None:
    result = invoke(runner, "evaluate", tmp_path / "nope.pt")
    assert result.exit_code == 2 and "checkpoint not found" in result.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 10)
    result = invoke(runner, "evaluate", junk)
    assert result.exit_code == 2 and "not a readable checkpoint" in result.output
    assert "Traceback" not in result.output


def test_predict_folder_to_csv_with_a_bad_file(runner, trained_run: Path, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imgs", 3, 3, 24, seed=5, noise=0.05)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not really a png")
    out = tmp_path / "preds.csv"
    result = invoke(
        runner, "predict", trained_run, tmp_path / "imgs", "--top-k", "2", "--out", out, "--batch-size", "4"
    )
    assert result.exit_code == 0, result.output
    assert "10 predictions written" in result.output and "1 unreadable" in result.output
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "path",
        "label",
        "probability",
        "top1_label",
        "top1_probability",
        "top2_label",
        "top2_probability",
        "error",
    ]
    assert len(rows) == 10
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("broken.png") and bad[0]["label"] == ""
    good = [r for r in rows if not r["error"]]
    for row in good:
        assert row["label"] in {"circle", "square", "triangle"} and row["label"] == row["top1_label"]
        assert 1 >= float(row["probability"]) >= float(row["top2_probability"]) >= 0


def test_predict_json_and_single_files(runner, trained_run: Path, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imgs", 3, 1, 16, seed=5, noise=0.05)
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    out = tmp_path / "p.json"
    result = invoke(runner, "predict", trained_run, *files[:2], "--out", out)
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert [r["path"] for r in records] == [str(f) for f in files[:2]]
    assert set(records[0]) == {"path", "label", "probability", "error"}


def test_predict_matches_evaluate_on_the_same_images(trained_run: Path, tmp_path: Path) -> None:
    """Predict prepares files exactly as evaluate does: same labels for the same images."""
    write_image_folder(tmp_path / "imgs", 3, 4, 16, seed=9, noise=0.05)
    rows = list(predict(trained_run, [tmp_path / "imgs"], device="cpu"))
    result, _ = evaluate(trained_run, tmp_path / "imgs", device="cpu")
    classes = ["circle", "square", "triangle"]
    correct = sum(r.label == Path(r.path).parent.name for r in rows)
    assert correct == int(result.confusion.diag().sum())
    assert {r.label for r in rows} <= set(classes)


def test_predict_missing_path(runner, trained_run: Path, tmp_path: Path) -> None:
    result = invoke(runner, "predict", trained_run, tmp_path / "nothing")
    assert result.exit_code == 2 and "no such file or folder" in result.output
