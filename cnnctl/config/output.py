"""`output` and `logging`: where a run is written and where its epoch metrics go."""

from __future__ import annotations

import os

from pydantic import Field, field_validator

from cnnctl.config.base import Section


class OutputConfig(Section):
    """Where runs are written."""

    dir: str = Field("runs", description="Parent folder of run directories.")
    name: str | None = Field(None, description="Run name (runs/<name>); null = the config file's name.")
    plots: bool = Field(
        True, description="Draw curves and the confusion matrix into <run>/plots/ when training ends."
    )
    report: bool = Field(
        True,
        description="Write <run>/report.html when training ends: one self-contained page (config, "
        "curves, per-class table, confusion matrix, reliability, ROC/PR, the most confidently wrong "
        "images with Grad-CAM, dataset counts and the data check); `cnnctl report RUN` rewrites it.",
    )

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and (not value or os.sep in value or value in (".", "..")):
            raise ValueError("a run name is a plain folder name")
        return value


class LoggingConfig(Section):
    """Where epoch metrics go besides metrics.csv (always written)."""

    tensorboard: bool = Field(
        False,
        description="Also write TensorBoard scalars to <run>/tensorboard/ (needs the tensorboard "
        "package: pip install cnnctl[tensorboard]).",
    )
