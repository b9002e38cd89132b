"""Plots are real PNGs of a sensible size."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cnnctl.report import plots


def assert_png(path: Path, min_side: int = 300) -> None:
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and min(img.size) >= min_side
        grey = img.convert("L")
        assert (
            grey.getextrema()[0] < 100 and len(grey.histogram()) - grey.histogram().count(0) > 10
        )  # not blank


def test_curves_png(tmp_path: Path) -> None:
    history = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 1.2 / e,
            "train_acc": 1 - 1 / (e + 1),
            "val_acc": 0.9 - 1 / (e + 2),
        }
        for e in range(1, 6)
    ]
    assert_png(plots.curves(history, 4, tmp_path / "plots" / "curves.png"))


def test_confusion_png(tmp_path: Path) -> None:
    out = plots.confusion(
        [[5, 1, 0], [2, 7, 1], [0, 0, 9]], ["a", "b", "c"], tmp_path / "cm.png", title="test"
    )
    assert_png(out)
