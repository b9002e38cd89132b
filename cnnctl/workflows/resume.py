"""`cnnctl train --resume RUN_DIR [CONFIG]`: the config and the state a run continues with.

It lives in `cnnctl.session.resume`, one layer down, so that `cnnctl cv` continues a fold
exactly as `cnnctl train --resume` continues a run.
"""

from __future__ import annotations

from cnnctl.session.resume import prepare_resume

__all__ = ["prepare_resume"]
