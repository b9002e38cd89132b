"""Multi-label quality on generated data: mAP and exact match of one `task: multi_label` run,
with cnnctl's figures checked against scikit-learn's on the same predictions, and the
thresholds chosen on val (train.threshold: auto) against a flat 0.5 (what a hand-written
sigmoid head usually decides at).

The data: two different shapes of four per image, one in each half (a tenth of the images
hold one), PNG files listed in a CSV manifest (`path,label` with `circle|square`); val and
test carved from it. One small CNN trains once; everything after reads its best.pt.

    python bench/multi_label.py                  # prints a table, writes nothing outside a temp folder
    python bench/multi_label.py --images 2000 --epochs 8
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cnnctl.artifacts import checkpoint as ckpt  # noqa: E402
from cnnctl.config import validate  # noqa: E402
from cnnctl.data.synthetic import write_multi_label_manifest  # noqa: E402
from cnnctl.workflows import train as workflows  # noqa: E402
from cnnctl.workflows.evaluate import evaluate  # noqa: E402
from cnnctl.workflows.predict import predict  # noqa: E402


def config(manifest: Path, out: Path, epochs: int) -> object:
    return validate(
        {
            "task": "multi_label",
            "data": {
                "source": "manifest",
                "train": str(manifest),
                "image_size": 32,
                "val_fraction": 0.15,
                "test_fraction": 0.2,
                "batch_size": 32,
            },  # fmt: skip
            "model": {"name": "small_cnn", "batch_norm": True},
            "optimizer": {"name": "adam", "lr": 3e-3},
            "scheduler": {"name": "onecycle", "pct_start": 0.3},
            "train": {"epochs": epochs},
            "output": {"dir": str(out), "plots": False},
            "seed": 0,
            "device": "cpu",
        },
        "bench/multi_label.py",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score

    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_multi_label_manifest(Path(tmp) / "shapes", 4, args.images, 32, seed=1)
        started = time.perf_counter()
        outcome = workflows.train(config(manifest, Path(tmp) / "runs", args.epochs), "ml")  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        best = outcome.run_dir / "best.pt"
        result, what = evaluate(best, split="test", device="cpu")
        meta = ckpt.load_checkpoint(best)
        classes, thresholds = meta["classes"], np.array(meta["thresholds"])
        with open(outcome.run_dir / "splits.csv", newline="", encoding="utf-8") as handle:
            test = [row for row in csv.DictReader(handle) if row["split"] == "test"]
        truth = np.array([[name in row["label"].split("|") for name in classes] for row in test])
        scores = np.array(
            [[p for _, p in pred.topk] for pred in predict(best, [row["path"] for row in test], device="cpu")]
        )
        print(f"{len(test)} test images ({what}); {args.epochs} epochs in {seconds:.0f} s; thresholds "
              f"chosen on val: {', '.join(f'{c} {t:.3f}' for c, t in zip(classes, thresholds, strict=True))}\n")  # fmt: skip
        print("| figure | cnnctl | scikit-learn, same scores | at a flat 0.5 (scikit-learn) |")
        print("|---|---|---|---|")
        tuned, flat = scores >= thresholds, scores >= 0.5
        rows = [
            ("mAP (macro)", result.map, average_precision_score(truth, scores, average="macro"), None),
            ("exact match", result.exact_match, accuracy_score(truth, tuned), accuracy_score(truth, flat)),
            ("micro F1", result.micro_f1, f1_score(truth, tuned, average="micro"), f1_score(truth, flat, average="micro")),
            ("macro F1", result.macro_f1, f1_score(truth, tuned, average="macro"), f1_score(truth, flat, average="macro")),
        ]  # fmt: skip
        for name, ours, reference, half in rows:
            print(f"| {name} | {ours:.4f} | {reference:.4f} | {'-' if half is None else f'{half:.4f}'} |")


if __name__ == "__main__":
    main()
