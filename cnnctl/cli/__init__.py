"""The `cnnctl` command line. Thin: parse options, call `cnnctl.workflows`, print via `report`.

`application` holds the Typer app and registers the commands; `common` what they share;
one module per command group (`train`, `evaluate`, `export`, `config_cmds`, `data_cmds`,
`runs`). torch is imported only inside the commands that need it, so `cnnctl --help` and
`cnnctl config validate` answer without paying for it.
"""

from __future__ import annotations

from cnnctl.cli.application import app, main

__all__ = ["app", "main"]
