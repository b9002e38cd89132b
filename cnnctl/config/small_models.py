"""small_cnn / mlp arithmetic done before anything is allocated: the last feature map's size,
the parameter count, and the check that the network fits its input and stays within
MAX_PARAMETERS. Run at load time when the config gives the input size, and again where the
network is built (cnnctl/models/simple.py) for the sizes only the data knows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cnnctl.config.base import KeyError_
from cnnctl.config.limits import MAX_PARAMETERS


def small_cnn_features(
    input_shape: Sequence[int], channels: Sequence[int], kernel_size: int, padding: int, pool: int
) -> tuple[int, int]:
    """(H, W) of small_cnn's last feature map for a (C, H, W) input. A conv kernel larger than
    its padded input, or a pool window larger than its feature map, is a KeyError_ naming the
    key to change (torch would fail mid-build, or allocate the kernel first)."""
    h, w = input_shape[1], input_shape[2]
    too_small = (
        f"a {'x'.join(map(str, input_shape))} input is too small for {len(channels)} "
        f"conv blocks with kernel_size {kernel_size}, padding {padding}, pool {pool}"
    )
    for block in range(1, len(channels) + 1):
        if min(h, w) + 2 * padding < kernel_size:
            raise KeyError_(
                "model.kernel_size",
                f"{too_small}: block {block} gets {h}x{w}, {h + 2 * padding}x{w + 2 * padding} padded, "
                "less than the kernel; use a smaller model.kernel_size, more model.padding, fewer "
                "model.channels or a larger data.image_size",
            )
        h, w = h + 2 * padding - kernel_size + 1, w + 2 * padding - kernel_size + 1
        if pool > 1:
            if min(h, w) < pool:
                raise KeyError_(
                    "model.pool",
                    f"{too_small}: block {block}'s conv output is {h}x{w}, less than the pool window; "
                    "use fewer model.channels, a smaller model.pool or a larger data.image_size",
                )
            h, w = h // pool, w // pool
    return h, w


def small_model_parameters(model: Mapping[str, Any], input_shape: Sequence[int], outputs: int) -> int:
    """Parameters of small_cnn / mlp (the resolved `model` section as plain data), computed
    before anything is allocated; small_cnn's geometry is checked on the way."""
    c, h, w = input_shape
    total = 0
    if model["name"] == "small_cnn":
        kernel, previous = int(model["kernel_size"]), c
        for width in model["channels"]:
            total += kernel * kernel * previous * width + (2 if model["batch_norm"] else 1) * width
            previous = width
        fh, fw = small_cnn_features(input_shape, model["channels"], kernel, model["padding"], model["pool"])
        features = previous * fh * fw
    else:
        features = c * h * w
    for width in [*model["hidden"], outputs]:
        total += (features + 1) * width
        features = width
    return total


def check_small_model(model: Mapping[str, Any], input_shape: Sequence[int], outputs: int) -> None:
    """KeyError_ when small_cnn / mlp does not fit `input_shape` or is absurdly large."""
    params = small_model_parameters(model, input_shape, outputs)
    if params > MAX_PARAMETERS:
        shape = "x".join(map(str, input_shape))
        more = ", add model.channels blocks or a larger model.pool" if model["name"] == "small_cnn" else ""
        raise KeyError_(
            "model.hidden",
            f"{model['name']} would have {params:,} parameters for a {shape} input (at most "
            f"{MAX_PARAMETERS:,}); use smaller model.hidden widths or data.image_size{more}",
        )
