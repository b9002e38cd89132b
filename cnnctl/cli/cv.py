"""`cnnctl cv`."""

from __future__ import annotations

from typing import Annotated

import typer

from cnnctl.cli.common import ConfigArg, JsonFlag, SetOption, guarded, load, make_console, print_json


def cv(
    config: ConfigArg,
    folds: Annotated[int, typer.Option(min=2, max=100, help="K: the number of folds.")] = 5,
    group_column: Annotated[
        str | None,
        typer.Option(
            help="Manifest column whose rows stay in one fold (a patient, a camera): data.group_column."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The cv folder under output.dir (default: the config's run name).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Train every fold again, replacing the folds already there.")
    ] = False,
    set_: SetOption = None,
    json_: JsonFlag = False,
) -> None:
    """K-fold cross-validation: every fold an ordinary run under <output.dir>/<name>/fold-<k>/."""
    with guarded():
        from cnnctl.artifacts.rundir import check_name
        from cnnctl.report.console import cv_table
        from cnnctl.workflows.cv import cv as run_cv

        cfg = load(config, set_)
        if group_column is not None:  # set as text: a column named 2024 is the column "2024"
            from cnnctl.config import validate
            from cnnctl.config.space import with_values

            cfg = validate(with_values(cfg.to_plain(), {"data.group_column": group_column}), str(config))
        chosen = name or cfg.output.name or config.stem
        check_name(chosen)
        console = make_console(stderr=json_)
        result = run_cv(cfg, folds, chosen, force=force, say=lambda line: console.print(line))
        plain = result.to_plain()
        if json_:
            print_json(plain)
            return
        console.print(cv_table(plain))
        console.print(f"cv.json and oof_predictions.csv in {result.folder}")
