"""Checkpoints: atomic writes that survive crashes, and reads that never run code."""

from __future__ import annotations

import errno
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.core.errors import CheckpointError, RunFailed
from tests.conftest import invoke


def payload(value: float, size: int = 1000) -> dict:
    return {
        "format": ckpt.FORMAT,
        "format_version": ckpt.FORMAT_VERSION,
        "model": {"w": torch.full((size,), value)},
        "model_spec": {},
        "output_kind": "logits",
        "classes": ["a", "b"],
        "input": {},
        "config": {},
    }


def test_exception_inside_torch_save_leaves_the_old_file_intact(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "best.pt"
    ckpt.save_atomic(payload(1.0), target)
    before = target.read_bytes()

    def exploding_save(obj, handle) -> None:
        handle.write(b"half a checkpoint")
        raise RuntimeError("boom in the middle of torch.save")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(RunFailed, match="boom in the middle of torch.save.*earlier checkpoints are intact"):
        ckpt.save_atomic(payload(2.0), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # no stray temp file


def test_disk_full_is_one_clear_line_and_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.pt"
    ckpt.save_atomic(payload(1.0), target)
    before = target.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RunFailed, match="No space left on device.*earlier checkpoints are intact"):
        ckpt.save_atomic(payload(2.0), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


SAVER = """
import sys, torch
from cnnctl.artifacts import checkpoint as ckpt
target = sys.argv[1]
i = 0
print("ready", flush=True)
while True:
    i += 1
    ckpt.save_atomic({"format": ckpt.FORMAT, "format_version": 1, "model": {"w": torch.full((200_000,), float(i))},
                      "model_spec": {"num_outputs": 2}, "output_kind": "logits", "classes": ["a", "b"], "config": {},
                      "input": {"channels": 1, "size": [4, 4], "resize": None, "mean": [0.5], "std": [0.5]}}, __import__("pathlib").Path(target))
"""


def test_sigkill_at_random_moments_never_leaves_a_broken_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "best.pt"
    rng = random.Random(0)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if target.exists():
            data = ckpt.load_checkpoint(target)
            w = data["model"]["w"]
            assert torch.all(w == w[0])  # a whole checkpoint, never a mix or a truncation
    assert target.exists()


class Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path, runner) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    data = payload(1.0)
    data["classes"] = Exploit(str(marker))
    torch.save(data, evil)
    with pytest.raises(CheckpointError, match="refused to load.*could run code"):
        ckpt.load_checkpoint(evil)
    result = invoke(runner, "predict", evil, tmp_path)
    assert result.exit_code == 2 and "refused to load" in result.output
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    ckpt.save_atomic(payload(1.0, size=10_000), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ckpt.load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not a cnnctl checkpoint"):
        ckpt.load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    torch.save({**payload(1.0), "format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="newer cnnctl"):
        ckpt.load_checkpoint(newer)


def test_plain_pickle_of_the_exploit_really_runs(tmp_path: Path) -> None:
    """Guard for the test above: the crafted object does execute under an unsafe load."""
    marker = tmp_path / "ran"
    blob = pickle.dumps(Exploit(str(marker)))
    pickle.loads(blob)  # noqa: S301 - deliberately unsafe, on our own bytes
    assert marker.exists()
