"""The run configuration: YAML + `--set` overrides → a typed, validated, frozen `RunConfig`.

This package must not import torch: `cnnctl config validate` runs on it alone.

Rules every section follows:
- unknown keys are refused (`extra="forbid"`), values are not coerced between types
  (`strict=True`), and each error names its dotted path and what is allowed;
- a key that belongs to one data source / model family / optimizer is refused when set
  for another (`data.label_column` with `data.source: synthetic`), so a config never
  carries a key that the code ignores;
- defaults that depend on a choice (`model.hidden` for `small_cnn` vs `mlp`) are filled in
  at load time, so `cnnctl config show` prints exactly what will run;
- a key named after a torch argument defaults to torch's value (TORCH_DEFAULTS lists them and
  the deliberate deviations);
- every number is bounded (finite, and within a range docs/config.md shows), and combinations
  that cannot train (a kernel larger than the image it reaches) are refused, so whatever
  validates either trains or fails in one line;
- the YAML itself is bounded (size, nesting, alias expansion) before it is composed, and a
  config file must name its data (`data.source`): an empty file is an error.

Where each part lives (lowest first): `yaml_io` (bounded YAML reading), `limits` (the
bounds), `base` (Section, KeyError_), one module per section (`augment`, `data`, `model`,
`optim`, `train`, `output`), `small_models` (small_cnn / mlp arithmetic), `run` (RunConfig
and the cross-section checks), `torch_defaults`, `overrides` (`--set`), `messages` (one line
per validation error), `load` (load_config, validate, dump_yaml); `docs` generates
docs/config.md and `resume` says what a resumed run may change. This module only re-exports.
"""

from __future__ import annotations

from cnnctl.config.augment import AugmentConfig, ColorJitterConfig
from cnnctl.config.base import KeyError_, Section
from cnnctl.config.data import (
    NATIVE_SIZE,
    REQUIRED_KEYS,
    SMALLEST_CONFIG,
    DataConfig,
    DataSource,
    NormalizeStats,
    config_input_shape,
)
from cnnctl.config.limits import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_LAYERS,
    MAX_LR,
    MAX_PARAMETERS,
    MAX_SEED,
    MAX_SIDE,
    MAX_SYNTHETIC_BYTES,
    MAX_WIDTH,
    MAX_WORKERS,
    SYNTHETIC_MAX_PER_CLASS,
)
from cnnctl.config.load import dump_yaml, load_config, require_data, validate
from cnnctl.config.messages import MAX_ERROR_LINES, format_validation_error
from cnnctl.config.model import TORCHVISION, FreezeUntil, HeadConfig, ModelConfig, is_torchvision_classifier
from cnnctl.config.optim import OptimizerConfig, SchedulerConfig
from cnnctl.config.output import LoggingConfig, OutputConfig
from cnnctl.config.overrides import MAX_SET_BYTES, apply_overrides, parse_override
from cnnctl.config.run import RunConfig
from cnnctl.config.small_models import check_small_model, small_cnn_features, small_model_parameters
from cnnctl.config.torch_defaults import TORCH_DEFAULTS, TorchDefault, default_for
from cnnctl.config.train import EmaConfig, Loss, TrainConfig
from cnnctl.config.yaml_io import (
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    parse_yaml,
    read_config_file,
)

__all__ = [
    "MAX_BATCH",
    "MAX_CONFIG_BYTES",
    "MAX_EPOCHS",
    "MAX_ERROR_LINES",
    "MAX_LAYERS",
    "MAX_LR",
    "MAX_PARAMETERS",
    "MAX_SEED",
    "MAX_SET_BYTES",
    "MAX_SIDE",
    "MAX_SYNTHETIC_BYTES",
    "MAX_WIDTH",
    "MAX_WORKERS",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "NATIVE_SIZE",
    "REQUIRED_KEYS",
    "SMALLEST_CONFIG",
    "SYNTHETIC_MAX_PER_CLASS",
    "TORCHVISION",
    "TORCH_DEFAULTS",
    "AugmentConfig",
    "ColorJitterConfig",
    "DataConfig",
    "DataSource",
    "EmaConfig",
    "FreezeUntil",
    "HeadConfig",
    "KeyError_",
    "LoggingConfig",
    "Loss",
    "ModelConfig",
    "NormalizeStats",
    "OptimizerConfig",
    "OutputConfig",
    "RunConfig",
    "SchedulerConfig",
    "Section",
    "TorchDefault",
    "TrainConfig",
    "apply_overrides",
    "check_small_model",
    "config_input_shape",
    "default_for",
    "dump_yaml",
    "format_validation_error",
    "is_torchvision_classifier",
    "load_config",
    "parse_override",
    "parse_yaml",
    "read_config_file",
    "require_data",
    "small_cnn_features",
    "small_model_parameters",
    "validate",
]
