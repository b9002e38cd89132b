"""PNG plots of a run: loss/accuracy curves and confusion matrices (matplotlib, Agg backend).

Drawn once, after training or evaluation, never inside the training loop. Class names are
drawn as they are: never read as mathtext (`$x$`), control characters and non-UTF-8 bytes
shown escaped as on the console (`report.printable`; a raw surrogate would crash the font
renderer).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnctl.report.console import printable


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, out: Path) -> Path:
    """Lay out, write `out` as PNG (its folder made as needed; atomically, through
    cnnctl.core.atomic) and free the figure."""
    from cnnctl.core.atomic import atomic_open

    plt = pyplot()
    try:
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(out, "wb", "plot") as handle:
            fig.savefig(handle, format="png")
    finally:
        plt.close(fig)
    return out


def curves(history: Sequence[dict[str, Any]], best_epoch: int, out: Path) -> Path:
    """Train vs val loss and accuracy per epoch, the best epoch marked."""
    plt = pyplot()
    epochs = [int(r["epoch"]) for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, [float(r[f"train_{key}"]) for r in history], marker="o", label="train")
        ax.plot(epochs, [float(r[f"val_{key}"]) for r in history], marker="o", label="val")
        if best_epoch:
            ax.axvline(
                best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})"
            )
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, out)


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], out: Path, title: str = "") -> Path:
    """Counts (left) and row-normalised rates (right), rows = true class, columns = predicted."""
    import numpy as np

    plt = pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    names = [printable(str(name)) for name in classes]
    side = min(4 + 0.45 * n, 24)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side, side), dpi=100)
    for ax, data, label, fmt in (
        (axes[0], counts, "counts", "{:.0f}"),
        (axes[1], rates, "normalised", "{:.2f}"),
    ):
        ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_xticks(range(n), names, rotation=45, ha="right", parse_math=False)
        ax.set_yticks(range(n), names, parse_math=False)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(printable(f"{title} confusion matrix ({label})".strip()), parse_math=False)
        if n <= 30:
            top = data.max() or 1
            for i in range(n):
                for j in range(n):
                    colour = "white" if data[i, j] > top / 2 else "black"
                    ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", color=colour, fontsize=8)
    return save(fig, out)


def _show_image(ax: Any, image: Any, heat: Any = None) -> None:
    """A uint8 (C, H, W) image (a tensor or array), with a heat map (H, W in [0, 1]) over it
    (none drawn when the map is all zero: no location speaks for the class)."""
    pixels = image.permute(1, 2, 0).numpy() if hasattr(image, "permute") else image.transpose(1, 2, 0)
    grey = pixels.shape[2] == 1
    ax.imshow(pixels[..., 0] if grey else pixels, cmap="gray" if grey else None)
    if heat is not None and float(heat.max()) > 0:  # an all-zero map: nothing speaks for the class
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")


def explanation(image: Any, heat: Any, caption: str, out: Path, title: str = "") -> Path:
    """One explained image: the image alone, and with its Grad-CAM heat map over it."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.9), dpi=100)
    for ax in (left, right):
        ax.axis("off")
    _show_image(left, image)
    _show_image(right, image, heat)
    left.set_title("image", fontsize=9)
    right.set_title("Grad-CAM", fontsize=9)
    fig.suptitle("\n".join(printable(line) for line in caption.split("\n")), fontsize=9, parse_math=False)
    if title:
        fig.text(0.5, 0.01, printable(title), ha="center", fontsize=7, color="grey")
    return save(fig, out)


def wrong_grid(
    images: Sequence[Any],
    captions: Sequence[str],
    out: Path,
    title: str = "",
    heat: Sequence[Any] | None = None,
) -> Path:
    """The given uint8 (C, H, W) images in a grid, each captioned (true / predicted / confidence),
    with its Grad-CAM heat map (for the predicted class) over it when `heat` is given."""
    import math

    plt = pyplot()
    n = max(len(images), 1)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    maps = list(heat) if heat is not None else [None] * len(images)
    for ax, image, caption, cam in zip(axes.flat, images, captions, maps, strict=False):
        _show_image(ax, image, cam)
        shown = "\n".join(printable(line) for line in caption.split("\n"))  # a caption's own lines
        ax.set_title(shown, fontsize=8, parse_math=False)
    if not images:
        axes.flat[0].text(0.5, 0.5, "no errors", ha="center", va="center")
    fig.suptitle(printable(title or "most confidently wrong"), parse_math=False)
    return save(fig, out)


