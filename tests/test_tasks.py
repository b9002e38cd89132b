"""The task seam: single_label's outputs, decisions and losses agree with each other, records
read back to the task they were made for, and the engine asks its task (never an output kind)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

from cnnctl import tasks
from cnnctl.engine.stepper import Stepper
from cnnctl.runtime.devices import Precision
from cnnctl.tasks.single_label import BINARY_LOGIT, LOG_PROBS, LOGITS, OUTPUT_KINDS, SingleLabel


def outputs_for(kind: str, n: int = 6, classes: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == BINARY_LOGIT:
        return torch.randn(n, 1, generator=g)
    raw = torch.randn(n, classes, generator=g)
    return raw.log_softmax(dim=1) if kind == LOG_PROBS else raw


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
def test_single_label_probabilities_decisions_and_loss_agree(kind: str) -> None:
    task = SingleLabel(kind)
    out = outputs_for(kind)
    probs = task.probabilities(out)
    classes = 2 if kind == BINARY_LOGIT else 3
    assert probs.shape == (6, classes) and task.num_outputs(classes) == out.shape[1]
    assert torch.allclose(probs.sum(dim=1), torch.ones(6), atol=1e-6)
    assert torch.equal(task.predicted(out), probs.argmax(dim=1))
    names = ["a", "b", "c"][:classes]
    for row, (label, probability, pairs) in enumerate(task.decide(probs, names, 2)):
        assert label == names[int(probs[row].argmax())] and probability == pytest.approx(
            float(probs[row].max())
        )
        assert [p for _, p in pairs] == sorted((p for _, p in pairs), reverse=True) and len(pairs) == 2
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    nll = -probs[torch.arange(6), targets].log().sum()
    assert float(task.eval_loss_sum(out, targets)) == pytest.approx(float(nll), rel=1e-5)


def test_training_and_records_choose_the_same_task() -> None:
    assert tasks.for_training("cross_entropy", False).output_kind == LOGITS
    assert tasks.for_training("nll", True).output_kind == LOG_PROBS
    assert tasks.for_training("bce_with_logits", False).output_kind == BINARY_LOGIT
    for kind in OUTPUT_KINDS:  # a checkpoint from before tasks has no `task` key: single_label
        assert tasks.from_record({"output_kind": kind}) == SingleLabel(kind)
    assert tasks.from_record({"task": "single_label", "output_kind": LOG_PROBS}).name == "single_label"
    with pytest.raises(ValueError, match="not one of"):
        SingleLabel("banana")


def test_bce_needs_two_classes() -> None:
    task = tasks.for_training("bce_with_logits", False)
    assert task.problem("bce_with_logits", 2) is None
    assert task.problem("bce_with_logits", 3) == "train.loss: bce_with_logits needs 2 classes, the data has 3"


def test_prediction_columns_follow_top_k() -> None:
    task = SingleLabel()
    assert task.prediction_columns(1) == ["path", "label", "probability", "error"]
    assert task.prediction_columns(2) == [
        "path",
        "label",
        "probability",
        "top1_label",
        "top1_probability",
        "top2_label",
        "top2_probability",
        "error",
    ]


@dataclass
class Counting:
    """A task of its own: single_label's rules, counting each call the engine makes."""

    inner: SingleLabel = field(default_factory=SingleLabel)
    calls: dict[str, int] = field(default_factory=dict)
    name: str = "counting"

    @property
    def output_kind(self) -> str:
        return self.inner.output_kind

    def __getattr__(self, attr: str) -> Any:
        method = getattr(self.inner, attr)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[attr] = self.calls.get(attr, 0) + 1
            return method(*args, **kwargs)

        return counted


def test_the_stepper_asks_its_task() -> None:
    """What the outputs mean comes from the task alone: a new task needs no engine edit."""
    torch.manual_seed(0)
    task = Counting()
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    stepper = Stepper(model, nn.Identity(), torch.device("cpu"), Precision(None), task)  # type: ignore[arg-type]
    x = torch.randint(0, 255, (5, 3, 4, 4), dtype=torch.uint8).float()
    y = torch.tensor([0, 1, 2, 1, 0])
    result = stepper.evaluate([(x, y)], ["a", "b", "c"])  # type: ignore[arg-type]
    assert task.calls == {"metrics": 1, "probabilities": 1, "eval_loss_sum": 1}
    assert math.isfinite(result.loss) and result.count == 5
    probs = stepper.predict(x)
    assert task.calls["probabilities"] == 2 and probs.shape == (5, 3)


