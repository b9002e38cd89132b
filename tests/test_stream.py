"""cnnctl.engine.stream: ordered background decoding and the thread-count probe behind CPU predict."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from cnnctl.data.synthetic import write_image_folder
from cnnctl.engine import stream
from cnnctl.workflows.predict import predict


def test_prefetch_keeps_order_and_bounds_what_it_holds() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def job(i: int) -> int:
        with lock:
            started.append(i)
        return i * i

    out = []
    for value in stream.Prefetch((lambda i=i: job(i)) for i in range(20)):
        # the consumer is at result len(out); nothing more than `ahead` (2) jobs past it has started
        assert max(started) <= len(out) + 2
        out.append(value)
    assert out == [i * i for i in range(20)]


def test_prefetch_raises_a_jobs_error_where_its_result_is_taken() -> None:
    def bad() -> int:
        raise ValueError("boom")

    results = stream.Prefetch([lambda: 1, bad, lambda: 3])
    assert next(results) == 1
    with pytest.raises(ValueError, match="boom"):
        next(results)


def test_prefetch_stopped_early_runs_no_more_jobs() -> None:
    ran: list[int] = []
    results = stream.Prefetch((lambda i=i: ran.append(i)) for i in range(100))
    next(results)
    results.close()
    assert len(ran) <= 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_batches(
    tuner: stream.ThreadTuner, clock: FakeClock, seconds_per_image: dict[int, float], n: int
) -> None:
    """Feed `n` batches of 10 images, each taking what the thread count in force costs."""
    tuner.tick(0)
    for _ in range(n):
        clock.now += 10 * seconds_per_image[torch.get_num_threads()]
        tuner.tick(10)


def test_tuner_keeps_the_faster_thread_count_and_restores_the_original() -> None:
    before = torch.get_num_threads()
    clock = FakeClock()
    tuner = stream.ThreadTuner([2, 1], probe=3, clock=clock)
    run_batches(tuner, clock, {2: 0.010, 1: 0.008}, 12)
    assert tuner.chosen == 1 and torch.get_num_threads() == 1
    assert len(tuner.timings[2]) == 3 and len(tuner.timings[1]) == 3
    tuner.close()
    assert torch.get_num_threads() == before


def test_tuner_gives_the_network_every_core_while_the_decoder_is_idle() -> None:
    before = torch.get_num_threads()
    clock = FakeClock()
    tuner = stream.ThreadTuner([2, 1], probe=1, clock=clock)
    run_batches(tuner, clock, {2: 0.010, 1: 0.008}, 5)
    assert tuner.chosen == 1
    tuner.tick(10, decoder_idle=True)
    assert torch.get_num_threads() == 2
    tuner.tick(10, decoder_idle=False)
    assert torch.get_num_threads() == 1
    tuner.close()
    assert torch.get_num_threads() == before


def test_prefetch_says_when_its_thread_is_idle() -> None:
    gate = threading.Event()
    results = stream.Prefetch([lambda: 0, gate.wait, lambda: 2], ahead=2)
    assert next(results) == 0
    assert not results.idle()  # the second job waits on the gate
    gate.set()
    assert next(results) is True
    next(results)
    assert results.idle()
    results.close()


def test_tuner_drops_a_clearly_slower_candidate_after_one_batch() -> None:
    before = torch.get_num_threads()
    clock = FakeClock()
    tuner = stream.ThreadTuner([2, 1], probe=3, clock=clock)
    run_batches(tuner, clock, {2: 0.010, 1: 0.020}, 8)  # a heavy network: one thread is twice as slow
    assert tuner.chosen == 2 and len(tuner.timings[1]) == 1
    tuner.close()
    assert torch.get_num_threads() == before


def test_tuner_with_one_core_has_nothing_to_try() -> None:
    tuner = stream.ThreadTuner([1], clock=FakeClock())
    assert tuner.chosen == 1
    tuner.close()


def test_cpu_predict_streams_in_order_and_restores_threads(trained_run: Path, tmp_path: Path) -> None:
    """Enough batches for the probe to finish; labels equal the DataLoader path's, threads restored,
    also when the consumer stops early."""
    write_image_folder(tmp_path / "imgs", 3, 14, 16, seed=3, noise=0.05)
    (tmp_path / "imgs" / "circle" / "zz_broken.png").write_bytes(b"nope")
    before = torch.get_num_threads()
    threaded = list(predict(trained_run, [tmp_path / "imgs"], batch_size=4, device="cpu"))
    assert torch.get_num_threads() == before
    loader = list(predict(trained_run, [tmp_path / "imgs"], batch_size=4, device="cpu", workers=0))
    assert [(p.path, p.label, p.error != "") for p in threaded] == [
        (p.path, p.label, p.error != "") for p in loader
    ]
    assert [p.probability for p in threaded] == pytest.approx(
        [p.probability for p in loader], abs=1e-5, nan_ok=True
    )
    assert sum(1 for p in threaded if p.error) == 1
    partial = predict(trained_run, [tmp_path / "imgs"], batch_size=4, device="cpu")
    for _ in range(30):
        next(partial)
    partial.close()
    assert torch.get_num_threads() == before
