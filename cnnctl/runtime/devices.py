"""Device selection and the mixed-precision policy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnctl.core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda → mps → cpu; explicit names must exist on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}': CUDA is not available here; use --device cpu")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device '{name}': only {torch.cuda.device_count()} CUDA device(s) here "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"device '{name}': Apple MPS is not available here; use --device cpu")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@dataclass(frozen=True)
class Precision:
    """What autocast does on a device: off, or a dtype (with a GradScaler for fp16)."""

    dtype: torch.dtype | None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        return self.dtype is torch.float16

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """`auto` = bf16 on CUDA where supported, else fp16; off on CPU and MPS."""
    if amp == "off":
        return Precision(None)
    if amp == "auto":
        if device.type != "cuda":
            return Precision(None)
        return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if amp == "fp16" and device.type == "cpu":
        raise ConfigError("train.amp fp16 needs a GPU; use bf16 or off on the CPU")
    return Precision(torch.bfloat16 if amp == "bf16" else torch.float16)
