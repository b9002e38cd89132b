"""data.batch_size: auto, and running out of memory mid-run."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from cnnctl.config import load_config
from cnnctl.engine import autobatch
from cnnctl.workflows import train as workflows
from tests.conftest import invoke


def test_auto_on_cpu_is_64_capped_by_the_train_split(write_config) -> None:
    outcome = workflows.train(load_config(write_config({"data": {"batch_size": "auto"}})), "auto")
    stored = yaml.safe_load((outcome.run_dir / "config.yaml").read_text())
    assert stored["data"]["batch_size"] == 18  # 18 training images < 64


def test_probe_backs_off_at_the_first_out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[int] = []

    def fake_trains(model, normalizer, shape, device, size, loss_of):  # type: ignore[no-untyped-def]
        tried.append(size)
        return size <= 128  # 256 "runs out of memory"

    monkeypatch.setattr(autobatch, "_trains", fake_trains)
    size = autobatch.choose(
        nn.Linear(2, 2), nn.Identity(), (3, 8, 8), torch.device("cuda"), 10_000, lambda o: o.sum()
    )
    assert size == 128 and tried == [16, 32, 64, 128, 256]
    assert (
        autobatch.choose(
            nn.Linear(2, 2), nn.Identity(), (3, 8, 8), torch.device("cuda"), 40, lambda o: o.sum()
        )
        == 32
    )


def test_an_out_of_memory_mid_run_is_one_clear_line(
    runner, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnctl.engine.stepper import Stepper

    def oom(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.position = (1, 3)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Stepper, "train_epoch", oom)
    result = invoke(runner, "train", write_config())
    assert result.exit_code == 1
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(
            "error: out of memory at epoch 1, batch 3 with data.batch_size 8 on cpu: lower data.batch_size"
        )
    )
