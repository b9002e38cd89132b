"""torchvision's classifiers and their pretrained weights, known without importing torch.

`cnnctl models` and config validation (`model.name`) must answer in well under a second, and
importing torchvision takes seconds. So the table below, written from torchvision
TORCHVISION_VERSION (a test keeps it equal to what that torchvision reports), answers whenever
the installed torchvision is that version. With another torchvision installed, torchvision is
asked once and its answer kept in cnnctl's cache folder (cnnctl/cachedir.py), one file per
torchvision version, so only the first call is slow.

`python -m cnnctl.core.catalog` prints the table for the installed torchvision (to refresh it).
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

from cnnctl.core.cachedir import cache_root, write_json

# name → (its weights enum members in torchvision's order, the DEFAULT member)
Entry = tuple[tuple[str, ...], str]

TORCHVISION_VERSION = "0.29.1"

CATALOG: dict[str, Entry] = {
    "alexnet": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "convnext_base": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "convnext_large": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "convnext_small": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "convnext_tiny": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "densenet121": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "densenet161": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "densenet169": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "densenet201": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_b0": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_b1": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "efficientnet_b2": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_b3": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_b4": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_b5": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_b6": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_b7": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_v2_l": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_v2_m": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "efficientnet_v2_s": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "googlenet": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "inception_v3": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "maxvit_t": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "mnasnet0_5": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "mnasnet0_75": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "mnasnet1_0": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "mnasnet1_3": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "mobilenet_v2": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "mobilenet_v3_large": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "mobilenet_v3_small": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "regnet_x_16gf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_x_1_6gf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_x_32gf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_x_3_2gf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_x_400mf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_x_800mf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_x_8gf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_y_128gf": (("IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1"), "IMAGENET1K_SWAG_E2E_V1"),
    "regnet_y_16gf": (
        ("IMAGENET1K_V1", "IMAGENET1K_V2", "IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1"),
        "IMAGENET1K_V2",
    ),
    "regnet_y_1_6gf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_y_32gf": (
        ("IMAGENET1K_V1", "IMAGENET1K_V2", "IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1"),
        "IMAGENET1K_V2",
    ),
    "regnet_y_3_2gf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_y_400mf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_y_800mf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "regnet_y_8gf": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "resnet101": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "resnet152": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "resnet18": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "resnet34": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "resnet50": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "resnext101_32x8d": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "resnext101_64x4d": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "resnext50_32x4d": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "shufflenet_v2_x0_5": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "shufflenet_v2_x1_0": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "shufflenet_v2_x1_5": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "shufflenet_v2_x2_0": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "squeezenet1_0": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "squeezenet1_1": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "swin_b": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "swin_s": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "swin_t": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "swin_v2_b": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "swin_v2_s": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "swin_v2_t": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vgg11": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vgg11_bn": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vgg13": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vgg13_bn": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vgg16": (("IMAGENET1K_V1", "IMAGENET1K_FEATURES"), "IMAGENET1K_V1"),
    "vgg16_bn": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vgg19": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vgg19_bn": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vit_b_16": (("IMAGENET1K_V1", "IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1"), "IMAGENET1K_V1"),
    "vit_b_32": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "vit_h_14": (("IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1"), "IMAGENET1K_SWAG_E2E_V1"),
    "vit_l_16": (("IMAGENET1K_V1", "IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1"), "IMAGENET1K_V1"),
    "vit_l_32": (("IMAGENET1K_V1",), "IMAGENET1K_V1"),
    "wide_resnet101_2": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
    "wide_resnet50_2": (("IMAGENET1K_V1", "IMAGENET1K_V2"), "IMAGENET1K_V2"),
}


BUILT_IN = ("small_cnn", "mlp")  # cnnctl's own networks (cnnctl/models/simple.py): no weights


def model_rows() -> list[dict[str, Any]]:
    """What `cnnctl models` lists: every buildable name, its family and pretrained weights."""
    rows: list[dict[str, Any]] = [
        {"name": name, "family": name, "weights": [], "default_weights": None} for name in BUILT_IN
    ]
    rows += [
        {"name": name, "family": "torchvision", "weights": list(weights), "default_weights": default}
        for name, (weights, default) in torchvision_models().items()
    ]
    return sorted(rows, key=lambda row: str(row["name"]))


def torchvision_models() -> dict[str, Entry]:
    """Every torchvision classifier → its weights, for the installed torchvision."""
    installed = installed_torchvision()
    if installed is None or installed == TORCHVISION_VERSION:
        return CATALOG
    path = cache_root() / f"torchvision-{installed}-models.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: (tuple(weights), default) for name, (weights, default) in data.items()}
    except (OSError, ValueError, TypeError):
        pass
    table = discover()
    write_json(path, {name: [list(w), d] for name, (w, d) in table.items()})
    return table


def installed_torchvision() -> str | None:
    """The installed torchvision's version without its local build tag (0.29.1+cpu → 0.29.1)."""
    try:
        return metadata.version("torchvision").split("+", 1)[0]
    except metadata.PackageNotFoundError:
        return None


def discover() -> dict[str, Entry]:
    """Ask torchvision itself (imports it: seconds)."""
    import torchvision.models as tvm

    table: dict[str, Entry] = {}
    for name in sorted(tvm.list_models(module=tvm)):
        enum = tvm.get_model_weights(name)
        table[name] = (tuple(member.name for member in enum), str(enum.DEFAULT.name))
    return table


def render(table: dict[str, Entry]) -> str:
    """The CATALOG literal for `table` (what this module's table should read)."""
    lines = ["CATALOG: dict[str, Entry] = {"]
    lines += [f"    {name!r}: ({weights!r}, {default!r})," for name, (weights, default) in table.items()]
    return "\n".join([*lines, "}"])


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    print(f'TORCHVISION_VERSION = "{installed_torchvision()}"\n')
    print(render(discover()))
