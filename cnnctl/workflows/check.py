"""`cnnctl data check`: per split, the images per class and the files that cannot be used
(the inventory itself is `cnnctl.data.inventory`, which a run's report shares)."""

from __future__ import annotations

from cnnctl.data.inventory import check_data, distribution_warnings

__all__ = ["check_data", "distribution_warnings"]
