"""Class imbalance: train.class_weights, data.sampler: balanced, train.loss: focal, the run's
first line, evaluate's balanced_accuracy / macro_f1, and data check's warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from cnnctl.data.datasets import ArrayDataset
from cnnctl.data.loaders import make_loader
from cnnctl.session.optim import class_weights_for, train_loss_fn
from tests.conftest import invoke


def test_focal_loss_equals_cross_entropy_at_gamma_zero() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 4), torch.randint(0, 4, (16,))
    weights = torch.tensor([0.5, 1.0, 2.0, 1.5])
    focal = train_loss_fn("focal", 0.0, focal_gamma=0.0)
    assert torch.allclose(focal(logits, targets), F.cross_entropy(logits, targets))
    weighted = train_loss_fn("focal", 0.0, weights, focal_gamma=0.0)
    assert torch.allclose(weighted(logits, targets), F.cross_entropy(logits, targets, weight=weights))
    soft = F.one_hot(targets, 4).float()  # mixup / cutmix targets: one-hot gives the same loss
    assert torch.allclose(focal(logits, soft), F.cross_entropy(logits, targets))


def test_focal_loss_down_weights_easy_examples() -> None:
    easy = torch.tensor([[6.0, 0.0, 0.0]])
    hard = torch.tensor([[0.5, 0.0, 0.0]])
    target = torch.tensor([0])
    ce, focal = train_loss_fn("cross_entropy", 0.0), train_loss_fn("focal", 0.0, focal_gamma=2.0)
    assert focal(easy, target) / ce(easy, target) < focal(hard, target) / ce(hard, target) < 1


def test_class_weights_auto_is_inverse_frequency_normalised() -> None:
    labels = [0] * 90 + [1] * 10
    auto = class_weights_for("auto", labels, ["a", "b"])
    assert auto is not None and torch.allclose(auto, torch.tensor([100 / 180, 100 / 20]))
    assert float((auto * torch.tensor([90.0, 10.0])).sum()) == pytest.approx(100)  # mean weight per sample 1
    assert class_weights_for("none", labels, ["a", "b"]) is None
    assert torch.equal(class_weights_for([1.0, 3.0], labels, ["a", "b"]), torch.tensor([1.0, 3.0]))  # type: ignore[arg-type]
    named = class_weights_for({"b": 4.0, "a": 1.0}, labels, ["a", "b"])
    assert named is not None and torch.equal(named, torch.tensor([1.0, 4.0]))


@pytest.mark.parametrize(("given", "expected"), [([1.0], "2 classes"), ({"c": 1.0}, "'c'")])
def test_class_weights_that_do_not_fit_the_data(given: Any, expected: str) -> None:
    from cnnctl.core.errors import ConfigError

    with pytest.raises(ConfigError, match=expected):
        class_weights_for(given, [0, 1], ["a", "b"])


@pytest.mark.parametrize("in_memory", [True, False])
def test_the_balanced_sampler_draws_classes_evenly_and_repeats_by_epoch(in_memory: bool) -> None:
    labels = torch.tensor([0] * 180 + [1] * 20)
    data = ArrayDataset(torch.zeros(200, 1, 2, 2, dtype=torch.uint8), labels)
    weights = 1.0 / torch.bincount(labels).double()[labels]
    if not in_memory:  # a per-sample path (DataLoader with the epoch sampler)
        data = ArrayDataset(data.images, labels, augment=lambda x: x)
    loader = make_loader(data, 50, shuffle=True, seed=0, workers=0, pin=False, weights=weights)
    seen: list[int] = []
    for epoch in range(1, 6):
        loader.set_epoch(epoch)
        seen += [int(y) for _, ys in loader for y in ys]
    share = sum(seen) / len(seen)
    assert len(seen) == 1000 and 0.4 < share < 0.6  # 10% of the data, about half the draws
    loader.set_epoch(3)
    again = [int(y) for _, ys in loader for y in ys]
    assert again == seen[400:600]  # the draw is a function of (seed, epoch): resume-exact


def test_the_balanced_sampler_shards_for_ddp() -> None:
    labels = torch.tensor([0] * 90 + [1] * 10)
    data = ArrayDataset(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), labels)
    weights = 1.0 / torch.bincount(labels).double()[labels]
    parts = []
    for rank in range(2):
        loader = make_loader(
            data, 10, shuffle=True, seed=1, workers=0, pin=False, shard=(rank, 2), weights=weights
        )
        loader.set_epoch(1)
        parts.append([int(y) for _, ys in loader for y in ys])
    assert len(parts[0]) == len(parts[1]) == 50


def test_imbalance_options_train_and_say_so(runner, write_config) -> None:
    config = write_config(
        {
            "train": {"loss": "focal", "focal_gamma": 1.5, "class_weights": "auto"},
            "data": {"sampler": "balanced"},
        }
    )
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert "class weights auto" in first and "sampler balanced" in first and "focal (gamma 1.5)" in first


def test_imbalance_config_errors(runner, write_config) -> None:
    result = invoke(runner, "config", "validate", write_config({"train": {"focal_gamma": 2.0}}))
    assert (
        result.exit_code == 2 and "train.focal_gamma: does not apply to loss 'cross_entropy'" in result.output
    )
    bad = write_config({"train": {"class_weights": [1.0, -1.0, 1.0]}})
    result = invoke(runner, "config", "validate", bad)
    assert result.exit_code == 2 and "train.class_weights" in result.output
    wrong = write_config({"train": {"class_weights": [1.0, 2.0]}})  # TINY has 3 classes
    result = invoke(runner, "train", wrong)
    assert result.exit_code == 2 and "train.class_weights: 2 weights for 3 classes" in result.output


def test_evaluate_reports_balanced_accuracy_and_macro_f1(runner, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = invoke(runner, "evaluate", trained_run, "--split", "val", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    cm = report["confusion_matrix"]
    rows = report["per_class"]
    in_truth = [i for i, r in enumerate(rows) if r["support"]]  # as scikit-learn averages them
    in_either = [i for i in range(len(rows)) if rows[i]["support"] or sum(line[i] for line in cm)]
    assert report["balanced_accuracy"] == pytest.approx(
        sum(rows[i]["recall"] for i in in_truth) / len(in_truth)
    )
    assert report["macro_f1"] == pytest.approx(sum(rows[i]["f1"] for i in in_either) / len(in_either))
    assert "balanced acc" in result.output and "macro F1" in result.output


def test_data_check_warns_about_rare_and_missing_classes(runner, tmp_path: Path) -> None:
    import yaml

    from cnnctl.data.synthetic import write_image_folder
    from tests.conftest import TINY

    root = tmp_path / "imgs"
    write_image_folder(root / "train", 3, 8, 16, seed=0, noise=0.05)
    write_image_folder(root / "val", 3, 2, 16, seed=1, noise=0.05)
    rare = sorted((root / "train").iterdir())[0]
    for extra in sorted(rare.iterdir())[3:]:
        extra.unlink()
    for gone in (sorted((root / "val").iterdir())[1]).iterdir():
        gone.write_bytes(b"not an image")  # unreadable: the val split has no usable image of it
    data = {"source": "image_folder", "root": str(root), "image_size": 16}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**TINY, "data": data}), encoding="utf-8")
    result = invoke(runner, "data", "check", path, "--json")
    assert result.exit_code == 1, result.output  # the unreadable files make the check fail
    warnings = json.loads(result.stdout)["warnings"]
    assert any(f"class '{rare.name}' has only 3 training image(s)" in w for w in warnings), warnings
    assert any(w.startswith("the val split has no image of") for w in warnings), warnings
    plain = invoke(runner, "data", "check", path)
    assert "warning: class" in plain.output
