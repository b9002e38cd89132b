"""`cnnctl train`: a run from a validated config, or a resumed one, to its run directory.

The run itself lives in `cnnctl.session.training`, one layer down, so that `cnnctl tune`
(a run per trial) and `cnnctl cv` (a run per fold) run exactly what `cnnctl train` runs.
"""

from __future__ import annotations

from cnnctl.session.training import TrainOutcome, train

__all__ = ["TrainOutcome", "train"]
