"""train.accumulate and train.mixup_alpha / cutmix_alpha."""

from __future__ import annotations

import pytest
import torch

from cnnctl.config import load_config
from cnnctl.session.optim import batch_mixer, train_loss_fn
from cnnctl.workflows import train as workflows
from cnnctl.workflows.evaluate import evaluate
from tests.conftest import TINY, invoke

NO_DROPOUT = {"model": {**TINY["model"], "dropout": 0.0}}


def test_accumulating_two_batches_of_4_equals_one_batch_of_8(write_config) -> None:
    big = load_config(write_config({**NO_DROPOUT, "data": {"batch_size": 8}}, name="big"))
    small = load_config(
        write_config({**NO_DROPOUT, "data": {"batch_size": 4}, "train": {"accumulate": 2}}, name="acc")
    )
    a, b = workflows.train(big, "big"), workflows.train(small, "acc")
    for row_a, row_b in zip(a.state.history, b.state.history, strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-5, abs=1e-7), key
    unaccumulated = workflows.train(
        load_config(write_config({**NO_DROPOUT, "data": {"batch_size": 4}}, name="four")), "four"
    )
    assert unaccumulated.state.history[0]["val_loss"] != pytest.approx(
        b.state.history[0]["val_loss"], rel=1e-6
    )


def test_mixup_and_cutmix_batches_carry_soft_targets() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 4
    for mixer in (batch_mixer(0.4, 0.0, 4), batch_mixer(0.0, 1.0, 4), batch_mixer(0.4, 1.0, 4)):
        assert mixer is not None
        mixed, targets = mixer(x, y)
        assert mixed.shape == x.shape and targets.shape == (16, 4) and targets.is_floating_point()
        assert torch.allclose(targets.sum(dim=1), torch.ones(16))
        assert not torch.equal(mixed, x) and (targets.max(dim=1).values < 1).any()
    assert batch_mixer(0.0, 0.0, 4) is None
    soft = torch.full((2, 4), 0.25)
    log_probs = torch.log_softmax(torch.randn(2, 4), dim=1)
    assert train_loss_fn("nll", 0.0)(log_probs, soft) == pytest.approx(
        float(-(soft * log_probs).sum(1).mean())
    )


def test_training_with_mixup_and_cutmix(runner, write_config) -> None:
    config = write_config({"train": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "epochs": 2}})
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    outcome = workflows.train(load_config(config), "again")
    assert all(0.0 <= row["train_acc"] <= 1.0 for row in outcome.state.history)  # on hard labels
    plain = workflows.train(load_config(write_config(name="plain")), "plain")
    assert plain.state.history[0]["train_loss"] != pytest.approx(outcome.state.history[0]["train_loss"])

    binary = write_config(
        {"data": {"num_classes": 2}, "train": {"loss": "bce_with_logits", "mixup_alpha": 0.2}}, name="bce"
    )
    refused = invoke(runner, "train", binary)
    assert (
        refused.exit_code == 2
        and "mixup_alpha / cutmix_alpha need loss cross_entropy or nll" in refused.output
    )


def test_ema_weights_are_validated_and_best_pt_records_which_won(write_config, runner) -> None:
    config = write_config(
        {"train": {"epochs": 4, "ema": {"decay": 0.9}}, "optimizer": {"name": "sgd", "lr": 0.05}}
    )
    outcome = workflows.train(load_config(config), "ema")
    chosen = {row["weights"] for row in outcome.state.history}
    assert chosen <= {"raw", "ema"}
    best = torch.load(outcome.run_dir / "best.pt", weights_only=True)
    last = torch.load(outcome.run_dir / "last.pt", weights_only=True)
    assert best["weights"] == outcome.state.history[outcome.state.best_epoch - 1]["weights"]
    ema_weights = {k[7:]: v for k, v in last["ema"].items() if k.startswith("module.")}
    assert ema_weights.keys() == last["model"].keys()
    assert any(not torch.equal(ema_weights[k], last["model"][k]) for k in ema_weights)  # EMA ≠ raw
    if best["epoch"] == last["epoch"]:
        expected = ema_weights if best["weights"] == "ema" else last["model"]
        assert all(torch.equal(best["model"][k], expected[k]) for k in expected)
    # The summary's test figures are those of best.pt's weights.
    evaluated, _ = evaluate(outcome.run_dir / "best.pt", device="cpu")
    assert outcome.test is not None and evaluated.loss == pytest.approx(outcome.test.loss, rel=1e-5)


def test_ema_wins_when_the_raw_weights_are_noisy(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnctl.engine.stepper import Stepper

    original = Stepper.evaluate

    def raw_is_bad(self, batches, classes, topk=(1,), keep_wrong=0, model=None):  # type: ignore[no-untyped-def]
        result = original(self, batches, classes, topk, keep_wrong, model)
        if model is None:  # the raw weights: pretend they validate badly
            result.loss += 10.0
        return result

    monkeypatch.setattr(Stepper, "evaluate", raw_is_bad)
    outcome = workflows.train(
        load_config(write_config({"train": {"epochs": 2, "ema": {"decay": 0.5}}})), "ema"
    )
    assert [row["weights"] for row in outcome.state.history] == ["ema", "ema"]
    assert torch.load(outcome.run_dir / "best.pt", weights_only=True)["weights"] == "ema"


@pytest.mark.parametrize("name", ["cosine", "plateau", "step", "none"])
def test_warmup_starts_at_a_hundredth_of_the_lr_for_any_schedule(name: str) -> None:
    from cnnctl.config import SchedulerConfig
    from cnnctl.engine.schedule import Schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cfg = SchedulerConfig.model_validate(
        {"name": name, "warmup_epochs": 1.0, **({"patience": 2} if name == "plateau" else {})}
    )
    schedule = Schedule(cfg, optimizer, epochs=5, steps_per_epoch=10)
    assert schedule.lr == pytest.approx(0.001)  # the first step's lr
    for _ in range(10):
        optimizer.step()
        schedule.step_batch()
    assert schedule.lr == pytest.approx(0.1, rel=1e-6)  # warmup over: the full lr
    if name == "plateau":  # from now on only the plateau rule moves the lr
        for _ in range(5):
            schedule.step_epoch(1.0)
            for _ in range(10):
                optimizer.step()
                schedule.step_batch()
        assert schedule.lr == pytest.approx(0.1 * cfg.factor)
