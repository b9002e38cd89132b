"""Grad-CAM explanations: the layer chosen per architecture, the heat maps, `cnnctl explain`
and the heat over evaluate's most-confidently-wrong grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from cnnctl.artifacts.loaded import load_model
from cnnctl.data.synthetic import write_image_folder
from cnnctl.data.transforms import load_for_model
from cnnctl.engine import cam
from cnnctl.session.eval_plots import wrong_heat
from tests.conftest import invoke
from tests.test_export import train_run
from tests.test_hostile_outputs import one_line_error
from tests.test_reports import assert_png

pytest.importorskip("pytorch_grad_cam")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("explain") / "imgs"
    write_image_folder(folder, 3, 2, 16, seed=3, noise=0.05)
    return folder


@pytest.mark.parametrize(
    ("build", "expected", "other"),
    [
        (lambda: torchvision.models.resnet18(num_classes=3), "layer4", "layer3"),
        (lambda: torchvision.models.mobilenet_v3_small(num_classes=3), "features", "features.1"),
        (lambda: torchvision.models.densenet121(num_classes=3), "features", "features.norm5"),
    ],
)
def test_the_target_layer_is_the_last_conv_block(build, expected: str, other: str) -> None:
    model = build().eval()
    assert cam.target_layer(model, torch.randn(1, 3, 64, 64))[0] == expected
    assert cam.target_layer(model, torch.randn(1, 3, 64, 64), other)[0] == other  # --layer


def test_heat_maps_differ_between_images_and_classes(trained_run: Path, images: Path) -> None:
    loaded = load_model(trained_run, "cpu")
    files = sorted(images.rglob("*.png"))
    x = torch.stack([load_for_model(path, loaded.input) for path in files])
    inputs = loaded.stepper.model_input(x)
    name, layer = cam.target_layer(loaded.stepper.model, inputs)
    predicted = loaded.stepper.predict(x).argmax(dim=1).tolist()
    maps = cam.heatmaps(loaded.stepper.model, inputs, predicted, layer)
    assert maps.shape == (len(files), 16, 16) and float(maps.min()) >= 0 and float(maps.max()) <= 1 + 1e-6
    lit = [m for m in maps if float(m.max()) > 0]  # a map is all zero where nothing speaks for the class
    assert len(lit) >= 2
    assert all(not torch.allclose(a, b, atol=1e-3) for i, a in enumerate(lit) for b in lit[i + 1 :])
    assert name  # a named module of the network


def test_a_binary_logit_target_reads_the_one_output_both_ways() -> None:
    out = torch.tensor([2.5])
    assert float(cam._Output(1, binary=True)(out)) == 2.5 and float(cam._Output(0, binary=True)(out)) == -2.5
    assert float(cam._Output(2, binary=False)(torch.tensor([0.1, 0.2, 0.7]))) == pytest.approx(0.7)


def test_cnnctl_explain_writes_one_png_per_image(
    runner, trained_run: Path, images: Path, tmp_path: Path
) -> None:
    (images.parent / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "cams"
    result = invoke(
        runner, "explain", trained_run, images, images.parent / "broken.png", "--out", out, "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = data["images"]
    assert len(rows) == 7 and data["layer"]
    written = [r for r in rows if r["png"]]
    assert len(written) == 6 and {Path(r["png"]).name for r in written} == {p.name for p in out.glob("*.png")}
    for row in written:
        assert_png(Path(row["png"]), min_side=300)
        assert row["target"] == row["label"] and 0 < row["probability"] <= 1
    assert [r["error"] for r in rows if not r["png"]][0].startswith(
        ("UnidentifiedImageError", "DecodeError", "OSError")
    )
    pixels = {Path(r["png"]).read_bytes() for r in written}
    assert len(pixels) == 6  # no two the same

    again = invoke(runner, "explain", trained_run, images, "--out", out)
    one_line_error(again, 2, "--force")
    true = invoke(
        runner, "explain", trained_run, images, "--out", out, "--target", "true", "--force", "--json"
    )
    assert true.exit_code == 0, true.output
    assert all(r["target"] == Path(r["path"]).parent.name for r in json.loads(true.stdout)["images"])
    named = invoke(
        runner, "explain", trained_run, images, "--out", out, "--target", "square", "--force", "--json"
    )
    assert {r["target"] for r in json.loads(named.stdout)["images"]} == {"square"}


def test_explain_refuses_bad_requests_in_one_line(
    runner, trained_run: Path, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    one_line_error(
        invoke(runner, "explain", trained_run, images, "--out", out, "--target", "dog"), 2, "square"
    )
    one_line_error(
        invoke(runner, "explain", trained_run, images, "--out", out, "--layer", "nope"), 2, "--layer"
    )
    one_line_error(invoke(runner, "explain", trained_run, tmp_path / "none", "--out", out), 2)
    mlp = train_run(tmp_path, "mlp", {"model": {"name": "mlp", "hidden": [8]}})
    one_line_error(invoke(runner, "explain", mlp, images, "--out", out), 2, "feature map")


def test_the_wrong_grid_gets_the_heat_of_the_predicted_class(trained_run: Path) -> None:
    loaded = load_model(trained_run, "cpu")
    pictures = [torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8) for _ in range(3)]
    maps = wrong_heat(loaded, pictures, [0, 1, 2])
    assert maps is not None and len(maps) == 3 and maps[0].shape == (16, 16)
    assert wrong_heat(loaded, [], []) is None


def test_heat_maps_of_a_frozen_backbone() -> None:
    """model.freeze: backbone leaves no parameter before the head needing gradients."""
    model = torchvision.models.resnet18(num_classes=3).eval()
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("fc."))
    inputs = torch.randn(2, 3, 64, 64)
    _, layer = cam.target_layer(model, inputs)
    maps = cam.heatmaps(model, inputs, [0, 1], layer)
    assert maps.shape == (2, 64, 64) and bool(torch.isfinite(maps).all())
