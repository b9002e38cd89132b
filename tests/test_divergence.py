"""A diverging run says so (issue 15, part 8): on the epoch line, and at the end with the key
to change (optimizer.lr, its value, `cnnctl lr-find`)."""

from __future__ import annotations

import math

import pytest
import torch

from cnnctl.engine.loop import divergence, divergence_advice
from cnnctl.engine.state import EpochRow
from cnnctl.report.console import epoch_line
from tests.conftest import invoke

LN10 = math.log(10)


def rows(*losses: float) -> list[dict[str, float]]:
    return [{"epoch": i, "train_loss": loss} for i, loss in enumerate(losses, start=1)]


def test_a_healthy_run_is_never_flagged() -> None:
    losses = [2.2, 1.4, 0.9, 0.95, 0.6, 0.3, 0.12, 0.05, 0.08, 0.01, 0.04]  # bumps, a wobble near zero
    for i, loss in enumerate(losses):
        assert divergence(rows(*losses[:i]), loss, 0.5, 10) == "", (i, loss)
    assert divergence([], 2.4, 2.3, 10) == ""  # a first epoch a little above chance
    assert divergence([], 1.2, 1.1, 3) == ""


def test_back_at_chance_after_having_learned() -> None:
    assert (
        divergence(rows(1.2, 0.41, 0.9), 2.3, 2.3, 10)
        == "train loss 2.30 is at chance (ln 10 = 2.30) after 0.41 at epoch 2"
    )
    assert divergence(rows(1.2, 0.9), 2.6, 2.3, 10) == (
        "train loss 2.60 is above chance (ln 10 = 2.30) after 0.90 at epoch 2"
    )
    assert divergence(rows(2.0), 2.3, 2.3, 10) == ""  # 2.0 had not learned much: no flag


def test_a_blow_up_is_four_times_the_lowest_or_chance() -> None:
    assert divergence(rows(0.5, 0.3), 1.3, 1.0, 10) == "train loss 1.30 is 4.33x its lowest, 0.30 at epoch 2"
    assert divergence(rows(0.5, 0.3), 1.1, 1.0, 10) == ""  # 3.7x
    assert divergence(rows(0.01), 0.05, 0.1, 10) == ""  # 5x, but far below half of chance level
    assert divergence([], 22578.6, 15.8, 3) == "train loss 2.26e+04 is 2.06e+04x chance level (ln 3 = 1.10)"
    assert divergence(rows(30.0), 11.75, 20.0, 3) == "train loss 11.75 is 10.70x chance level (ln 3 = 1.10)"


def test_non_finite_losses_and_skipped_batches() -> None:
    assert divergence(rows(1.0), math.inf, 1.0, 10) == "train loss is inf"
    assert divergence(rows(1.0), 0.9, math.nan, 10) == "val loss is nan"
    assert divergence(rows(1.0), 0.9, 0.9, 10, skipped=2, batches=9) == (
        "2 of 9 batch(es) had a non-finite loss (skipped, train.nan_policy: skip_batch)"
    )


def test_the_epoch_line_and_the_advice() -> None:
    row = EpochRow(3, 2.3, 0.1, 2.3, 0.1, 50.0, 0.5, diverging="train loss 2.30 is at chance")
    assert epoch_line(row, 9).endswith("0.5s  diverging: train loss 2.30 is at chance")
    assert "diverging" not in epoch_line(EpochRow(3, 2.3, 0.1, 2.3, 0.1, 50.0, 0.5), 9)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=50)
    history = [
        {"epoch": 1, "diverging": ""},
        {"epoch": 2, "diverging": "why"},
        {"epoch": 3, "diverging": "x"},
    ]
    advice = divergence_advice(history, optimizer)
    assert advice.startswith("training diverged (2 of 3 epochs; first at epoch 2: why): ")
    assert "lower optimizer.lr (this run: 50, SGD)" in advice and "cnnctl lr-find" in advice
    assert divergence_advice(history[:1], optimizer) == ""


@pytest.mark.parametrize("nan_policy", ["stop", "skip_batch"])
def test_a_huge_lr_says_the_run_is_diverging(runner, write_config, nan_policy: str) -> None:
    config = write_config(
        {
            "optimizer": {"name": "sgd", "lr": 50, "momentum": 0.0},
            "train": {"epochs": 2, "nan_policy": nan_policy},
        }
    )
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    epochs = [line for line in result.output.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("  diverging: train loss " in line for line in epochs)
    advice = next(line for line in result.output.splitlines() if "training diverged" in line)
    assert advice.startswith("warning: training diverged (2 of 2 epochs; first at epoch 1: train loss ")
    assert "optimizer.lr (this run: 50, SGD)" in advice and "`cnnctl lr-find CONFIG`" in advice


def test_a_healthy_run_shows_neither(runner, write_config) -> None:
    result = invoke(runner, "train", write_config())
    assert result.exit_code == 0, result.output
    assert "diverg" not in result.output and "lr-find" not in result.output


def test_a_non_finite_loss_under_nan_policy_stop_says_it_diverged(runner, write_config) -> None:
    config = write_config({"optimizer": {"name": "sgd", "lr": 1e12, "momentum": 0.0}})
    result = invoke(runner, "train", config)
    assert result.exit_code == 1
    assert "non-finite training loss" in result.output and "the run diverged" in result.output
    assert "lower optimizer.lr (`cnnctl lr-find CONFIG` suggests one)" in result.output
