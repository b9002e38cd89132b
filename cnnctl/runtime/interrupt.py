"""Ctrl-C and SIGTERM during training: stop at the next batch boundary, not mid-write.

`StopSignals` replaces the SIGINT/SIGTERM handlers for the length of a `with` block. The
first signal only records itself; the engine polls `requested()` before every batch and
stops there (the epoch in progress is abandoned, last.pt keeps the last completed one).
A second signal of the same kind restores the default behaviour at once (a user who
presses Ctrl-C twice wants out); checkpoint writes stay atomic either way.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number


class StopSignals:
    """Context manager: record SIGINT/SIGTERM instead of dying; a no-op off the main thread."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def requested(self) -> bool:
        return self.received is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.received, 130) if self.received is not None else 0

    @property
    def name(self) -> str:
        return self.received.name if self.received is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if self.received is sig:  # asked twice: stop now
            signal.signal(sig, self._previous.get(sig, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.received = sig

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
