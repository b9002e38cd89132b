"""`cnnctl explain`: one PNG per image with the Grad-CAM heat map of the class asked for
(the predicted one, the true one read from the image's folder name, or a named class) over
the image, captioned with the label, its probability and the class explained."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cnnctl.artifacts.loaded import LoadedModel, load_model
from cnnctl.artifacts.outputs import claim_output
from cnnctl.core.errors import ConfigError
from cnnctl.data.folder import collect_images
from cnnctl.data.transforms import load_for_model
from cnnctl.engine import cam
from cnnctl.tasks.single_label import BINARY_LOGIT

TARGETS = ("predicted", "true")
BATCH = 16


@dataclass
class Explained:
    path: str
    png: str  # the written PNG ("" when the image could not be read)
    label: str  # what the model predicts (multi_label: the most probable label)
    probability: float | None
    target: str  # the class whose evidence the heat map shows
    target_probability: float | None
    error: str = ""


def explain(
    checkpoint: Path,
    paths: list[Path],
    out: Path,
    *,
    target: str = "predicted",
    layer: str | None = None,
    device: str = "auto",
    force: bool = False,
) -> tuple[list[Explained], str]:
    """Write `out/<name>.png` for every image under `paths`; returns the rows and the layer used."""
    cam.grad_cam_module()  # the one-line message before any work
    loaded = load_model(checkpoint, device, inference_layout=False)
    wanted = _target_class(target, loaded.classes)
    files = collect_images(paths)
    if not files:
        raise ConfigError(f"no image files under {', '.join(map(str, paths))}")
    names = _png_names(files)
    _make_folder(out)
    for name in names:
        claim_output(out / name, force=force, inputs=[checkpoint, *files], option="--out")
    sample = loaded.stepper.model_input(torch.zeros(1, *loaded.input.shape, dtype=torch.uint8))
    layer_name, module = cam.target_layer(loaded.stepper.model, sample, layer)
    rows: list[Explained] = []
    for start in range(0, len(files), BATCH):
        chunk = range(start, min(start + BATCH, len(files)))
        rows += _explain_batch(
            loaded, [files[i] for i in chunk], [out / names[i] for i in chunk], wanted, module
        )
    return rows, layer_name


def _target_class(target: str, classes: list[str]) -> str | int:
    if target in TARGETS:
        return target
    if target in classes:
        return classes.index(target)
    raise ConfigError(
        f"--target {target!r}: use predicted, true, or a class of the model: {', '.join(classes)}"
    )


def _png_names(files: list[Path]) -> list[str]:
    """A distinct, filesystem-safe PNG name per file: its stem, prefixed by its folder's name
    when stems repeat (class folders), numbered when even that repeats."""
    counts = Counter(path.stem for path in files)
    names: list[str] = []
    seen: set[str] = set()
    for path in files:
        base = path.stem if counts[path.stem] == 1 else f"{path.parent.name}__{path.stem}"
        base = re.sub(r"[^\w.\-]+", "_", base).strip(".")[:150] or "image"
        name, k = base, 1
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names.append(f"{name}.png")
    return names


def _make_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder for the PNGs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create the folder ({err.strerror})") from None


def _explain_batch(
    loaded: LoadedModel, files: list[Path], pngs: list[Path], wanted: str | int, layer: torch.nn.Module
) -> list[Explained]:
    from cnnctl.report import plots

    images, errors = [], []
    for path in files:
        try:
            images.append(load_for_model(path, loaded.input))
            errors.append("")
        except Exception as err:  # noqa: BLE001 - a bad file becomes a row with its reason
            images.append(torch.zeros(loaded.input.shape, dtype=torch.uint8))
            errors.append(f"{err.__class__.__name__}: {err}".splitlines()[0])
    stepper, classes = loaded.stepper, loaded.classes
    x = torch.stack(images)
    probs = stepper.predict(x)
    chosen = []
    for i, path in enumerate(files):
        if wanted == "predicted":
            chosen.append(int(probs[i].argmax()))
        elif wanted == "true":
            folder = path.parent.name
            if folder not in classes and not errors[i]:
                errors[i] = f"--target true: its folder {folder!r} is not a class of the model"
            chosen.append(classes.index(folder) if folder in classes else 0)
        else:
            chosen.append(int(wanted))
    binary = stepper.task.output_kind == BINARY_LOGIT
    heat = cam.heatmaps(stepper.model, stepper.model_input(x), chosen, layer, binary=binary)
    rows = []
    for i, path in enumerate(files):
        top = int(probs[i].argmax())
        row = Explained(
            str(path),
            "",
            classes[top],
            float(probs[i, top]),
            classes[chosen[i]],
            float(probs[i, chosen[i]]),
            errors[i],
        )
        if not errors[i]:
            caption = (
                f"{path.name}: {row.label} ({row.probability:.3f})\n"
                f"heat for {row.target} (p {row.target_probability:.3f})"
                + ("" if float(heat[i].max()) > 0 else ": no location speaks for it")
            )
            plots.explanation(
                images[i].numpy(), heat[i].numpy(), caption, pngs[i], "Grad-CAM · cnnctl explain"
            )
            row.png = str(pngs[i])
        rows.append(row)
    return rows


def plain(rows: list[Explained]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]
