"""`train`: the training loop (epochs, loss, early stopping, precision, EMA, MixUp / CutMix)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cnnctl.config.base import KeyError_, Section, allowed_range, short_repr
from cnnctl.config.limits import MAX_EPOCHS

THRESHOLD_AUTO: Literal["auto"] = "auto"
Loss = Literal["cross_entropy", "nll", "bce_with_logits", "focal"]
MAX_CLASS_WEIGHTS = 100_000  # entries of an explicit train.class_weights


class EmaConfig(Section):
    """An exponential moving average of the weights, validated beside the raw weights."""

    decay: float = Field(0.999, gt=0, lt=1, description="EMA decay per optimizer step (e.g. 0.999).")


class TrainConfig(Section):
    """The training loop."""

    selector = "loss"
    applies_to = {"focal_gamma": ("focal",)}

    epochs: int = Field(10, ge=1, le=MAX_EPOCHS, description="Number of epochs.")
    loss: Loss = Field(
        "cross_entropy",
        description="cross_entropy; nll (model.log_softmax: true); bce_with_logits (2 classes; the "
        "default of task multi_label: one sigmoid per label); focal (Lin et al. 2017: cross entropy "
        "scaled by (1 - p_true)^focal_gamma; sigmoid focal per label with task multi_label).",
    )
    focal_gamma: float = Field(
        2.0, ge=0, le=10, description="focal: the focusing exponent (0 = cross entropy; 2 in the paper)."
    )
    class_weights: Literal["none", "auto"] | list[float] | dict[str, float] = Field(
        "none",
        description="Per-class weights of the training loss: none; auto = inverse class frequency on "
        "the train split, normalised to a mean weight of 1 per image; [w, ...] in class order; or "
        "{class: w} (unlisted classes 1). task multi_label: each label's weight scales its positive "
        "term (torch's pos_weight) and auto = negatives / positives per label on the train split. "
        "The val/test loss stays unweighted.",
        json_schema_extra=allowed_range("each weight 0 < w ≤ 1e6"),
    )
    threshold: Literal["auto"] | float = Field(
        THRESHOLD_AUTO,
        description="task multi_label: the probability at which a label is predicted; auto = per "
        "label, the threshold with the best F1 on the val split (chosen with best.pt, stored in it "
        "and used by evaluate, predict and export); a number = that threshold for every label.",
        json_schema_extra=allowed_range("auto, or 0 < x < 1"),
    )
    calibrate: bool = Field(
        True,
        description="After training, fit a temperature on the val split (temperature scaling: the "
        "outputs are divided by it, lowering the val NLL without changing any decision), store it "
        "in best.pt and use it everywhere (evaluate, predict, export); summary.json's `calibration` "
        "gives it with the val ECE before and after. false = probabilities as the network gives them.",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="cross_entropy: label smoothing (train loss only)."
    )
    monitor: Literal["val_loss", "val_acc"] = Field(
        "val_loss", description="What picks best.pt and drives early stopping."
    )
    patience: int | None = Field(
        None, ge=1, le=MAX_EPOCHS, description="Early stopping: epochs without improvement; null = off."
    )
    min_delta: float = Field(0.0, ge=0, description="Early stopping / best.pt: smallest change that counts.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this; null = off.")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision; auto = bf16/fp16 on CUDA, off elsewhere."
    )
    accumulate: int = Field(
        1,
        ge=1,
        le=1024,
        description="Gradient accumulation: one optimizer step per this many batches (effective "
        "batch = batch_size x accumulate); lr schedules count optimizer steps.",
    )
    ema: EmaConfig | None = Field(
        None,
        description="{decay: 0.999}: keep an EMA of the weights, validate it beside the raw weights "
        "every epoch, and let the better of the two (by train.monitor) stand for the epoch; best.pt "
        "records which won (`weights`: ema | raw). null = off.",
    )
    mixup_alpha: float = Field(
        0.0, ge=0, le=10, description="MixUp on training batches with this Beta alpha (0 = off; e.g. 0.2)."
    )
    cutmix_alpha: float = Field(
        0.0,
        ge=0,
        le=10,
        description="CutMix on training batches with this Beta alpha (0 = off; e.g. 1.0); with "
        "mixup_alpha too, each batch gets one of the two at random. Accuracy stays on hard labels.",
    )
    channels_last: Literal["auto"] | bool = Field(
        "auto",
        description="NHWC memory layout for the model and its input batches; auto = on for CUDA "
        "(tensor cores prefer it), off on CPU and MPS.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model (a one-off compile cost, then faster steps on CUDA; "
        "needs a C++ compiler on CPU).",
    )
    nan_policy: Literal["stop", "skip_batch"] = Field(
        "stop",
        description="A non-finite training loss: stop (exit 1, best.pt kept) or skip_batch "
        "(no step for that batch, counted and reported; an epoch with every batch skipped stops).",
    )
    deterministic: bool = Field(
        False,
        description="torch.use_deterministic_algorithms(True) (warn-only where an op has no "
        "deterministic kernel) and cuDNN benchmark off; slower on GPU, CPU runs repeat without it.",
    )
    unfreeze_at_epoch: int | None = Field(
        None,
        ge=2,
        le=MAX_EPOCHS,
        description="Unfreeze a frozen backbone from this epoch on (backbone lr = lr x "
        "optimizer.backbone_lr_mult); null = stay as model.freeze says.",
    )

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights_shape(cls, value: Any) -> Any:
        """A list or mapping of weights: say what is wrong with it, not which literal it is not."""
        if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
            raise ValueError("a mapping's keys are class names (text); quote a number: {'0': 2.0}")
        values = (
            list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else None
        )
        if values is not None and any(
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0 < v <= 1e6
            for v in values
        ):
            raise ValueError(f"every weight must be a number 0 < w <= 1e6 (got {short_repr(values)})")
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: str | float) -> str | float:
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError(f"got {value!r}; a threshold is a probability 0 < x < 1 (or auto)")
        return value

    @model_validator(mode="after")
    def _smoothing(self) -> TrainConfig:
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ValueError("label_smoothing applies to loss cross_entropy only")
        if (self.mixup_alpha or self.cutmix_alpha) and self.loss == "bce_with_logits":
            raise ValueError("mixup_alpha / cutmix_alpha need loss cross_entropy or nll (or focal)")
        weights = self.class_weights
        if isinstance(weights, list | dict) and not 1 <= len(weights) <= MAX_CLASS_WEIGHTS:
            raise KeyError_("class_weights", f"give 1 to {MAX_CLASS_WEIGHTS:,} weights, or none / auto")
        return self
