"""`cnnctl export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnctl.cli.common import CheckpointArg, ForceOption, guarded, print_json

OutOption = Annotated[
    Path | None,
    typer.Option(
        help="Model file to write (default: next to the checkpoint, model.onnx / model.ts.pt / "
        "model.state_dict.pt; last.pt gives last.onnx ...). A folder: that name inside it.",
        show_default=False,
    ),
]


def export(
    checkpoint: CheckpointArg,
    format_: Annotated[
        str, typer.Option("--format", "-f", help="onnx, torchscript or state_dict.", show_default=True)
    ] = "onnx",
    out: OutOption = None,
    dynamic_batch: Annotated[
        bool, typer.Option("--dynamic-batch", help="ONNX: any batch size (default: a fixed batch of 1).")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="Largest max abs output difference the verification accepts.")
    ] = 1e-4,
    opset: Annotated[int, typer.Option(min=18, help="ONNX opset version.")] = 18,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    force: ForceOption = False,
) -> None:
    """Export a checkpoint to ONNX, TorchScript or a plain state_dict, verified before it is kept.

    Writes the model file and FILE.json (classes, input shape, resize/crop, mean/std, output
    kind, how to rebuild the architecture). ONNX is checked with onnx.checker and by running
    the same batch through onnxruntime and PyTorch; a difference above --tolerance fails (exit 1)
    and writes nothing. ONNX needs: pip install 'cnnctl[export]'.
    """
    with guarded():
        from cnnctl.workflows.export import export_checkpoint

        report = export_checkpoint(
            checkpoint,
            format_,
            out,
            dynamic_batch=dynamic_batch,
            tolerance=tolerance,
            opset=opset,
            force=force,
        )
        if json_:
            print_json({"checkpoint": str(checkpoint), **report.to_plain()})
            return
        details = [report.format, f"opset {report.opset}" if report.opset else ""]
        details.append({True: "any batch size", False: "fixed batch of 1", None: ""}[report.dynamic_batch])
        typer.echo(f"exported {checkpoint} → {report.path} ({', '.join(d for d in details if d)})")
        typer.echo(f"sidecar {report.sidecar} (classes, input shape, resize/crop, mean/std, architecture)")
        if report.max_abs_diff is None:
            typer.echo("not verified: no rebuild recipe for this model")
        else:
            typer.echo(
                f"verified with {report.verified_with}: max abs diff {report.max_abs_diff:.3g} "
                f"(tolerance {report.tolerance:g})"
            )
