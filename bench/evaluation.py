"""Issue 18's figures from one run of the demo config (configs/demo.yaml, generated shapes,
offline): the temperature and ECE / NLL before and after calibration on val and on test, the
test accuracy without and with each TTA view set, and the time `cnnctl report` takes.

The reference for calibration is the same network at T = 1 (what every tool without
calibration returns); for TTA, the same network on the images alone.

    python bench/evaluation.py            # trains once in a temp folder, prints the table
    python bench/evaluation.py --epochs 4
    python bench/evaluation.py --epochs 20 --set model.dropout=0 --set data.samples_per_class=300   # over-fits
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnctl.artifacts.loaded import load_model  # noqa: E402
from cnnctl.config import load_config  # noqa: E402
from cnnctl.data import tta  # noqa: E402
from cnnctl.session.eval_data import eval_batches, eval_dataset  # noqa: E402
from cnnctl.session.run_report import write_report  # noqa: E402
from cnnctl.workflows import train as workflows  # noqa: E402

VIEW_SETS = (["hflip"], ["hflip", "vflip"], ["shifts"], ["crops"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], help="a config override, key=value"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnctl-bench-eval-") as tmp:
        overrides = [
            f"output.dir={tmp}",
            f"train.epochs={args.epochs}",
            "output.report=false",
            "output.plots=false",
        ]
        cfg = load_config(ROOT / "configs" / "demo.yaml", overrides)
        outcome = workflows.train(cfg, "demo")
        calibration = outcome.summary["calibration"]
        loaded = load_model(outcome.run_dir / "best.pt", "cpu")
        run_cfg = cfg
        rows = [("temperature", f"{calibration['temperature']:.3f}", "")]
        rows += [("val ECE (T=1 → T)", f"{calibration['ece_before']:.4f}", f"{calibration['ece_after']:.4f}")]
        rows += [("val NLL (T=1 → T)", f"{calibration['nll_before']:.4f}", f"{calibration['nll_after']:.4f}")]
        test, _ = eval_dataset(loaded, run_cfg, None, "test")
        calibrated = loaded.stepper.task
        results = {}
        for name, task in (("T", calibrated), ("T=1", calibrated.with_temperature(1.0))):
            loaded.stepper.task = task
            results[name] = loaded.stepper.evaluate(eval_batches(loaded, run_cfg, test, None), loaded.classes)
        loaded.stepper.task = calibrated
        rows += [("test ECE (T=1 → T)", f"{results['T=1'].ece:.4f}", f"{results['T'].ece:.4f}")]
        rows += [("test NLL (T=1 → T)", f"{results['T=1'].loss:.4f}", f"{results['T'].loss:.4f}")]
        plain = results["T"].accuracy
        for names in VIEW_SETS:
            views = [view for _, view in tta.views(names)]
            result = loaded.stepper.evaluate(
                eval_batches(loaded, run_cfg, test, None), loaded.classes, views=views
            )
            rows.append((f"test accuracy, TTA {'+'.join(names)}", f"{plain:.4f}", f"{result.accuracy:.4f}"))
        _, seconds = write_report(outcome.run_dir, device="cpu")
        rows.append(("cnnctl report (s)", "", f"{seconds:.1f}"))
    width = max(len(r[0]) for r in rows)
    print(f"{'':<{width}}  {'reference':>10}  {'cnnctl':>10}")
    for name, ref, ours in rows:
        print(f"{name:<{width}}  {ref:>10}  {ours:>10}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)")
