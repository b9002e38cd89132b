"""Soak test of the DDP path: `cnnctl train --nproc 2` many times in a row under a CPU hog.

Each run trains a tiny synthetic config on 2 CPU processes (gloo) while HOGS busy-loop
processes compete for the cores (the soak starts them and always stops them). A run fails
when its exit code is not 0, when any process prints `terminate called` (the C++ runtime
aborting, SIGABRT), when it does not say `training finished` exactly once, or when a rank
still has gloo threads alive at exit: that is the condition for the abort, checked in every
run whether or not the race fires (a sitecustomize hook reports the threads from atexit).

    python bench/ddp_soak.py                       # 20 runs under a 2-process hog
    python bench/ddp_soak.py --runs 3 --hogs 1     # the short version the test suite runs
    python bench/ddp_soak.py --torchrun            # torchrun directly, without cnnctl's launcher

Prints one line per run and `ddp soak: N runs, F failures, under a H-process CPU hog`;
the exit code is 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

CONFIG: dict[str, object] = {  # tests/test_distributed.py's DDP config, 2 epochs
    "data": {
        "source": "synthetic",
        "num_classes": 3,
        "samples_per_class": 36,
        "image_size": 16,
        "val_fraction": 0.25,
        "test_fraction": 0.2,
        "batch_size": 8,
        "noise": 0.05,
    },
    "model": {
        "name": "small_cnn",
        "channels": [4, 8],
        "kernel_size": 3,
        "padding": 1,
        "hidden": [16],
        "dropout": 0.0,
    },
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 2},
    "seed": 0,
    "device": "cpu",
    "output": {"plots": False},
}

# Loaded by every process of a run (PYTHONPATH): the ranks report their threads at exit.
EXIT_REPORT = """\
import atexit, os, sys

def _report():
    names = []
    for task in sorted(os.listdir("/proc/self/task")):
        try:
            with open(f"/proc/self/task/{task}/comm") as handle:
                names.append(handle.read().strip())
        except OSError:
            pass
    sys.stderr.write(f"ddp-soak: rank {os.environ['RANK']} threads at exit: {','.join(names)}\\n")

if os.environ.get("RANK") is not None and os.path.isdir("/proc/self/task"):
    atexit.register(_report)
"""

FAILURE_SIGNS = ("terminate called", "Signal 6 (SIGABRT)", "Segmentation fault", "SIGSEGV")


def start_hogs(count: int, seconds: float) -> list[subprocess.Popen[bytes]]:
    """`count` busy loops, each ending by itself after `seconds` even if this process dies."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def leftover_threads(output: str) -> list[str]:
    """The ranks' exit reports that name a thread of a process group (gloo, nccl, the store)."""
    reports = [line for line in output.splitlines() if line.startswith("ddp-soak: rank")]
    return [line for line in reports if any(key in line for key in ("gloo", "nccl", "tcpstore"))]


def one_run(command: list[str], env: dict[str, str], timeout: float) -> tuple[bool, str, str]:
    """(ok, why not, output) of one training job; a job past `timeout` is killed, group and all."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return False, f"hung: killed after {timeout:.0f} s", output
    signs = [sign for sign in FAILURE_SIGNS if sign in output]
    if process.returncode != 0 or signs:
        return False, f"exit code {process.returncode}" + (f", {signs[0]!r}" if signs else ""), output
    if output.count("training finished") != 1:
        return False, f"'training finished' printed {output.count('training finished')} times", output
    left = leftover_threads(output)
    if left:
        return False, f"process group threads alive at exit: {left[0]}", output
    if output.count("ddp-soak: rank") != 2:
        return False, "a rank did not report its threads at exit", output
    return True, "", output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="training jobs in a row (default 20)")
    parser.add_argument("--hogs", type=int, default=2, help="busy-loop processes beside them (default 2)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per job (default 2)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds before a job counts as hung")
    parser.add_argument("--torchrun", action="store_true", help="launch torchrun directly, not via --nproc")
    parser.add_argument("--stop-on-failure", action="store_true", help="stop at the first failed run")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ddp-soak-") as tmp:
        work = Path(tmp)
        (work / "hook").mkdir()
        (work / "hook" / "sitecustomize.py").write_text(EXIT_REPORT)
        config = dict(CONFIG, output={"plots": False, "dir": str(work / "runs")})
        config["train"] = {"epochs": args.epochs}
        (work / "soak.yaml").write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(work / "hook"), str(ROOT)]),
            "OMP_NUM_THREADS": "1",
        }
        if args.torchrun:
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
            launch += ["-m", "cnnctl", "train", str(work / "soak.yaml")]
        else:
            launch = [sys.executable, "-m", "cnnctl", "train", str(work / "soak.yaml"), "--nproc", "2"]

        failures = 0
        done = 0
        hogs = start_hogs(args.hogs, seconds=args.runs * args.timeout + 60)
        try:
            for index in range(1, args.runs + 1):
                start = time.monotonic()
                ok, why, output = one_run([*launch, "--name", f"run{index}"], env, args.timeout)
                seconds = time.monotonic() - start
                done += 1
                if ok:
                    print(f"run {index}/{args.runs}: ok ({seconds:.1f} s)", flush=True)
                    continue
                failures += 1
                print(f"run {index}/{args.runs}: FAILED ({seconds:.1f} s): {why}", flush=True)
                kept = work.parent / f"ddp-soak-run{index}-{os.getpid()}.log"
                kept.write_text(output)
                print(f"  its output: {kept}", flush=True)
                if args.stop_on_failure:
                    break
        finally:
            stop(hogs)
    hog = f"a {args.hogs}-process CPU hog" if args.hogs else "no CPU hog"
    print(f"ddp soak: {done} runs, {failures} failures, under {hog}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
