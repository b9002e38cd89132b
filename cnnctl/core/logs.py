"""cnnctl's one log handler: each record of the `cnnctl` logger becomes one line through a
`say` function (the CLI's stderr echo, or a caller's callback), warnings prefixed `warning: `."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

LOGGER = "cnnctl"


class SayHandler(logging.Handler):
    """A record → `say("warning: " + message)` for warnings and above, `say(message)` below."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__()
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        self.say(prefix + record.getMessage())


def install(say: Callable[[str], None], level: int) -> None:
    """Make `say` the `cnnctl` logger's only SayHandler (installing twice does not echo twice),
    at `level`, not propagating to the root logger."""
    logger = logging.getLogger(LOGGER)
    logger.handlers = [h for h in logger.handlers if not isinstance(h, SayHandler)]
    logger.addHandler(SayHandler(say))
    logger.setLevel(level)
    logger.propagate = False


@contextlib.contextmanager
def logs_to(say: Callable[[str], None] | None) -> Iterator[None]:
    """Show the `cnnctl` logger's lines (weights loaded, head replaced, ...) through `say`;
    with no `say`, they go wherever the logger's own handlers send them (stderr in the CLI)."""
    logger = logging.getLogger(LOGGER)
    level, others = logger.level, list(logger.handlers)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    if say is not None:
        logger.handlers = [SayHandler(say)]  # through `say` only, not twice
    try:
        yield
    finally:
        logger.handlers = others
        logger.setLevel(level)
