"""`cnnctl runs`, `cnnctl models` and `cnnctl summary`: what there is, without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnctl.cli.common import JsonFlag, SetOption, guarded, load, make_console, print_json, usage_error


def runs(
    folder: Annotated[Path, typer.Argument(help="The runs folder (output.dir).")] = Path("runs"),
    json_: JsonFlag = False,
) -> None:
    """Past runs in a folder: name, model, dataset, epochs, best val loss, test accuracy, date."""
    with guarded():
        from cnnctl.artifacts.rundir import list_runs
        from cnnctl.report.console import runs_table

        records = list_runs(folder)
        if json_:
            print_json(records, default=str)
        else:
            make_console().print(runs_table(records))


def models(json_: JsonFlag = False) -> None:
    """List the model names `model.name` accepts, with the pretrained weights of each."""
    with guarded():
        from cnnctl.core.catalog import model_rows

        rows = model_rows()
        if json_:
            print_json(rows)
            return
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            weights = f"  weights: {', '.join(row['weights'])}" if row["weights"] else ""
            typer.echo(f"{row['name']:<{width}}  {row['family']:<11}{weights}".rstrip())


def summary(
    target: Annotated[
        Path,
        typer.Argument(
            help="A YAML config (.yaml/.yml), a checkpoint (.pt) or a run directory.", show_default=False
        ),
    ],
    set_: SetOption = None,
    depth: Annotated[int, typer.Option(min=1, help="Nesting levels of layers to list.")] = 2,
    json_: JsonFlag = False,
) -> None:
    """Layers, output shapes, parameter counts (total / trainable / frozen) and MACs of a model.

    A config's model is built as training builds it; a checkpoint's is rebuilt from it alone.
    Pretrained weights are never loaded or downloaded here.
    """
    with guarded():
        from cnnctl.workflows import summary as summaries

        if target.suffix.lower() in (".yaml", ".yml"):
            result = summaries.summarize_config(load(target, set_), str(target), depth)
        else:
            if set_:
                raise usage_error("--set applies to a config, not to a checkpoint")
            result = summaries.summarize_checkpoint(target, depth)
        if json_:
            print_json(result.to_plain())
        else:
            make_console().print(summaries.summary_table(result))
