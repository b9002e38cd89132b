"""Everything people read on the console: progress, epoch lines, tables.

Only this module (and cli through it) prints for humans; the files a run writes
(metrics.csv, predictions) are written by `cnnctl.artifacts`. Console output goes through
rich; on a terminal the epoch gets a live bar, otherwise one plain line per epoch.

Names (class names from folder names, paths, run names) are shown and written as they are
(docs/reliability.md): never parsed as rich markup or emoji codes, never colourised; on
the console a control character (ESC, CR, tab, newline, ...), a bidi override and a
non-UTF-8 byte are shown escaped (`\\x1b`, `\\r`, `\\xff`) so a name cannot rewrite the
terminal, while CSV and JSON files get the name itself (CSV: UTF-8 with the original bytes
of a non-UTF-8 name; JSON: `\\udcff` escapes that read back to the same name).
"""

from __future__ import annotations

import os
import sys
import unicodedata
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Bidi embeddings, overrides and isolates, and the marks: they reorder what follows them.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """`text` as a terminal shows it safely: control characters (C0, DEL, C1), line and
    paragraph separators and bidi controls escaped (`\\x1b`, `\\t`, `\\u202e`), a non-UTF-8
    byte of a file name (a surrogate escape from os.fsdecode) as `\\xff`; all else verbatim
    (a backslash too, so the escapes are for reading, not for parsing back)."""
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape of the byte code - 0xDC00
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def shown(value: Any) -> Text:
    """A table cell or title holding user data: plain text (no markup, no highlighting),
    escaped by `printable`."""
    return Text(printable(str(value)))


def epoch_line(row: Any, epochs: int) -> str:
    """One epoch's figures; a diverging epoch (engine.divergence) says so at the end."""
    line = (
        f"epoch {row.epoch}/{epochs}  train loss {row.train_loss:.4f} acc {row.train_acc:.4f}  "
        f"val loss {row.val_loss:.4f} acc {row.val_acc:.4f}  lr {row.lr:.3g}  {row.seconds:.1f}s"
    )
    diverging = getattr(row, "diverging", "")
    return f"{line}  diverging: {diverging}" if diverging else line


