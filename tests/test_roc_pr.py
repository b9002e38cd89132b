"""ROC AUC and PR AUC per class (one-vs-rest) and their macro means, from the histogram sums
that DDP reduces, checked against scikit-learn on the same (binned) scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from cnnctl.tasks import curves
from cnnctl.tasks.metrics import MetricAccumulator
from cnnctl.tasks.multi_label_metrics import MultiLabelAccumulator
from tests.conftest import invoke
from tests.test_reports import assert_png


def _binned(probs: torch.Tensor) -> torch.Tensor:
    return (probs * curves.BINS).floor().clamp(max=curves.BINS - 1)


def _softmax_scores(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, k, (n,), generator=gen)
    logits = torch.randn(n, k, generator=gen) + 1.5 * torch.nn.functional.one_hot(targets, k)
    return logits.softmax(dim=1), targets


def test_auc_and_ap_match_scikit_learn_with_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(400, generator=gen) < 0.3
    scores = (torch.rand(400, generator=gen) * 0.6 + 0.4 * truth).clamp(max=0.999)
    scores[:50] = 0.5  # a block of ties
    hist = curves.histogram(scores[:, None], truth[:, None])
    binned = _binned(scores).numpy()
    assert curves.roc_auc(hist[1, 0], hist[0, 0]) == pytest.approx(roc_auc_score(truth.numpy(), binned))
    ap = curves.average_precision(hist[1, 0], hist[0, 0])
    assert ap == pytest.approx(average_precision_score(truth.numpy(), binned))
    fpr, tpr = curves.roc_curve(hist[1, 0], hist[0, 0])
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and fpr[-1] == pytest.approx(1.0) and tpr[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(fpr, fpr[1:], strict=False))


def test_undefined_auc_is_none_not_a_number() -> None:
    only_positives = curves.histogram(torch.tensor([[0.2], [0.9]]), torch.tensor([[True], [True]]))
    assert curves.roc_auc(only_positives[1, 0], only_positives[0, 0]) is None
    assert curves.roc_curve(only_positives[1, 0], only_positives[0, 0]) == ([], [])
    nothing = torch.zeros(curves.BINS)
    assert curves.average_precision(nothing, only_positives[1, 0]) is None
    assert curves.macro([None, 0.5, None, 1.0]) == 0.75 and curves.macro([None]) is None


def test_single_label_per_class_and_macro_match_scikit_learn() -> None:
    probs, targets = _softmax_scores(600, 4, seed=1)
    acc = MetricAccumulator(["a", "b", "c", "d"])
    for start in range(0, 600, 128):  # batch by batch, as evaluate feeds it
        acc.update(probs[start : start + 128], targets[start : start + 128], torch.tensor(0.0))
    plain = acc.result().to_plain()
    binned = _binned(probs).numpy()
    one_hot = torch.nn.functional.one_hot(targets, 4).numpy()
    for i, row in enumerate(plain["per_class"]):
        assert row["roc_auc"] == pytest.approx(roc_auc_score(one_hot[:, i], binned[:, i]))
        assert row["pr_auc"] == pytest.approx(average_precision_score(one_hot[:, i], binned[:, i]))
    assert plain["roc_auc"] == pytest.approx(roc_auc_score(one_hot, binned, average="macro"))
    assert plain["pr_auc"] == pytest.approx(average_precision_score(one_hot, binned, average="macro"))
    assert 0.7 < plain["roc_auc"] < 1.0  # informative scores, not a constant


def test_histograms_survive_the_all_reduce_as_sums() -> None:
    """Two 'ranks' each seeing half the data, summed by the reduce, give the whole split's AUC."""
    probs, targets = _softmax_scores(300, 3, seed=2)
    whole, halves = MetricAccumulator(["a", "b", "c"]), [MetricAccumulator(["a", "b", "c"]) for _ in range(2)]
    whole.update(probs, targets, torch.tensor(3.0))
    halves[0].update(probs[:150], targets[:150], torch.tensor(1.0))
    halves[1].update(probs[150:], targets[150:], torch.tensor(2.0))
    sent: list[torch.Tensor] = []
    halves[1].all_reduce(lambda t: sent.append(t.clone()) or t, torch.device("cpu"))  # rank 1's sums
    halves[0].all_reduce(lambda t: t + sent[0], torch.device("cpu"))  # rank 0 gets both
    assert halves[0].result().to_plain()["per_class"] == whole.result().to_plain()["per_class"]
    assert halves[0].result().ece == pytest.approx(whole.result().ece)
    assert halves[0].count == 300


def test_multi_label_roc_auc_matches_scikit_learn() -> None:
    gen = torch.Generator().manual_seed(3)
    truth = torch.rand(500, 3, generator=gen) < torch.tensor([0.2, 0.5, 0.7])
    probs = (torch.rand(500, 3, generator=gen) * 0.7 + 0.3 * truth).clamp(max=0.999)
    acc = MultiLabelAccumulator(["x", "y", "z"])
    acc.update(probs, truth.float(), torch.tensor(0.0))
    plain = acc.result().to_plain()
    binned = _binned(probs).numpy()
    for i, row in enumerate(plain["per_label"]):
        assert row["roc_auc"] == pytest.approx(roc_auc_score(truth[:, i].numpy(), binned[:, i]))
    assert plain["roc_auc"] == pytest.approx(roc_auc_score(truth.numpy(), binned, average="macro"))


def test_evaluate_reports_auc_and_draws_roc_and_pr(runner, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    result = invoke(runner, "evaluate", trained_run, "--json", "-", "--plots", out)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert 0.0 <= data["roc_auc"] <= 1.0 and 0.0 <= data["pr_auc"] <= 1.0
    assert {"roc_auc", "pr_auc"} <= set(data["per_class"][0])
    assert_png(out / "eval_test_roc.png")
    assert_png(out / "eval_test_pr.png")
    table = invoke(runner, "evaluate", trained_run, "--no-plots")
    assert "macro ROC AUC" in table.output and "roc_auc" in table.output
