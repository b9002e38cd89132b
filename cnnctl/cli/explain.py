"""`cnnctl explain`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnctl.cli.common import (
    CheckpointArg,
    DeviceOption,
    ForceOption,
    JsonFlag,
    guarded,
    make_console,
    print_json,
)


def explain(
    checkpoint: CheckpointArg,
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders (searched recursively).")],
    out: Annotated[Path, typer.Option(help="Folder for the PNGs (one per image).", show_default=False)],
    target: Annotated[
        str,
        typer.Option(
            help="Whose evidence to show: predicted (the model's label), true (the image's folder name), "
            "or a class name."
        ),
    ] = "predicted",
    layer: Annotated[
        str | None,
        typer.Option(
            help="The layer whose activations are weighed, by its dotted module name (default: the last conv block)."
        ),
    ] = None,
    device: DeviceOption = None,
    force: ForceOption = False,
    json_: JsonFlag = False,
) -> None:
    """Grad-CAM: one PNG per image with the heat map of where the model sees the class, its label and probability."""
    with guarded():
        from cnnctl.report.console import explain_table
        from cnnctl.workflows.explain import explain as explain_images
        from cnnctl.workflows.explain import plain

        rows, used = explain_images(
            checkpoint, paths, out, target=target, layer=layer, device=device or "auto", force=force
        )
        records = plain(rows)
        if json_:
            print_json({"layer": used, "images": records})
            return
        console = make_console()
        console.print(explain_table(records, used))
        written = sum(bool(r["png"]) for r in records)
        console.print(
            f"{written} PNGs in {out}"
            + (f", {len(records) - written} images unreadable" if written < len(records) else "")
        )
