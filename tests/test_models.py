"""The model registry and the built-in networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnctl.config import validate
from cnnctl.core.errors import ConfigError
from cnnctl.models import ModelSpec, build_model, list_models, register


def spec(model: dict, outputs: int = 10, shape: tuple[int, int, int] = (1, 28, 28)) -> ModelSpec:
    return ModelSpec(validate({"model": model}).model.to_plain(), outputs, shape)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_small_cnn_defaults_reproduce_the_classic_mnist_net() -> None:
    model = build_model(spec({"name": "small_cnn"}))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (5, 5), (2, 2)),
        (32, 64, (5, 5), (2, 2)),
    ]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(7 * 7 * 64, 1024), (1024, 10)]
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.5]
    assert n_params(model) == 832 + 51264 + 3212288 + 10250
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("shape", "flat"), [((3, 32, 32), 8 * 8 * 64), ((3, 64, 48), 16 * 12 * 64)])
def test_small_cnn_flatten_size_follows_the_input(shape: tuple[int, int, int], flat: int) -> None:
    model = build_model(spec({"name": "small_cnn"}, 4, shape))
    first_fc = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_fc.in_features == flat
    assert model(torch.zeros(1, *shape)).shape == (1, 4)


def test_small_cnn_options() -> None:
    model = build_model(
        spec(
            {
                "name": "small_cnn",
                "channels": [8, 8, 8],
                "kernel_size": 3,
                "padding": 1,
                "batch_norm": True,
                "activation": "gelu",
                "log_softmax": True,
            }
        )
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    assert any(isinstance(m, nn.GELU) for m in model.modules())
    out = model.eval()(torch.zeros(1, 1, 28, 28))
    assert torch.allclose(out.exp().sum(), torch.tensor(1.0))  # log-probabilities


def test_small_cnn_too_many_blocks_for_the_input_is_an_error() -> None:
    with pytest.raises(ConfigError, match="1x16x16 input is too small for 6 conv blocks"):
        build_model(spec({"name": "small_cnn", "channels": [4] * 6}, 2, (1, 16, 16)))


def test_mlp_784_128_64_10() -> None:
    model = build_model(spec({"name": "mlp", "hidden": [128, 64]}))
    linears = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [(784, 128), (128, 64), (64, 10)]
    assert n_params(model) == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


def test_registry_lists_and_refuses_duplicates() -> None:
    assert {"small_cnn", "mlp"} <= set(list_models())
    with pytest.raises(RuntimeError, match="registered twice"):
        register("mlp")(lambda s: nn.Identity())


def test_unknown_model_at_build_time() -> None:
    bad = ModelSpec({"name": "nope"}, 2, (1, 8, 8))
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model(bad)
