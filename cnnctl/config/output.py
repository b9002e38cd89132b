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
    mlflow: bool = Field(
        False,
        description="Track the run in MLflow (pip install cnnctl[mlflow]): every resolved config key as "
        "a param, per-epoch metrics, test metrics, tags and artifacts (plots, summary.json, config.yaml, "
        "report.html). Off the training loop; a tracking failure warns once and never stops training. "
        "Only rank 0 logs under DDP; tune and cv log each trial or fold as a child run.",
    )
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI; null = MLFLOW_TRACKING_URI if set, else the SQLite file "
        "<output.dir>/mlflow.db (artifacts in <output.dir>/mlartifacts/).",
    )
    mlflow_experiment: str | None = Field(
        None, description="MLflow experiment; null = the config file's stem (the default run name)."
    )
    mlflow_checkpoints: bool = Field(False, description="Also upload best.pt and last.pt to MLflow.")
