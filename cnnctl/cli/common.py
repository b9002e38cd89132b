"""What the commands share: the error guard, terminal-safe text, consoles, JSON output, the
output-path claim, config loading with `--set` overrides and the common option types.

Nothing here imports torch: library modules are imported inside the helpers that need them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnctl.core.errors import CnnctlError, one_line

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set train.epochs=3 (repeatable)."),
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (overrides the config).")
]
ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Replace the output file if it exists (never an input or a checkpoint)."),
]
CheckpointArg = Annotated[
    Path, typer.Argument(help="A checkpoint (.pt) or a run directory (uses its best.pt).", show_default=False)
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


@contextmanager
def guarded() -> Iterator[None]:
    """Run a command body; a user-caused failure ends in one line and its exit code."""
    try:
        yield
    except CnnctlError as err:
        typer.echo(f"error: {printable(one_line(err))}", err=True)
        raise typer.Exit(err.exit_code) from None
    except OSError as err:  # a path the user gave that no check above foresaw: still one line
        where = f"{printable(str(err.filename))}: " if err.filename else ""
        typer.echo(f"error: {where}{err.strerror or err}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def printable(text: str) -> str:
    """`text` safe for a terminal (report.printable: control characters and non-UTF-8 bytes
    escaped)."""
    from cnnctl.report.console import printable as escaped

    return escaped(text)


def make_console(stderr: bool = False) -> Any:
    from cnnctl.report.console import console_for

    return console_for(stderr=stderr)


def print_json(data: Any, **options: Any) -> None:
    """`data` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, **options))


def emit_json(target: Path | None, data: Any) -> bool:
    """Write `data` as JSON to a file, or to stdout for '-'; True when it went to stdout."""
    if target is None:
        return False
    if str(target) == "-":
        print_json(data)
        return True
    from cnnctl.core.atomic import write_json

    write_json(target, data)
    return False


def claim(path: Path | None, force: bool, inputs: list[Path], option: str) -> None:
    """Before any work: may the command write `path` (not an input, not a checkpoint, an
    existing file only with --force)? '-' (stdout) and no path are always fine."""
    if path is None or str(path) == "-":
        return
    from cnnctl.artifacts.outputs import claim_output

    claim_output(path, force=force, inputs=inputs, option=option)


def load(config: Path, overrides: list[str] | None, extra: list[str] | None = None) -> Any:
    """The config at `config` with `--set` overrides, then `extra` ones, applied."""
    from cnnctl.config import load_config

    return load_config(config, [*(overrides or []), *(extra or [])])


def usage_error(message: str) -> CnnctlError:
    """The error (exit 2) for options that do not fit together."""
    from cnnctl.core.errors import ConfigError

    return ConfigError(message)
