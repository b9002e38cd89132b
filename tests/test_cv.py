"""`cnnctl cv`: folds that partition the data exactly and keep groups whole, test untouched,
every fold an ordinary run, out-of-fold predictions from the model that did not train on the
image, cv.json, a killed cv continued, and the refusals."""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cnnctl.config import load_config, validate
from cnnctl.data import build_splits
from cnnctl.data.synthetic import write_image_folder, write_multi_label_manifest
from tests.conftest import TINY, invoke, merge
from tests.test_hostile_outputs import one_line_error

pytest.importorskip("sklearn")


def write(tmp_path: Path, changes: dict | None = None, name: str = "tiny") -> Path:
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}, "data": {"num_workers": 0}})
    cfg = merge(cfg, changes or {})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def grouped_manifest(tmp_path: Path, with_val: bool = False) -> dict:
    """Three classes of 12 images each, in groups of 3 (one class per group); with `with_val`,
    a third of the groups in a val manifest of their own."""
    write_image_folder(tmp_path / "images", 3, 12, 16, seed=0, noise=0.05)
    files = sorted((tmp_path / "images").rglob("*.png"))
    rows = [(f"images/{f.parent.name}/{f.name}", f.parent.name, f"g{n // 3}") for n, f in enumerate(files)]
    train = [r for r in rows if not with_val or int(r[2][1:]) % 3]
    val = [r for r in rows if with_val and not int(r[2][1:]) % 3]
    for name, part in (("train", train), ("val", val)):
        lines = ["path,label,patient", *(",".join(r) for r in part)]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = {
        "source": "manifest",
        "train": str(tmp_path / "train.csv"),
        "group_column": "patient",
        "test_fraction": None,
        "image_size": 16,
    }
    return data | ({"val": str(tmp_path / "val.csv")} if with_val else {})


def with_data(data: dict, tmp_path: Path) -> dict:
    """TINY with its synthetic data replaced by `data` (batches and workers kept)."""
    kept = {k: TINY["data"][k] for k in ("batch_size", "val_fraction")}
    return {k: v for k, v in TINY.items() if k != "data"} | {
        "data": {**kept, "num_workers": 0, **data},
        "output": {**TINY["output"], "dir": str(tmp_path / "runs")},
    }


def fold_splits(cfg_plain: dict, folds: int) -> list:
    """The splits of every fold of a config (what each fold's run trains and validates on)."""
    out = []
    for k in range(folds):
        cfg = validate(merge(cfg_plain, {"data": {"cv": {"folds": folds, "fold": k}}}), f"fold {k}")
        out.append(build_splits(cfg.data, cfg.seed, None, cfg.label_separator()))
    return out


@pytest.mark.parametrize("source", ["synthetic", "manifest_groups", "manifest_given_val"])
def test_the_folds_partition_train_and_val_exactly_and_leave_test_alone(tmp_path: Path, source: str) -> None:
    base = merge(TINY, {"data": {"num_workers": 0, "samples_per_class": 20}})
    if source != "synthetic":
        base = with_data(grouped_manifest(tmp_path, source == "manifest_given_val"), tmp_path)
    plain = validate(base, "base")
    whole = build_splits(plain.data, plain.seed, None)
    everything = set(whole.ids["train"]) | set(whole.ids["val"])
    splits = fold_splits(base, 4)
    vals = [set(s.ids["val"]) for s in splits]
    assert sum(len(v) for v in vals) == len(set().union(*vals)) == len(everything)  # a partition
    assert set().union(*vals) == everything  # of train and val together
    for s in splits:
        assert not set(s.ids["train"]) & set(s.ids["val"])
        assert set(s.ids["train"]) | set(s.ids["val"]) == everything
        assert s.ids.get("test") == whole.ids.get("test")  # the same test as a plain run, every fold
        assert len(s.val) == len(s.ids["val"]) and len(s.train) == len(s.ids["train"])
        counts = torch.bincount(s.val.targets(), minlength=len(s.classes))
        assert (counts > 0).all()  # stratified: every class in every fold
    if source != "synthetic":  # a group (a patient) lies in one fold's val, whole
        rows = [
            line.split(",")
            for name in ("train", "val")
            for line in (tmp_path / f"{name}.csv").read_text().splitlines()[1:]
        ]
        group = {os.path.normpath(tmp_path / path): g for path, _, g in rows}
        fold_of_group: dict[str, int] = {}
        for k, v in enumerate(vals):
            for image in v:
                assert fold_of_group.setdefault(group[os.path.normpath(image)], k) == k
        assert len(fold_of_group) == 12


def test_a_synthetic_test_split_is_the_one_a_plain_run_tests_on(tmp_path: Path) -> None:
    base = merge(TINY, {"data": {"samples_per_class": 20}})
    plain = validate(base, "base")
    whole = build_splits(plain.data, plain.seed, None)
    for s in fold_splits(base, 3):
        assert s.ids["test"] == whole.ids["test"]
        assert torch.equal(s.test.images, whole.test.images)


