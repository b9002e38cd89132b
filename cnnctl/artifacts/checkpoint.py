"""What a checkpoint holds, how it is written (atomically) and read (weights only).

A checkpoint is a plain dict of tensors and plain data, loadable with
`torch.load(weights_only=True)`:

    format          "cnnctl-checkpoint", format_version 1
    model           the state_dict
    model_spec      {config: resolved model section, num_outputs, input_shape}
    output_kind     logits | log_probs | binary_logit
    task            single_label (absent in older checkpoints) | multi_label
    thresholds, label_separator   multi_label: the threshold of each label, and what joins labels
    temperature     what the outputs are divided by before the softmax / sigmoid (calibration;
                    absent in older checkpoints: 1); format_version 3 when it is not 1
    classes         class names in label order
    input           {channels, size, resize, mean, std}: how images become inputs
    config          the whole resolved run config
    epoch, metrics  the epoch it was taken at and its validation metrics
    versions        cnnctl / torch / torchvision / python
    train_state, optimizer, schedule, scaler, rng[, rng_ranks, ema]   (last.pt only: what resume needs)
    weights         best.pt: raw, or ema when train.ema's average won that epoch
"""

from __future__ import annotations

import math
import pickle
import platform
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

import torch

from cnnctl import __version__, tasks
from cnnctl.core.errors import CheckpointError, OutputError, RunFailed
from cnnctl.tasks.multi_label import OUTPUT_KIND as MULTI_LABEL_KIND
from cnnctl.tasks.multi_label import SEPARATOR
from cnnctl.tasks.single_label import OUTPUT_KINDS

FORMAT = "cnnctl-checkpoint"
FORMAT_VERSION = 3  # the newest this cnnctl reads; what a checkpoint is written as: format_version()


def format_version(record: Mapping[str, Any]) -> int:
    """What a checkpoint of this task record is written as: the lowest version every reader of
    which reads it right. 1 for single_label (any cnnctl reads it), 2 for a task an older cnnctl
    would misread, 3 for a temperature (an older cnnctl would give uncalibrated probabilities)."""
    if float(record.get("temperature", 1.0)) != 1.0:
        return 3
    return 1 if record.get("task", tasks.DEFAULT) == tasks.DEFAULT else 2


REQUIRED = ("model", "model_spec", "output_kind", "classes", "input", "config")
RESUME_KEYS = ("train_state", "optimizer", "schedule", "scaler", "rng", "rng_ranks", "ema")  # last.pt only


