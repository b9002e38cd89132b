"""What the training loop reports and keeps: one epoch's row (metrics.csv), the fit state a
checkpoint stores, the fit settings, and the `Progress` hooks a console draws from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class Progress(Protocol):
    """Hooks the engine calls; `report.py` draws bars or prints lines from them."""

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None: ...
    def batch(self, samples: int, loss: float | None) -> None: ...
    def end_epoch(self, row: EpochRow) -> None: ...


class SilentProgress:
    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        pass

    def batch(self, samples: int, loss: float | None) -> None:
        pass

    def end_epoch(self, row: EpochRow) -> None:
        pass


@dataclass
class EpochRow:
    """One line of metrics.csv."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    weights: str = "raw"  # which weights the val figures are of: raw, or ema (train.ema)
    diverging: str = ""  # why this epoch says the run is diverging ('' when it does not)

    def to_plain(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitState:
    """What `fit` carries from epoch to epoch (and what resume restores)."""

    epoch: int = 0  # epochs completed
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_plain(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    monitor: str = "val_loss"  # or val_acc
    patience: int | None = None
    min_delta: float = 0.0
