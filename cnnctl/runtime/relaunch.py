"""`cnnctl train --nproc N`: the same command again under torchrun, one process per GPU."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def relaunch_under_torchrun(
    nproc: int, train_args: list[str], say: Callable[[str], None] = _to_stderr
) -> int:
    """`cnnctl train --nproc N ...` = torchrun --standalone --nproc_per_node N -m cnnctl train ...;
    its exit code (non-zero as soon as any process fails: torchrun stops the others).

    A SIGTERM sent to this process goes on to torchrun, which passes it to every rank (each
    stops at its next batch, as one process does), and this process waits for them all: it
    never leaves the job running on its own. Ctrl-C already reaches every process through the
    terminal. A job that did not finish ends with one line saying so (exit 130 / 143 when
    stopped by a signal). `say` shows a line to the user (stderr)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "cnnctl", "train", *train_args,
    ]  # fmt: skip
    say(f"launching: {' '.join(command[1:])}")
    received: list[signal.Signals] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signal.Signals(signum))
        if signum == signal.SIGTERM:
            launcher.send_signal(signum)

    launcher = subprocess.Popen(command)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = launcher.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        code = 128 + received[0].value
        say(f"error: {received[0].name}: the {nproc} processes stopped (see above)")
    elif code:
        say(f"error: the {nproc}-process job failed (torchrun exit code {code}); its first error is above")
    return code
