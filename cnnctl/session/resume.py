"""How a run continues (`cnnctl train --resume RUN_DIR [CONFIG]`, a `cnnctl cv` fold): config and state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.artifacts.resume import ResumePoint
from cnnctl.artifacts.rundir import lock_run
from cnnctl.config import RunConfig, load_config, validate
from cnnctl.core.errors import CheckpointError, ConfigError
from cnnctl.runtime.distributed import Dist
from cnnctl.session.resolve import resolve_config


def prepare_resume(
    target: str | Path, config: str | Path | None, overrides: Sequence[str], force: bool
) -> tuple[RunConfig, ResumePoint]:
    """The config and state `cnnctl train --resume TARGET [CONFIG]` continues with.

    TARGET is a run directory or its last.pt. Without CONFIG the run's own config is used
    (plus `--set` overrides); either way the config may differ from the run's only as
    `resume.check_resumable` allows.
    """
    from cnnctl.config.resume import check_resumable

    path = Path(target)
    last = path / "last.pt" if path.is_dir() else path
    last = last.parent.resolve() / last.name  # one lock per real run dir, whatever link leads to it
    from cnnctl.artifacts.rundir import MARKER

    if last.parent.is_dir() and not (last.parent / MARKER).is_file():
        raise ConfigError(
            f"{last.parent}: not a cnnctl run dir (no {MARKER} marker), so resume will not write there; "
            f"if it is a run of a cnnctl from before run markers, create the marker: echo '{{}}' > "
            f"{last.parent / MARKER}"
        )
    if last.parent.is_dir() and Dist.launched_main():
        # A run another process is writing: say so before reading its files. Rank 0 alone
        # asks (it alone takes the run's lock to train): two ranks probing the one lock at
        # the same moment would each see the other and refuse.
        lock_run(last.parent.parent, last.parent.name).release()
    if last.name == "best.pt":
        raise ConfigError(f"{last}: resume from last.pt (best.pt holds no optimizer or RNG state)")
    data = ckpt.load_checkpoint(last)
    if "train_state" not in data:
        raise CheckpointError(f"{last}: holds no training state to resume from (not a last.pt?)")
    stored = validate(data["config"], f"{last} (its config)")
    if config is None:
        cfg = load_config(None, overrides, base=data["config"])
    else:
        cfg = load_config(config, overrides)
        if cfg.optimizer.lr == "auto":  # the run's sweep already chose it: keep that number
            cfg = cfg.model_copy(
                update={"optimizer": cfg.optimizer.model_copy(update={"lr": stored.optimizer.lr})}
            )
        cfg = resolve_config(cfg)
    check_resumable(stored.to_plain(), cfg.to_plain(), force, str(config or last))
    if cfg.output != stored.output:  # the run continues where it is
        cfg = cfg.model_copy(update={"output": stored.output})
    return cfg, ResumePoint(last.parent, data, force)
