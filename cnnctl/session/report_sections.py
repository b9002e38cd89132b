"""The sections of a run's report page, as (key, title, body html): what is in a summary, an
evaluation and a data check, laid out with `cnnctl.report.html`'s helpers."""

from __future__ import annotations

from typing import Any

from cnnctl.report import html

SECTION_KEYS = (
    "run", "calibration", "curves", "per-class", "confusion", "reliability", "roc-pr", "wrong", "data", "config",
)  # fmt: skip


def headline(result: dict[str, Any]) -> list[tuple[str, Any]]:
    """The cards at the top: the evaluated split's main figures."""
    if "map" in result:
        keys = [
            ("mAP", "map"),
            ("micro F1", "micro_f1"),
            ("exact match", "exact_match"),
            ("macro ROC AUC", "roc_auc"),
        ]
    else:
        keys = [("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"), ("macro F1", "macro_f1"),
                ("macro ROC AUC", "roc_auc")]  # fmt: skip
    return [*((name, result.get(key)) for name, key in keys), ("ECE", result.get("ece")),
            ("NLL", result.get("nll")), ("images", result.get("count"))]  # fmt: skip


def sections(
    summary: dict[str, Any],
    result: dict[str, Any],
    pngs: dict[str, bytes],
    inventory: dict[str, Any] | str,
    config_text: str,
) -> list[tuple[str, str, str]]:
    multi = "map" in result
    return [
        ("run", "run", _run(summary)),
        ("calibration", "calibration", _calibration(summary.get("calibration"))),
        ("curves", "training curves", html.image(pngs.get("curves"), "loss and accuracy per epoch") or _none("no metrics.csv")),
        ("per-class", "per label" if multi else "per class", _per_class(result)),
        ("confusion", "confusion matrix", html.image(pngs.get("confusion"), "confusion matrix") or _none("multi-label: no confusion matrix")),
        ("reliability", "reliability diagram", html.image(pngs.get("reliability"), "reliability diagram", "accuracy against confidence, 15 bins")),
        ("roc-pr", "ROC and precision-recall", '<div class="figures">' + html.image(pngs.get("roc"), "ROC curves") + html.image(pngs.get("pr"), "precision-recall curves") + "</div>"),
        ("wrong", "most confidently wrong", html.image(pngs.get("wrong"), "most confidently wrong images with Grad-CAM") or _none("multi-label: no single wrong label")),
        ("data", "dataset and data check", _data(summary, inventory)),
        ("config", "config", f"<pre>{html.esc(config_text)}</pre>"),
    ]  # fmt: skip


def _none(text: str) -> str:
    return f'<p class="muted">{html.esc(text)}</p>'


def _run(summary: dict[str, Any]) -> str:
    keys = ("run_dir", "model", "dataset", "data_root", "device", "epochs_run", "stopped_early", "monitor",
            "best_epoch", "best_val_loss", "best_val_acc", "total_seconds", "processes")  # fmt: skip
    rows = [(key, summary[key]) for key in keys if key in summary]
    rows += [(f"version {name}", value) for name, value in (summary.get("versions") or {}).items()]
    return html.table(("key", "value"), rows, names=2)


def _calibration(record: dict[str, Any] | None) -> str:
    if not record:
        return _none("not calibrated (train.calibrate: false): the probabilities are the network's own")
    rows = [("ECE (val)", record.get("ece_before"), record.get("ece_after")),
            ("NLL (val)", record.get("nll_before"), record.get("nll_after"))]  # fmt: skip
    return html.table(("", "before", "after"), rows, names=1) + (
        f"<p>Temperature {html.number(record.get('temperature'), 3)}: the outputs are divided by it before the "
        "softmax; every decision is unchanged.</p>"
    )


def _per_class(result: dict[str, Any]) -> str:
    if "per_label" in result:
        columns: tuple[str, ...] = (
            "label",
            "support",
            "precision",
            "recall",
            "f1",
            "ap",
            "roc_auc",
            "threshold",
        )
        return html.table(columns, [[row.get(c) for c in columns] for row in result["per_label"]])
    columns = ("class", "support", "precision", "recall", "f1", "roc_auc", "pr_auc")
    return html.table(columns, [[row.get(c) for c in columns] for row in result["per_class"]])


def _data(summary: dict[str, Any], inventory: dict[str, Any] | str) -> str:
    counts = html.table(
        ("split", "images"),
        [(name, summary.get(f"{name}_samples")) for name in ("train", "val", "test")],
    )
    if isinstance(inventory, str):
        return counts + f'<p class="warn">data check: {html.esc(inventory)}</p>'
    splits = inventory.get("splits", {})
    names = sorted({c for per in splits.values() for c in per})
    per_class = html.table(("class", *splits), [(c, *(splits[s].get(c, 0) for s in splits)) for c in names])
    bad = inventory.get("unreadable", [])
    problems = "".join(f"<li>{html.esc(b['path'])}: {html.esc(b['reason'])}</li>" for b in bad[:50])
    more = f"<li>… and {len(bad) - 50} more</li>" if len(bad) > 50 else ""
    unusable = (
        f"<p>{len(bad)} unusable file(s):</p><ul>{problems}{more}</ul>"
        if bad
        else "<p>every file decodes.</p>"
    )
    warnings = "".join(f'<p class="warn">{html.esc(w)}</p>' for w in inventory.get("warnings", []))
    return counts + per_class + unusable + warnings
