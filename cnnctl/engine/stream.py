"""Inference on the CPU: decode ahead in a thread, and give the model the thread count that
runs the pipeline fastest on this machine.

`predict` on the CPU spends its time in two places: decoding files (PIL, which releases the
GIL while it inflates and resizes) and the network (torch's intra-op threads). Decoding in
worker processes while the network runs on every core oversubscribes the cores, and torch's
threads then wait on each other at every barrier; measured on 2 cores, that was the slowest
arrangement. Here one background thread decodes in stretches, ahead of the network
(`Prefetch`); `ThreadTuner` tries the network on one core fewer and on all cores for a couple
of batches each while the decoder works (like cuDNN's benchmark mode, on live data) and keeps
the faster, and whenever the decoder rests the network gets every core.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


class Prefetch(Iterator[T]):
    """The jobs' results in order, computed in a background thread ahead of the consumer.

    At most `ahead` + 1 jobs are queued or held (the memory bound). The thread works in stretches: once
    the queue is full and every queued job is done it rests (`idle()` is true, its core is
    free for the consumer) until fewer than `low` results are left, then fills the queue
    again. An exception in a job is raised where its result is taken. `close()` (or running
    out) shuts the thread down; jobs not yet started are dropped.
    """

    def __init__(self, jobs: Iterable[Callable[[], T]], ahead: int = 2, low: int = 2) -> None:
        self._source = iter(jobs)
        self._ahead, self._low = max(1, ahead), max(1, min(low, ahead))
        self._pending: deque[Future[T]] = deque()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cnnctl-decode")
        self._exhausted = False
        self._resting = False

    def __next__(self) -> T:
        if self._resting and len(self._pending) < self._low and not self._exhausted:
            self._resting = False
        if not self._resting:
            while len(self._pending) < self._ahead + 1 and not self._exhausted:
                job = next(self._source, None)
                if job is None:
                    self._exhausted = True
                else:
                    self._pending.append(self._pool.submit(job))
            self._resting = all(future.done() for future in self._pending)
        if not self._pending:
            self.close()
            raise StopIteration
        try:
            return self._pending.popleft().result()
        except BaseException:
            self.close()
            raise

    def idle(self) -> bool:
        """Is the background thread resting (nothing queued for it to do)?"""
        return self._resting or all(future.done() for future in self._pending)

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)


class ThreadTuner:
    """Tries each of `candidates` (torch intra-op thread counts) for `probe` batches (fewer when
    one is already clearly slower than the best so far), then keeps the one with the lowest
    median seconds per image. The count is set at each tick, so a batch runs under one count.

    Call `tick(images, decoder_idle)` at the start of every batch with the size of the batch
    just finished (0 for the first), and whether the decode thread has caught up: while it
    has nothing to do, the batch runs on the largest candidate whatever the choice (the
    decode thread's core is free). `close()` puts back the thread count from before.
    """

    def __init__(
        self, candidates: list[int], probe: int = 2, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.clock = clock
        self.candidates = list(dict.fromkeys(c for c in candidates if c >= 1))
        self.probe = probe
        self.original = torch.get_num_threads()
        self.timings: dict[int, list[float]] = {c: [] for c in self.candidates}
        self.chosen: int | None = self.candidates[0] if len(self.candidates) == 1 else None
        self._index = 0  # which candidate is being tried
        self._seen = 0  # batches finished under it
        self._last: float | None = None
        torch.set_num_threads(self.candidates[0])

    def tick(self, images: int, decoder_idle: bool = False) -> None:
        now = self.clock()
        if self.chosen is None and self._last is not None and images:
            current = self.candidates[self._index]
            self._seen += 1
            self.timings[current].append((now - self._last) / images)
            if self._seen >= self.probe or self._clearly_slower(current):
                self._index += 1
                self._seen = 0
                if self._index == len(self.candidates):
                    self.chosen = min(self.candidates, key=lambda c: statistics.median(self.timings[c]))
        current = self.chosen if self.chosen is not None else self.candidates[self._index]
        wanted = max(self.candidates) if decoder_idle else current
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
        self._last = self.clock()

    def _clearly_slower(self, current: int) -> bool:
        """One batch under `current` took 25% longer per image than the best so far: stop trying it
        (a heavy network on fewer threads would otherwise be probed at length)."""
        tried = [statistics.median(t) for c, t in self.timings.items() if t and c != current]
        return bool(tried and self.timings[current] and self.timings[current][-1] > 1.25 * min(tried))

    def close(self) -> None:
        torch.set_num_threads(self.original)


def inference_threads() -> list[int]:
    """The thread counts worth trying for the network while one thread decodes beside it."""
    cores = torch.get_num_threads()
    # One fewer first: measured on 2 cores, trying all cores first while the decode thread
    # runs cost 0.3 s of contended batches (a small CNN: 1.21 s against 1.16 s for 2000 files;
    # resnet18 at 64 px: 1.52 s against 1.19 s for 256 files).
    return [cores - 1, cores] if cores > 1 else [1]
