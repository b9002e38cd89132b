"""What the commands show and write: plots, run history, JSON, logs, start-up time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from tests.conftest import invoke


def assert_png(path: Path, min_side: int = 300) -> None:
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_side, image.size


def test_train_draws_curves_and_confusion_and_prints_no_bar_garbage(runner, write_config) -> None:
    config = write_config({"output": {"plots": True}})
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "it/s" not in result.output  # no live bar when piped
    plots = config.parent / "runs" / "tiny" / "plots"
    assert_png(plots / "curves.png")
    assert_png(plots / "confusion_test.png")
    assert f"plots in {plots}" in result.output

    off = write_config({"output": {"plots": False}}, name="noplots")
    assert invoke(runner, "train", off).exit_code == 0
    assert not (config.parent / "runs" / "noplots" / "plots").exists()


def test_evaluate_draws_confusion_and_the_most_confidently_wrong(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval_plots"
    result = invoke(runner, "evaluate", trained_run, "--plots", out, "--split", "val")
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "recall" in result.output and "f1" in result.output
    assert_png(out / "eval_val_confusion.png")
    assert_png(out / "eval_val_wrong.png", min_side=200)

    as_json = invoke(runner, "evaluate", trained_run, "--json", "-", "--no-plots")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert {"loss", "accuracy", "per_class", "confusion_matrix", "most_confident_errors"} <= set(data)
    errors = data["most_confident_errors"]
    assert errors == []  # only gathered when plots are drawn
    with_plots = json.loads(invoke(runner, "evaluate", trained_run, "--json", "-", "--plots", out).output)
    wrong = with_plots["most_confident_errors"]
    misses = with_plots["count"] - round(with_plots["accuracy"] * with_plots["count"])
    assert len(wrong) == min(misses, 16)
    assert all(a["confidence"] >= b["confidence"] for a, b in zip(wrong, wrong[1:], strict=False))
    assert all(w["true"] != w["predicted"] for w in wrong)


def test_train_json_to_stdout_is_the_summary(runner, write_config) -> None:
    config = write_config()
    result = invoke(runner, "train", config, "--json", "-")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    saved = json.loads((config.parent / "runs" / "tiny" / "summary.json").read_text())
    assert summary == saved and summary["best_epoch"] >= 1


def test_runs_lists_past_runs(runner, write_config) -> None:
    config = write_config()
    assert invoke(runner, "train", config).exit_code == 0
    assert invoke(runner, "train", config).exit_code == 0  # tiny-2
    table = invoke(runner, "runs", config.parent / "runs")
    assert table.exit_code == 0, table.output
    assert "tiny-2" in table.output and "small_cnn" in table.output and "synthetic" in table.output
    records = json.loads(invoke(runner, "runs", config.parent / "runs", "--json").output)
    assert {r["name"] for r in records} == {"tiny", "tiny-2"}
    assert all(r["status"] == "done" and r["model"] == "small_cnn" for r in records)
    missing = invoke(runner, "runs", config.parent / "nowhere")
    assert missing.exit_code == 2 and "no runs folder" in missing.output


def test_tensorboard_scalars_are_written(runner, write_config) -> None:
    config = write_config({"logging": {"tensorboard": True}})
    assert invoke(runner, "train", config).exit_code == 0
    events = list((config.parent / "runs" / "tiny" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100


def test_verbose_shows_debug_detail(runner, write_config) -> None:
    config = write_config()
    quiet = invoke(runner, "train", config, "--name", "a")
    loud = invoke(runner, "--verbose", "train", config, "--name", "b")
    assert loud.exit_code == 0, loud.output
    assert "loaders:" in loud.output and "checkpoint(s) written" in loud.output
    assert "loaders:" not in quiet.output


def test_help_answers_fast_without_torch() -> None:
    code = "import sys, cnnctl.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cnnctl", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0 and "train" in done.stdout
    assert elapsed < 3.0, f"cnnctl --help took {elapsed:.2f}s"  # ~0.1 s measured; generous for CI


def test_plots_draw_any_class_name_as_it_is(tmp_path: Path) -> None:
    """A raw surrogate (a non-UTF-8 folder name) crashed the font renderer; `$x$` was mathtext."""
    import torch

    from cnnctl.report import plots

    names = ["a$b$", "caf\udce9", "esc\x1b[31m\ttab", "[bold]x"]
    matrix = [[1 if i == j else 0 for j in range(4)] for i in range(4)]
    assert_png(plots.confusion(matrix, names, tmp_path / "c.png", title="t $x$"))
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    grid = plots.wrong_grid([image], [f"true {names[1]}\npred {names[0]} (0.50)"], tmp_path / "w.png")
    assert_png(grid, min_side=200)


def test_metrics_csv_is_rewritten_atomically_and_failures_are_one_line(tmp_path: Path) -> None:
    import pytest

    from cnnctl.artifacts.run_logs import MetricsLog
    from cnnctl.core.atomic import write_json
    from cnnctl.core.errors import OutputError

    row = {
        "epoch": 1,
        "train_loss": 0.5,
        "train_acc": 0.5,
        "val_loss": 0.5,
        "val_acc": 0.5,
        "lr": 0.1,
        "seconds": 1.0,
    }
    log = MetricsLog(tmp_path / "metrics.csv", rows=[row, {**row, "epoch": 2}])
    log.append({**row, "epoch": 3})
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]  # no temp file left
    with pytest.raises(OutputError, match="cannot write metrics file"):
        MetricsLog(tmp_path / "missing" / "metrics.csv")
    write_json(tmp_path / "s.json", {"classes": ["caf\udce9"]})
    assert json.loads((tmp_path / "s.json").read_text()) == {"classes": ["caf\udce9"]}
    with pytest.raises(OutputError, match="cannot write JSON file"):
        write_json(tmp_path / "missing" / "s.json", {})
