"""`cnnctl train` and `cnnctl lr-find`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cnnctl.cli.common import (
    ConfigArg,
    DeviceOption,
    ForceOption,
    SetOption,
    claim,
    emit_json,
    guarded,
    load,
    make_console,
    print_json,
    usage_error,
)

TrainConfigArg = Annotated[
    Path | None,
    typer.Argument(help="YAML config file (optional with --resume).", show_default=False),
]
NameOption = Annotated[str | None, typer.Option(help="Run name: the run goes to <output.dir>/<name>.")]
ResumeOption = Annotated[
    Path | None,
    typer.Option(
        help="Continue a run from its last completed epoch: its run dir or its last.pt.",
        show_default=False,
    ),
]
TrainForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing run of the same name (a cnnctl run holding only cnnctl's files) "
        "and an existing --json file; with --resume, accept a changed train.epochs / patience / "
        "min_delta / grad_clip / nan_policy / deterministic, and data that changed since the run began.",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch output.")]
SummaryJsonOption = Annotated[
    Path | None,
    typer.Option("--json", help="Write summary.json's content here too; '-' = stdout (implies --quiet)."),
]
NprocOption = Annotated[
    int,
    typer.Option(
        min=1,
        help="Processes on this machine (one per GPU): runs this command under torchrun with DDP; "
        "data.batch_size is per process.",
    ),
]
StepsOption = Annotated[
    int,
    typer.Option(
        min=10,
        help="Optimizer steps in the sweep, one lr each (a batch each, or train.accumulate "
        "batches; the train split is cycled as needed).",
    ),
]
PlotOption = Annotated[
    Path,
    typer.Option(help="Where to write the loss-vs-lr plot (PNG); relative to the current folder."),
]


def train(
    config: TrainConfigArg = None,
    set_: SetOption = None,
    device: DeviceOption = None,
    name: NameOption = None,
    resume: ResumeOption = None,
    force: TrainForceOption = False,
    quiet: QuietOption = False,
    json_out: SummaryJsonOption = None,
    nproc: NprocOption = 1,
) -> None:
    """Train a model: train → validate every epoch → test best.pt at the end.

    Ctrl-C or SIGTERM stops at the next batch (exit 130 / 143); last.pt keeps the last
    completed epoch and `--resume RUN_DIR` continues from it. Under torchrun
    (`torchrun --nproc_per_node N -m cnnctl train CONFIG`) every process trains its share
    of each batch and rank 0 alone writes the run (docs/distributed.md).
    """
    if nproc > 1:
        from cnnctl.runtime.relaunch import relaunch_under_torchrun

        args = _relaunch_args(config, set_, device, name, resume, json_out, force, quiet)
        raise typer.Exit(relaunch_under_torchrun(nproc, args, say=lambda line: typer.echo(line, err=True)))
    with guarded():
        claim(json_out, force, [p for p in (config, resume) if p is not None], "--json")
        cfg, run_name, point = _prepare(
            config, set_, [f"device={device}"] if device else [], name, resume, force
        )
        from cnnctl.report.console import ConsoleProgress, train_table
        from cnnctl.workflows import train as workflows

        silent = quiet or str(json_out) == "-"
        console = make_console(stderr=str(json_out) == "-")
        progress = ConsoleProgress(console, live=sys.stderr.isatty(), quiet=silent)
        outcome = workflows.train(
            cfg,
            run_name,
            force=force and resume is None,
            progress=progress,
            log=None if silent else lambda m: console.print(m, highlight=False),
            resume=point,
        )
        if outcome.main and not emit_json(json_out, outcome.summary):
            console.print(train_table(outcome.summary))


def _relaunch_args(
    config: Path | None,
    set_: list[str] | None,
    device: str | None,
    name: str | None,
    resume: Path | None,
    json_out: Path | None,
    force: bool,
    quiet: bool,
) -> list[str]:
    """The `cnnctl train` arguments each torchrun process gets: these options, less --nproc."""
    args = [str(config)] if config is not None else []
    for item in set_ or []:
        args += ["--set", item]
    options = {"--device": device, "--name": name, "--resume": resume, "--json": json_out}
    args += [part for key, value in options.items() if value is not None for part in (key, str(value))]
    args += [flag for flag, on in (("--force", force), ("--quiet", quiet)) if on]
    return args


def _prepare(
    config: Path | None,
    set_: list[str] | None,
    extra: list[str],
    name: str | None,
    resume: Path | None,
    force: bool,
) -> tuple[Any, str, Any]:
    """The config to train, the run's name and (with --resume) the point to continue from."""
    if resume is not None:
        from cnnctl.workflows.resume import prepare_resume

        if name:
            raise usage_error("--name does not apply with --resume: the run continues in its own folder")
        cfg, point = prepare_resume(resume, config, [*(set_ or []), *extra], force)
        return cfg, point.run_dir.name, point
    if config is None:
        raise usage_error("give a CONFIG file (or --resume RUN_DIR to continue a run)")
    cfg = load(config, set_, extra)
    if name:  # literally: a name is not YAML ('123', 'true', a control character)
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"name": name})})
    return cfg, cfg.output.name or config.stem, None


def lr_find(
    config: ConfigArg,
    set_: SetOption = None,
    device: DeviceOption = None,
    start: Annotated[float, typer.Option(min=0.0, help="Lowest lr of the sweep.")] = 1e-7,
    end: Annotated[float, typer.Option(min=0.0, help="Highest lr of the sweep.")] = 10.0,
    steps: StepsOption = 200,
    plot: PlotOption = Path("lr_find.png"),
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
    with guarded():
        from cnnctl.runtime.interrupt import StopSignals
        from cnnctl.workflows.lr_find import lr_find as range_test

        if not no_plot:
            claim(plot, force, [config], "--plot")
        cfg = load(config, set_, [f"device={device}"] if device else [])
        with StopSignals() as signals:
            title = f"lr range test: {config.name}"
            result, drawn = range_test(cfg, start, end, steps, None if no_plot else plot, title, signals)
        if json_:
            print_json({**result.to_plain(), "plot": str(drawn) if drawn else None})
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
