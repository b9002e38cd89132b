"""The bounds every section checks its numbers against.

Whatever validates either trains or fails in one line: docs/config.md shows each key's range
(from the Field constraints, or `allowed` where a validator checks it).
"""

from __future__ import annotations

MAX_SIDE = 2048  # image_size / resize / image_shape sides: 9x the 224 of ImageNet models
MAX_BATCH = 65_536  # batch_size: 2^16, the top of the published large-batch ImageNet recipes
MAX_WORKERS = 64  # num_workers: DataLoader processes; more only adds memory and start-up time
MAX_EPOCHS = 100_000  # epochs and every count of epochs
MAX_WIDTH = 16_384  # one conv / fully connected width
MAX_LAYERS = 16  # entries of model.channels / model.hidden / model.head.hidden
MAX_SEED = 2**63 - 1  # torch.manual_seed takes [-2^63, 2^64); seed + rank must fit too
MAX_PARAMETERS = 2**30  # small_cnn / mlp: 4 GiB of fp32 weights, 16 GiB with Adam's state
MAX_SYNTHETIC_BYTES = 2 << 30  # synthetic images are generated into memory
SYNTHETIC_MAX_PER_CLASS = 10_000
MAX_LR = 1e30  # far above any useful lr; from 1e38 torch overflows float32 (a traceback, not a diverging run)
MAX_FOLDS = 100  # data.cv.folds: leave-one-out on more is a loop of thousands of full runs
