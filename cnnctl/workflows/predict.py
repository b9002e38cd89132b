"""`cnnctl predict`: label every image under some paths with a checkpoint or an exported
ONNX model, streaming one `Prediction` per file (flat memory, whatever the folder's size)."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from cnnctl.artifacts.loaded import Scorer, load_scorer
from cnnctl.core.errors import RunFailed
from cnnctl.data import default_workers
from cnnctl.data.transforms import InputSpec, load_for_model
from cnnctl.engine import stream

PREFETCH_BYTES = 8 * 2**20  # decoded batches predict may hold ahead of the model (flat in the folder size)


@dataclass
class Prediction:
    path: str
    label: str
    probability: float | None
    topk: list[tuple[str, float]]
    error: str
    task: Any = field(default=None, repr=False, compare=False)  # what decided it: the file's columns


def collect_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for image files, with training's link
    policy (data.folder.collect_images: loops skipped, each file once, FIFOs never opened)."""
    from cnnctl.data.folder import collect_images as collect

    return collect(paths)


class _PredictFiles(Dataset[tuple[torch.Tensor, int, str]]):
    def __init__(self, files: list[Path], spec: InputSpec):
        self.files, self.spec = files, spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            return load_for_model(self.files[i], self.spec), i, ""
        except Exception as err:  # noqa: BLE001 - a bad file becomes a row with its reason
            reason = f"{err.__class__.__name__}: {err}".splitlines()[0]
            return torch.zeros(self.spec.shape, dtype=torch.uint8), i, reason


def predict(
    checkpoint_path: str | Path,
    paths: Sequence[str | Path],
    topk: int = 1,
    batch_size: int = 64,
    device: str = "auto",
    workers: int | None = None,
    tta: bool | list[str] = False,
) -> Iterator[Prediction]:
    """Label every image under `paths`, streaming results batch by batch (flat memory).

    `checkpoint_path` is a checkpoint, a run dir, or an exported `.onnx` model with its sidecar.
    On the CPU, files are decoded in a background thread while the model runs (see
    `cnnctl.engine.stream`); on a GPU, or with `workers` given, by DataLoader worker processes.
    A torch model on the CPU changes torch's (process-wide) intra-op thread count while the
    iterator runs; the count from before is put back when it ends or is closed. With `tta`,
    the probabilities are averaged over the model's test-time augmentation views (the run's
    `data.tta`; an ONNX model's sidecar records them), or over the views `tta` names.
    """
    model = load_scorer(checkpoint_path, device)
    if tta:
        model = with_tta(model, list(tta) if isinstance(tta, list) else None)
    files = collect_images(paths)
    k = max(1, min(topk, len(model.classes)))
    dataset = _PredictFiles(files, model.input)
    tuner: stream.ThreadTuner | None = None
    prefetch: stream.Prefetch[Any] | None = None
    tick: Callable[[int], None] | None = None
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, Sequence[str]]]
    if workers is None and model.device == "cpu":
        batch_bytes = batch_size * math.prod(model.input.shape)  # uint8
        batches = prefetch = stream.Prefetch(
            (
                functools.partial(_collate, dataset, range(start, min(start + batch_size, len(files))))
                for start in range(0, len(files), batch_size)
            ),
            ahead=max(2, min(64, PREFETCH_BYTES // batch_bytes)),
        )
        if model.torch_threads:
            tuner = stream.ThreadTuner(stream.inference_threads())
            tick = functools.partial(_tick, tuner, prefetch)
    else:
        if workers is None:
            workers = default_workers() if len(files) > batch_size else 0
        batches = DataLoader(
            dataset, batch_size=batch_size, num_workers=workers, pin_memory=model.device == "cuda"
        )
    try:
        yield from _label(batches, files, model, k, tick)
    finally:
        if prefetch is not None:
            prefetch.close()
        if tuner is not None:
            tuner.close()


def with_tta(model: Scorer, names: list[str] | None = None) -> Scorer:
    """The scorer averaging over the TTA views `names` (default: the model's own; the image
    alone when it has none)."""
    import dataclasses

    from cnnctl.data import tta

    if names is not None:
        model = dataclasses.replace(model, tta=names)
    if not model.tta:
        logging.getLogger("cnnctl").warning(
            "--tta: the model trained without flips or crops and data.tta is auto, so there is no "
            "view to average over (choose some with --tta-views hflip,...); the images are scored as they are"
        )
    chosen = tta.views(model.tta, model.tta_shift)
    return dataclasses.replace(model, score=tta.averaged(model.score, chosen))


def _tick(tuner: stream.ThreadTuner, prefetch: stream.Prefetch[Any], images: int) -> None:
    tuner.tick(images, prefetch.idle())


def _collate(dataset: _PredictFiles, indices: range) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    items = [dataset[i] for i in indices]
    return torch.stack([x for x, _, _ in items]), torch.tensor(list(indices)), [e for _, _, e in items]


def _label(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, Sequence[str]]],
    files: list[Path],
    model: Scorer,
    k: int,
    tick: Callable[[int], None] | None,
) -> Iterator[Prediction]:
    """Predictions for each batch; `tick(images of the batch just done)` before each one."""
    done = 0
    for images, indices, errors in batches:
        if tick is not None:
            tick(done)
        done = len(indices)
        probs = model.score(images)
        readable = [row for row, error in enumerate(errors) if not error]
        if readable and not bool(torch.isfinite(probs[readable]).all()):
            first = files[int(indices[readable[0]])]
            raise RunFailed(
                f"the model gives non-finite probabilities (NaN or inf), e.g. for {first}: its weights "
                "are broken; no predictions written"
            )
        decisions = model.task.decide(probs, model.classes, k)
        for (index, error), (label, probability, pairs) in zip(
            zip(indices.tolist(), errors, strict=True), decisions, strict=True
        ):
            path = str(files[index])
            if error:
                yield Prediction(path, "", None, [], error, model.task)
                continue
            yield Prediction(path, label, probability, pairs, "", model.task)
