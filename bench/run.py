"""Side-by-side benchmarks: cnnctl against the plain loop a user would write by hand.

Each case runs both, alternating, several repeats in one process run, and prints the
median seconds of each and the ratio plain / cnnctl (> 1 means cnnctl is faster).
Results go to bench/results.md with the machine's description.

    python bench/run.py                 # every case
    python bench/run.py --cases 1 5     # some cases
    python bench/run.py --quick         # fewer repeats and samples (a smoke run)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnctl.artifacts.loaded import load_model  # noqa: E402
from cnnctl.config import load_config  # noqa: E402
from cnnctl.data import build_splits  # noqa: E402
from cnnctl.workflows import train as workflows  # noqa: E402
from cnnctl.workflows.predict import predict  # noqa: E402


@dataclass
class Result:
    case: str
    plain: list[float]
    cnnctl: list[float]
    note: str = ""

    @property
    def ratio(self) -> float:
        return statistics.median(self.plain) / statistics.median(self.cnnctl)


def rotate(repeats: int, *runs: Callable[[], float]) -> list[list[float]]:
    """Run each of `runs` once per repeat, the starting one moving along, so that a slow
    stretch of the machine does not always fall on the same contender."""
    seconds: list[list[float]] = [[] for _ in runs]
    for i in range(repeats):
        for j in range(len(runs)):
            k = (j + i) % len(runs)
            seconds[k].append(runs[k]())
    return seconds


def ceiling(plain: list[float], compute: list[float]) -> str:
    """What the best possible tool could reach: the plain loop's time over the time of the bare
    compute (forward, backward, step and validation forwards on ready-made batches, no loader)."""
    bare = statistics.median(compute)
    return f"bare compute on ready batches {bare:.2f} s → ceiling for any tool {statistics.median(plain) / bare:.2f}"


def bare_compute(
    model_fn: Callable[[], nn.Module], train: list, val: list, epochs: int
) -> Callable[[], float]:
    """The lower bound: the same model and optimizer over batches already in memory."""

    def run() -> float:
        torch.manual_seed(0)
        model = model_fn()
        return _plain_fit(model, model.parameters(), train, val, epochs)[0]

    return run


# --------------------------------------------------------------------------------------
# Case 1: the classic MNIST net on in-memory 28x28 data, batch 64, Adam
# --------------------------------------------------------------------------------------


def classic_net(channels: int = 1, size: int = 28) -> nn.Module:
    """The textbook MNIST CNN, written out as a user would."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear((size // 4) ** 2 * 64, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 4),
    )  # fmt: skip


def case1(quick: bool, repeats: int) -> Result:
    per_class = 300 if quick else 1000
    epochs = 1 if quick else 2
    overrides = [
        "data.source=synthetic", "data.channels=1", "data.image_size=28", f"data.samples_per_class={per_class}",
        "data.batch_size=64", "data.val_fraction=0.1", "model.name=small_cnn", "optimizer.name=adam",
        f"train.epochs={epochs}", "device=cpu", "train.amp=off",
    ]  # fmt: skip
    out = Path(tempfile.mkdtemp(prefix="cnnctl-bench-"))
    cfg = load_config(None, [*overrides, f"output.dir={out}"])
    splits = build_splits(cfg.data, cfg.seed)
    mean, std = splits.input.mean[0], splits.input.std[0]

    def tensors(ds) -> TensorDataset:  # the plain loop gets ready float tensors, as tutorials do
        return TensorDataset((ds.images.float() / 255 - mean) / std, ds.labels)

    train_ds, val_ds = tensors(splits.train), tensors(splits.val)

    def plain() -> float:
        torch.manual_seed(0)
        model = classic_net()
        train_loader = DataLoader(train_ds, batch_size=64, shuffle=True)
        val_loader = DataLoader(val_ds, batch_size=64)
        return _plain_fit(model, model.parameters(), train_loader, val_loader, epochs)[0]

    def ours(config=cfg) -> float:  # type: ignore[no-untyped-def]
        outcome = workflows.train(config, "bench", force=True)
        return float(sum(row["seconds"] for row in outcome.state.history))

    # train.channels_last is CUDA-only under `auto` (on this CPU it helps some networks and
    # slows others); the opt-in is timed too, so the table says what it gives here.
    channels_last = load_config(None, [*overrides, f"output.dir={out}", "train.channels_last=true"])

    def batches(ds: TensorDataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x, y = ds.tensors
        return [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(y), 64)]

    bare = bare_compute(classic_net, batches(train_ds), batches(val_ds), epochs)
    a, b, c, d = rotate(repeats, plain, ours, bare, lambda: ours(channels_last))
    # Achieved FLOP/s: a training sample costs ~3 forward passes (forward + backward), a val one 1.
    forward = model_flops(classic_net(), (1, 28, 28))
    work = epochs * (3 * forward * len(splits.train) + forward * len(splits.val))
    achieved, peak = work / statistics.median(b), matmul_peak()
    return Result(
        f"1. small CNN, in-memory 28x28, {len(splits.train)} train imgs x {epochs} epochs",
        a,
        b,
        "epoch time incl. validation; cnnctl also writes best.pt/last.pt and metrics.csv every epoch; "
        f"{ceiling(a, c)}; with train.channels_last: true (opt-in on the CPU) cnnctl takes "
        f"{statistics.median(d):.2f} s, ratio {statistics.median(a) / statistics.median(d):.2f}; cnnctl trains at {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of this machine's "
        f"measured fp32 matmul peak ({peak / 1e9:.1f} GFLOP/s)",
    )


