"""`cnnctl config show` and `cnnctl config validate` (neither imports torch)."""

from __future__ import annotations

import typer

from cnnctl.cli.common import ConfigArg, SetOption, guarded, load


def config_show(config: ConfigArg, set_: SetOption = None) -> None:
    """Print the resolved config, every default filled in."""
    with guarded():
        from cnnctl.config import dump_yaml

        typer.echo(dump_yaml(load(config, set_)), nl=False)


def config_validate(config: ConfigArg, set_: SetOption = None) -> None:
    """Check a config without training (and without importing torch)."""
    with guarded():
        cfg = load(config, set_)
        typer.echo(
            f"{config}: ok ({cfg.data.source} data, model {cfg.model.name}, {cfg.train.epochs} epochs)"
        )
