"""`cnnctl cv`: K-fold cross-validation, each fold an ordinary training run.

- Fold k is the run dir `<output.dir>/<name>/fold-<k>/`, trained by exactly what `cnnctl train`
  runs with `data.cv: {folds: K, fold: k}`: val is the k-th of K stratified parts (whole groups
  with data.group_column) of train and a given val split together; the test split is carved
  as without cross-validation and is the same for every fold.
- After each fold, its best.pt (calibrated, as `cnnctl predict` would use it) scores its val
  part: the out-of-fold predictions, one row per image, and the fold's metrics.
- The end writes `cv.json` (every fold's metrics, their mean and sample standard deviation,
  and the metrics of all out-of-fold predictions pooled) and `oof_predictions.csv`.
- A cv that is stopped or killed continues with the same command: finished folds are read
  back, a fold with a last.pt resumes from it. `cv.yaml` records the config the folds
  were made from; rerunning another config under the same name is refused (--force starts over).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnctl import tasks
from cnnctl.artifacts.loaded import load_model
from cnnctl.config import RunConfig, dump_yaml, validate
from cnnctl.config.resume import FREE, flatten
from cnnctl.config.space import with_values
from cnnctl.core.atomic import write_json, write_text
from cnnctl.core.errors import ConfigError, Interrupted
from cnnctl.data import Splits, build_splits
from cnnctl.session.held_out import HeldOut, held_out
from cnnctl.session.resume import prepare_resume
from cnnctl.session.training import train

PLAN = "cv.yaml"


@dataclass
class CvResult:
    name: str
    folder: Path
    folds: int
    task: str
    monitor: str
    per_fold: list[dict[str, Any]] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    oof: dict[str, Any] = field(default_factory=dict)

    def to_plain(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": str(self.folder),
            "folds": self.folds,
            "task": self.task,
            "monitor": self.monitor,
            "per_fold": self.per_fold,
            "mean": self.mean,
            "std": self.std,
            "oof": self.oof,
            "oof_predictions": str(self.folder / "oof_predictions.csv"),
        }


def cv(
    cfg: RunConfig,
    folds: int,
    name: str,
    *,
    force: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> CvResult:
    """Train the K folds of `cfg` (continuing a stopped cv) and score each on its val part."""
    folder = Path(cfg.output.dir) / name
    with _cv_lock(folder):
        _check_plan(folder, cfg, folds, force)
        parent = _parent_run(cfg, folder, name)
        result = CvResult(name, folder, folds, cfg.task, cfg.train.monitor)
        scored: list[HeldOut] = []
        try:
            for k in range(folds):
                fold_cfg = _fold_config(cfg, folds, k, folder, parent)
                record, held = _fold(fold_cfg, folder, k, force, say, parent)
                result.per_fold.append(record)
                scored.append(held)
        except Interrupted:
            say(f"cv stopped after {len(result.per_fold)} of {folds} folds; the same command continues")
            raise
        _summarise(result, scored)
        _write_oof(folder / "oof_predictions.csv", result.per_fold, scored)
        write_json(folder / "cv.json", result.to_plain(), "cv results")
    if parent is not None:
        from cnnctl.artifacts.tracking import end_parent

        end_parent(cfg, parent[1], {f"mean_{k}": v for k, v in result.mean.items()})
    return result


@contextlib.contextmanager
def _cv_lock(folder: Path) -> Iterator[None]:
    """One `cnnctl cv` at a time in a cv folder (its folds would race for the run dirs)."""
    from filelock import FileLock, Timeout

    from cnnctl.core.atomic import output_error

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as err:
        raise output_error(folder, err, "cv folder") from None
    lock = FileLock(str(folder / ".cv.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{folder}: another cnnctl cv is running there; wait for it, or pick another --name"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _comparable(cfg: RunConfig) -> dict[str, Any]:
    """The config keys that make the folds what they are (not where they run or log)."""
    plain = flatten(cfg.to_plain())
    return {
        k: v for k, v in plain.items() if k not in FREE and k != "data.cv" and not k.startswith("data.cv.")
    }


def _check_plan(folder: Path, cfg: RunConfig, folds: int, force: bool) -> None:
    """cv.yaml: the config (and K) the folds in this folder come from, written by the first run;
    once a fold has trained an epoch, a rerun with another one is refused unless --force
    (which retrains every fold)."""
    path = folder / PLAN
    header = f"# cnnctl cv: {folds} folds of this config (data.cv set per fold)\n"
    made = any((folder / d.name / "last.pt").is_file() for d in folder.glob("fold-*"))
    if path.is_file() and made and not force:
        from cnnctl.config import load_config

        text = path.read_text(encoding="utf-8", errors="replace")
        before = load_config(path)
        changed = sorted(
            k for k in _comparable(before).keys() | _comparable(cfg).keys()
            if _comparable(before).get(k) != _comparable(cfg).get(k)
        )  # fmt: skip
        if not text.startswith(header) or changed:
            what = f"keys {', '.join(changed[:8])}" if changed else "its number of folds"
            raise ConfigError(
                f"{folder}: holds a cv of another config ({what} differ from {path.name}); use another "
                "--name, or --force to train every fold again"
            )
        return
    base = cfg.model_copy(update={"data": cfg.data.model_copy(update={"cv": None})})
    write_text(path, header + dump_yaml(base), "cv config")


def _parent_run(cfg: RunConfig, folder: Path, name: str) -> tuple[str, str | None] | None:
    """With logging.mlflow: (experiment, the cv's parent MLflow run), kept in the cv folder's
    mlflow.json so a continued cv adds its folds to the same parent."""
    if not cfg.logging.mlflow:
        return None
    from cnnctl.artifacts.tracking import parent_run, tracking_uri

    experiment = cfg.logging.mlflow_experiment or name
    record = folder / "mlflow.json"
    uri = tracking_uri(cfg)
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = None
    if isinstance(known, dict) and known.get("uri") == uri and isinstance(known.get("parent"), str):
        return experiment, known["parent"]
    made = parent_run(cfg, experiment, f"cv {name}", {"cnnctl.cv": name})
    if made is not None:
        write_json(record, {"uri": uri, "parent": made}, "MLflow record")
    return experiment, made


def _fold_config(
    cfg: RunConfig, folds: int, k: int, folder: Path, parent: tuple[str, str | None] | None
) -> RunConfig:
    where: dict[str, Any] = {
        "data.cv": {"folds": folds, "fold": k},
        "output.dir": str(folder),
        "output.name": None,
    }
    if parent is not None:  # the folds log where the parent run is, not in the cv folder
        from cnnctl.artifacts.tracking import tracking_uri

        where["logging.mlflow_uri"] = tracking_uri(cfg)
    return validate(with_values(cfg.to_plain(), where), f"fold {k}")


def _fold(
    cfg: RunConfig,
    folder: Path,
    k: int,
    force: bool,
    say: Callable[[str], None],
    parent: tuple[str, str | None] | None,
) -> tuple[dict[str, Any], HeldOut]:
    """Train (or continue, or read back) fold k; its record and its out-of-fold predictions."""
    run_dir = folder / f"fold-{k}"
    splits: Splits | None = None
    if (run_dir / "summary.json").is_file() and not force:
        _same_fold(run_dir, cfg)
        say(f"fold {k}: done before, read back from {run_dir}")
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    elif (run_dir / "last.pt").is_file() and not force:
        resumed, point = prepare_resume(run_dir, None, [], False)
        _same_fold(run_dir, cfg, resumed)
        outcome = train(resumed, run_dir.name, resume=point, log=say, tracking_as=parent)
        summary, splits = outcome.summary, outcome.splits
    else:
        say(f"fold {k} ({k + 1} of {cfg.data.cv.folds if cfg.data.cv else '?'}): training {run_dir}")
        outcome = train(cfg, run_dir.name, force=run_dir.exists(), log=say, tracking_as=parent)
        summary, splits = outcome.summary, outcome.splits
    loaded = load_model(run_dir / "best.pt", cfg.device)
    stored = validate(loaded.checkpoint["config"], f"{run_dir / 'best.pt'} (its config)")
    if splits is None:
        splits = build_splits(stored.data, stored.seed, loaded.input, stored.label_separator())
    if splits.classes != loaded.classes:
        raise ConfigError(
            f"{run_dir}: its data's classes {splits.classes} differ from best.pt's {loaded.classes}"
        )
    held = held_out(loaded, stored, splits.val, splits.ids["val"])
    metrics = held.metrics.result().to_plain()
    record = {
        "fold": k,
        "run_dir": str(run_dir),
        "train_images": summary.get("train_samples"),
        "val_images": len(held.rows),
        "best_epoch": summary.get("best_epoch"),
        "epochs_run": summary.get("epochs_run"),
        "seconds": summary.get("total_seconds"),
        "temperature": loaded.stepper.task.temperature,
        **{f"val_{key}": value for key, value in _scalars(metrics).items()},
        **{f"test_{key}": value for key, value in _scalars(summary.get("test") or {}).items()},
    }
    shown = ", ".join(f"{key} {record[key]:.4f}" for key in _headline(record))
    say(f"fold {k}: {shown}")
    return record, held


def _same_fold(run_dir: Path, cfg: RunConfig, stored: RunConfig | None = None) -> None:
    """A fold dir read back or continued must be this fold of this K."""
    if stored is None:
        from cnnctl.config import load_config

        stored = load_config(run_dir / "config.yaml")
    if stored.data.cv != cfg.data.cv:
        raise ConfigError(
            f"{run_dir}: is fold {stored.data.cv} not {cfg.data.cv}; use another --name, or --force to "
            "train every fold again"
        )


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """A metrics dict's top-level numbers (loss, accuracy, macro_f1, map, ...), top-k flattened."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "count" or key == "nll":
            continue
        if key == "topk" and isinstance(value, dict):
            out |= {f"top{k}": float(v) for k, v in value.items() if k != "1" and v is not None}
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def _headline(record: dict[str, Any]) -> list[str]:
    keys = ["val_loss", "val_accuracy", "val_map", "test_accuracy", "test_map"]
    return [k for k in keys if isinstance(record.get(k), float)]


def _summarise(result: CvResult, scored: list[HeldOut]) -> None:
    """Mean and sample standard deviation over folds of every metric they all have; the
    metrics of every out-of-fold prediction pooled."""
    keys = [k for k in result.per_fold[0] if k.startswith(("val_", "test_")) and k != "val_images"]
    for key in keys:
        values = [fold.get(key) for fold in result.per_fold]
        if all(isinstance(v, float) for v in values):
            numbers = [float(v) for v in values if v is not None]
            result.mean[key] = statistics.fmean(numbers)
            result.std[key] = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
    pooled = tasks.pooled([held.metrics for held in scored]).to_plain()
    result.oof = {"images": sum(len(held.rows) for held in scored), **_scalars(pooled)}


def _write_oof(path: Path, per_fold: list[dict[str, Any]], scored: list[HeldOut]) -> None:
    """oof_predictions.csv: fold, image, label, predicted, p_<class>... per out-of-fold image,
    in fold order, written atomically."""
    columns = ["fold", "image", "label", "predicted"]
    for held in scored:
        for row in held.rows[:1]:
            columns += [c for c in row if c.startswith("p_") and c not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for record, held in zip(per_fold, scored, strict=True):
        for row in held.rows:
            writer.writerow(
                {
                    "fold": record["fold"],
                    **{k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()},
                }
            )
    write_text(path, text.getvalue(), "out-of-fold predictions")
