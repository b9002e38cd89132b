"""`cnnctl evaluate` and `cnnctl predict`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnctl.cli.common import (
    CheckpointArg,
    DeviceOption,
    ForceOption,
    claim,
    emit_json,
    guarded,
    make_console,
    usage_error,
)


class Split(StrEnum):
    train = "train"
    val = "val"
    test = "test"


PlotsOption = Annotated[
    Path | None,
    typer.Option(
        help="Folder for the confusion matrix and most-confidently-wrong PNGs (default: the run's plots/).",
        show_default=False,
    ),
]
TtaViewsOption = Annotated[
    str | None,
    typer.Option(
        "--tta-views",
        help="These TTA views instead (implies --tta): hflip, vflip, crops, shifts, comma-separated.",
    ),
]
PredictCheckpointArg = Annotated[
    Path,
    typer.Argument(
        help="A checkpoint (.pt), a run directory (uses its best.pt), or a model.onnx written by "
        "`cnnctl export` (read with its model.onnx.json sidecar, run on onnxruntime's CPU provider).",
        show_default=False,
    ),
]


def evaluate(
    checkpoint: CheckpointArg,
    data: Annotated[
        Path | None,
        typer.Option(help="An image folder or a config file to evaluate on (default: the run's own data)."),
    ] = None,
    split: Annotated[Split, typer.Option(help="Which split to evaluate.")] = Split.test,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Also report top-k accuracy.")] = 5,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write all metrics to this JSON file; '-' = stdout instead of tables."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (default: the run's).")] = None,
    device: DeviceOption = None,
    plots: PlotsOption = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Draw no plots.")] = False,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Also report the metrics with test-time augmentation (probabilities averaged over "
            "the views data.tta names; auto: those the training augmentation implies).",
        ),
    ] = False,
    tta_views: TtaViewsOption = None,
    force: ForceOption = False,
) -> None:
    """Loss, accuracy, top-k, per-class metrics and the confusion matrix of a checkpoint."""
    with guarded():
        from cnnctl.report.console import eval_tables
        from cnnctl.workflows.evaluate import evaluate as evaluate_checkpoint

        inputs = [checkpoint, checkpoint / "best.pt", *([data] if data else [])]
        claim(json_out, force, inputs, "--json")
        folder = None if no_plots else _plots_folder(checkpoint, plots, split.value, force)
        result, what = evaluate_checkpoint(
            checkpoint,
            data,
            split.value,
            top_k,
            batch_size,
            device or "auto",
            plots_dir=folder,
            tta=_tta(tta, tta_views),
        )
        plain = result.to_plain()
        if emit_json(json_out, {"checkpoint": str(checkpoint), "evaluated": what, **plain}):
            return
        console = make_console()
        for table in eval_tables(plain, what):
            console.print(table)
        if folder is not None:
            console.print(f"plots in {folder}")
        if json_out is not None:
            console.print(f"metrics written to {json_out}")


def predict(
    checkpoint: PredictCheckpointArg,
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders (searched recursively).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Also list the k most likely labels.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write every row to this .csv or .json file.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    show: Annotated[int, typer.Option(min=0, help="Rows to show in the table.")] = 20,
    device: DeviceOption = None,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta", help="Average the probabilities over the model's test-time augmentation views."
        ),
    ] = False,
    tta_views: TtaViewsOption = None,
    force: ForceOption = False,
) -> None:
    """Label every image: path, label, probability (and top-k), with unreadable files listed.

    Works the same with an exported .onnx model: same preprocessing, same outputs.
    """
    with guarded():
        from cnnctl.artifacts.predictions import write_predictions
        from cnnctl.report.console import predictions_table
        from cnnctl.workflows.predict import predict as predict_images

        if out is not None and out.suffix.lower() not in (".csv", ".json"):
            raise usage_error(f"--out {out}: use a .csv or .json file name")
        claim(out, force, [checkpoint, *paths], "--out")
        rows = predict_images(
            checkpoint, paths, top_k, batch_size, device or "auto", tta=_tta(tta, tta_views)
        )
        shown: list[dict[str, Any]] = []
        total = failed = 0
        for record in write_predictions(rows, out, top_k):
            total += 1
            failed += bool(record["error"])
            if len(shown) < show:
                shown.append(record)
        console = make_console()
        console.print(predictions_table(shown, total, failed))
        if out is not None:
            console.print(f"{total} predictions written to {out}")


def _plots_folder(checkpoint: Path, plots: Path | None, split: str, force: bool) -> Path:
    """Where evaluate draws (default: the run's plots/), its PNG names claimed first."""
    from cnnctl.artifacts.outputs import claim_plots

    folder = plots or (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "plots"
    kinds = ("confusion", "wrong", "pr", "roc", "reliability")  # multi_label: no confusion or wrong grid
    claim_plots(folder, [f"eval_{split}_{kind}.png" for kind in kinds], force)
    return folder


def _tta(flag: bool, views: str | None) -> bool | list[str]:
    """--tta / --tta-views as the workflows take them: False, True (the model's views) or names."""
    if views is None:
        return flag
    from cnnctl.data.tta import parse_names

    return parse_names(views)
