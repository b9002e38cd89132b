"""Transfer learning from torchvision classifiers: weights, freezing, heads, summaries.

Pretrained weights cannot be downloaded here, so "imagenet" weights are files these tests
write themselves (a seeded random state_dict) into $TORCH_HOME/hub/checkpoints under the
name torchvision's weights API asks for; the real loading code reads them from there.
"""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from cnnctl.config import load_config
from cnnctl.core import catalog
from cnnctl.core.errors import ConfigError
from cnnctl.models import ModelSpec, build_model, list_models
from cnnctl.models.pretrained import load_pretrained
from cnnctl.models.torchvision import TransferNet
from cnnctl.runtime.seeding import seed_everything
from cnnctl.session import build as session_build
from cnnctl.session.resolve import resolve_config as resolve_run_config
from tests.conftest import invoke

FILES = {"alexnet": "alexnet-owt-7be5be79.pth", "densenet121": "densenet121-a639ec97.pth"}


def transfer_config(name: str, **model: Any) -> dict[str, Any]:
    """Changes to the tiny config: a torchvision model on 64 px synthetic RGB images."""
    return {
        "data": {"image_size": 64, "channels": 3, "samples_per_class": 8, "normalize": "imagenet"},
        "model": {"name": name, **model},
        "train": {"epochs": 1},
    }


