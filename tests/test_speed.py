"""Speed switches change how, never what: channels_last and torch.compile."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cnnctl.config import load_config
from cnnctl.workflows import train as workflows
from cnnctl.workflows.evaluate import evaluate


def test_channels_last_trains_to_the_same_numbers(write_config) -> None:
    plain = workflows.train(load_config(write_config(name="nchw")), "nchw")
    nhwc = workflows.train(load_config(write_config({"train": {"channels_last": True}}, name="nhwc")), "nhwc")
    for a, b in zip(plain.state.history, nhwc.state.history, strict=True):
        for key in ("train_loss", "val_loss", "val_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    # A channels_last checkpoint rebuilds as a plain model and scores the same.
    result, _ = evaluate(nhwc.run_dir / "best.pt", device="cpu")
    assert nhwc.test is not None and result.loss == pytest.approx(nhwc.test.loss, rel=1e-4)


def test_compile_wraps_the_stepped_model(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Any] = []

    def fake_compile(model: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
        compiled.append(model)
        return model  # the real compile needs minutes here; what matters is that it is asked for

    monkeypatch.setattr(torch, "compile", fake_compile)
    workflows.train(load_config(write_config({"train": {"compile": True}})), "compiled")
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    workflows.train(load_config(write_config(name="plain")), "plain")
    assert len(compiled) == 1  # off by default
