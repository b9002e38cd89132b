"""The `cnnctl` command line. Thin: parse options, call `cnnctl.workflows`, print via `report`.

torch is imported only inside the commands that need it, so `cnnctl --help` and
`cnnctl config validate` answer without paying for it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cnnctl.errors import CnnctlError

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

T = TypeVar("T")


class Split(StrEnum):
    train = "train"
    val = "val"
    test = "test"


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set train.epochs=3 (repeatable)."),
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (overrides the config).")
]
ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
CheckpointArg = Annotated[
    Path, typer.Argument(help="A checkpoint (.pt) or a run directory (uses its best.pt).", show_default=False)
]


def _guard(action: Callable[[], T]) -> T:
    """Run a command body; a user-caused failure ends in one line and its exit code."""
    try:
        return action()
    except CnnctlError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _console() -> Any:
    from cnnctl.report import console_for

    return console_for()


def _load(config: Path, overrides: list[str] | None, extra: list[str] | None = None) -> Any:
    from cnnctl.config import load_config

    return load_config(config, [*(overrides or []), *(extra or [])])


@app.command()
def train(
    config: Annotated[
        Path | None,
        typer.Argument(help="YAML config file (optional with --resume).", show_default=False),
    ] = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    name: Annotated[str | None, typer.Option(help="Run name: the run goes to <output.dir>/<name>.")] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue a run from its last completed epoch: its run dir or its last.pt.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing run of the same name; with --resume, accept a changed "
            "train.epochs / patience / min_delta / grad_clip / nan_policy / deterministic.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch output.")] = False,
) -> None:
    """Train a model: train → validate every epoch → test best.pt at the end.

    Ctrl-C or SIGTERM stops at the next batch (exit 130 / 143); last.pt keeps the last
    completed epoch and `--resume RUN_DIR` continues from it.
    """

    def body() -> None:
        extra = [f"device={device}"] if device else []
        extra += [f"output.name={name}"] if name else []
        from cnnctl import workflows
        from cnnctl.report import ConsoleProgress, train_table

        point = None
        if resume is not None:
            if name:
                raise _usage("--name does not apply with --resume: the run continues in its own folder")
            cfg, point = workflows.prepare_resume(resume, config, [*(set_ or []), *extra], force)
            run_name = point.run_dir.name
        elif config is None:
            raise _usage("give a CONFIG file (or --resume RUN_DIR to continue a run)")
        else:
            cfg = _load(config, set_, extra)
            run_name = cfg.output.name or config.stem

        console = _console()
        progress = ConsoleProgress(console, live=sys.stderr.isatty(), quiet=quiet)
        outcome = workflows.train(
            cfg,
            run_name,
            force=force and resume is None,
            progress=progress,
            log=None if quiet else lambda m: console.print(m, highlight=False),
            resume=point,
        )
        console.print(train_table(outcome.summary))

    _guard(body)


@app.command()
def evaluate(
    checkpoint: CheckpointArg,
    data: Annotated[
        Path | None,
        typer.Option(help="An image folder or a config file to evaluate on (default: the run's own data)."),
    ] = None,
    split: Annotated[Split, typer.Option(help="Which split to evaluate.")] = Split.test,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Also report top-k accuracy.")] = 5,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write all metrics to this JSON file.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (default: the run's).")] = None,
    device: DeviceOption = None,
) -> None:
    """Loss, accuracy, top-k, per-class metrics and the confusion matrix of a checkpoint."""

    def body() -> None:
        from cnnctl import workflows
        from cnnctl.report import eval_tables, write_json

        result, what = workflows.evaluate(checkpoint, data, split.value, top_k, batch_size, device or "auto")
        plain = result.to_plain()
        console = _console()
        for table in eval_tables(plain, what):
            console.print(table)
        if json_out is not None:
            write_json(json_out, {"checkpoint": str(checkpoint), "evaluated": what, **plain})
            console.print(f"metrics written to {json_out}")

    _guard(body)


@app.command()
def predict(
    checkpoint: CheckpointArg,
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders (searched recursively).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Also list the k most likely labels.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write every row to this .csv or .json file.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    show: Annotated[int, typer.Option(min=0, help="Rows to show in the table.")] = 20,
    device: DeviceOption = None,
) -> None:
    """Label every image: path, label, probability (and top-k), with unreadable files listed."""

    def body() -> None:
        from cnnctl import workflows
        from cnnctl.report import predictions_table, write_predictions

        if out is not None and out.suffix.lower() not in (".csv", ".json"):
            raise _usage(f"--out {out}: use a .csv or .json file name")
        rows = workflows.predict(checkpoint, paths, top_k, batch_size, device or "auto")
        shown: list[dict[str, Any]] = []
        total = failed = 0
        for record in write_predictions(rows, out, top_k):
            total += 1
            failed += bool(record["error"])
            if len(shown) < show:
                shown.append(record)
        console = _console()
        console.print(predictions_table(shown, total, failed))
        if out is not None:
            console.print(f"{total} predictions written to {out}")

    _guard(body)


def _usage(message: str) -> CnnctlError:
    from cnnctl.errors import ConfigError

    return ConfigError(message)


@config_app.command("show")
def config_show(config: ConfigArg, set_: SetOption = None) -> None:
    """Print the resolved config, every default filled in."""

    def body() -> None:
        from cnnctl.config import dump_yaml

        typer.echo(dump_yaml(_load(config, set_)), nl=False)

    _guard(body)


@config_app.command("validate")
def config_validate(config: ConfigArg, set_: SetOption = None) -> None:
    """Check a config without training (and without importing torch)."""

    def body() -> None:
        cfg = _load(config, set_)
        typer.echo(
            f"{config}: ok ({cfg.data.source} data, model {cfg.model.name}, {cfg.train.epochs} epochs)"
        )

    _guard(body)


@data_app.command("synth")
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
) -> None:
    """Write the synthetic shapes dataset as an image folder of PNG files."""

    def body() -> None:
        from cnnctl.data.synthetic import write_image_folder

        shares = {"train": 0.7, "val": 0.15, "test": 0.15} if splits else None
        counts = write_image_folder(out_dir, classes, per_class, size, seed, noise, shares)
        detail = (
            ", ".join(f"{n} {k}" for k, n in counts.items()) if splits else f"{sum(counts.values())} images"
        )
        typer.echo(f"wrote {detail} to {out_dir}")

    _guard(body)


@app.command()
def models(json_: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the model names `model.name` accepts, with the pretrained weights of each."""

    def body() -> None:
        from cnnctl.models import list_models
        from cnnctl.models.transfer import describe

        torchvision = {row["name"]: row for row in describe()}
        rows = [
            torchvision.get(name, {"name": name, "family": name, "weights": [], "default_weights": None})
            for name in list_models()
        ]
        if json_:
            typer.echo(json.dumps(rows, indent=2))
            return
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            weights = f"  weights: {', '.join(row['weights'])}" if row["weights"] else ""
            typer.echo(f"{row['name']:<{width}}  {row['family']:<11}{weights}".rstrip())

    _guard(body)


@app.command()
def summary(
    target: Annotated[
        Path,
        typer.Argument(
            help="A YAML config (.yaml/.yml), a checkpoint (.pt) or a run directory.", show_default=False
        ),
    ],
    set_: SetOption = None,
    depth: Annotated[int, typer.Option(min=1, help="Nesting levels of layers to list.")] = 2,
    json_: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Layers, output shapes, parameter counts (total / trainable / frozen) and MACs of a model.

    A config's model is built as training builds it; a checkpoint's is rebuilt from it alone.
    Pretrained weights are never loaded or downloaded here.
    """

    def body() -> None:
        from cnnctl import summary as summaries

        if target.suffix.lower() in (".yaml", ".yml"):
            result = summaries.summarize_config(_load(target, set_), str(target), depth)
        else:
            if set_:
                raise _usage("--set applies to a config, not to a checkpoint")
            result = summaries.summarize_checkpoint(target, depth)
        if json_:
            typer.echo(json.dumps(result.to_plain(), indent=2))
        else:
            _console().print(summaries.summary_table(result))

    _guard(body)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        from cnnctl import __version__

        typer.echo(f"cnnctl {__version__}")
        raise typer.Exit()


def main() -> None:
    app()
