"""What may change when a run is resumed (`cnnctl train --resume RUN_DIR`).

A resumed run must continue the run it resumes, so its config is compared with the one
stored in last.pt, key by dotted key:

- FREE keys change nothing a run computes (where it runs, how data is fed): accepted;
- SAFE keys change when or how the run stops, not the model, data or optimiser state:
  accepted with `--force`;
- any other difference (model, data, optimiser, schedule, loss, seed, ...) is refused, with
  the differing keys listed: that would be a different run, not this one continued.
"""

from __future__ import annotations

from typing import Any

from cnnctl.core.errors import ConfigError

FREE = frozenset(
    {
        "device",
        "data.num_workers",
        "data.pin_memory",
        "data.cache",
        "data.check_images",
        "model.cache_features",
        "train.channels_last",
        "train.compile",
        "output.dir",
        "output.name",
        "output.plots",
        "logging.tensorboard",
        "logging.mlflow",
        "logging.mlflow_uri",
        "logging.mlflow_experiment",
        "logging.mlflow_checkpoints",
    }
)
SAFE = frozenset(
    {
        "train.epochs",
        "train.patience",
        "train.min_delta",
        "train.grad_clip",
        "train.nan_policy",
        "train.deterministic",
    }
)


def flatten(plain: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} → {'a.b': 1}; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in plain.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def differences(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key → (stored value, new value) for every key whose value differs."""
    old, now = flatten(stored), flatten(new)
    missing = object()
    diff: dict[str, tuple[Any, Any]] = {}
    for key in sorted(old.keys() | now.keys()):
        a, b = old.get(key, missing), now.get(key, missing)
        if a != b:
            diff[key] = (None if a is missing else a, None if b is missing else b)
    return diff


def check_resumable(stored: dict[str, Any], new: dict[str, Any], force: bool, where: str) -> list[str]:
    """Raise ConfigError if `new` may not continue the run `stored` describes; else return
    the accepted changes as 'key: old → new' lines (FREE and, with force, SAFE ones)."""
    diff = differences(stored, new)
    refused = [k for k in diff if k not in FREE and k not in SAFE]
    if refused:
        shown = ", ".join(f"{k} ({diff[k][0]!r} → {diff[k][1]!r})" for k in refused[:6])
        more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
        raise ConfigError(
            f"{where}: cannot resume with a different model, data or optimisation: {shown}{more}; "
            f"start a new run instead (free to change: {', '.join(sorted(FREE))}; with --force: "
            f"{', '.join(sorted(SAFE))})"
        )
    needs_force = [k for k in diff if k in SAFE]
    if needs_force and not force:
        shown = ", ".join(f"{k} ({diff[k][0]!r} → {diff[k][1]!r})" for k in needs_force)
        raise ConfigError(f"{where}: the config differs from the run's in {shown}; add --force to accept")
    return [f"{k}: {diff[k][0]!r} → {diff[k][1]!r}" for k in diff]
