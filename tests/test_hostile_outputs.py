"""Issue 15, classes 1, 2 and 5: nothing outside cnnctl's own files is lost, one run dir has one
writer, and every failure of the output path is one line with no temp file left."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cnnctl.core.errors import CnnctlError
from cnnctl.data.synthetic import write_image_folder
from tests.conftest import TINY, invoke, merge
from tests.test_resume import start as start_train


def one_line_error(result: Any, exit_code: int | tuple[int, ...], *needles: str) -> str:
    """The command failed with `exit_code` (or one of them) and printed exactly one `error:`
    line, no traceback."""
    codes = exit_code if isinstance(exit_code, tuple) else (exit_code,)
    assert result.exit_code in codes, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_run(run: Path, where: Path) -> Path:
    target = where / "runs" / run.name
    shutil.copytree(run, target)
    return target


# --------------------------------------------------------------------------------------
# 1. Nothing outside cnnctl's own files is deleted or overwritten
# --------------------------------------------------------------------------------------


def test_force_never_replaces_a_folder_cnnctl_did_not_make(runner, write_config, tmp_path: Path) -> None:
    config = write_config({"train": {"epochs": 1}})
    user = tmp_path / "runs" / "tiny"
    (user / "data").mkdir(parents=True)
    (user / "config.yaml").write_text("mine: true\n")
    (user / "important.txt").write_text("do not lose me")
    (user / "data" / "x.bin").write_bytes(b"\x00\x01")
    before = tree(user)
    result = invoke(runner, "train", config, "--force")
    one_line_error(result, 2, "was not made by cnnctl", "refusing to replace it")
    assert tree(user) == before


def test_force_replaces_a_run_but_not_one_holding_a_users_file(runner, write_config, tmp_path: Path) -> None:
    config = write_config({"train": {"epochs": 1}})
    assert invoke(runner, "train", config).exit_code == 0
    run = tmp_path / "runs" / "tiny"
    (run / "notes.txt").write_text("my notes")
    one_line_error(invoke(runner, "train", config, "--force"), 2, "notes.txt", "did not write")
    assert (run / "notes.txt").read_text() == "my notes" and (run / "best.pt").is_file()
    (run / "notes.txt").unlink()
    old_id = (run / ".cnnctl-run").read_text()
    assert invoke(runner, "train", config, "--force").exit_code == 0
    assert (run / ".cnnctl-run").read_text() != old_id  # a new run, in the same folder


def test_a_symlinked_run_dir_is_one_line_and_its_target_is_untouched(
    runner, write_config, tmp_path: Path
) -> None:
    config = write_config({"train": {"epochs": 1}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").symlink_to(elsewhere, target_is_directory=True)
    one_line_error(invoke(runner, "train", config, "--force"), 2, "symbolic link")
    assert tree(elsewhere) == {"keep.txt": b"keep"}
    result = invoke(runner, "train", config)  # without --force: the next free name
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "tiny-2" / "best.pt").is_file() and tree(elsewhere) == {"keep.txt": b"keep"}


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "."])
def test_a_run_name_is_a_folder_name_not_a_path(runner, write_config, tmp_path: Path, name: str) -> None:
    config = write_config({"train": {"epochs": 1}})
    one_line_error(invoke(runner, "train", config, "--name", name), 2, "plain folder name")
    assert not (tmp_path / "escape").exists()


def test_export_never_writes_over_its_checkpoint_or_a_run_file(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    run = copy_run(trained_run, tmp_path)
    before = tree(run)
    for target in ("best.pt", "last.pt", "config.yaml", "metrics.csv"):
        for extra in ([], ["--force"]):
            result = invoke(runner, "export", run, "--format", "state_dict", "--out", run / target, *extra)
            one_line_error(result, 2, target)
    loose = tmp_path / "loose.pt"
    shutil.copy(run / "best.pt", loose)
    result = invoke(runner, "export", loose, "--format", "torchscript", "--out", loose, "--force")
    one_line_error(result, 2, "own input")
    other = tmp_path / "other.pt"
    shutil.copy(run / "last.pt", other)  # any cnnctl checkpoint, wherever it is
    result = invoke(runner, "export", run, "--format", "torchscript", "--out", other, "--force")
    one_line_error(result, 2, "is a cnnctl checkpoint")
    assert tree(run) == before and loose.read_bytes() == (run / "best.pt").read_bytes()


def test_an_existing_output_file_is_replaced_only_with_force(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    write_image_folder(images, 3, 2, 16, 0, 0.05, None)
    mine = tmp_path / "mine.csv"
    mine.write_text("my spreadsheet\n")
    one_line_error(invoke(runner, "predict", trained_run, images, "--out", mine), 2, "exists", "--force")
    assert mine.read_text() == "my spreadsheet\n"
    assert invoke(runner, "predict", trained_run, images, "--out", mine, "--force").exit_code == 0
    assert mine.read_text().startswith("path,label,probability")

    report = tmp_path / "eval.json"
    report.write_text("{}")
    args = ("evaluate", trained_run, "--no-plots", "--json", report)
    one_line_error(invoke(runner, *args), 2, "exists")
    assert invoke(runner, *args, "--force").exit_code == 0 and "accuracy" in report.read_text()
    one_line_error(invoke(runner, "evaluate", trained_run, "--json", trained_run / "best.pt", "--force"), 2)

    exported = tmp_path / "m.ts.pt"
    assert invoke(runner, "export", trained_run, "-f", "torchscript", "--out", exported).exit_code == 0
    one_line_error(invoke(runner, "export", trained_run, "-f", "torchscript", "--out", exported), 2, "exists")
    assert (
        invoke(runner, "export", trained_run, "-f", "torchscript", "--out", exported, "--force").exit_code
        == 0
    )


def test_train_json_never_overwrites_its_config(runner, write_config) -> None:
    config = write_config({"train": {"epochs": 1}})
    before = config.read_bytes()
    one_line_error(invoke(runner, "train", config, "--json", config, "--force"), 2, "own input")
    assert config.read_bytes() == before


# --------------------------------------------------------------------------------------
# 2. One run dir, one writer
# --------------------------------------------------------------------------------------


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if process.poll() is not None:
            pytest.fail(f"training ended early: {process.communicate()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"{path} did not appear in time")


SLOW_ENOUGH = {"data": {"samples_per_class": 200, "image_size": 24}, "train": {"epochs": 30}}


def test_a_second_writer_of_one_run_gets_one_line(runner, write_config, tmp_path: Path) -> None:
    config = write_config(SLOW_ENOUGH)
    first = start_train(config, "--name", "same", "--force")
    run = tmp_path / "runs" / "same"
    try:
        wait_for(run / "config.yaml", first)
        second = invoke(runner, "train", config, "--name", "same", "--force")
        one_line_error(second, 2, "another cnnctl process is writing this run")
        resumed = invoke(runner, "train", "--resume", run)
        one_line_error(resumed, 2, "another cnnctl process")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (run / "config.yaml").is_file()  # the first run's files are still there


def test_a_lock_left_by_sigkill_never_blocks_resume(runner, write_config, tmp_path: Path) -> None:
    config = write_config({**SLOW_ENOUGH, "train": {"epochs": 3}})
    process = start_train(config, "--name", "killed")
    run = tmp_path / "runs" / "killed"
    wait_for(run / "last.pt", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = invoke(runner, "train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert (run / "summary.json").is_file()


def test_resume_finishes_a_run_killed_after_its_last_checkpoint(runner, write_config, tmp_path: Path) -> None:
    config = write_config({"train": {"epochs": 2}, "output": {"plots": True}})
    assert invoke(runner, "train", config).exit_code == 0
    run = tmp_path / "runs" / "tiny"
    done = yaml.safe_load((run / "summary.json").read_text())
    for leftover in ("summary.json", "plots"):  # what the kill cut off: test, summary, plots
        shutil.rmtree(run / leftover) if (run / leftover).is_dir() else (run / leftover).unlink()
    result = invoke(runner, "train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert "epochs are done" in result.output
    again = yaml.safe_load((run / "summary.json").read_text())
    assert again["test"] == done["test"] and again["epochs_run"] == 2
    assert (run / "plots" / "curves.png").is_file()
    finished = invoke(runner, "train", "--resume", run)
    one_line_error(finished, 2, "finished its 2 epochs")


def unfinish(run: Path, epochs: int) -> None:
    """Make a finished run look like one stopped after its last epoch with `epochs` to go."""
    for name in ("last.pt",):
        data = torch.load(run / name, weights_only=True)
        data["config"]["train"]["epochs"] = epochs
        torch.save(data, run / name)
    (run / "summary.json").unlink()


def test_resume_refuses_a_foreign_best_pt(runner, write_config, tmp_path: Path) -> None:
    config = write_config({"train": {"epochs": 1}})
    assert invoke(runner, "train", config, "--name", "mine").exit_code == 0
    assert invoke(runner, "train", config, "--name", "other").exit_code == 0
    mine, other = tmp_path / "runs" / "mine", tmp_path / "runs" / "other"
    shutil.copy(other / "best.pt", mine / "best.pt")
    (mine / "summary.json").unlink()  # a run to finish: its test would use the foreign best.pt
    one_line_error(invoke(runner, "train", "--resume", mine), 2, "belongs to another run")
    shutil.copy(other / "last.pt", mine / "last.pt")
    one_line_error(invoke(runner, "train", "--resume", mine), 2, "belongs to another run")


def folder_config(tmp_path: Path, images: Path, **data: Any) -> Path:
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}, "train": {"epochs": 1}})
    cfg["data"] = {"source": "image_folder", "root": str(images), "image_size": 16, "batch_size": 8, **data}
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def folder_run(runner, write_config, tmp_path: Path) -> tuple[Path, Path, Path]:
    images = tmp_path / "shapes"
    write_image_folder(images, 3, 12, 16, 0, 0.05, None)
    config = folder_config(tmp_path, images, cache="off")
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "folder"
    unfinish(run, 2)
    return images, config, run


def test_resume_refuses_data_that_changed_unless_forced(runner, write_config, tmp_path: Path) -> None:
    images, _, run = folder_run(runner, write_config, tmp_path)
    for i in range(6):
        shutil.copy(images / "circle" / "00000.png", images / "circle" / f"extra{i}.png")
    refused = invoke(runner, "train", "--resume", run)
    one_line_error(refused, 2, "the data changed since the run started", "→", "--force")
    forced = invoke(runner, "train", "--resume", run, "--force")
    assert forced.exit_code == 0, forced.output
    assert "data changed since the run started" in forced.output


def test_resume_removes_stale_temp_files(runner, write_config, tmp_path: Path) -> None:
    _, _, run = folder_run(runner, write_config, tmp_path)
    stale = [run / ".cnnctl-tmp-999999-0-last.pt", run / ".last.pt.tmp-4242", run / ".summary.json.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    result = invoke(runner, "train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in stale)


# --------------------------------------------------------------------------------------
# 5. Every failure of the output path is one line
# --------------------------------------------------------------------------------------


def test_disk_full_during_a_checkpoint_is_one_line_and_no_temp_file(
    runner, write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config({"train": {"epochs": 1}})

    def full(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write(b"PK partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file"
        )

    monkeypatch.setattr(torch, "save", full)
    result = invoke(runner, "train", config)
    one_line_error(result, 1, "cannot write checkpoint", "disk full")
    run = tmp_path / "runs" / "tiny"
    assert not [p for p in run.iterdir() if "tmp" in p.name]


@pytest.mark.parametrize(
    "where",
    [
        "x" * 300 + ".csv",  # a name longer than the file system allows
        "afile/preds.csv",  # a folder that is a file
    ],
)
def test_a_bad_output_path_is_one_line(runner, trained_run: Path, tmp_path: Path, where: str) -> None:
    images = tmp_path / "images"
    write_image_folder(images, 3, 2, 16, 0, 0.05, None)
    (tmp_path / "afile").write_text("a file")
    out = str(tmp_path / where)
    one_line_error(invoke(runner, "predict", trained_run, images, "--out", out), (1, 2), "--out")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cnnctl-tmp")]
    one_line_error(
        invoke(runner, "evaluate", trained_run, "--no-plots", "--json", out[:-4] + ".json"),
        (1, 2),
    )


def test_a_bad_run_name_is_one_line(runner, write_config, tmp_path: Path) -> None:
    config = write_config({"train": {"epochs": 1}})
    one_line_error(invoke(runner, "train", config, "--name", "n" * 300), (1, 2), "File name too long")
    # A NUL byte cannot come from a shell's argv, but it can from YAML ("\0"):
    for output in ({"name": "bad\x00name"}, {"dir": str(tmp_path / "r\x00uns")}):
        config = write_config({"train": {"epochs": 1}, "output": output}, name="nul")
        one_line_error(invoke(runner, "train", config), (1, 2), "NUL")


def test_an_unwritable_runs_folder_is_one_line(runner, write_config, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the runs folder should be")
    config = write_config({"train": {"epochs": 1}, "output": {"dir": str(blocker / "runs")}})
    one_line_error(invoke(runner, "train", config), 1, "cannot create the runs folder")


def test_a_bad_file_with_image_checks_off_is_one_line_without_the_worker_traceback(
    runner, write_config, tmp_path: Path
) -> None:
    images = tmp_path / "shapes"
    write_image_folder(images, 3, 12, 16, 0, 0.05, None)
    (images / "circle" / "broken.png").write_bytes(b"not an image")
    config = folder_config(tmp_path, images, check_images=False, cache="off", num_workers=1)
    line = one_line_error(invoke(runner, "train", config), 2, "broken.png", "cannot read image")
    assert "worker" not in line and "Original Traceback" not in line


def crafted(run: Path, where: Path, change: dict[str, Any]) -> Path:
    data = torch.load(run / "best.pt", weights_only=True)
    data.update(change)
    path = where / "crafted.pt"
    torch.save(data, path)
    return path


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"classes": [1, 2, 3]}, "'classes'"),
        ({"classes": []}, "'classes'"),
        ({"classes": ["a", "a", "b"]}, "repeated"),
        ({"classes": ["a", "b"]}, "outputs for 2 classes"),
        (
            {"input": {"channels": 3, "size": [10**6, 16], "resize": None, "mean": [0] * 3, "std": [1] * 3}},
            "input.size",
        ),
        (
            {"input": {"channels": 300, "size": [16, 16], "resize": None, "mean": [0], "std": [1]}},
            "input.channels",
        ),
        ({"input": {"channels": 3, "size": [16, 16], "resize": None, "mean": [0], "std": [1]}}, "input.mean"),
        ({"output_kind": "banana"}, "output_kind"),
    ],
)
def test_a_crafted_checkpoint_is_one_line(
    runner, trained_run: Path, tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    path = crafted(trained_run, tmp_path, change)
    images = tmp_path / "images"
    write_image_folder(images, 3, 1, 16, 0, 0.05, None)
    for args in (("evaluate", path, "--no-plots"), ("predict", path, images), ("summary", path)):
        one_line_error(invoke(runner, *args), 2, "not a usable checkpoint", needle)


def test_nan_weights_are_refused_not_predicted(runner, trained_run: Path, tmp_path: Path) -> None:
    weights = torch.load(trained_run / "best.pt", weights_only=True)["model"]
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = torch.full_like(weights[first], float("nan"))
    path = crafted(trained_run, tmp_path, {"model": weights})
    images = tmp_path / "images"
    write_image_folder(images, 3, 1, 16, 0, 0.05, None)
    out = tmp_path / "p.csv"
    for args in (
        ("predict", path, images, "--out", out),
        ("evaluate", path, "--no-plots"),
        ("export", path, "-f", "torchscript", "--out", tmp_path / "m.ts.pt"),
    ):
        one_line_error(invoke(runner, *args), 2, "not finite")
    assert not out.exists() and not (tmp_path / "m.ts.pt").exists()


def test_data_synth_never_writes_into_a_users_folder_without_force(runner, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "circle").mkdir(parents=True)
    (folder / "circle" / "00000.png").write_bytes(b"my holiday photo")
    one_line_error(invoke(runner, "data", "synth", folder, "--per-class", "1"), 2, "not empty", "--force")
    assert (folder / "circle" / "00000.png").read_bytes() == b"my holiday photo"
    assert invoke(runner, "data", "synth", folder, "--per-class", "1", "--force").exit_code == 0


def test_a_temp_file_left_by_a_killed_writer_goes_with_the_next_write(tmp_path: Path) -> None:
    from cnnctl.core import atomic

    target = tmp_path / "preds.csv"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"{atomic.TEMP_PREFIX}{int(dead.stdout)}-0-preds.csv"
    stale.write_text("half")
    alive = tmp_path / f"{atomic.TEMP_PREFIX}{os.getppid()}-0-preds.csv"  # a live writer's: kept
    alive.write_text("in progress")
    atomic.write_text(target, "whole\n")
    assert target.read_text() == "whole\n" and not stale.exists() and alive.exists()


# --------------------------------------------------------------------------------------
# What the red-team pass found after the first round
# --------------------------------------------------------------------------------------


def test_resume_writes_only_into_a_marked_run_dir(runner, trained_run: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.yaml").write_text("NOTES\n")
    shutil.copy(trained_run / "last.pt", user / "last.pt")
    before = tree(user)
    result = invoke(runner, "train", "--resume", user / "last.pt", "--set", "train.epochs=5", "--force")
    one_line_error(result, 2, "not a cnnctl run dir")
    assert tree(user) == before


def test_resume_through_a_symlink_takes_the_real_run_dirs_lock(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    from cnnctl.artifacts.rundir import lock_run

    run = copy_run(trained_run, tmp_path)
    alias = tmp_path / "alias"
    alias.symlink_to(run, target_is_directory=True)
    held = lock_run(run.parent, run.name)
    try:
        result = invoke(runner, "train", "--resume", alias, "--set", "train.epochs=5", "--force")
        one_line_error(result, 2, "another cnnctl process")
    finally:
        held.release()


def test_force_never_deletes_a_folder_named_like_a_run_file(runner, write_config, tmp_path: Path) -> None:
    config = write_config({"train": {"epochs": 1}})
    assert invoke(runner, "train", config).exit_code == 0
    run = tmp_path / "runs" / "tiny"
    (run / "summary.json").unlink()
    (run / "summary.json" / "p").mkdir(parents=True)
    (run / "summary.json" / "p" / "thesis.txt").write_text("data")
    (run / ".thesis.tmp").write_text("mine")
    one_line_error(invoke(runner, "train", config, "--force"), 2, "did not write")
    assert (run / "summary.json" / "p" / "thesis.txt").read_text() == "data" and (
        run / ".thesis.tmp"
    ).exists()


def test_outputs_never_replace_an_export_of_a_run_or_a_lock_file(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    run = copy_run(trained_run, tmp_path)
    assert invoke(runner, "export", run, "-f", "torchscript").exit_code == 0
    images = tmp_path / "images"
    write_image_folder(images, 3, 1, 16, 0, 0.05, None)
    sidecar = run / "model.ts.pt.json"
    before = sidecar.read_bytes()
    one_line_error(
        invoke(runner, "predict", run, images, "--out", sidecar, "--force"), 2, "file of a cnnctl run"
    )
    assert sidecar.read_bytes() == before
    (run.parent / ".cnnctl-locks").mkdir(exist_ok=True)
    lock = run.parent / ".cnnctl-locks" / "x.json"
    one_line_error(invoke(runner, "evaluate", run, "--no-plots", "--json", lock), 2, "file of a cnnctl run")


def test_data_synth_replaces_symlinks_never_writes_through_them(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s"
    assert invoke(runner, "data", "synth", out, "--per-class", "2").exit_code == 0
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("THESIS")
    (out / "circle" / "00001.png").unlink()
    (out / "circle" / "00001.png").symlink_to(thesis)
    assert invoke(runner, "data", "synth", out, "--per-class", "2", "--force").exit_code == 0
    assert thesis.read_text() == "THESIS" and not (out / "circle" / "00001.png").is_symlink()
    run = copy_run(trained_run, tmp_path)
    one_line_error(invoke(runner, "data", "synth", run, "--force"), 2, "inside cnnctl's runs")
    (run.parent / ".cnnctl-locks").mkdir(exist_ok=True)  # as in every runs folder cnnctl wrote
    one_line_error(invoke(runner, "data", "synth", run.parent / "new", "--force"), 2, "inside cnnctl's runs")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"format_version": "abc"}, "format_version"),
        ({"config": "x"}, "'config'"),
        ({"temperature": -1.0}, "'temperature'"),
        ({"temperature": "hot"}, "'temperature'"),
        ({"temperature": float("nan")}, "'temperature'"),
        ({"temperature": 1e-300}, "'temperature'"),
        (
            {"input": {"channels": 3, "size": [True, True], "resize": None, "mean": [0] * 3, "std": [1] * 3}},
            "input.size",
        ),
        (
            {"input": {"channels": 3, "size": [32, 32], "resize": None, "mean": [0] * 3, "std": [1] * 3}},
            "input shape",
        ),
    ],
)
def test_more_crafted_checkpoints_are_one_line(
    runner, trained_run: Path, tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    path = crafted(trained_run, tmp_path, change)
    for args in (("evaluate", path, "--no-plots"), ("summary", path)):
        one_line_error(invoke(runner, *args), 2, needle)


@pytest.mark.parametrize("field", ["optimizer", "train_state", "rng"])
def test_a_crafted_last_pt_is_one_line_on_resume(
    runner, trained_run: Path, tmp_path: Path, field: str
) -> None:
    run = copy_run(trained_run, tmp_path)
    data = torch.load(run / "last.pt", weights_only=True)
    data[field] = {"epoch": 1} if field == "train_state" else {}
    torch.save(data, run / "last.pt")
    result = invoke(runner, "train", "--resume", run, "--set", "train.epochs=5", "--force")
    one_line_error(result, 2, "last.pt")


def test_an_absurd_lr_and_a_fifo_config_are_one_line(runner, write_config, tmp_path: Path) -> None:
    config = write_config()
    one_line_error(
        invoke(runner, "config", "validate", config, "--set", "optimizer.lr=1e300"), 2, "optimizer.lr"
    )
    fifo = tmp_path / "f.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    one_line_error(invoke(runner, "config", "validate", fifo), 2, "not a regular file")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"classes": []}, "'classes'"),
        ({"classes": ["a", "b", "c", "d"]}, "outputs for 4 classes"),
        ({"output_kind": "binary_logit"}, "outputs for 3 classes"),
        ({"output_kind": "foo"}, "output_kind"),
        ({"input": {"channels": 3, "size": [16, 16], "resize": -5, "mean": [0.5], "std": [1] * 3}}, "input."),
    ],
)
def test_a_crafted_export_sidecar_is_one_line(
    runner, trained_run: Path, tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    import json

    model = tmp_path / "m.onnx"
    assert invoke(runner, "export", trained_run, "--out", model).exit_code == 0
    sidecar = tmp_path / "m.onnx.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), **change}))
    images = tmp_path / "images"
    write_image_folder(images, 3, 1, 16, 0, 0.05, None)
    one_line_error(invoke(runner, "predict", model, images), 2, "not a usable sidecar", needle)


def test_under_torchrun_only_rank_0_probes_the_runs_lock(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rank prepares the resume; had each probed the run's lock, two probing at the
    same moment would each see the other and refuse (a flaky DDP resume)."""
    from cnnctl.artifacts.rundir import lock_run
    from cnnctl.workflows.resume import prepare_resume

    run = copy_run(trained_run, tmp_path)
    held = lock_run(run.parent, run.name)  # what the other rank's probe looks like from here
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        cfg, point = prepare_resume(run, None, ["train.epochs=5"], force=True)
        assert point.run_dir == run.resolve() and cfg.train.epochs == 5
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(CnnctlError, match="another cnnctl process is writing this run"):
            prepare_resume(run, None, ["train.epochs=5"], force=True)
    finally:
        held.release()
