"""`cnnctl data check` and `cnnctl data synth`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnctl.cli.common import (
    ConfigArg,
    JsonFlag,
    SetOption,
    guarded,
    load,
    make_console,
    print_json,
    printable,
    usage_error,
)


def data_check(config: ConfigArg, set_: SetOption = None, json_: JsonFlag = False) -> None:
    """Check a config's data without training: images per class and split, unreadable files.

    Every image of an image folder is fully decoded once (verdicts cached by path, size and
    mtime). Exit 0: all usable; 1: some files are unreadable (training skips them);
    2: a problem that stops training (missing folder, empty class, class mismatch, bad CSV).
    """
    with guarded():
        from cnnctl.report.console import data_check_tables
        from cnnctl.workflows.check import check_data

        result = check_data(load(config, set_))
        if json_:
            print_json(result)
        else:
            console = make_console()
            for table in data_check_tables(result):
                console.print(table)
        if result["unreadable"]:
            raise typer.Exit(1)


def data_synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the images into.", show_default=False)],
    classes: Annotated[int, typer.Option(min=2, max=6, help="Number of shape classes.")] = 4,
    per_class: Annotated[int, typer.Option(min=1, help="Images per class.")] = 100,
    size: Annotated[int, typer.Option(min=8, help="Image side in pixels.")] = 32,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    noise: Annotated[float, typer.Option(min=0.0, max=1.0, help="Background noise strength.")] = 0.1,
    splits: Annotated[
        bool, typer.Option("--splits/--flat", help="Write train/ val/ test/ (70/15/15) or one flat folder.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Write into OUT_DIR even if it holds files (same names are replaced)."),
    ] = False,
) -> None:
    """Write the synthetic shapes dataset as an image folder of PNG files."""
    with guarded():
        from cnnctl.data.synthetic import write_image_folder

        _check_target(out_dir, force)
        shares = {"train": 0.7, "val": 0.15, "test": 0.15} if splits else None
        counts = write_image_folder(out_dir, classes, per_class, size, seed, noise, shares)
        detail = (
            ", ".join(f"{n} {k}" for k, n in counts.items()) if splits else f"{sum(counts.values())} images"
        )
        typer.echo(f"wrote {detail} to {out_dir}")


def _check_target(out_dir: Path, force: bool) -> None:
    """`data synth` writes into an empty or new folder (a non-empty one with --force), never
    into a file or inside cnnctl's runs."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise usage_error(f"{printable(str(out_dir))}: exists and is not empty; add --force to write into it")
    if out_dir.exists() and not out_dir.is_dir():
        raise usage_error(f"{printable(str(out_dir))}: exists and is not a folder")
    from cnnctl.artifacts.rundir import LOCKS, MARKER

    inside_run = any((p / MARKER).is_file() or (p / LOCKS).is_dir() for p in (out_dir, *out_dir.parents))
    if inside_run:
        raise usage_error(f"{printable(str(out_dir))}: is inside cnnctl's runs; write the images elsewhere")
