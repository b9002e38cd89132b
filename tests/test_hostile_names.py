"""Every name prints and writes as it is (issue 15, part 4).

Class names come from folder names, and a folder may be called anything the file system
allows: rich markup (`[bold]x[/bold]`, `[red]`), emoji codes (`:smile:`), control
characters (ESC, CR, tab, newline), bytes that are not UTF-8, a spreadsheet formula. On
the console such a name is never parsed or colourised, and its control characters and
odd bytes are shown escaped (`\\x1b`, `\\xff`); in CSV and JSON it is written as it is.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cnnctl.artifacts.predictions import write_predictions
from cnnctl.data.synthetic import write_image_folder
from cnnctl.report import console as report
from cnnctl.report.console import console_for, printable
from tests.conftest import TINY, invoke, merge

# The class folders' names, as bytes (how they are on disk), in folder sort order.
HOSTILE = [
    b"=SUM(1+2) 12",  # a spreadsheet formula, with a number rich would colour
    b"[bold red]x [i]y :smile:",  # markup (a folder name holds no "/", so no closing tag) and an emoji code
    b"caf\xe9-\xff",  # not UTF-8 (Latin-1 bytes): os.fsdecode gives 'caf\udce9-\udcff'
    b"esc\x1b[31m\rcr\ttab\nnl",  # ESC sequence, carriage return, tab, newline
]
NAMES = [os.fsdecode(name) for name in HOSTILE]
SHOWN = [
    "=SUM(1+2) 12",
    "[bold red]x [i]y :smile:",
    "caf\\xe9-\\xff",
    "esc\\x1b[31m\\rcr\\ttab\\nnl",
]


def test_printable_escapes_what_could_rewrite_a_terminal() -> None:
    assert [printable(name) for name in NAMES] == SHOWN
    assert printable("plain ünïcödé 名前 😀 a\\b") == "plain ünïcödé 名前 😀 a\\b"  # untouched
    assert printable("\x00\x7f\x9b\u202eevil\u2028") == "\\x00\\x7f\\x9b\\u202eevil\\u2028"
    assert printable("\ud800") == "\\ud800"  # a lone surrogate that is no escaped byte


def render(*renderables: Any, terminal: bool = False) -> str:
    buffer = io.StringIO()
    console = console_for(buffer)
    if terminal:  # colours on: a name must still not be parsed or highlighted
        console = report.VerbatimConsole(
            file=buffer, force_terminal=True, color_system="standard", width=200, highlight=False
        )
    for item in renderables:
        console.print(item)
    return buffer.getvalue()


def test_every_table_shows_names_verbatim() -> None:
    per_class = [
        {"class": n, "support": 1, "correct": 1, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
        for n in NAMES
    ]
    evaluation = {
        "count": 4,
        "loss": 0.1,
        "accuracy": 1.0,
        "topk": {"1": 1.0},
        "per_class": per_class,
        "classes": NAMES,
        "confusion_matrix": [[1 if i == j else 0 for j in range(4)] for i in range(4)],
    }
    check = {
        "source": "image_folder",
        "splits": {"train": dict.fromkeys(NAMES, 3)},
        "unreadable": [{"path": f"d/{NAMES[3]}/a.png", "reason": "bad [b]x"}],
    }
    runs = [
        {
            "name": NAMES[1],
            "status": "done",
            "model": "m",
            "dataset": NAMES[0],
            "epochs": 1,
            "best_val_loss": 1.0,
            "test_acc": None,
            "date": "2024-01-01T00:00:00",
        },
        {"name": NAMES[2], "status": "running"},
    ]
    records = [{"path": f"d/{n}/x.png", "label": n, "probability": 0.5, "error": ""} for n in NAMES]
    tables = [
        *report.eval_tables(evaluation, f"d/{NAMES[1]}"),
        *report.data_check_tables(check),
        report.runs_table(runs),
        report.predictions_table(records, 4, 0),
        report.train_table(
            {
                "run_dir": f"runs/{NAMES[3]}",
                "stopped_early": False,
                "epochs_run": 1,
                "best_epoch": 1,
                "best_val_loss": 1.0,
                "best_val_acc": 0.5,
                "test": None,
            }
        ),
    ]
    for terminal in (False, True):
        text = render(*tables, f"plots in runs/{NAMES[1]}/{NAMES[3]}", terminal=terminal)
        for shown in SHOWN:
            assert shown in text  # in the class, path, run and title cells alike
        assert "\r" not in text and "\t" not in text and "\udcff" not in text
        if not terminal:
            assert "\x1b" not in text
        assert "bad [b]x" in text and "😄" not in text


def test_highlighting_and_markup_stay_off_on_a_colour_terminal() -> None:
    text = render(
        report.predictions_table(
            [{"path": "a 123 [red]b", "label": "x", "probability": None, "error": ""}], 1, 0
        ),
        terminal=True,
    )
    assert "a 123 [red]b" in text  # no colour codes inside the name, no markup eaten


def hostile_folder(root: Path) -> None:
    """`data synth` output with its four class folders renamed to the HOSTILE names."""
    write_image_folder(root, 4, 6, 16, seed=0, noise=0.1)
    synth = sorted(p.name for p in root.iterdir())
    for old, new in zip(synth, HOSTILE, strict=True):
        os.rename(os.fsencode(root / old), os.path.join(os.fsencode(root), new))


def test_hostile_class_names_survive_train_evaluate_predict(runner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    hostile_folder(data)
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs"), "plots": True}, "train": {"epochs": 1}})
    cfg["data"] = {
        "source": "image_folder",
        "root": str(data),
        "image_size": 16,
        "batch_size": 8,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
    }
    run_name = "run [bold]\x1b[2J :smile:"  # in the config: --name cannot pass an ESC
    cfg["output"]["name"] = run_name
    config = tmp_path / "hostile.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "runs" / run_name

    checked = invoke(runner, "data", "check", config)
    assert checked.exit_code == 0, checked.output
    assert all(shown in checked.output for shown in SHOWN) and "\x1b" not in checked.output

    trained = invoke(runner, "train", config)
    assert trained.exit_code == 0, trained.output
    assert "\x1b" not in trained.output and "run [bold]\\x1b[2J :smile:" in trained.output
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["classes"] == NAMES  # JSON's \udcXX escapes read back to the same names
    assert torch.load(run / "best.pt", weights_only=True)["classes"] == NAMES
    assert (run / "plots" / "confusion_test.png").is_file()  # drawn, names and all

    evaluated = invoke(runner, "evaluate", run, "--json", tmp_path / "eval.json", "--no-plots")
    assert evaluated.exit_code == 0, evaluated.output
    assert [row["class"] for row in json.loads((tmp_path / "eval.json").read_text())["per_class"]] == NAMES
    table = invoke(runner, "evaluate", run, "--plots", tmp_path / "plots")
    assert table.exit_code == 0, table.output
    assert all(shown in table.output for shown in SHOWN)
    assert "\x1b" not in table.output and "\r" not in table.output
    assert (tmp_path / "plots" / "eval_test_wrong.png").is_file()

    files = sorted(os.path.join(top, f) for top, _, names in os.walk(data) for f in names)
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    for out in (out_csv, out_json):
        predicted = invoke(runner, "predict", run, data, "--out", out, "--show", "24")
        assert predicted.exit_code == 0, predicted.output
        assert "\x1b" not in predicted.output
        assert all(printable(f) in predicted.output for f in files)
    with open(out_csv, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == files  # the bytes of every name round-trip
    assert all(os.path.exists(os.fsencode(r["path"])) for r in rows)
    assert {r["label"] for r in rows} <= set(NAMES) and not any(r["error"] for r in rows)
    raw = out_csv.read_bytes()
    assert b"\xe9-\xff/" in raw and b"/=SUM(1+2) 12/" in raw  # the bytes as they are on disk
    records = json.loads(out_json.read_text(encoding="utf-8"))
    assert [r["path"] for r in records] == files and all(r["label"] in NAMES for r in records)
    assert out_json.read_bytes().isascii()  # \udcXX escapes, not raw bytes

    listed = invoke(runner, "runs", tmp_path / "runs")
    assert listed.exit_code == 0, listed.output
    assert "run [bold]\\x1b[2J :smile:" in listed.output and "\x1b" not in listed.output


@pytest.mark.parametrize("name", NAMES)
def test_a_hostile_run_name_in_a_console_line(name: str) -> None:
    buffer = io.StringIO()
    console = console_for(buffer)  # f"plots in {folder}" and the like: never parsed as markup
    console.print(f"run dir runs/{name}")
    assert buffer.getvalue() == f"run dir runs/{printable(name)}\n"


def test_prediction_files_hold_cells_as_they_are(tmp_path: Path) -> None:
    """A cell starting with = + - @ is written as it is, not prefixed: the CSV is data for
    programs and a path must round-trip (docs/reliability.md says what a spreadsheet does)."""
    from cnnctl.workflows.predict import Prediction

    cells = ["=SUM(1+2)", "+1", "-1", "@x", NAMES[2], NAMES[3]]
    rows = [Prediction(f"d/{c}.png", c, 0.5, [(c, 0.5)], "") for c in cells]
    rows.append(Prediction(f"d/{NAMES[3]}.png", "", None, [], f"OSError: {NAMES[3]} [b]"))
    for suffix in (".csv", ".json"):
        out = tmp_path / f"p{suffix}"
        records = list(write_predictions(iter(rows), out, topk=1))
        assert len(records) == len(rows)
        if suffix == ".csv":
            with open(out, newline="", encoding="utf-8", errors="surrogateescape") as handle:
                back = list(csv.DictReader(handle))
            assert [r["label"] for r in back] == [*cells, ""]
            assert back[-1]["error"] == f"OSError: {NAMES[3]} [b]"
        else:
            back = json.loads(out.read_text(encoding="ascii"))
            assert [r["label"] for r in back] == [*cells, ""] and back[-1]["probability"] is None
        assert [r["path"] for r in back] == [r.path for r in rows]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_a_prediction_file_appears_only_when_complete(tmp_path: Path) -> None:
    from cnnctl.workflows.predict import Prediction

    out = tmp_path / "p.csv"
    stream = write_predictions(iter([Prediction("a.png", "x", 0.5, [], "")] * 3), out, topk=1)
    next(stream)
    assert not out.exists()  # written to a temp file beside it ...
    stream.close()  # ... and a stream stopped early leaves neither
    assert list(tmp_path.iterdir()) == []
