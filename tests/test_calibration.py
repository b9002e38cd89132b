"""Temperature scaling: the fit, what train stores, and that every consumer uses it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from cnnctl.artifacts import checkpoint as ckpt
from cnnctl.artifacts.loaded import load_model
from cnnctl.config import validate
from cnnctl.data import build_splits, make_loader
from cnnctl.data.synthetic import write_image_folder
from cnnctl.session.calibrate import calibrate
from cnnctl.tasks import calibration
from cnnctl.tasks.multi_label import MultiLabel
from cnnctl.tasks.single_label import BINARY_LOGIT, LOG_PROBS, SingleLabel
from tests.conftest import TINY, invoke, merge
from tests.test_hostile_outputs import copy_run, one_line_error
from tests.test_reports import assert_png


def _drawn(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits): a calibrated model's outputs."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=gen) * 2
    labels = torch.multinomial(logits.softmax(dim=1), 1, generator=gen).squeeze(1)
    return logits, labels


def _nll(task: SingleLabel | MultiLabel, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(task.eval_loss_sum(outputs, targets)) / len(outputs)


def _ece(task: SingleLabel | MultiLabel, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    acc = task.metrics(["c"] * (outputs.shape[1] if outputs.shape[1] > 1 else 2), (1,))
    acc.update(task.probabilities(outputs), targets, task.eval_loss_sum(outputs, targets))
    ece = acc.result().ece
    assert ece is not None
    return ece


def test_the_fit_undoes_a_known_over_confidence() -> None:
    logits, labels = _drawn(6000, 5, seed=0)
    sharp = 4 * logits  # over-confident: the right temperature is 4
    task = SingleLabel()
    fitted = calibration.fit_temperature(lambda s: task.calibration_terms(sharp, labels, s))
    assert fitted == pytest.approx(4.0, rel=0.08)
    calibrated = task.with_temperature(fitted)
    assert _nll(calibrated, sharp, labels) < _nll(task, sharp, labels) - 0.3
    assert _ece(calibrated, sharp, labels) < 0.03 < 0.2 < _ece(task, sharp, labels)
    assert calibrated.predicted(sharp).equal(task.predicted(sharp))  # no decision changes


@pytest.mark.parametrize("kind", ["binary", "multi_label", "log_probs"])
def test_newton_finds_the_grid_minimum(kind: str) -> None:
    gen = torch.Generator().manual_seed(1)
    if kind == "multi_label":
        z = torch.randn(800, 3, generator=gen)
        y = (torch.rand(800, 3, generator=gen) < torch.sigmoid(z / 3)).float()  # under-confident x3
        task: SingleLabel | MultiLabel = MultiLabel(("a", "b", "c"))
        outputs = z
    elif kind == "binary":
        z = torch.randn(800, generator=gen) * 3
        y = (torch.rand(800, generator=gen) < torch.sigmoid(z * 0.4)).long()
        task, outputs = SingleLabel(BINARY_LOGIT), z[:, None]
    else:
        z, y = _drawn(800, 4, seed=2)
        task, outputs = SingleLabel(LOG_PROBS), torch.log_softmax(z * 0.5, dim=1)  # under-confident
    fitted = calibration.fit_temperature(lambda s: task.calibration_terms(outputs, y, s))
    grid = torch.linspace(0.05, 5, 2000).tolist()
    best = min(grid, key=lambda t: _nll(task.with_temperature(t), outputs, y))
    assert fitted == pytest.approx(best, abs=0.01)
    value = float(task.calibration_terms(outputs, y, 1 / fitted)[0]) / len(outputs)
    assert value == pytest.approx(_nll(task.with_temperature(fitted), outputs, y), rel=1e-5)


def test_the_fit_stays_in_range_and_copes_with_degenerate_splits() -> None:
    task = SingleLabel()
    separable = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])  # right and sure: T wants to go to 0
    fitted = calibration.fit_temperature(lambda s: task.calibration_terms(separable, torch.tensor([0, 1]), s))
    assert calibration.T_RANGE[0] <= fitted < 0.5  # sharper until the NLL stops moving
    empty = calibration.fit_temperature(lambda s: torch.zeros(3, dtype=torch.float64))
    assert empty == 1.0
    assert calibration.ece(torch.zeros(3, calibration.ECE_BINS)) == 0.0


def test_multi_label_decisions_survive_a_new_temperature() -> None:
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(500, 3, generator=gen) * 4
    task = MultiLabel(("a", "b", "c"), (0.2, 0.5, 0.83))
    for temperature in (0.3, 1.7, 9.0):
        moved = task.with_temperature(temperature)
        assert moved.predicted(z).equal(task.predicted(z))
        assert moved.with_temperature(1.0).thresholds == pytest.approx(task.thresholds, abs=1e-5)
    kept = task.with_temperature(2.0, keep_decisions=False)  # a threshold the config fixed
    assert kept.thresholds == task.thresholds and kept.temperature == 2.0


def test_ddp_shards_fit_the_same_temperature() -> None:
    """The fit only sees summed terms: two halves summed give the whole split's temperature."""
    logits, labels = _drawn(1000, 3, seed=4)
    task = SingleLabel()
    whole = calibration.fit_temperature(lambda s: task.calibration_terms(3 * logits, labels, s))
    halves = calibration.fit_temperature(
        lambda s: (
            task.calibration_terms(3 * logits[:400], labels[:400], s)
            + task.calibration_terms(3 * logits[400:], labels[400:], s)
        )
    )
    assert halves == pytest.approx(whole, rel=1e-9)


