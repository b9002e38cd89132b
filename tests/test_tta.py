"""Test-time augmentation: the views, their default from the training augmentation, and that
evaluate and predict average exactly over them (checkpoint and ONNX alike)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnnctl.artifacts.loaded import load_model
from cnnctl.config import validate
from cnnctl.data import build_splits, make_loader, tta
from cnnctl.data.synthetic import write_image_folder
from cnnctl.tasks.metrics import MetricAccumulator
from tests.conftest import TINY, invoke, merge
from tests.test_export import train_run


def _data(**changes):
    return validate(merge(TINY, {"data": changes}), "test").data


def test_views_keep_shape_and_dtype_and_start_with_the_image() -> None:
    x = torch.randint(0, 256, (2, 3, 16, 12), dtype=torch.uint8)
    chosen = tta.views(list(tta.NAMES))
    assert [label for label, _ in chosen][:3] == ["identity", "hflip", "vflip"]
    assert len(chosen) == 1 + 2 + 4 + 4
    for _, view in chosen:
        out = view(x)
        assert out.shape == x.shape and out.dtype == torch.uint8
    assert chosen[0][1](x) is x and torch.equal(chosen[1][1](x), x.flip(-1))
    shifted = dict(chosen)["shift+1,+1"](x)
    assert torch.equal(shifted[..., :-1, :-1], x[..., 1:, 1:])  # moved up-left by one pixel (16 / 16)
    crop = dict(chosen)["crop-tl"](torch.full((1, 1, 16, 16), 7, dtype=torch.uint8))
    assert bool((crop == 7).all())  # a flat image stays flat through crop and resize


def test_the_default_views_follow_the_training_augmentation() -> None:
    assert tta.default_names(_data()) == []  # trained without flips (digits-like): no hflip TTA
    assert tta.default_names(_data(augment={"hflip": True})) == ["hflip"]
    both = _data(augment={"hflip": True, "vflip": True, "random_resized_crop": [0.5, 1.0], "random_crop": 4})
    assert tta.default_names(both) == ["hflip", "vflip", "crops", "shifts"]
    assert tta.shift_pixels(both) == 2
    assert tta.default_names(_data(tta=["vflip", "hflip"], augment={"hflip": True})) == ["hflip", "vflip"]
    assert tta.default_names(_data(tta=[])) == []


def test_an_unknown_view_fails_validation_with_its_path(runner, write_config) -> None:
    result = invoke(runner, "config", "validate", write_config({"data": {"tta": ["rotate"]}}))
    assert result.exit_code == 2 and "data.tta" in result.output


@pytest.fixture(scope="module")
def flipped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(tmp_path_factory.mktemp("tta"), "flips", {"data": {"augment": {"hflip": True}}})


def test_evaluate_averages_over_the_views_and_reports_both(runner, flipped_run: Path) -> None:
    result = invoke(runner, "evaluate", flipped_run, "--tta", "--json", "-", "--no-plots")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    plain = json.loads(invoke(runner, "evaluate", flipped_run, "--json", "-", "--no-plots").output)
    assert data["accuracy"] == plain["accuracy"] and data["loss"] == plain["loss"]  # the top stays plain
    assert data["tta"]["views"] == ["identity", "hflip"]

    loaded = load_model(flipped_run / "best.pt", "cpu")  # by hand: mean of the two probabilities
    cfg = validate(loaded.checkpoint["config"], "stored")
    splits = build_splits(cfg.data, cfg.seed, loaded.input)
    assert splits.test is not None
    acc, nll, n = MetricAccumulator(loaded.classes), 0.0, 0
    for x, y in make_loader(splits.test, 5, shuffle=False, seed=0, workers=0, pin=False):
        probs = (loaded.stepper.predict(x) + loaded.stepper.predict(x.flip(-1))) / 2
        acc.update(probs, y, torch.tensor(0.0))
        nll -= float(probs.gather(1, y[:, None]).log().sum())
        n += len(y)
    assert data["tta"]["accuracy"] == pytest.approx(acc.result().accuracy)
    assert data["tta"]["loss"] == pytest.approx(nll / n, rel=1e-5)
    table = invoke(runner, "evaluate", flipped_run, "--tta", "--no-plots")
    assert "test-time augmentation: identity, hflip" in table.output


def test_predict_tta_is_the_mean_over_the_flip_for_checkpoint_and_onnx(
    runner, flipped_run: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "imgs"
    write_image_folder(folder, 3, 2, 16, seed=5, noise=0.05)
    mirrored = tmp_path / "mirrored"
    for path in sorted(folder.rglob("*.png")):
        target = mirrored / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target)

    def probabilities(model: Path, images: Path, *flags: str) -> list[list[float]]:
        out = tmp_path / f"p{len(list(tmp_path.glob('p*.json')))}.json"
        done = invoke(runner, "predict", model, images, "--top-k", "3", "--out", out, *flags)
        assert done.exit_code == 0, done.output
        rows = sorted(
            json.loads(out.read_text()), key=lambda r: Path(r["path"]).relative_to(images).as_posix()
        )
        pairs = [{r[f"top{i}_label"]: r[f"top{i}_probability"] for i in (1, 2, 3)} for r in rows]
        return [[p[c] for c in sorted(p)] for p in pairs]

    straight, flipped = probabilities(flipped_run, folder), probabilities(flipped_run, mirrored)
    averaged = probabilities(flipped_run, folder, "--tta")
    expected = (torch.tensor(straight) + torch.tensor(flipped)) / 2
    assert torch.allclose(torch.tensor(averaged), expected, atol=1e-6)
    assert not torch.allclose(torch.tensor(straight), expected, atol=1e-4)  # the flip changes something

    onnx = tmp_path / "m.onnx"
    assert invoke(runner, "export", flipped_run, "--out", onnx).exit_code == 0
    assert json.loads((tmp_path / "m.onnx.json").read_text())["tta"] == {"views": ["hflip"], "shift": 0}
    assert torch.allclose(torch.tensor(probabilities(onnx, folder, "--tta")), expected, atol=1e-4)


def test_tta_on_a_model_trained_without_flips_says_so_and_changes_nothing(runner, trained_run: Path) -> None:
    result = invoke(runner, "evaluate", trained_run, "--tta", "--json", "-", "--no-plots")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tta"]["views"] == ["identity"] and data["tta"]["accuracy"] == data["accuracy"]
    assert "no view to average over" in result.output


def test_tta_views_choose_the_views_on_the_command_line(runner, trained_run: Path, tmp_path: Path) -> None:
    result = invoke(
        runner, "evaluate", trained_run, "--tta-views", "vflip,hflip", "--json", "-", "--no-plots"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tta"]["views"] == ["identity", "hflip", "vflip"]
    bad = invoke(runner, "evaluate", trained_run, "--tta-views", "rotate", "--no-plots")
    assert bad.exit_code == 2 and "hflip, vflip, crops, shifts" in bad.output
    folder = tmp_path / "imgs"
    write_image_folder(folder, 3, 1, 16, seed=2, noise=0.05)
    out = tmp_path / "p.csv"
    done = invoke(runner, "predict", trained_run, folder, "--tta-views", "crops", "--out", out)
    assert done.exit_code == 0 and "no view to average over" not in done.output
