"""Inference on the CPU: decode ahead in a thread, and give the model the thread count that
runs the pipeline fastest on this machine.

`predict` on the CPU spends its time in two places: decoding files (PIL, which releases the
GIL while it inflates and resizes) and the network (torch's intra-op threads). Decoding in
worker processes and running the network on every core oversubscribes the cores, and
torch's threads then wait on each other at every barrier; measured on 2 cores, that was the
slowest arrangement. Here decoding runs in one background thread a few batches ahead, in
order, and `ThreadTuner` tries the network on all cores and on one core fewer for a few
batches each (like cuDNN's benchmark mode, on live data) and keeps the faster; with a
light network the decode thread gets its own core, with a heavy one the network keeps all
of them.
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


def prefetch(jobs: Iterable[Callable[[], T]], ahead: int = 2, threads: int = 1) -> Iterator[T]:
    """The jobs' results in order, each computed in a background thread up to `ahead` jobs
    before it is asked for (at most `ahead` + 1 results held at once). An exception in a job
    is raised where its result is taken."""
    pending: deque[Future[T]] = deque()
    source = iter(jobs)
    with ThreadPoolExecutor(threads, thread_name_prefix="cnnctl-decode") as pool:
        try:
            for job in source:
                pending.append(pool.submit(job))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # stopped early: drop what has not started, wait for what has
            for future in pending:
                future.cancel()


class ThreadTuner:
    """Tries each of `candidates` (torch intra-op thread counts) for `probe` batches after one
    settling batch (fewer when one is already clearly slower than the best so far), then keeps
    the one with the lowest median seconds per image.

    Call `tick(images)` at the start of every batch with the size of the batch just finished
    (0 for the first). The thread count in force when `close()` is called is put back to what
    it was before.
    """

    def __init__(
        self, candidates: list[int], probe: int = 3, clock: Callable[[], float] = time.perf_counter
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

    def tick(self, images: int) -> None:
        now = self.clock()
        if self.chosen is None and self._last is not None and images:
            current = self.candidates[self._index]
            self._seen += 1
            if self._seen > 1:  # the first batch after a switch still ran partly under the old count
                self.timings[current].append((now - self._last) / images)
            if self._seen > self.probe or self._clearly_slower(current):
                self._index += 1
                self._seen = 0
                if self._index == len(self.candidates):
                    self.chosen = min(self.candidates, key=lambda c: statistics.median(self.timings[c]))
                    torch.set_num_threads(self.chosen)
                else:
                    torch.set_num_threads(self.candidates[self._index])
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
    return [cores, cores - 1] if cores > 1 else [1]
