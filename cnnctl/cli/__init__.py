"""The `cnnctl` command line. Thin: parse options, call `cnnctl.workflows.train`, print via `report`.

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

from cnnctl.core.errors import CnnctlError, one_line

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
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Replace the output file if it exists (never an input or a checkpoint)."),
]
CheckpointArg = Annotated[
    Path, typer.Argument(help="A checkpoint (.pt) or a run directory (uses its best.pt).", show_default=False)
]


def _guard(action: Callable[[], T]) -> T:
    """Run a command body; a user-caused failure ends in one line and its exit code."""
    try:
        return action()
    except CnnctlError as err:
        typer.echo(f"error: {_printable(one_line(err))}", err=True)
        raise typer.Exit(err.exit_code) from None
    except OSError as err:  # a path the user gave that no check above foresaw: still one line
        where = f"{_printable(str(err.filename))}: " if err.filename else ""
        typer.echo(f"error: {where}{err.strerror or err}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _printable(text: str) -> str:
    """`text` safe for a terminal (report.printable: control characters and non-UTF-8 bytes
    escaped)."""
    from cnnctl.report.console import printable

    return printable(text)


def _console(stderr: bool = False) -> Any:
    from cnnctl.report.console import console_for

    return console_for(stderr=stderr)


def _emit_json(target: Path | None, data: Any) -> bool:
    """Write `data` as JSON to a file, or to stdout for '-'; True when it went to stdout."""
    if target is None:
        return False
    if str(target) == "-":
        typer.echo(json.dumps(data, indent=2))
        return True
    from cnnctl.core.atomic import write_json

    write_json(target, data)
    return False


def _claim(path: Path | None, force: bool, inputs: list[Path], option: str) -> None:
    """Before any work: may the command write `path` (not an input, not a checkpoint, an
    existing file only with --force)? '-' (stdout) and no path are always fine."""
    if path is None or str(path) == "-":
        return
    from cnnctl.artifacts.outputs import claim_output

    claim_output(path, force=force, inputs=inputs, option=option)


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
            help="Replace an existing run of the same name (a cnnctl run holding only cnnctl's files) "
            "and an existing --json file; with --resume, accept a changed train.epochs / patience / "
            "min_delta / grad_clip / nan_policy / deterministic, and data that changed since the run began.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch output.")] = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Write summary.json's content here too; '-' = stdout (implies --quiet)."),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes on this machine (one per GPU): runs this command under torchrun with DDP; "
            "data.batch_size is per process.",
        ),
    ] = 1,
) -> None:
    """Train a model: train → validate every epoch → test best.pt at the end.

    Ctrl-C or SIGTERM stops at the next batch (exit 130 / 143); last.pt keeps the last
    completed epoch and `--resume RUN_DIR` continues from it. Under torchrun
    (`torchrun --nproc_per_node N -m cnnctl train CONFIG`) every process trains its share
    of each batch and rank 0 alone writes the run (docs/distributed.md).
    """
    if nproc > 1:
        args = [str(config)] if config is not None else []
        for item in set_ or []:
            args += ["--set", item]
        options = {"--device": device, "--name": name, "--resume": resume, "--json": json_out}
        args += [part for key, value in options.items() if value is not None for part in (key, str(value))]
        args += [flag for flag, on in (("--force", force), ("--quiet", quiet)) if on]
        raise typer.Exit(_torchrun(nproc, args))

    def body() -> None:
        _claim(json_out, force, [p for p in (config, resume) if p is not None], "--json")
        extra = [f"device={device}"] if device else []
        point = None
        if resume is not None:
            from cnnctl.workflows import train as workflows

            if name:
                raise _usage("--name does not apply with --resume: the run continues in its own folder")
            cfg, point = workflows.prepare_resume(resume, config, [*(set_ or []), *extra], force)
            run_name = point.run_dir.name
        elif config is None:
            raise _usage("give a CONFIG file (or --resume RUN_DIR to continue a run)")
        else:
            cfg = _load(config, set_, extra)
            if name:  # literally: a name is not YAML ('123', 'true', a control character)
                cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"name": name})})
            run_name = cfg.output.name or config.stem
        from cnnctl.report.console import ConsoleProgress, train_table
        from cnnctl.workflows import train as workflows

        silent = quiet or str(json_out) == "-"
        console = _console(stderr=str(json_out) == "-")
        progress = ConsoleProgress(console, live=sys.stderr.isatty(), quiet=silent)
        outcome = workflows.train(
            cfg,
            run_name,
            force=force and resume is None,
            progress=progress,
            log=None if silent else lambda m: console.print(m, highlight=False),
            resume=point,
        )
        if outcome.main and not _emit_json(json_out, outcome.summary):
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
        Path | None,
        typer.Option("--json", help="Write all metrics to this JSON file; '-' = stdout instead of tables."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (default: the run's).")] = None,
    device: DeviceOption = None,
    plots: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the confusion matrix and most-confidently-wrong PNGs "
            "(default: the run's plots/).",
            show_default=False,
        ),
    ] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Draw no plots.")] = False,
    force: ForceOption = False,
) -> None:
    """Loss, accuracy, top-k, per-class metrics and the confusion matrix of a checkpoint."""

    def body() -> None:
        from cnnctl.artifacts.outputs import claim_plots
        from cnnctl.report.console import eval_tables
        from cnnctl.workflows import train as workflows

        inputs = [checkpoint, checkpoint / "best.pt", *([data] if data else [])]
        _claim(json_out, force, inputs, "--json")
        folder = (
            None
            if no_plots
            else plots or (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "plots"
        )
        if folder is not None:
            claim_plots(folder, [f"eval_{split.value}_confusion.png", f"eval_{split.value}_wrong.png"], force)
        result, what = workflows.evaluate(
            checkpoint, data, split.value, top_k, batch_size, device or "auto", plots_dir=folder
        )
        plain = result.to_plain()
        if _emit_json(json_out, {"checkpoint": str(checkpoint), "evaluated": what, **plain}):
            return
        console = _console()
        for table in eval_tables(plain, what):
            console.print(table)
        if folder is not None:
            console.print(f"plots in {folder}")
        if json_out is not None:
            console.print(f"metrics written to {json_out}")

    _guard(body)


@app.command()
def predict(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="A checkpoint (.pt), a run directory (uses its best.pt), or a model.onnx written by "
            "`cnnctl export` (read with its model.onnx.json sidecar, run on onnxruntime's CPU provider).",
            show_default=False,
        ),
    ],
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders (searched recursively).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Also list the k most likely labels.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write every row to this .csv or .json file.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    show: Annotated[int, typer.Option(min=0, help="Rows to show in the table.")] = 20,
    device: DeviceOption = None,
    force: ForceOption = False,
) -> None:
    """Label every image: path, label, probability (and top-k), with unreadable files listed.

    Works the same with an exported .onnx model: same preprocessing, same outputs.
    """

    def body() -> None:
        from cnnctl.report.console import predictions_table, write_predictions
        from cnnctl.workflows import train as workflows

        if out is not None and out.suffix.lower() not in (".csv", ".json"):
            raise _usage(f"--out {out}: use a .csv or .json file name")
        _claim(out, force, [checkpoint, *paths], "--out")
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


@app.command()
def export(
    checkpoint: CheckpointArg,
    format_: Annotated[
        str, typer.Option("--format", "-f", help="onnx, torchscript or state_dict.", show_default=True)
    ] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Model file to write (default: next to the checkpoint, model.onnx / model.ts.pt / "
            "model.state_dict.pt; last.pt gives last.onnx ...). A folder: that name inside it.",
            show_default=False,
        ),
    ] = None,
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

    def body() -> None:
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
            typer.echo(json.dumps({"checkpoint": str(checkpoint), **report.to_plain()}, indent=2))
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

    _guard(body)


def _torchrun(nproc: int, train_args: list[str]) -> int:
    """`cnnctl train --nproc N ...` = torchrun --standalone --nproc_per_node N -m cnnctl train ...;
    its exit code (non-zero as soon as any process fails: torchrun stops the others).

    A SIGTERM sent to this process goes on to torchrun, which passes it to every rank (each
    stops at its next batch, as one process does), and this process waits for them all: it
    never leaves the job running on its own. Ctrl-C already reaches every process through the
    terminal. A job that did not finish ends with one line saying so (exit 130 / 143 when
    stopped by a signal)."""
    import signal
    import subprocess

    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "cnnctl", "train", *train_args,
    ]  # fmt: skip
    typer.echo(f"launching: {' '.join(command[1:])}", err=True)
    received: list[signal.Signals] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signal.Signals(signum))
        if signum == signal.SIGTERM:
            launcher.send_signal(signum)

    launcher = subprocess.Popen(command)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = launcher.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        code = 128 + received[0].value
        typer.echo(f"error: {received[0].name}: the {nproc} processes stopped (see above)", err=True)
    elif code:
        typer.echo(
            f"error: the {nproc}-process job failed (torchrun exit code {code}); its first error is above",
            err=True,
        )
    return code


def _usage(message: str) -> CnnctlError:
    from cnnctl.core.errors import ConfigError

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


@data_app.command("check")
def data_check(
    config: ConfigArg,
    set_: SetOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Check a config's data without training: images per class and split, unreadable files.

    Every image of an image folder is fully decoded once (verdicts cached by path, size and
    mtime). Exit 0: all usable; 1: some files are unreadable (training skips them);
    2: a problem that stops training (missing folder, empty class, class mismatch, bad CSV).
    """

    def body() -> None:
        from cnnctl.report.console import data_check_tables
        from cnnctl.workflows import train as workflows

        result = workflows.check_data(_load(config, set_))
        if json_:
            typer.echo(json.dumps(result, indent=2))
        else:
            console = _console()
            for table in data_check_tables(result):
                console.print(table)
        if result["unreadable"]:
            raise typer.Exit(1)

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
    force: Annotated[
        bool,
        typer.Option("--force", help="Write into OUT_DIR even if it holds files (same names are replaced)."),
    ] = False,
) -> None:
    """Write the synthetic shapes dataset as an image folder of PNG files."""

    def body() -> None:
        from cnnctl.data.synthetic import write_image_folder

        if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
            raise _usage(f"{_printable(str(out_dir))}: exists and is not empty; add --force to write into it")
        if out_dir.exists() and not out_dir.is_dir():
            raise _usage(f"{_printable(str(out_dir))}: exists and is not a folder")
        from cnnctl.artifacts.rundir import LOCKS, MARKER

        inside_run = any((p / MARKER).is_file() or (p / LOCKS).is_dir() for p in (out_dir, *out_dir.parents))
        if inside_run:
            raise _usage(f"{_printable(str(out_dir))}: is inside cnnctl's runs; write the images elsewhere")

        shares = {"train": 0.7, "val": 0.15, "test": 0.15} if splits else None
        counts = write_image_folder(out_dir, classes, per_class, size, seed, noise, shares)
        detail = (
            ", ".join(f"{n} {k}" for k, n in counts.items()) if splits else f"{sum(counts.values())} images"
        )
        typer.echo(f"wrote {detail} to {out_dir}")

    _guard(body)