def reference_state(name: str) -> dict[str, torch.Tensor]:
    """A seeded random state_dict in torchvision's own layout (1000-class classifier)."""
    torch.manual_seed(123)
    net = getattr(__import__("torchvision").models, name)()
    with torch.no_grad():  # non-default BN statistics, so "unchanged" is a real check
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))

    def offline(url: str, *args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return home


def cache(torch_home: Path, name: str) -> dict[str, torch.Tensor]:
    state = reference_state(name)
    torch.save(state, torch_home / "hub" / "checkpoints" / FILES[name])
    return state


def trained_state(run: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(run / "last.pt", weights_only=True)["model"]
    return {k.removeprefix("net."): v for k, v in state.items()}


@pytest.mark.parametrize("name", ["alexnet", "densenet121"])
def test_frozen_backbone_stays_bit_identical_and_only_the_head_trains(
    name: str, runner, write_config, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = cache(torch_home, name)
    seen: list[torch.optim.Optimizer] = []
    original = session_build.build_optimizer

    def spy(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(session_build, "build_optimizer", spy)
    config = write_config(transfer_config(name, weights="imagenet", freeze="backbone"))
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    assert "loaded pretrained weights" in result.output and FILES[name] in result.output

    after = trained_state(config.parent / "runs" / "tiny")
    head = "classifier.6" if name == "alexnet" else "classifier"
    backbone = [k for k in reference if not k.startswith(head + ".")]
    assert backbone and all(torch.equal(after[k], reference[k]) for k in backbone)  # incl. BN stats
    if name == "densenet121":
        assert any(k.endswith("running_mean") for k in backbone)

    # The head changed from its (seeded) initialisation.
    spec = ModelSpec(
        **torch.load(config.parent / "runs" / "tiny" / "last.pt", weights_only=True)["model_spec"]
    )
    seed_everything(0)
    initial = {k.removeprefix("net."): v for k, v in build_model(spec).state_dict().items()}
    head_keys = [k for k in after if k.startswith(head + ".")]
    assert head_keys and any(not torch.equal(after[k], initial[k]) for k in head_keys)

    # The optimizer held exactly the head's parameters.
    (optimizer,) = seen
    held = [p for group in optimizer.param_groups for p in group["params"]]
    model = build_model(spec)
    assert isinstance(model, TransferNet)
    assert sorted(p.numel() for p in held) == sorted(p.numel() for p in model.head.parameters())
    assert all(p.requires_grad for p in held)


def test_frozen_batchnorm_stays_in_eval_mode() -> None:
    spec = ModelSpec({"name": "resnet18", "freeze": "backbone"}, 3, (3, 64, 64))
    model = build_model(spec)
    assert isinstance(model, TransferNet)
    model.train()
    norms = [m for m in model.net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    before = norms[0].running_mean.clone()
    model(torch.randn(4, 3, 64, 64))
    assert torch.equal(norms[0].running_mean, before)
    model.unfreeze()
    model.train()
    assert all(m.training for m in norms) and all(p.requires_grad for p in model.parameters())


def test_freeze_counts_and_until() -> None:
    def trainable(freeze: Any) -> set[str]:
        model = build_model(ModelSpec({"name": "resnet18", "freeze": freeze}, 3, (3, 64, 64)))
        return {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}

    assert trainable("none") == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"}
    assert trainable("backbone") == {"fc"}
    assert trainable(1) == {"layer4", "fc"}
    assert trainable(2) == {"layer3", "layer4", "fc"}
    assert trainable({"until": "layer3"}) == {"layer3", "layer4", "fc"}
    with pytest.raises(ConfigError, match=r"model.freeze.until: resnet18 has no module 'layer9'.*layer"):
        trainable({"until": "layer9"})
    with pytest.raises(ConfigError, match="N must be at most 6"):
        trainable(7)


def test_head_hidden_dropout_activation_and_log_softmax() -> None:
    spec = ModelSpec(
        {
            "name": "densenet121",
            "head": {"hidden": [256], "dropout": 0.2, "activation": "gelu"},
            "log_softmax": True,
        },
        5,
        (3, 64, 64),
    )
    model = build_model(spec)
    assert isinstance(model, TransferNet)
    kinds = [type(m).__name__ for m in model.net.classifier]
    assert kinds == ["Dropout", "Linear", "GELU", "Dropout", "Linear"]
    assert model.net.classifier[1].in_features == 1024 and model.net.classifier[-1].out_features == 5
    out = model.eval()(torch.randn(2, 3, 64, 64))
    assert torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-5)  # LogSoftmax output


def test_grey_input_is_expanded_to_three_channels() -> None:
    model = build_model(ModelSpec({"name": "resnet18"}, 4, (1, 64, 64)))
    assert model.eval()(torch.randn(2, 1, 64, 64)).shape == (2, 4)


def test_local_weights_file_loads_and_a_misfit_is_a_clear_error(tmp_path: Path) -> None:
    reference = reference_state("alexnet")
    path = tmp_path / "alexnet.pth"
    torch.save({f"module.{k}": v for k, v in reference.items()}, path)  # DataParallel prefix
    model = build_model(ModelSpec({"name": "alexnet", "freeze": "backbone"}, 3, (3, 64, 64)))
    load_pretrained(model, str(path))
    state = model.state_dict()
    assert torch.equal(state["net.features.0.weight"], reference["features.0.weight"])

    wrong = tmp_path / "resnet.pth"
    torch.save(reference_state_resnet(), wrong)
    with pytest.raises(ConfigError, match=r"model.weights: .*resnet.pth does not fit alexnet: missing keys"):
        load_pretrained(model, str(wrong))

    shrunk = dict(reference)
    shrunk["features.0.weight"] = torch.zeros(8, 3, 11, 11)
    torch.save(shrunk, tmp_path / "shrunk.pth")
    with pytest.raises(
        ConfigError, match=r"shape mismatch \(file vs model\) features.0.weight \[8, 3, 11, 11\]"
    ):
        load_pretrained(model, str(tmp_path / "shrunk.pth"))


def reference_state_resnet() -> dict[str, torch.Tensor]:
    return dict(__import__("torchvision").models.resnet18().state_dict())


def test_offline_without_cached_weights_is_one_line(runner, write_config, torch_home: Path) -> None:
    config = write_config(transfer_config("densenet121", weights="imagenet", freeze="backbone"))
    result = invoke(runner, "train", config)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    assert "densenet121-a639ec97.pth" in lines[-1] and str(torch_home / "hub" / "checkpoints") in lines[-1]
    assert "no network in tests" in lines[-1]


def test_unknown_weights_name_lists_the_allowed_ones(runner, write_config) -> None:
    config = write_config(transfer_config("resnet18", weights="IMAGENET1K_V9"))
    result = invoke(runner, "train", config)
    assert result.exit_code == 2
    assert "model.weights: 'IMAGENET1K_V9'" in result.output and "IMAGENET1K_V1" in result.output


def test_pretrained_weights_bring_their_preprocessing(tmp_path: Path) -> None:
    path = tmp_path / "flowers.yaml"
    path.write_text(
        "data: {source: image_folder, root: flowers}\nmodel: {name: densenet121, weights: imagenet}\n"
    )
    cfg = resolve_run_config(load_config(path))
    assert cfg.model.weights == "IMAGENET1K_V1"
    assert (cfg.data.image_size, cfg.data.resize, cfg.data.normalize, cfg.data.channels) == (
        224,
        256,
        "imagenet",
        3,
    )
    # Every default can be overridden in `data`.
    kept = resolve_run_config(
        load_config(path, ["data.image_size=96", "data.normalize=none", "data.channels=1"])
    )
    assert (kept.data.image_size, kept.data.resize, kept.data.normalize, kept.data.channels) == (
        96,
        None,
        "none",
        1,
    )
    # Without pretrained weights nothing is implied but RGB input for an image folder.
    plain = resolve_run_config(load_config(path, ["model.weights=none"]))
    assert (plain.data.image_size, plain.data.resize, plain.data.normalize) == (None, None, "auto")


def test_unfreeze_at_epoch_trains_the_backbone_at_a_lower_lr(runner, write_config, torch_home: Path) -> None:
    cache(torch_home, "densenet121")
    changes = transfer_config("densenet121", weights="imagenet", freeze="backbone")
    changes["train"] = {"epochs": 2, "unfreeze_at_epoch": 2}
    changes["optimizer"] = {"name": "sgd", "lr": 0.01, "backbone_lr_mult": 0.1}
    config = write_config(changes)
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    assert "epoch 2: backbone unfrozen" in result.output
    last = torch.load(config.parent / "runs" / "tiny" / "last.pt", weights_only=True)
    groups = last["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.001])
    after = trained_state(config.parent / "runs" / "tiny")
    reference = reference_state("densenet121")
    assert not torch.equal(after["features.conv0.weight"], reference["features.conv0.weight"])


def test_transfer_checkpoint_predicts_with_no_config_and_no_download(
    runner, write_config, torch_home: Path, tmp_path: Path
) -> None:
    cache(torch_home, "alexnet")
    config = write_config(
        transfer_config("alexnet", weights="imagenet", freeze="backbone", head={"hidden": [32]})
    )
    assert invoke(runner, "train", config).exit_code == 0
    (torch_home / "hub" / "checkpoints" / FILES["alexnet"]).unlink()  # nothing left to load from
    config.unlink()
    images = tmp_path / "images"
    assert invoke(runner, "data", "synth", images, "--per-class", "2", "--classes", "3").exit_code == 0
    result = invoke(
        runner, "predict", config.parent / "runs" / "tiny" / "best.pt", images, "--out", tmp_path / "p.csv"
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 6


def test_summary_of_a_config_and_of_a_checkpoint(runner, write_config, trained_run: Path) -> None:
    config = write_config(transfer_config("resnet18", freeze="backbone"))
    result = invoke(runner, "summary", config, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    fc = 512 * 3 + 3
    assert data["params"]["trainable"] == fc and data["params"]["frozen"] == data["params"]["total"] - fc
    assert data["macs"] > 0 and data["flops"] == 2 * data["macs"]
    layer4 = next(layer for layer in data["layers"] if layer["name"] == "layer4")
    assert layer4["output_shape"] == [1, 512, 2, 2] and layer4["trainable_params"] == 0

    table = invoke(runner, "summary", trained_run / "best.pt")
    assert table.exit_code == 0, table.output
    assert "small_cnn" in table.output and "trainable" in table.output and "MACs" in table.output


def test_models_lists_torchvision_classifiers_with_their_weights(runner) -> None:
    result = invoke(runner, "models", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {
        "small_cnn",
        "mlp",
        "alexnet",
        "densenet121",
        "densenet201",
        "resnet18",
        "efficientnet_b0",
    } <= set(rows)
    assert "IMAGENET1K_V1" in rows["alexnet"]["weights"]
    assert rows["efficientnet_b1"]["default_weights"] == "IMAGENET1K_V2"
    assert set(list_models()) == set(rows)


def test_catalog_is_what_the_installed_torchvision_reports() -> None:
    if catalog.installed_torchvision() != catalog.TORCHVISION_VERSION:
        pytest.skip(f"the catalog is written from torchvision {catalog.TORCHVISION_VERSION}")
    assert catalog.torchvision_models() is catalog.CATALOG
    assert catalog.discover() == catalog.CATALOG, "refresh it: python -m cnnctl.core.catalog"


def test_another_torchvision_is_asked_once_and_its_answer_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNCTL_CACHE", str(tmp_path / "cnnctl"))
    monkeypatch.setattr(catalog, "installed_torchvision", lambda: "9.9.9")
    asked = {"resnet18": (("IMAGENET1K_V1",), "IMAGENET1K_V1"), "newnet": ((), "")}
    monkeypatch.setattr(catalog, "discover", lambda: asked)
    assert catalog.torchvision_models() == asked
    assert json.loads((tmp_path / "cnnctl" / "torchvision-9.9.9-models.json").read_text())["newnet"]

    def fail() -> Any:
        raise AssertionError("torchvision asked again")

    monkeypatch.setattr(catalog, "discover", fail)
    assert catalog.torchvision_models() == asked
    assert [p.name for p in (tmp_path / "cnnctl").iterdir()] == ["torchvision-9.9.9-models.json"]