def versions() -> dict[str, str]:
    import torchvision

    return {
        "cnnctl": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write `payload` to `path` so that a crash at any moment leaves the old file intact.

    Through `cnnctl.core.atomic` (temp file beside it, fsynced, renamed, folder fsynced); a full
    disk (torch's zip writer says so as a RuntimeError), a read-only folder or a bad name is
    one `RunFailed` line and no temp file is left.
    """
    from cnnctl.core.atomic import write_with

    try:
        write_with(Path(path), lambda handle: torch.save(payload, handle), "checkpoint", CHECKPOINT_HINT)
    except OutputError as err:
        raise RunFailed(str(err)) from None


CHECKPOINT_HINT = "free disk space or fix permissions; earlier checkpoints are intact"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a cnnctl checkpoint with `weights_only=True`; anything else is a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a readable checkpoint (not a torch.save file; truncated or corrupt?)"
        )
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "weights only load failed" not in text.lower():
            raise CheckpointError(f"{path}: not a readable checkpoint (corrupt pickle data)") from None
        globals_ = [ln.strip() for ln in text.splitlines() if "global" in ln.lower()]
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data "
            f"(loading it could run code): {globals_[0] if globals_ else 'unsupported content'}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnctl checkpoint (no '{FORMAT}' marker)")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(
            f"{path}: not a usable checkpoint: 'format_version' {version!r} is not a number"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer cnnctl (format {data['format_version']}); upgrade cnnctl"
        )
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    problem = metadata_problem(data)
    if problem:
        raise CheckpointError(f"{path}: not a usable checkpoint: {problem}")
    return data


MAX_SIDE = 8192  # pixels: an input side beyond this is not an image classifier's
MAX_CLASSES = 1_000_000


def metadata_problem(data: dict[str, Any]) -> str | None:
    """Why a loadable checkpoint's metadata cannot be trusted (crafted or damaged), or None.

    Checks what evaluate/predict/export rely on: the class names, the input spec, the output
    kind and count, and that every weight is a finite tensor."""
    spec = data["model_spec"] if isinstance(data["model_spec"], dict) else {}
    problem = io_problem(data["classes"], data["input"], data, spec.get("num_outputs"))
    if problem:
        return problem
    if not isinstance(data["config"], dict):
        return "'config' must be a mapping"
    shape, given = spec.get("input_shape"), data["input"]
    if shape is not None and list(shape) != [given["channels"], *given["size"]]:
        return f"'input' ({given['channels']}x{given['size']}) disagrees with the model's input shape {shape}"
    return _weights_problem(data["model"])


def io_problem(classes: Any, input_spec: Any, record: Mapping[str, Any], outputs: Any) -> str | None:
    """What is wrong with a model's classes, input spec, task record (task, output_kind and
    the task's own keys) and output count (a checkpoint's or an export sidecar's), or None."""
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "'classes' must be a non-empty list of names"
    if len(classes) > MAX_CLASSES or len(set(classes)) != len(classes):
        return "'classes' holds repeated names (or absurdly many)"
    problem = _input_problem(input_spec) or task_problem(record, len(classes))
    if problem:
        return problem
    wanted = tasks.from_record({**record, "classes": classes}).num_outputs(len(classes))
    if outputs != wanted:
        return f"the model has {outputs!r} outputs for {len(classes)} classes ({record['output_kind']})"
    return None


def task_problem(record: Mapping[str, Any], num_classes: int) -> str | None:
    """What is wrong with a record's task keys: its name, output kind, and for multi_label one
    threshold per label in [0, 1] and a separator; None when they can be trusted."""
    name = record.get("task", tasks.DEFAULT)
    kind = record.get("output_kind")
    if name not in tasks.FROM_RECORD:
        return f"'task' {name!r} is not one of {', '.join(tasks.FROM_RECORD)} (written by a newer cnnctl?)"
    temperature = record.get("temperature", 1.0)
    if (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not math.isfinite(temperature)
        or not 1e-3 <= temperature <= 1e3
    ):
        return f"'temperature' {temperature!r} must be a number from 0.001 to 1000"
    if name == tasks.DEFAULT:
        if kind not in OUTPUT_KINDS:
            return f"'output_kind' {kind!r} is not one of {', '.join(OUTPUT_KINDS)}"
        return None
    if kind != MULTI_LABEL_KIND:
        return f"'output_kind' {kind!r} must be {MULTI_LABEL_KIND} for task {name}"
    thresholds, separator = record.get("thresholds"), record.get("label_separator", SEPARATOR)
    if (
        not isinstance(thresholds, list | tuple)
        or len(thresholds) != num_classes
        or not all(isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1 for t in thresholds)
    ):
        return f"'thresholds' must be {num_classes} numbers from 0 to 1, one per label"
    if not isinstance(separator, str) or not separator.strip() or len(separator) > 16:
        return f"'label_separator' {separator!r} must be short visible text"
    return None


def _input_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return "'input' must be a mapping"
    channels, size = spec.get("channels"), spec.get("size")
    if not _count(channels) or not 1 <= channels <= 4:
        return f"'input.channels' {channels!r} must be 1 to 4"
    sides = size if isinstance(size, list | tuple) else []
    if len(sides) != 2 or not all(_count(v) and 1 <= v <= MAX_SIDE for v in sides):
        return f"'input.size' {size!r} must be [height, width], 1 to {MAX_SIDE} pixels each"
    resize = spec.get("resize")
    if resize is not None and not (_count(resize) and 1 <= resize <= MAX_SIDE):
        return f"'input.resize' {resize!r} must be null or 1 to {MAX_SIDE}"
    for key in ("mean", "std"):
        values = spec.get(key)
        if (
            not isinstance(values, list | tuple)
            or len(values) != channels
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        ):
            return f"'input.{key}' must be {channels} finite numbers"
        if key == "std" and not all(v > 0 for v in values):
            return "'input.std' must be positive"
    return None


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _weights_problem(state: Any) -> str | None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "'model' must be a state_dict of tensors"
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        return f"its weights are not finite (NaN or inf in {', '.join(bad[:3])}); it cannot score images"
    return None


def plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU state_dict without wrapper prefixes (DDP's `module.`, compile's `_orig_mod.`)."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return {k: v.detach().cpu() for k, v in inner.state_dict().items()}


def rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": _numpy_plain(np.random.get_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "numpy" in state:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _numpy_plain(state: Any) -> list[Any]:
    """numpy's legacy RNG state with its key array as a tensor (weights_only can load it)."""
    kind, keys, pos, has_gauss, gauss = state
    return [str(kind), torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(gauss)]
