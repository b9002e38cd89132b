"""A run's report: what `cnnctl report` and the end of `cnnctl train` (output.report) write
as <run>/report.html. best.pt is evaluated again on the test split (val without one) to get
the figures a summary does not keep (the curves, the wrong images and their Grad-CAM); the
page itself is rendered by `cnnctl.report.html`.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from cnnctl.artifacts.loaded import load_model
from cnnctl.config import validate
from cnnctl.core.atomic import write_text
from cnnctl.core.errors import CnnctlError, ConfigError
from cnnctl.data.inventory import check_data
from cnnctl.report import html
from cnnctl.session.eval_data import eval_batches, eval_dataset
from cnnctl.session.eval_plots import WRONG_SHOWN, draw_eval_plots

REPORT = "report.html"


def write_report(
    run_dir: Path, out: Path | None = None, *, summary: dict[str, Any] | None = None, device: str = "auto"
) -> tuple[Path, float]:
    """Write the run's report (default <run>/report.html) atomically; (path, seconds taken)."""
    started = time.perf_counter()
    page = render_report(run_dir, summary=summary, device=device)
    target = out or run_dir / REPORT
    write_text(target, page, "report")
    return target, time.perf_counter() - started


def render_report(run_dir: Path, *, summary: dict[str, Any] | None = None, device: str = "auto") -> str:
    summary = summary if summary is not None else read_summary(run_dir)
    loaded = load_model(run_dir / "best.pt", device)
    cfg = validate(loaded.checkpoint["config"], f"{run_dir / 'best.pt'} (stored config)")
    split = "test" if summary.get("test_samples") else "val"
    dataset, what = eval_dataset(loaded, cfg, None, split)
    batches = eval_batches(loaded, cfg, dataset, None)
    result = loaded.stepper.evaluate(batches, loaded.classes, topk=(1, 5), keep_wrong=WRONG_SHOWN)
    plain = result.to_plain()
    with tempfile.TemporaryDirectory(prefix="cnnctl-report-") as tmp:
        drawn = draw_eval_plots(result, dataset, split, Path(tmp), loaded, prefix="")
        history = read_history(run_dir)
        if history:
            from cnnctl.report import plots

            drawn["curves"] = plots.curves(
                history, int(summary.get("best_epoch") or 0), Path(tmp) / "curves.png"
            )
        pngs = {kind: path.read_bytes() for kind, path in drawn.items() if path.is_file()}
    try:
        inventory: dict[str, Any] | str = check_data(cfg)
    except CnnctlError as err:
        inventory = str(err)
    config_text = _read_text(run_dir / "config.yaml")
    return html.render(_page(run_dir, summary, plain, what, pngs, inventory, config_text))


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{run_dir}: no summary.json, so the run has not finished; report on a finished run"
        ) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read it ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a cnnctl run summary")
    return data


def read_history(run_dir: Path) -> list[dict[str, str]]:
    try:
        with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        logging.getLogger("cnnctl").warning(f"{path}: not readable; the report shows no config")
        return ""


def _page(
    run_dir: Path,
    summary: dict[str, Any],
    result: dict[str, Any],
    what: str,
    pngs: dict[str, bytes],
    inventory: dict[str, Any] | str,
    config_text: str,
) -> dict[str, Any]:
    from cnnctl.session.report_sections import headline, sections

    subtitle = (
        f"{summary.get('model')} on {summary.get('dataset')} · {summary.get('epochs_run')} epochs "
        f"(best {summary.get('best_epoch')}) · {summary.get('device')} · evaluated on {what}"
    )
    return {
        "name": run_dir.name,
        "subtitle": subtitle,
        "headline": headline(result),
        "sections": sections(summary, result, pngs, inventory, config_text),
        "footer": f"cnnctl {summary.get('versions', {}).get('cnnctl', '')} · {run_dir}",
    }
