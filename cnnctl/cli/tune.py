"""`cnnctl tune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnctl.cli.common import ConfigArg, JsonFlag, SetOption, guarded, load, make_console, print_json


def tune(
    config: ConfigArg,
    space: Annotated[
        Path, typer.Option(help="YAML: dotted config keys → distributions.", show_default=False)
    ],
    trials: Annotated[int, typer.Option(min=1, max=100_000, help="Finished trials the study should hold.")],
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL shared by every tune process (default: sqlite in the study folder)."
        ),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: the config's run name).")] = None,
    pruner: Annotated[str, typer.Option(help="median (stop poor trials early) or none.")] = "median",
    set_: SetOption = None,
    json_: JsonFlag = False,
) -> None:
    """Search hyperparameters with Optuna: every trial an ordinary run under <output.dir>/<study>/."""
    with guarded():
        from cnnctl.artifacts.rundir import check_name
        from cnnctl.report.console import tune_table
        from cnnctl.workflows.tune import tune as run_tune

        cfg = load(config, set_)
        name = study or cfg.output.name or config.stem
        check_name(name)
        console = make_console(stderr=json_)
        result = run_tune(
            cfg, space, trials, name, storage=storage, pruner=pruner, say=lambda line: console.print(line)
        )
        plain = result.to_plain()
        if json_:
            print_json(plain)
            return
        for table in tune_table(plain):
            console.print(table)
        console.print(f"trials.csv, best.yaml and tune.json in {result.folder}")
