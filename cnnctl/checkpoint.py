"""What a checkpoint holds, how it is written (atomically) and read (weights only).

A checkpoint is a plain dict of tensors and plain data, loadable with
`torch.load(weights_only=True)`:

    format          "cnnctl-checkpoint", format_version 1
    model           the state_dict
    model_spec      {config: resolved model section, num_outputs, input_shape}
    output_kind     logits | log_probs | binary_logit
    classes         class names in label order
    input           {channels, size, resize, mean, std}: how images become inputs
    config          the whole resolved run config
    epoch, metrics  the epoch it was taken at and its validation metrics
    versions        cnnctl / torch / torchvision / python
    train_state, optimizer, schedule, scaler, rng[, rng_ranks, ema]   (last.pt only: what resume needs)
    weights         best.pt: raw, or ema when train.ema's average won that epoch
"""

from __future__ import annotations

import contextlib
import os
import pickle
import platform
import zipfile
from pathlib import Path
from typing import Any

import torch

from cnnctl import __version__
from cnnctl.errors import CheckpointError, RunFailed

FORMAT = "cnnctl-checkpoint"
FORMAT_VERSION = 1
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

    The bytes go to a temporary file in the same directory (a rename across file
    systems is not atomic), are flushed and fsynced, then `os.replace`d over the target;
    the directory is fsynced so the rename itself survives a power cut.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RunFailed(
            f"{path}: cannot write checkpoint ({err.strerror or err}); free disk space or fix "
            "permissions; earlier checkpoints are intact"
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer cnnctl (format {data['format_version']}); upgrade cnnctl"
        )
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data


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