@app.command()
def runs(
    folder: Annotated[Path, typer.Argument(help="The runs folder (output.dir).")] = Path("runs"),
    json_: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Past runs in a folder: name, model, dataset, epochs, best val loss, test accuracy, date."""

    def body() -> None:
        from cnnctl.artifacts.rundir import list_runs
        from cnnctl.report.console import runs_table

        records = list_runs(folder)
        if json_:
            typer.echo(json.dumps(records, indent=2, default=str))
        else:
            _console().print(runs_table(records))

    _guard(body)


@app.command("lr-find")
def lr_find(
    config: ConfigArg,
    set_: SetOption = None,
    device: DeviceOption = None,
    start: Annotated[float, typer.Option(min=0.0, help="Lowest lr of the sweep.")] = 1e-7,
    end: Annotated[float, typer.Option(min=0.0, help="Highest lr of the sweep.")] = 10.0,
    steps: Annotated[
        int,
        typer.Option(
            min=10,
            help="Optimizer steps in the sweep, one lr each (a batch each, or train.accumulate "
            "batches; the train split is cycled as needed).",
        ),
    ] = 200,
    plot: Annotated[
        Path,
        typer.Option(help="Where to write the loss-vs-lr plot (PNG); relative to the current folder."),
    ] = Path("lr_find.png"),
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Draw no plot.")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print {suggested_lr, lrs, losses, ...} as JSON instead.")
    ] = False,
    force: ForceOption = False,
) -> None:
    """LR range test: train on CONFIG's data with the lr growing exponentially from --start to
    --end, one value per batch, and suggest an lr.

    Data, model, optimizer, loss and precision are built as `cnnctl train` builds them; the
    loss curve is smoothed (moving average, beta 0.98) and the sweep stops once it passes 4x
    its lowest value. The suggestion is one tenth of the lr at the smoothed loss's minimum.
    Writes nothing but the plot (no run dir, no checkpoint); `optimizer.lr: auto` runs the
    same sweep before training.
    """

    def body() -> None:
        from cnnctl.engine import lr_range as lrfind
        from cnnctl.runtime.interrupt import StopSignals

        if not no_plot:
            _claim(plot, force, [config], "--plot")
        cfg = _load(config, set_, [f"device={device}"] if device else [])
        with StopSignals() as signals:
            result = lrfind.find_lr(cfg, start, end, steps, signals=signals)
        drawn = None if no_plot else lrfind.plot(result, plot, f"lr range test: {config.name}")
        if json_:
            typer.echo(json.dumps({**result.to_plain(), "plot": str(drawn) if drawn else None}, indent=2))
        elif result.suggested_lr is not None:
            ran = f"{len(result.lrs)} of {result.steps} steps" if result.diverged else f"{result.steps} steps"
            typer.echo(
                f"suggested lr {result.suggested_lr:.3g} ({cfg.optimizer.name}; lowest smoothed loss at "
                f"lr {result.lowest_lr:.3g}; {ran}, lr {result.lrs[0]:.3g} to {result.lrs[-1]:.3g}"
                f"{', stopped as the loss diverged' if result.diverged else ''}); "
                f"train with --set optimizer.lr={result.suggested_lr:.3g}"
            )
        if drawn is not None and not json_:
            typer.echo(f"plot written to {drawn}")
        result.suggestion()  # none: exit 1 with the reason (after the plot, which shows why)

    _guard(body)


@app.command()
def models(json_: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the model names `model.name` accepts, with the pretrained weights of each."""

    def body() -> None:
        from cnnctl.core.catalog import model_rows

        rows = model_rows()
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
        from cnnctl.workflows import summary as summaries

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
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug detail (data, loaders, timings) on stderr.")
    ] = False,
) -> None:
    _setup_logging(verbose)
    if version:
        from cnnctl import __version__

        typer.echo(f"cnnctl {__version__}")
        raise typer.Exit()


def _setup_logging(verbose: bool) -> None:
    """cnnctl's log lines (warnings, info; debug with --verbose) go to stderr, one per line."""
    import logging

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            prefix = "warning: " if record.levelno >= logging.WARNING else ""
            typer.echo(f"{prefix}{_printable(record.getMessage())}", err=True)

    logger = logging.getLogger("cnnctl")
    logger.handlers = [h for h in logger.handlers if type(h).__name__ != "Echo"]
    logger.addHandler(Echo())
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def main() -> None:
    app()