def test_cv_runs_every_fold_and_writes_oof_predictions_from_the_held_out_model(
    runner, tmp_path: Path
) -> None:
    write_image_folder(tmp_path / "images", 3, 10, 16, seed=0, noise=0.05)
    data = {
        "source": "image_folder",
        "root": str(tmp_path / "images"),
        "test_fraction": 0.2,
        "image_size": 16,
    }
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(with_data(data, tmp_path)), encoding="utf-8")
    result = invoke(runner, "cv", config, "--folds", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    folder = tmp_path / "runs" / "tiny"
    assert data["folds"] == 3 and [f["fold"] for f in data["per_fold"]] == [0, 1, 2]
    for f in data["per_fold"]:
        run = Path(f["run_dir"])
        assert run == folder / f"fold-{f['fold']}" and (run / "best.pt").is_file()
        summary = json.loads((run / "summary.json").read_text())
        assert f["train_images"] == summary["train_samples"] and f["val_images"] == summary["val_samples"]
        assert yaml.safe_load((run / "config.yaml").read_text())["data"]["cv"] == {
            "folds": 3,
            "fold": f["fold"],
        }
        assert {"val_loss", "val_accuracy", "val_macro_f1", "test_accuracy"} <= f.keys()
    for key in ("val_loss", "val_accuracy", "test_accuracy"):
        values = [f[key] for f in data["per_fold"]]
        assert data["mean"][key] == pytest.approx(sum(values) / 3)
        assert data["std"][key] == pytest.approx(statistics.stdev(values))  # the sample std
    assert json.loads((folder / "cv.json").read_text()) == data
    with open(folder / "oof_predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:4] == ["fold", "image", "label", "predicted"]
    splits_of = {}
    for k in range(3):
        with open(folder / f"fold-{k}" / "splits.csv", newline="") as handle:
            splits_of[k] = {r["path"]: r["split"] for r in csv.DictReader(handle)}
    images = [r["image"] for r in rows]
    assert len(images) == len(set(images)) == sum(f["val_images"] for f in data["per_fold"]) == 24
    assert data["oof"]["images"] == 24
    correct = 0
    for row in rows:
        k = int(row["fold"])
        assert splits_of[k][row["image"]] == "val"  # predicted by the fold that did not train on it
        assert all(splits_of[j][row["image"]] == "train" for j in range(3) if j != k)
        probs = {c: float(row[f"p_{c}"]) for c in ("circle", "square", "triangle")}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted"] == max(probs, key=probs.get)
        assert row["label"] == Path(row["image"]).parent.name
        correct += row["predicted"] == row["label"]
    assert data["oof"]["accuracy"] == pytest.approx(correct / 24)
    # exactly what `cnnctl predict` gives the same file with the fold's model (calibrated)
    first = rows[0]
    out = tmp_path / "pred.csv"
    predicted = invoke(runner, "predict", folder / f"fold-{first['fold']}", first["image"], "--out", out)
    assert predicted.exit_code == 0, predicted.output
    with open(out, newline="") as handle:
        (pred,) = list(csv.DictReader(handle))
    assert pred["label"] == first["predicted"]
    assert float(pred["probability"]) == pytest.approx(float(first[f"p_{first['predicted']}"]), abs=2e-6)


def test_multi_label_cv_writes_each_labels_probability(runner, tmp_path: Path) -> None:
    manifest = write_multi_label_manifest(tmp_path / "shapes", 3, 30, 16, seed=0)
    plain = with_data({"source": "manifest", "train": str(manifest), "image_size": 16}, tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({**plain, "task": "multi_label", "train": {"epochs": 1}}), encoding="utf-8"
    )
    result = invoke(runner, "cv", config, "--folds", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"val_map", "val_macro_f1"} <= data["mean"].keys() and "map" in data["oof"]
    with open(tmp_path / "runs" / "tiny" / "oof_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and {"p_circle", "p_square", "p_triangle"} <= rows[0].keys()
    assert any("|" in r["label"] for r in rows)


def test_a_rerun_reads_finished_folds_back_and_another_config_is_refused(runner, tmp_path: Path) -> None:
    config = write(tmp_path, {"train": {"epochs": 1}})
    first = invoke(runner, "cv", config, "--folds", "2", "--json")
    assert first.exit_code == 0, first.output
    folder = tmp_path / "runs" / "tiny"
    stamp = (folder / "fold-0" / "best.pt").stat().st_mtime_ns
    again = invoke(runner, "cv", config, "--folds", "2", "--json")
    assert again.exit_code == 0 and "read back" in again.stderr
    assert json.loads(again.stdout)["per_fold"] == json.loads(first.stdout)["per_fold"]
    assert (folder / "fold-0" / "best.pt").stat().st_mtime_ns == stamp  # not retrained
    one_line_error(invoke(runner, "cv", config, "--folds", "3"), 2, "another config")
    changed = invoke(runner, "cv", config, "--folds", "2", "--set", "optimizer.lr=0.001")
    one_line_error(changed, 2, "optimizer.lr")
    forced = invoke(runner, "cv", config, "--folds", "3", "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert len(json.loads(forced.stdout)["per_fold"]) == 3
    assert (folder / "fold-0" / "best.pt").stat().st_mtime_ns != stamp
    assert not list(folder.glob("fold-*-2"))  # replaced in place, never beside


@pytest.mark.parametrize(
    ("changes", "args", "needle"),
    [
        ({"data": {"samples_per_class": 4}}, ["--folds", "5"], "use fewer folds"),
        ({}, ["--group-column", "patient"], "group_column"),
        ({}, ["--name", "../x"], "plain folder name"),
    ],
)
def test_what_cannot_be_cross_validated_is_one_line(
    runner, tmp_path: Path, changes: dict, args: list[str], needle: str
) -> None:
    config = write(tmp_path, changes)
    result = invoke(runner, "cv", config, *args)
    one_line_error(result, 2, needle)


def test_fewer_than_two_folds_is_refused(runner, tmp_path: Path) -> None:
    result = invoke(runner, "cv", write(tmp_path), "--folds", "1")
    assert result.exit_code == 2 and "Traceback" not in result.output and "--folds" in result.output
    assert not (tmp_path / "runs").exists()


def test_fewer_groups_than_folds_is_one_line(runner, tmp_path: Path) -> None:
    data = {k: v for k, v in grouped_manifest(tmp_path).items() if k != "group_column"}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(with_data(data, tmp_path)), encoding="utf-8")
    result = invoke(runner, "cv", config, "--folds", "13", "--group-column", "patient")
    one_line_error(result, 2, "groups")
    assert (
        invoke(runner, "cv", config, "--folds", "2", "--group-column", "patient").exit_code == 0
    )  # no fold was made


def _cv_process(config: Path, folds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnctl", "cv", str(config), "--folds", str(folds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def test_a_killed_cv_continues_with_the_same_command(tmp_path: Path) -> None:
    config = write(tmp_path, {"train": {"epochs": 20}, "data": {"samples_per_class": 30}})
    killed = _cv_process(config, 2)
    folder = tmp_path / "runs" / "tiny"
    deadline = time.monotonic() + 180
    while not (folder / "fold-0" / "last.pt").is_file():  # fold 0 is under way, an epoch done
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (folder / "fold-0" / "summary.json").exists()
    again = _cv_process(config, 2)  # the same command
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0, out
    assert f"resuming {folder / 'fold-0'}" in out
    data = json.loads((folder / "cv.json").read_text())
    assert [f["epochs_run"] for f in data["per_fold"]] == [20, 20]
    assert data["oof"]["images"] == sum(f["val_images"] for f in data["per_fold"])


def test_two_cv_processes_on_one_folder_one_is_told(runner, tmp_path: Path) -> None:
    config = write(tmp_path, {"train": {"epochs": 30}, "data": {"samples_per_class": 30}})
    first = _cv_process(config, 2)
    folder = tmp_path / "runs" / "tiny"
    deadline = time.monotonic() + 180
    while not (folder / "fold-0" / "last.pt").is_file():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    try:
        one_line_error(invoke(runner, "cv", config, "--folds", "2"), 2, "another cnnctl cv")
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130


def test_pooled_metrics_equal_one_pass_over_every_fold(tmp_path: Path) -> None:
    from cnnctl import tasks
    from cnnctl.tasks.single_label import SingleLabel

    torch.manual_seed(0)
    task = SingleLabel("logits")
    classes = ["a", "b", "c"]
    outputs, targets = torch.randn(40, 3), torch.randint(0, 3, (40,))
    parts = []
    for chunk in (slice(0, 13), slice(13, 27), slice(27, 40)):
        acc = task.metrics(classes, (1, 2))
        acc.update(
            task.probabilities(outputs[chunk]),
            targets[chunk],
            task.eval_loss_sum(outputs[chunk], targets[chunk]),
        )
        parts.append(acc)
    whole = task.metrics(classes, (1, 2))
    whole.update(task.probabilities(outputs), targets, task.eval_loss_sum(outputs, targets))
    pooled, once = tasks.pooled(parts).to_plain(), whole.result().to_plain()
    for key in ("loss", "accuracy", "macro_f1", "roc_auc", "ece", "count"):
        assert pooled[key] == pytest.approx(once[key]), key
    assert pooled["confusion_matrix"] == once["confusion_matrix"]


def test_data_cv_in_a_config_trains_that_one_fold(runner, tmp_path: Path) -> None:
    config = write(tmp_path, {"data": {"cv": {"folds": 3, "fold": 1}}, "train": {"epochs": 1}})
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    cfg = load_config(config)
    splits = build_splits(cfg.data, cfg.seed, None)
    summary = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert summary["val_samples"] == len(splits.val)
    one_line_error(
        invoke(
            runner, "config", "validate", write(tmp_path, {"data": {"cv": {"folds": 3, "fold": 3}}}, "bad")
        ),
        2,
        "data.cv.fold",
    )