def lr_range(
    lrs: Sequence[float],
    raw_losses: Sequence[float],
    losses: Sequence[float],
    lowest: int,
    suggested: float | None,
    out: Path,
    title: str = "",
    beta: float = 0.98,
) -> Path:
    """Loss against lr (log x): the raw loss faint, the smoothed loss (`losses`, lowest at index
    `lowest`), the suggested lr marked (None: the title says there is none)."""
    import math

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot(lrs, raw_losses, color="tab:blue", alpha=0.25, linewidth=1, label="loss")
    ax.plot(lrs, losses, color="tab:blue", linewidth=2, label=f"smoothed (beta {beta})")
    ax.plot([lrs[lowest]], [losses[lowest]], "v", color="grey", label=f"lowest at lr {lrs[lowest]:.3g}")
    if suggested is not None:
        near = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / suggested)))
        ax.axvline(suggested, color="tab:red", linestyle="--", linewidth=1)
        ax.plot([suggested], [losses[near]], "o", color="tab:red", label=f"suggested lr {suggested:.3g}")
    else:
        title = f"{title or 'lr range test'}: no suggestion, the loss hardly fell"
    ax.set_xscale("log")
    top, low = max(losses[: lowest + 1]), min(min(losses), min(raw_losses))
    ax.set_ylim(low - 0.05 * (top - low), top + 0.3 * (top - low) + 1e-9)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or "lr range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save(fig, out)


RANKING = {  # kind: (x axis, y axis, score name, default title, legend corner, step drawing)
    "pr": ("recall", "precision", "AP", "precision-recall", "lower left", True),
    "roc": ("false positive rate", "true positive rate", "AUC", "ROC", "lower right", False),
}


def ranking_curves(
    kind: str,
    curves: Sequence[tuple[Sequence[float], Sequence[float]]],
    labels: Sequence[str],
    scores: Sequence[float | None],
    out: Path,
    title: str = "",
    shown: int = 20,
) -> Path:
    """One-vs-rest precision-recall (`kind` "pr") or ROC ("roc") curves, one per class or
    label, its score (AP or AUC) in the legend; a class whose curve is undefined (no positive,
    or for ROC no negative image) is left out. At most `shown` curves, in the caller's order."""
    x_name, y_name, score_name, default_title, corner, step = RANKING[kind]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=100)
    drawn = 0
    for (xs, ys), label, score in zip(curves, labels, scores, strict=True):
        if not xs or score is None or drawn >= shown:
            continue
        name = f"{printable(label)} ({score_name} {score:.3f})"
        if step:
            ax.step(xs, ys, where="post", linewidth=1.5, label=name)
        else:
            ax.plot(xs, ys, linewidth=1.5, label=name)
        drawn += 1
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(printable(title or f"{default_title} per class"), parse_math=False)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize="small", loc=corner)
    return save(fig, out)


def reliability(
    sums: Sequence[Sequence[float]], out: Path, title: str = "", ece: float | None = None
) -> Path:
    """A reliability diagram from per-bin sums (count, summed confidence, summed correct;
    equal-width bins over [0, 1]): accuracy against confidence per bin, the diagonal a
    calibrated model follows, and below it how many predictions fell in each bin."""
    counts, confidence, correct = (list(row) for row in sums)
    bins = len(counts)
    width = 1 / bins
    edges = [i * width for i in range(bins)]
    plt = pyplot()
    fig, (ax, below) = plt.subplots(
        2, 1, figsize=(6, 6.5), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = [i for i in range(bins) if counts[i]]
    accuracy = [correct[i] / counts[i] for i in filled]
    mean_conf = [confidence[i] / counts[i] for i in filled]
    ax.bar([edges[i] for i in filled], accuracy, width=width, align="edge", edgecolor="black",
           color="#4c72b0", label="accuracy in bin")  # fmt: skip
    gaps = [c - a for c, a in zip(mean_conf, accuracy, strict=True)]
    ax.bar([edges[i] for i in filled], gaps, bottom=accuracy, width=width, align="edge", fill=False,
           hatch="//", edgecolor="#c44e52", linewidth=0.8, label="gap to mean confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    score = f" · ECE {ece:.4f}" if ece is not None else ""
    ax.set_title(printable((title or "reliability") + score), parse_math=False)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    below.bar(edges, counts, width=width, align="edge", color="#55a868", edgecolor="black")
    below.set_xlabel("confidence")
    below.set_ylabel("count")
    below.grid(alpha=0.3)
    return save(fig, out)