class ConsoleProgress:
    """Engine progress hooks: a tqdm bar per epoch on a TTY, plain lines otherwise."""

    def __init__(self, console: Console, live: bool, quiet: bool = False):
        self.console, self.live, self.quiet = console, live and not quiet, quiet
        self.bar: Any = None
        self.epochs = 0
        self.samples = 0
        self.best_marker = ""

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        self.epochs = epochs
        self.samples = 0
        if self.live:
            from tqdm import tqdm

            self.bar = tqdm(
                total=batches,
                desc=f"epoch {epoch}/{epochs}",
                unit="batch",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def batch(self, samples: int, loss: float | None) -> None:
        if self.bar is not None:
            self.samples += samples
            self.bar.update(1)
            if loss is not None:
                rate = self.samples / max(self.bar.format_dict["elapsed"], 1e-9)
                self.bar.set_postfix_str(f"loss {loss:.4f}, {rate:.0f} img/s", refresh=False)

    def close(self) -> None:
        """Take down a live bar (an epoch that ends early: interrupted or failed)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def end_epoch(self, row: Any) -> None:
        self.close()
        if not self.quiet:
            self.console.print(epoch_line(row, self.epochs), highlight=False)


def data_check_tables(result: dict[str, Any]) -> list[Table]:
    """`cnnctl data check`: images per class and split, then the unreadable files."""
    splits = result["splits"]
    table = Table(title=shown(f"data check ({result['source']})"), title_justify="left")
    table.add_column("class")
    for name in splits:
        table.add_column(shown(name), justify="right")
    classes = list(next(iter(splits.values()))) if splits else []
    for cls in classes:
        table.add_row(shown(cls), *(str(splits[name].get(cls, 0)) for name in splits))
    table.add_row("total", *(str(sum(split.values())) for split in splits.values()), style="bold")
    tables = [table]
    bad = result["unreadable"]
    if bad:
        listing = Table(title=f"{len(bad)} unreadable file(s), skipped by training", title_justify="left")
        listing.add_column("file")
        listing.add_column("reason")
        for row in bad:
            listing.add_row(shown(row["path"]), shown(row["reason"]))
        tables.append(listing)
    return tables


def runs_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="runs", title_justify="left")
    for col in ("name", "model", "dataset", "epochs", "best val loss", "test acc", "date"):
        right = col in ("epochs", "best val loss", "test acc")
        table.add_column(
            col, justify="right" if right else "left", no_wrap=col in ("name", "model", "dataset", "date")
        )
    for r in records:
        if r["status"] != "done":
            table.add_row(shown(r["name"]), shown(f"({r['status']})"), "", "", "", "", "")
            continue
        table.add_row(
            shown(r["name"]), shown(r["model"]), shown(r["dataset"]), shown(r["epochs"]),
            _num(r["best_val_loss"]), _num(r["test_acc"]), shown(str(r["date"]).replace("T", " ")[:16]),
        )  # fmt: skip
    return table


def train_table(summary: dict[str, Any]) -> Table:
    table = Table(title="training finished", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("run dir", shown(summary["run_dir"]))
    early = " (early stop)" if summary["stopped_early"] else ""
    table.add_row("epochs run", f"{summary['epochs_run']}{early}")
    table.add_row("best epoch", str(summary["best_epoch"]))
    table.add_row("best val loss", _num(summary["best_val_loss"]))
    table.add_row("best val acc", _num(summary["best_val_acc"]))
    test = summary.get("test")
    if test and "map" in test:  # task multi_label
        table.add_row("test loss", _num(test["loss"]))
        for key, name in MULTI_LABEL_ROWS:
            table.add_row(f"test {name}", _num(test[key]))
    elif test:
        table.add_row("test loss", _num(test["loss"]))
        table.add_row("test acc", _num(test["accuracy"]))
        for k, v in test["topk"].items():
            if k != "1":
                table.add_row(f"test top-{k} acc", _num(v))
    else:
        table.add_row("test", "no test split")
    return table


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


MULTI_LABEL_ROWS = (
    ("map", "mAP"),
    ("roc_auc", "macro ROC AUC"),
    ("ece", "ECE"),
    ("micro_f1", "micro F1"),
    ("macro_f1", "macro F1"),
    ("exact_match", "exact match"),
    ("hamming_loss", "hamming loss"),
)


def multi_label_tables(result: dict[str, Any], what: str) -> list[Table]:
    """evaluate's tables for task multi_label: the overall figures, then one row per label."""
    overall = Table(title=shown(f"evaluation on {what}"), show_header=False, title_justify="left")
    overall.add_column("metric", style="bold")
    overall.add_column("value")
    overall.add_row("images", str(result["count"]))
    overall.add_row("loss", _num(result["loss"]))
    for key, name in MULTI_LABEL_ROWS:
        overall.add_row(name, _num(result.get(key)))
    per_label = Table(title="per label", title_justify="left")
    columns = ("precision", "recall", "f1", "ap", "roc_auc", "threshold")
    for col in ("label", "support", *columns):
        per_label.add_column(col, justify="left" if col == "label" else "right")
    for row in result["per_label"]:
        per_label.add_row(shown(row["label"]), str(row["support"]), *(_num(row.get(c)) for c in columns))
    return [overall, per_label]


TTA_ROWS = (
    ("loss", "loss (NLL)"),
    ("accuracy", "accuracy"),
    ("exact_match", "exact match"),
    ("map", "mAP"),
    ("balanced_accuracy", "balanced acc"),
    ("macro_f1", "macro F1"),
    ("roc_auc", "macro ROC AUC"),
    ("ece", "ECE"),
)


def tta_table(result: dict[str, Any]) -> Table:
    """evaluate --tta: each headline metric without and with test-time augmentation."""
    tta = result["tta"]
    table = Table(title=shown(f"test-time augmentation: {', '.join(tta['views'])}"), title_justify="left")
    for col in ("metric", "plain", "tta"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, name in TTA_ROWS:
        if key in result and key in tta:
            table.add_row(name, _num(result[key]), _num(tta[key]))
    return table


def eval_tables(result: dict[str, Any], what: str) -> list[Table]:
    extra = [tta_table(result)] if "tta" in result else []
    if "map" in result:
        return [*multi_label_tables(result, what), *extra]
    return [*_single_label_tables(result, what), *extra]


def _single_label_tables(result: dict[str, Any], what: str) -> list[Table]:
    overall = Table(title=shown(f"evaluation on {what}"), show_header=False, title_justify="left")
    overall.add_column("metric", style="bold")
    overall.add_column("value")
    overall.add_row("images", str(result["count"]))
    overall.add_row("loss", _num(result["loss"]))
    overall.add_row("accuracy", _num(result["accuracy"]))
    if "balanced_accuracy" in result:
        overall.add_row("balanced acc", _num(result["balanced_accuracy"]))
        overall.add_row("macro F1", _num(result["macro_f1"]))
    for key, name in (("roc_auc", "macro ROC AUC"), ("pr_auc", "macro PR AUC"), ("ece", "ECE")):
        if key in result:
            overall.add_row(name, _num(result[key]))
    for k, v in result["topk"].items():
        if k != "1":
            overall.add_row(f"top-{k} accuracy", _num(v))
    per_class = Table(title="per class", title_justify="left")
    columns = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
    for col in ("class", "support", "correct", *columns):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for row in result["per_class"]:
        per_class.add_row(
            shown(row["class"]),
            str(row["support"]),
            str(row["correct"]),
            *(_num(row.get(c)) for c in columns),
        )
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    confusion.add_column("true \\ pred", style="bold")
    for name in result["classes"]:
        confusion.add_column(shown(name), justify="right")
    for name, counts in zip(result["classes"], result["confusion_matrix"], strict=True):
        confusion.add_row(shown(name), *(str(c) for c in counts))
    return [overall, per_class, confusion]


def predictions_table(records: list[dict[str, Any]], total: int, failed: int) -> Table:
    title = f"predictions (first {len(records)} of {total}" + (f", {failed} unreadable)" if failed else ")")
    table = Table(title=title, title_justify="left")
    table.add_column("path", overflow="fold")
    if records and "labels" in records[0]:  # task multi_label: the labels at their thresholds
        table.add_column("labels")
        table.add_column("error", overflow="fold")
        for r in records:
            table.add_row(shown(r["path"]), shown(r["labels"]), shown(r["error"]))
        return table
    table.add_column("label")
    table.add_column("probability", justify="right")
    table.add_column("error", overflow="fold")
    for r in records:
        prob = "" if r["probability"] is None else f"{r['probability']:.4f}"
        table.add_row(shown(r["path"]), shown(r["label"]), prob, shown(r["error"]))
    return table


def explain_table(rows: list[dict[str, Any]], layer: str) -> Table:
    """cnnctl explain: per image the prediction, the class explained and the PNG (or the error)."""
    table = Table(title=shown(f"Grad-CAM at layer {layer}"), title_justify="left")
    for col in ("path", "label", "p", "heat for", "png / error"):
        table.add_column(col, overflow="fold", justify="right" if col == "p" else "left")
    for r in rows:
        prob = "" if r["probability"] is None else f"{r['probability']:.3f}"
        table.add_row(
            shown(r["path"]), shown(r["label"]), prob, shown(r["target"]), shown(r["png"] or r["error"])
        )
    return table


def tune_table(result: dict[str, Any]) -> list[Table]:
    """cnnctl tune: one row per trial (its parameters, value, epochs, seconds), then the
    importance of each key when Optuna could compute it."""
    rows = result["trials"]
    keys = sorted({k for r in rows for k in r["params"]})
    table = Table(title=shown(f"study {result['study']} ({result['direction']})"), title_justify="left")
    for col in ("trial", "state", "value", "epochs", "seconds", *keys):
        table.add_column(col, justify="left" if col == "state" else "right")
    best = (result.get("best") or {}).get("number")
    for r in rows:
        params = [
            shown(
                f"{r['params'][k]:.4g}"
                if isinstance(r["params"].get(k), float)
                else str(r["params"].get(k, ""))
            )
            for k in keys
        ]
        mark = "*" if r["number"] == best else ""
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        table.add_row(
            f"{r['number']}{mark}", r["state"], _num(r["value"]), str(r["epochs"] or ""), seconds, *params
        )
    tables = [table]
    if result.get("importance"):
        importance = Table(title="importance (Optuna, fANOVA)", title_justify="left")
        importance.add_column("key")
        importance.add_column("importance", justify="right")
        for key, value in result["importance"].items():
            importance.add_row(shown(key), f"{value:.3f}")
        tables.append(importance)
    return tables


def cv_table(result: dict[str, Any]) -> Table:
    """cnnctl cv: one row per fold (its val and test metrics), then mean ± std and the
    out-of-fold pool."""
    folds = result["per_fold"]
    shown_keys = [k for k in CV_COLUMNS if any(isinstance(f.get(k), float) for f in folds)]
    table = Table(title=shown(f"cv {result['name']} ({result['folds']} folds)"), title_justify="left")
    for col in ("fold", "train", "val", "epochs", *shown_keys):
        table.add_column(col, justify="right")
    for f in folds:
        values = [_num(f.get(k)) for k in shown_keys]
        table.add_row(
            str(f["fold"]), str(f["train_images"]), str(f["val_images"]), str(f["epochs_run"]), *values
        )
    mean, std = result["mean"], result["std"]
    spread = [f"{mean[k]:.4f}±{std[k]:.4f}" if k in mean else "" for k in shown_keys]
    table.add_row("mean ± std", "", "", "", *spread)
    pooled = result["oof"]
    table.add_row(
        "out-of-fold", "", str(pooled.get("images", "")), "",
        *[_num(pooled.get(k[4:])) if k.startswith("val_") else "" for k in shown_keys],
    )  # fmt: skip
    return table


CV_COLUMNS = ("val_loss", "val_accuracy", "val_map", "val_macro_f1", "test_accuracy", "test_map")


class VerbatimConsole(Console):
    """A rich Console that prints every string as it is: no markup, no emoji codes, no
    highlighting, control characters and non-UTF-8 bytes escaped (`printable`). So a
    message such as f"plots in {folder}" is safe whatever the folder is called."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs.update(markup=False, emoji=False, highlight=False)
        return super().render_str(printable(text), **kwargs)


def console_for(stream: IO[str] | None = None, stderr: bool = False) -> Console:
    """A console that never wraps machine-readable lines and respects NO_COLOR."""
    console = VerbatimConsole(
        file=stream, stderr=stderr, soft_wrap=True, highlight=False, markup=False, emoji=False
    )
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = 120  # piped or logged: no terminal to fit, so tables are not squeezed to 80
    return console
