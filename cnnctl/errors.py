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
