"""`cnnctl calibrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnctl.cli.common import CheckpointArg, DeviceOption, JsonFlag, guarded, make_console, print_json
from cnnctl.cli.evaluate import Split


def calibrate(
    checkpoint: CheckpointArg,
    data: Annotated[
        Path | None,
        typer.Option(
            help="A labelled image folder or a config file to fit on (default: the run's own data)."
        ),
    ] = None,
    split: Annotated[
        Split, typer.Option(help="Which split of the run's (or --data config's) data.")
    ] = Split.val,
    out: Annotated[
        Path | None,
        typer.Option(help="The new checkpoint (default: best.calibrated.pt beside the checkpoint)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace --out if it exists, even a checkpoint (the input included)."),
    ] = False,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (default: the run's).")] = None,
    device: DeviceOption = None,
    json_: JsonFlag = False,
) -> None:
    """Refit the temperature that calibrates a checkpoint's probabilities on a labelled set, and
    write it as a new checkpoint (decisions unchanged; ECE and NLL before and after shown)."""
    with guarded():
        from cnnctl.workflows.calibrate import calibrate_checkpoint

        record = calibrate_checkpoint(
            checkpoint, data, split.value, out, force=force, batch_size=batch_size, device=device or "auto"
        )
        if json_:
            print_json(record)
            return
        console = make_console()
        console.print(
            f"calibrated on {record['calibrated_on']}: temperature {record['temperature_before']:g} → "
            f"{record['temperature']:g}, ECE {record['ece_before']:.4f} → {record['ece_after']:.4f}, "
            f"NLL {record['nll_before']:.4f} → {record['nll_after']:.4f}",
            markup=False,
            highlight=False,
        )
        console.print(f"written to {record['out']}", markup=False, highlight=False)
