"""The multi-label metrics (built from sums, so DDP can reduce them) agree with scikit-learn's."""

from __future__ import annotations

import pytest
import torch

from cnnctl.tasks.multi_label_metrics import BINS, MultiLabelAccumulator, average_precision

metrics = pytest.importorskip("sklearn.metrics")


def sample(seed: int, n: int = 300, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    truth = (torch.rand(n, k, generator=g) < torch.tensor([0.5, 0.2, 0.05, 0.7])[:k]).float()
    probs = (0.35 * truth + 0.65 * torch.rand(n, k, generator=g)).clamp(0, 1)  # informative, noisy
    return probs, truth


@pytest.mark.parametrize("seed", range(5))
def test_the_metrics_match_scikit_learn(seed: int) -> None:
    probs, truth = sample(seed)
    thresholds = [0.3, 0.5, 0.55, 0.4]
    acc = MultiLabelAccumulator(["a", "b", "c", "d"], thresholds)
    for start in range(0, len(probs), 64):  # batch by batch
        acc.update(probs[start : start + 64], truth[start : start + 64], torch.tensor(0.0))
    result = acc.result()
    decided = (probs >= torch.tensor(thresholds)).numpy()
    y, binned = truth.numpy(), (torch.floor(probs * BINS) / BINS).numpy()
    for i, row in enumerate(result.per_label):
        assert row["ap"] == pytest.approx(metrics.average_precision_score(y[:, i], binned[:, i]), abs=1e-9)
        assert row["f1"] == pytest.approx(metrics.f1_score(y[:, i], decided[:, i], zero_division=0))
        assert row["support"] == int(y[:, i].sum()) and row["threshold"] == pytest.approx(thresholds[i])
    assert result.map == pytest.approx(sum(r["ap"] for r in result.per_label) / 4)
    assert result.micro_f1 == pytest.approx(metrics.f1_score(y, decided, average="micro", zero_division=0))
    assert result.macro_f1 == pytest.approx(metrics.f1_score(y, decided, average="macro", zero_division=0))
    assert result.exact_match == pytest.approx(metrics.accuracy_score(y, decided))
    assert result.hamming_loss == pytest.approx(metrics.hamming_loss(y, decided))


def test_thresholds_maximise_f1_per_label() -> None:
    probs, truth = sample(7)
    acc = MultiLabelAccumulator(["a", "b", "c", "d"])
    acc.update(probs, truth, torch.tensor(0.0))
    chosen = acc.best_thresholds()
    candidates = torch.arange(BINS) / BINS
    for i, threshold in enumerate(chosen):
        f1 = [metrics.f1_score(truth[:, i], probs[:, i] >= t, zero_division=0) for t in candidates.tolist()]
        assert metrics.f1_score(truth[:, i], probs[:, i] >= threshold, zero_division=0) == pytest.approx(
            max(f1)
        )


def test_a_label_without_positives() -> None:
    acc = MultiLabelAccumulator(["a", "b"])
    acc.update(
        torch.tensor([[0.9, 0.2], [0.1, 0.4]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor(1.0)
    )
    result = acc.result()
    assert result.per_label[1]["ap"] is None and result.map == pytest.approx(
        1.0
    )  # mAP over labels with positives
    assert acc.best_thresholds()[1] == 0.5
    assert average_precision(torch.zeros(BINS), torch.ones(BINS)) is None


def test_all_reduce_sums_two_processes_worth() -> None:
    probs, truth = sample(3)
    whole = MultiLabelAccumulator(["a", "b", "c", "d"])
    whole.update(probs, truth, torch.tensor(2.0))
    half = MultiLabelAccumulator(["a", "b", "c", "d"])
    half.update(probs[::2], truth[::2], torch.tensor(1.0))
    other = MultiLabelAccumulator(["a", "b", "c", "d"])
    other.update(probs[1::2], truth[1::2], torch.tensor(1.0))
    sent: list[torch.Tensor] = []  # what the other process contributes to the sum
    other.all_reduce(lambda t: sent.append(t.clone()) or t, torch.device("cpu"))
    half.all_reduce(lambda t: t + sent[0], torch.device("cpu"))
    got, want = half.result(), whole.result()
    assert got.to_plain() == want.to_plain() and got.best_thresholds == want.best_thresholds
    assert got.curves == want.curves and got.reliability is not None and want.reliability is not None
    assert torch.allclose(got.reliability, want.reliability)
