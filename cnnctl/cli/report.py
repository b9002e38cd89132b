"""`cnnctl report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnctl.cli.common import DeviceOption, ForceOption, guarded, make_console


def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.", show_default=False)],
    out: Annotated[
        Path | None,
        typer.Option(help="Write the page here instead of <run>/report.html.", show_default=False),
    ] = None,
    device: DeviceOption = None,
    force: ForceOption = False,
) -> None:
    """One self-contained HTML page for a run (open it in any browser, offline): config, curves,
    per-class table, confusion matrix, reliability, ROC/PR, the most confidently wrong images with
    Grad-CAM, dataset counts and the data check."""
    with guarded():
        from cnnctl.workflows.report import report as write

        path, seconds = write(run_dir, out, force=force, device=device or "auto")
        make_console().print(f"report written to {path} in {seconds:.1f}s")