def test_multi_label_reads_outputs_as_independent_labels() -> None:
    from cnnctl.tasks.multi_label import MultiLabel
    from cnnctl.tasks.multi_label_metrics import MultiLabelResult

    task = tasks.for_training("bce_with_logits", False, "multi_label", ["cat", "dog", "sky"])
    assert isinstance(task, MultiLabel) and task.num_outputs(3) == 3
    assert task.problem("cross_entropy", 3) is not None and task.problem("focal", 3) is None
    out = torch.tensor([[2.0, -1.0, 0.1], [-3.0, 4.0, -0.2]])
    truth = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    assert torch.allclose(task.probabilities(out), out.sigmoid())
    assert torch.equal(task.predicted(out), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    assert int(task.correct(out, truth)) == 1  # the second image misses 'sky'
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out, truth, reduction="none").mean(dim=1).sum()
    assert float(task.eval_loss_sum(out, truth)) == pytest.approx(float(bce))
    tuned = tasks.from_record({"task": "multi_label", "classes": ["cat", "dog", "sky"], "output_kind": "logits",
                               "thresholds": [0.5, 0.5, 0.4], "label_separator": ";"})  # fmt: skip
    assert int(tuned.correct(out, truth)) == 2  # sky at 0.45 now counts
    label, probability, pairs = tuned.decide(tuned.probabilities(out), ["cat", "dog", "sky"], 1)[1]
    assert (label, probability) == ("dog;sky", None) and [name for name, _ in pairs] == ["cat", "dog", "sky"]
    assert tuned.prediction_columns(1) == ["path", "labels", "p_cat", "p_dog", "p_sky", "error"]
    assert isinstance(tuned.metrics(["cat", "dog", "sky"], (1,)).result(), MultiLabelResult)
    with pytest.raises(ValueError, match="2 thresholds for 3 labels"):
        MultiLabel(("a", "b", "c"), (0.5, 0.5))


def test_the_stepper_trains_and_evaluates_a_multi_label_task() -> None:
    """The seam holds: the engine runs a multi-label task with no edit of its own."""
    from cnnctl.tasks.multi_label import MultiLabel

    torch.manual_seed(0)
    task = MultiLabel(("a", "b", "c"))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    from cnnctl.config import SchedulerConfig
    from cnnctl.engine.schedule import Schedule
    from cnnctl.engine.state import SilentProgress

    stepper = Stepper(
        model, nn.Identity(), torch.device("cpu"), Precision(None), task, optimizer=optimizer,
        loss_fn=torch.nn.BCEWithLogitsLoss(), schedule=Schedule(SchedulerConfig(), optimizer, 1, 1),
    )  # fmt: skip
    x = torch.rand(16, 3, 4, 4)
    y = (x.mean(dim=(2, 3)) > 0.5).float()  # a label per channel: on when the channel is bright
    loss, exact = stepper.train_epoch([(x, y)] * 20, 1, SilentProgress())  # type: ignore[arg-type]
    result = stepper.evaluate([(x, y)], ["a", "b", "c"])  # type: ignore[arg-type]
    assert math.isfinite(loss) and 0 <= exact <= 1 and result.count == 16 and result.map > 0.5


def test_the_prediction_file_takes_its_columns_from_the_rows_task(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cnnctl.artifacts.predictions import write_predictions
    from cnnctl.tasks.multi_label import MultiLabel
    from cnnctl.workflows.predict import Prediction

    task = MultiLabel(("a", "b"))
    rows = [Prediction("x.png", "a|b", None, [("a", 0.9), ("b", 0.7)], "", task)]
    out = tmp_path / "p.csv"
    records = list(write_predictions(iter(rows), out, topk=1))
    assert out.read_text().splitlines() == ["path,labels,p_a,p_b,error", "x.png,a|b,0.900000,0.700000,"]
    assert records == [{"path": "x.png", "labels": "a|b", "p_a": 0.9, "p_b": 0.7, "error": ""}]
    plain = [Prediction("y.png", "a", 0.8, [("a", 0.8)], "")]  # no task: single_label's columns
    assert list(write_predictions(iter(plain), None, topk=1))[0] == {
        "path": "y.png", "label": "a", "probability": 0.8, "error": ""
    }  # fmt: skip