def model_flops(model: nn.Module, shape: tuple[int, ...]) -> float:
    """FLOPs of one forward pass of one sample (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return float(counter.get_total_flops())


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large float32 matmul on all threads: what this CPU can do at best."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------
# Case 2: an image folder of PNG files (decode + resize every epoch vs data.cache)
# --------------------------------------------------------------------------------------


def _image_folder_loader(root: Path, size: int, batch: int, shuffle: bool) -> DataLoader:
    """torchvision's ImageFolder with the usual transforms, workers = cores - 1, as tutorials do."""
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [transforms.Resize((size, size)), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.25] * 3)]
    )
    workers = max(0, (os.cpu_count() or 1) - 1)
    return DataLoader(
        datasets.ImageFolder(str(root), tf), batch_size=batch, shuffle=shuffle, num_workers=workers
    )


def _plain_fit(model: nn.Module, params, train_loader, val_loader, epochs: int) -> tuple[float, float]:
    """The textbook loop; returns (seconds, last validation accuracy)."""
    optimizer = torch.optim.Adam(params, lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
                total += len(y)
        accuracy = correct / max(total, 1)
    return time.perf_counter() - start, accuracy


def _cold_cache_train(cfg) -> float:
    """Wall time of a whole cnnctl run (data scan, image check, cache build, epochs, checkpoints),
    with empty caches: every repeat is a first run."""
    os.environ["CNNCTL_CACHE"] = tempfile.mkdtemp(prefix="cnnctl-bench-cache-")
    start = time.perf_counter()
    workflows.train(cfg, "bench", force=True)
    return time.perf_counter() - start


def case2(quick: bool, repeats: int) -> Result:
    from cnnctl.data.synthetic import write_image_folder

    work = Path(tempfile.mkdtemp(prefix="cnnctl-bench-"))
    per_class = 150 if quick else 750
    epochs = 2 if quick else 5
    write_image_folder(work / "train", 4, per_class, 64, seed=2, noise=0.1)
    write_image_folder(work / "val", 4, per_class // 5, 64, seed=3, noise=0.1)
    cfg = load_config(
        None,
        [
            "data.source=image_folder", f"data.root={work}", "data.image_size=32", "data.normalize=auto",
            "data.batch_size=64", "model.name=small_cnn", "optimizer.name=adam", f"train.epochs={epochs}",
            "device=cpu", "train.amp=off", "output.plots=false", f"output.dir={work / 'runs'}",
        ],
    )  # fmt: skip
    # root/train + root/val: cnnctl uses them as they are; the plain loop reads the same folders.
    (work / "runs").mkdir()
    train_loader = _image_folder_loader(work / "train", 32, 64, shuffle=True)
    val_loader = _image_folder_loader(work / "val", 32, 64, shuffle=False)

    def net() -> nn.Module:
        return classic_net(channels=3, size=32)

    def plain() -> float:
        torch.manual_seed(0)
        model = net()
        return _plain_fit(model, model.parameters(), train_loader, val_loader, epochs)[0]

    bare = bare_compute(net, list(train_loader), list(val_loader), epochs)  # decoded once, up front
    a, b, c = rotate(repeats, plain, lambda: _cold_cache_train(cfg), bare)
    files = 4 * (per_class + per_class // 5)
    return Result(
        f"2. image folder, {files} PNG (64px → 32px), small CNN x {epochs} epochs",
        a,
        b,
        "whole-run wall time; cnnctl's includes the image check and data.cache build (one decode "
        f"pass, cold caches every repeat); {ceiling(a, c)}; target ≥ 2",
    )


# --------------------------------------------------------------------------------------
# Case 3: frozen-backbone transfer learning (densenet121)
# --------------------------------------------------------------------------------------


def case3(quick: bool, repeats: int) -> Result:
    import torchvision

    from cnnctl.data.synthetic import write_image_folder

    work = Path(tempfile.mkdtemp(prefix="cnnctl-bench-"))
    per_class, size, epochs = (15, 96, 3) if quick else (50, 160, 5)
    write_image_folder(work / "train", 4, per_class, size, seed=4, noise=0.1)
    write_image_folder(work / "val", 4, per_class // 2, size, seed=5, noise=0.1)
    cfg = load_config(
        None,
        [
            "data.source=image_folder", f"data.root={work}", f"data.image_size={size}", "data.normalize=imagenet",
            "data.batch_size=32", "model.name=densenet121", "model.weights=none", "model.freeze=backbone",
            "optimizer.name=adam", f"train.epochs={epochs}", "device=cpu", "train.amp=off",
            "output.plots=false", f"output.dir={work / 'runs'}",
        ],
    )  # fmt: skip
    (work / "runs").mkdir()
    train_loader = _image_folder_loader(work / "train", size, 32, shuffle=True)
    val_loader = _image_folder_loader(work / "val", size, 32, shuffle=False)
    accuracy: dict[str, list[float]] = {"plain": [], "cnnctl": []}

    def plain() -> float:
        torch.manual_seed(0)
        model = torchvision.models.densenet121(weights=None)
        for p in model.parameters():
            p.requires_grad_(False)
        model.classifier = nn.Linear(1024, 4)
        seconds, acc = _plain_fit(model, model.classifier.parameters(), train_loader, val_loader, epochs)
        accuracy["plain"].append(acc)
        return seconds

    def ours() -> float:
        os.environ["CNNCTL_CACHE"] = tempfile.mkdtemp(prefix="cnnctl-bench-cache-")
        start = time.perf_counter()
        outcome = workflows.train(cfg, "bench", force=True)
        accuracy["cnnctl"].append(outcome.state.history[-1]["val_acc"])
        return time.perf_counter() - start

    a, b = rotate(repeats, plain, ours)
    files = 4 * (per_class + per_class // 2)
    return Result(
        f"3. densenet121 frozen (random init, offline), {files} PNG at {size}px x {epochs} epochs",
        a,
        b,
        f"model.cache_features; last val acc plain {statistics.median(accuracy['plain']):.3f} vs cnnctl "
        f"{statistics.median(accuracy['cnnctl']):.3f} (the plain loop keeps BatchNorm/dropout of the frozen part "
        "in train mode); target ≥ 4",
    )


# --------------------------------------------------------------------------------------
# Case 4: predict on a folder of files
# --------------------------------------------------------------------------------------


def case4(quick: bool, repeats: int) -> Result:
    from cnnctl.data.synthetic import write_image_folder
    from cnnctl.data.transforms import load_for_model

    work = Path(tempfile.mkdtemp(prefix="cnnctl-bench-"))
    per_class = 100 if quick else 500
    write_image_folder(work / "images", 4, per_class, 64, seed=1, noise=0.1)
    cfg = load_config(
        None,
        [
            "data.source=synthetic", "data.samples_per_class=50", "data.image_size=32", "train.epochs=1", "device=cpu",
            f"output.dir={work / 'runs'}",
        ],
    )  # fmt: skip
    run = workflows.train(cfg, "predict-bench").run_dir
    # The plain loop uses the network as stored (NCHW); the bare compute runs it the way
    # cnnctl predict does (channels_last), so that the ceiling bounds what cnnctl could reach.
    loaded = load_model(run / "best.pt", "cpu", inference_layout=False)
    model, spec = loaded.stepper.model.eval(), loaded.input
    fast = load_model(run / "best.pt", "cpu").stepper
    mean = torch.tensor(spec.mean).reshape(1, -1, 1, 1)
    std = torch.tensor(spec.std).reshape(1, -1, 1, 1)
    files = sorted((work / "images").rglob("*.png"))

    def plain() -> float:  # open → transform → model(x[None]), one image at a time
        start = time.perf_counter()
        with torch.no_grad():
            for path in files:
                x = (load_for_model(path, spec).float()[None] / 255 - mean) / std
                model(x).softmax(dim=1)
        return time.perf_counter() - start

    def ours() -> float:
        start = time.perf_counter()
        count = sum(1 for _ in predict(run / "best.pt", [work / "images"], device="cpu"))
        assert count == len(files)
        return time.perf_counter() - start

    started = time.perf_counter()
    batches = [  # decoded up front: what the model alone costs, batched as cnnctl does
        torch.stack([load_for_model(path, spec) for path in files[i : i + 64]])
        for i in range(0, len(files), 64)
    ]
    decode = time.perf_counter() - started  # one process decoding every file once

    def bare() -> float:
        start = time.perf_counter()
        for x in batches:
            fast.predict(x)
        return time.perf_counter() - start

    def bare_one_thread() -> float:  # the model's CPU-seconds at its best per-core efficiency
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return bare()
        finally:
            torch.set_num_threads(threads)

    a, b, c, d = rotate(repeats, plain, ours, bare, bare_one_thread)
    # Memory must not grow with the folder: the same files linked 10x over, predicted in a fresh
    # process each, peak RSS compared.
    big = work / "ten_times"
    for copy in range(10):
        for path in files:
            target = big / f"{copy}" / path.relative_to(work / "images")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    small_rss, big_rss = (peak_rss_of_predict(run / "best.pt", folder) for folder in (work / "images", big))
    cores = os.cpu_count() or 1
    floor = (decode + statistics.median(d)) / cores
    return Result(
        f"4. predict {len(files)} PNG files (64px → 32px), small CNN",
        a,
        b,
        f"target ≥ 3; decoding every file takes {decode:.2f} CPU-s and the model on ready batches of 64 "
        f"{statistics.median(c):.2f} s on {torch.get_num_threads()} threads, {statistics.median(d):.2f} "
        f"CPU-s on one, so spread perfectly over {cores} cores no tool can take less than "
        f"{floor:.2f} s → ceiling {statistics.median(a) / floor:.2f}; "
        f"peak RSS {small_rss:.0f} MiB for {len(files)} files, {big_rss:.0f} MiB for "
        f"{10 * len(files)} (predictions streamed to CSV)",
    )


def peak_rss_of_predict(checkpoint: Path, folder: Path) -> float:
    """Peak resident memory (MiB) of `cnnctl predict CHECKPOINT FOLDER --out x.csv` in its own process."""
    code = (
        "import resource, sys\n"
        "from cnnctl.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = folder.parent / f"{folder.name}.csv"
    done = subprocess.run(
        [sys.executable, "-c", code, "predict", str(checkpoint), str(folder), "--out", str(out), "--show", "0"],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return int(done.stdout.strip().splitlines()[-1]) / 1024


# --------------------------------------------------------------------------------------
# Case 5: start-up
# --------------------------------------------------------------------------------------


def case5(quick: bool, repeats: int) -> list[Result]:
    cli = [sys.executable, "-m", "cnnctl"]
    config = ROOT / "configs" / "demo.yaml"

    def timed(args: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        return time.perf_counter() - start

    bare = [sys.executable, "-c", "pass"]
    results = []
    for label, args in (
        ("--help", [*cli, "--help"]),
        ("config validate", [*cli, "config", "validate", str(config)]),
        ("models", [*cli, "models"]),
    ):
        a, b = rotate(repeats, lambda: timed(bare), lambda args=args: timed(args))
        results.append(
            Result(f"5. start-up: cnnctl {label} (plain = bare `python -c pass`)", a, b, "target < 0.5 s")
        )
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, {datetime.date.today().isoformat()}"
    )


def table(results: list[Result]) -> str:
    lines = [
        "| case | plain loop (median s) | cnnctl (median s) | ratio plain/cnnctl | note |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.case} | {statistics.median(r.plain):.3f} | {statistics.median(r.cnnctl):.3f} | "
            f"**{r.ratio:.2f}** | {r.note} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 4)
    results: list[Result] = []
    for case in args.cases:
        print(f"case {case} ...", flush=True)
        if case == 1:
            results.append(case1(args.quick, repeats))
        elif case == 2:
            results.append(case2(args.quick, repeats))
        elif case == 3:
            results.append(case3(args.quick, min(repeats, 2)))
        elif case == 4:
            results.append(case4(args.quick, repeats))
        elif case == 5:
            results += case5(args.quick, max(repeats, 5))
        else:
            parser.error(f"unknown case {case}")
        print(table(results[-1:]).splitlines()[-1], flush=True)
    text = (
        f"# Benchmarks\n\nMachine: {machine()}\n\nCommand: `python bench/run.py {' '.join(sys.argv[1:])}`\n\n"
    )
    text += table(results) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print()
    print(text)


if __name__ == "__main__":
    main()
