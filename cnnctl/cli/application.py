"""The `cnnctl` Typer app: the root options (--version, --verbose), the `config` and `data`
groups, and every command registered from its module."""

from __future__ import annotations

from typing import Annotated

import typer

from cnnctl.cli import (
    calibrate,
    config_cmds,
    cv,
    data_cmds,
    evaluate,
    explain,
    export,
    report,
    runs,
    train,
    tune,
)
from cnnctl.cli.common import printable

app = typer.Typer(
    name="cnnctl",
    help="Train, evaluate and run image classifiers from one YAML file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)
data_app = typer.Typer(help="Dataset utilities.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")

app.command()(train.train)
app.command()(evaluate.evaluate)
app.command()(evaluate.predict)
app.command()(calibrate.calibrate)
app.command()(explain.explain)
app.command()(report.report)
app.command()(tune.tune)
app.command()(cv.cv)
app.command()(export.export)
config_app.command("show")(config_cmds.config_show)
config_app.command("validate")(config_cmds.config_validate)
data_app.command("check")(data_cmds.data_check)
data_app.command("synth")(data_cmds.data_synth)
app.command()(runs.runs)
app.command("lr-find")(train.lr_find)
app.command()(runs.models)
app.command()(runs.summary)


@app.callback(invoke_without_command=True)
def root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug detail (data, loaders, timings) on stderr.")
    ] = False,
) -> None:
    setup_logging(verbose)
    if version:
        import cnnctl

        typer.echo(f"cnnctl {cnnctl.__version__}")
        raise typer.Exit()


def setup_logging(verbose: bool) -> None:
    """cnnctl's log lines (warnings, info; debug with --verbose) go to stderr, one per line."""
    import logging

    from cnnctl.core.logs import install

    install(lambda line: typer.echo(printable(line), err=True), logging.DEBUG if verbose else logging.INFO)


def main() -> None:
    app()
