"""Issue 19's tune figures from one run: the default config's best val loss against the best of
a 10-trial study over lr, dropout and batch size, and the wall time per trial with the median
pruner and without it (the same space, the same sampler seed).

The demo config (generated shapes, offline) is shrunk by default so the whole bench takes a
few minutes on 2 cores; `--full` runs it as `make demo` trains it.

    python bench/tune.py            # 300 images per class, 6 epochs
    python bench/tune.py --full     # configs/demo.yaml as it is
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnctl.config import load_config  # noqa: E402
from cnnctl.workflows import train as workflows  # noqa: E402
from cnnctl.workflows.tune import tune  # noqa: E402

SPACE = {
    "optimizer.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.6},
    "data.batch_size": {"type": "categorical", "choices": [32, 64]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    shrink = [] if args.full else ["data.samples_per_class=300", "train.epochs=6"]
    with tempfile.TemporaryDirectory(prefix="cnnctl-bench-tune-") as tmp:
        sets = [f"output.dir={tmp}", "output.report=false", "output.plots=false", *shrink]
        cfg = load_config(ROOT / "configs" / "demo.yaml", sets)
        space = Path(tmp) / "space.yaml"
        space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
        started = time.perf_counter()
        default = workflows.train(cfg, "default").summary["best_val_loss"]
        default_s = time.perf_counter() - started
        rows = []
        for pruner in ("median", "none"):
            started = time.perf_counter()
            result = tune(cfg, space, args.trials, f"study-{pruner}", pruner=pruner)
            seconds = time.perf_counter() - started
            pruned = sum(t["state"] == "pruned" for t in result.trials)
            best = result.best["value"] if result.best else float("nan")
            rows.append((pruner, best, seconds / len(result.trials), pruned, len(result.trials)))
    print(f"default config: best val loss {default:.4f} ({default_s:.1f} s)")
    print(f"{'pruner':<8} {'best val loss':>14} {'s / trial':>10} {'pruned':>7} {'trials':>7}")
    for pruner, best, per_trial, pruned, total in rows:
        print(f"{pruner:<8} {best:>14.4f} {per_trial:>10.1f} {pruned:>7} {total:>7}")


if __name__ == "__main__":
    main()
