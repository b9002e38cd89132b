"""The CUDA paths, run for real where an NVIDIA GPU is present (skipped elsewhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import TINY, invoke, merge

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_cuda_training_with_amp_and_pinned_memory(runner, write_config, amp: str) -> None:
    config = write_config({"device": "cuda", "train": {"amp": amp}, "data": {"pin_memory": True}})
    result = invoke(runner, "--verbose", "train", config, "--name", amp)
    assert result.exit_code == 0, result.output
    assert f"amp {amp}" in result.output and "pin_memory True" in result.output
    summary = json.loads((config.parent / "runs" / amp / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["test"]["count"] > 0
    last = torch.load(config.parent / "runs" / amp / "last.pt", weights_only=True)
    assert bool(last["scaler"]) == (amp == "fp16")  # a GradScaler only for fp16


def test_a_cuda_checkpoint_predicts_on_the_cpu(runner, write_config, tmp_path: Path) -> None:
    config = write_config({"device": "cuda"})
    assert invoke(runner, "train", config).exit_code == 0
    images = tmp_path / "images"
    assert invoke(runner, "data", "synth", images, "--per-class", "2", "--classes", "3").exit_code == 0
    result = invoke(runner, "predict", config.parent / "runs" / "tiny", images, "--device", "cpu")
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs for NCCL")
def test_ddp_with_nccl_on_two_gpus(tmp_path: Path) -> None:
    cfg = merge(TINY, {"device": "cuda", "output": {"dir": str(tmp_path / "runs")}})
    config = tmp_path / "nccl.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cnnctl", "train", str(config), "--nproc", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes (nccl)" in done.stdout
