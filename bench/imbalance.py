"""Minority-class recall on an imbalanced set: cnnctl with nothing, train.class_weights: auto,
data.sampler: balanced and train.loss: focal, side by side in one run.

The data: generated shapes (an image folder), one class cut to a tenth of the others in
train (and val, carved from it); the test split is balanced, so recall per class is what a
user would see on fresh data. Every variant trains the same small CNN for the same epochs
from the same seed.

    python bench/imbalance.py            # prints a table, writes nothing outside a temp folder
    python bench/imbalance.py --epochs 4 --per-class 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnctl.config import validate  # noqa: E402
from cnnctl.data.synthetic import write_image_folder  # noqa: E402
from cnnctl.workflows import train as workflows  # noqa: E402
from cnnctl.workflows.evaluate import evaluate  # noqa: E402

VARIANTS = {
    "plain": {},
    "class_weights: auto": {"train": {"class_weights": "auto"}},
    "sampler: balanced": {"data": {"sampler": "balanced"}},
    "focal (gamma 2) + class_weights: auto": {"train": {"loss": "focal", "class_weights": "auto"}},
}


def make_data(root: Path, per_class: int, minority_share: float) -> str:
    """train/ with one class cut to `minority_share`, a balanced test/; returns the minority class."""
    write_image_folder(root / "train", 3, per_class, 32, seed=0, noise=0.1)
    write_image_folder(root / "test", 3, per_class // 2, 32, seed=1, noise=0.1)
    minority = sorted(p.name for p in (root / "train").iterdir())[0]
    files = sorted((root / "train" / minority).iterdir())
    for extra in files[max(4, int(len(files) * minority_share)) :]:
        extra.unlink()
    return minority


def config(root: Path, out: Path, epochs: int, change: dict[str, dict[str, object]]) -> object:
    base: dict[str, dict[str, object] | int | str] = {
        "data": {
            "source": "image_folder",
            "root": str(root),
            "image_size": 32,
            "val_fraction": 0.15,
            "batch_size": 64,
            "cache": "memory",
            "augment": {"hflip": True},
        },
        "model": {"name": "small_cnn", "channels": [32, 64], "batch_norm": True, "hidden": [128]},
        "optimizer": {"name": "adam", "lr": 2e-3},
        "train": {"epochs": epochs},
        "output": {"dir": str(out), "plots": False},
        "seed": 0,
        "device": "cpu",
    }
    for section, keys in change.items():
        base[section] = {**base[section], **keys}  # type: ignore[dict-item]
    return validate(base, "bench/imbalance.py")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument(
        "--minority", type=float, default=0.1, help="share of the minority class kept in train"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shapes"
        minority = make_data(root, args.per_class, args.minority)
        kept = len(list((root / "train" / minority).iterdir()))
        print(
            f"train: {args.per_class} images per class, {kept} of minority class {minority!r}; "
            f"balanced test of {args.per_class // 2} per class; {args.epochs} epochs each\n"
        )
        print("| variant | minority recall | balanced acc | macro F1 | accuracy | seconds |")
        print("|---|---|---|---|---|---|")
        for name, change in VARIANTS.items():
            started = time.perf_counter()
            cfg = config(root, Path(tmp) / "runs", args.epochs, change)
            outcome = workflows.train(cfg, name.split(":")[0].split(" ")[0], force=True)  # type: ignore[arg-type]
            seconds = time.perf_counter() - started
            result, _ = evaluate(outcome.run_dir / "best.pt", split="test", device="cpu")
            recall = next(r["recall"] for r in result.per_class() if r["class"] == minority)
            print(
                f"| {name} | {recall:.3f} | {result.balanced_accuracy:.3f} | {result.macro_f1:.3f} | "
                f"{result.accuracy:.3f} | {seconds:.1f} |"
            )


if __name__ == "__main__":
    main()