def _val_batches(run: Path):
    loaded = load_model(run / "best.pt", "cpu")
    cfg = validate(loaded.checkpoint["config"], "stored")
    splits = build_splits(cfg.data, cfg.seed, loaded.input, cfg.label_separator())
    return loaded, splits, make_loader(splits.val, 8, shuffle=False, seed=0, workers=0, pin=False)


def test_an_over_confident_network_is_cooled(trained_run: Path) -> None:
    """Sharpen a trained network's last layer x10: the fit on val finds T > 1 and lowers the NLL."""
    loaded, splits, batches = _val_batches(trained_run)
    last = [m for m in loaded.stepper.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(10)
        last.bias.mul_(10)
    before = loaded.stepper.task.with_temperature(1.0)
    task, record = calibrate(loaded.stepper, batches, splits.classes, before)
    assert task.temperature > 3
    assert record["nll_after"] < record["nll_before"]
    assert record["images"] == len(splits.val)


def test_train_stores_the_temperature_and_every_consumer_uses_it(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    summary = json.loads((trained_run / "summary.json").read_text())
    record = summary["calibration"]
    assert set(record) == {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "images"}
    assert record["nll_after"] <= record["nll_before"] + 1e-12
    best = ckpt.load_checkpoint(trained_run / "best.pt")
    assert best["temperature"] == record["temperature"] != 1.0 and best["format_version"] == 3
    assert best["calibration"] == record

    loaded, _, batches = _val_batches(trained_run)
    x, _ = next(iter(batches))
    raw = loaded.stepper.model(loaded.stepper.model_input(x)).detach()
    expected = (raw / record["temperature"]).softmax(dim=1)
    assert torch.allclose(loaded.stepper.predict(x), expected, atol=1e-6)  # predict / evaluate

    out = tmp_path / "m.state_dict.pt"
    assert invoke(runner, "export", trained_run, "--format", "state_dict", "--out", out).exit_code == 0
    meta = json.loads((tmp_path / "m.state_dict.pt.json").read_text())
    assert meta["temperature"] == record["temperature"]
    assert f"/ {record['temperature']:g}" in meta["output"]["to_probabilities"]
    assert meta["calibration"]["applied"].startswith("by the consumer")


def test_evaluate_reports_ece_and_nll_and_draws_the_reliability_diagram(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    result = invoke(runner, "evaluate", trained_run, "--split", "val", "--json", "-", "--plots", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    summary = json.loads((trained_run / "summary.json").read_text())
    assert data["nll"] == pytest.approx(summary["calibration"]["nll_after"], rel=1e-6)
    assert data["ece"] == pytest.approx(summary["calibration"]["ece_after"], rel=1e-6)
    assert_png(tmp_path / "eval_val_reliability.png")


def test_calibrate_false_keeps_the_network_s_probabilities(runner, tmp_path: Path) -> None:
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}, "train": {"calibrate": False}})
    path = tmp_path / "off.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    result = invoke(runner, "train", path)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "off"
    assert json.loads((run / "summary.json").read_text())["calibration"] is None
    best = ckpt.load_checkpoint(run / "best.pt")
    assert best["temperature"] == 1.0 and best["format_version"] == 1 and "calibration" not in best
    assert "calibrated on val" not in result.output
    assert math.isfinite(json.loads((run / "summary.json").read_text())["best_val_loss"])


def test_cnnctl_calibrate_writes_a_new_checkpoint_and_never_over_the_old_one_unasked(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    run = copy_run(trained_run, tmp_path)
    original = (run / "best.pt").read_bytes()
    result = invoke(runner, "calibrate", run, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    written = run / "best.calibrated.pt"
    assert record["out"] == str(written) and (run / "best.pt").read_bytes() == original
    summary = json.loads((run / "summary.json").read_text())
    # the same val split and raw outputs as train's fit: the same temperature, found again
    assert record["temperature_before"] == summary["calibration"]["temperature"]
    assert record["temperature"] == pytest.approx(record["temperature_before"], rel=1e-4)
    assert "val split" in record["calibrated_on"]
    new = ckpt.load_checkpoint(written)
    assert new["temperature"] == record["temperature"] and new["calibration"]["calibrated_on"]

    again = invoke(runner, "calibrate", run)
    one_line_error(again, 2, "best.calibrated.pt", "--force")
    one_line_error(invoke(runner, "calibrate", run, "--out", run / "best.pt"), 2, "being calibrated")
    assert (run / "best.pt").read_bytes() == original
    one_line_error(invoke(runner, "calibrate", run, "--out", tmp_path / "x.onnx"), 2, ".pt")

    folder = tmp_path / "other"
    write_image_folder(folder, 3, 6, 16, seed=11, noise=0.3)  # noisier images: another temperature
    shown = invoke(
        runner, "calibrate", run / "best.pt", "--data", folder, "--out", run / "best.pt", "--force"
    )
    assert shown.exit_code == 0, shown.output
    assert "calibrated on" in shown.output and "temperature" in shown.output
    replaced = ckpt.load_checkpoint(run / "best.pt")
    assert (
        replaced["temperature"] != record["temperature"]
        and str(folder) in replaced["calibration"]["calibrated_on"]
    )
    evaluated = invoke(runner, "evaluate", run, "--data", folder, "--json", "-", "--no-plots")
    assert json.loads(evaluated.output)["nll"] == pytest.approx(
        replaced["calibration"]["nll_after"], rel=1e-6
    )


def test_cnnctl_calibrate_refuses_mismatched_data_in_one_line(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "four"
    write_image_folder(folder, 4, 2, 16, seed=1, noise=0.05)
    one_line_error(
        invoke(runner, "calibrate", trained_run, "--data", folder, "--out", tmp_path / "c.pt"), 2, "classes"
    )
    assert not (tmp_path / "c.pt").exists()
    one_line_error(invoke(runner, "calibrate", tmp_path / "missing.pt", "--out", tmp_path / "c.pt"), 2)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_torchscript_export_returns_calibrated_outputs(runner, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.ts.pt"
    assert invoke(runner, "export", trained_run, "--format", "torchscript", "--out", out).exit_code == 0
    meta = json.loads((tmp_path / "m.ts.pt.json").read_text())
    assert meta["temperature"] == 1.0 and meta["calibration"]["applied"] == "in the graph"
    loaded, _, batches = _val_batches(trained_run)
    x, _ = next(iter(batches))
    scripted = torch.jit.load(str(out))
    graph = scripted(loaded.stepper.model_input(x).contiguous()).softmax(dim=1)
    assert torch.allclose(graph, loaded.stepper.predict(x), atol=1e-5)
