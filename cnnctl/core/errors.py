"""Errors a user can cause. Each carries the one line the CLI prints and its exit code.

Exit codes follow the CLI contract: 0 success, 1 the run failed (e.g. a non-finite loss,
a checkpoint that cannot be written), 2 usage or configuration error.
"""

from __future__ import annotations


class CnnctlError(Exception):
    """A failure the user can act on; `str(err)` is the one line shown to them."""

    exit_code = 1


class ConfigError(CnnctlError):
    """The config file, an override or a command-line option is wrong."""

    exit_code = 2


class DataError(CnnctlError):
    """The dataset is missing, unreadable or inconsistent."""

    exit_code = 2


class CheckpointError(CnnctlError):
    """A checkpoint cannot be read, trusted or written."""

    exit_code = 2


class RunFailed(CnnctlError):
    """Training started but could not finish (non-finite loss, disk full, ...)."""

    exit_code = 1


class Interrupted(CnnctlError):
    """A signal stopped training (exit 130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class OutputError(CnnctlError):
    """A file cnnctl writes cannot be written (disk full, read-only, permission, bad name)."""

    exit_code = 1


def one_line(err: CnnctlError) -> str:
    """The line to show for `err`. A DataLoader worker re-raises an error as the same type
    with the worker's whole traceback as its message ("Caught DataError in DataLoader worker
    process 0. Original Traceback ..."): the line is the original message at its end."""
    text = str(err)
    if text.startswith("Caught ") and "Original Traceback" in text:
        marker = f"{type(err).__module__}.{type(err).__qualname__}: "
        last = text.rstrip().splitlines()[-1]
        text = last.split(marker, 1)[1] if marker in last else last
    return text.splitlines()[0] if text else type(err).__name__
