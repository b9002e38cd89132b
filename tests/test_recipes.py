"""Modern training recipes: the augmentation keys, `cnnctl lr-find` and `optimizer.lr: auto`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image

from cnnctl.config import dump_yaml, validate
from cnnctl.core.errors import ConfigError, RunFailed
from cnnctl.data import EpochLoader, TensorBatches, build_splits, make_loader
from cnnctl.data.transforms import build_augment
from cnnctl.engine.lr_range import batch_noise, smooth, suggest
from cnnctl.session.lr import find_lr
from tests.conftest import TINY, invoke, merge

SIZE = (16, 16)
# TINY learns too slowly for a range test to see its loss fall clearly within a few hundred
# steps; with BatchNorm and no dropout it does (the smoothed loss falls by ~20%).
TOY: dict[str, Any] = {"model": {"batch_norm": True, "dropout": 0.0}}


def image() -> torch.Tensor:
    """A fixed 3x16x16 uint8 image with no symmetry (noise on a diagonal gradient)."""
    noise = torch.randint(0, 96, (3, *SIZE), generator=torch.Generator().manual_seed(7))
    ramp = torch.arange(SIZE[0]).view(-1, 1) * 6 + torch.arange(SIZE[1]).view(1, -1) * 3
    return (noise + ramp).clamp(0, 255).to(torch.uint8)


def augment(**keys: Any) -> Any:
    return build_augment(validate({"data": {"augment": keys}}).data.augment, SIZE)


def draws(keys: dict[str, Any], n: int = 12, seed: int = 0) -> list[torch.Tensor]:
    """n augmented copies of `image()`; each is uint8 and keeps the shape."""
    transform, img = augment(**keys), image()
    torch.manual_seed(seed)
    outs = [transform(img) for _ in range(n)]
    for out in outs:
        assert out.dtype == torch.uint8 and out.shape == img.shape
    return outs


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------

EVERY_KEY = [
    {"hflip": True},
    {"vflip": True},
    {"random_crop": 2},
    {"rotation": 30},
    {"random_resized_crop": [0.25, 0.5]},
    {"policy": "trivialaugment"},
    {"policy": "randaugment", "randaugment_ops": 3, "randaugment_magnitude": 15},
    {"policy": "autoaugment", "autoaugment_policy": "cifar10"},
    {"color_jitter": 0.5},
    {"color_jitter": {"hue": 0.3}},
    {"random_erasing": 1.0},
]


@pytest.mark.parametrize("keys", EVERY_KEY, ids=[json.dumps(k) for k in EVERY_KEY])
def test_each_key_changes_train_images_and_keeps_them_uint8(keys: dict[str, Any]) -> None:
    outs = draws(keys)
    assert any(not torch.equal(out, image()) for out in outs)
    again = draws(keys)  # the same seed gives the same images
    assert all(torch.equal(a, b) for a, b in zip(outs, again, strict=True))


def test_no_augmentation_by_default_or_at_zero() -> None:
    assert augment() is None
    assert augment(random_erasing=0.0, color_jitter=0.0, rotation=0.0, policy="none") is None
    assert augment(color_jitter={"brightness": 0.0}) is None


def test_flips_mirror_the_image() -> None:
    img = image()
    for key, dim in (("hflip", -1), ("vflip", -2)):
        outs = draws({key: True}, n=16)
        assert all(torch.equal(o, img) or torch.equal(o, img.flip(dim)) for o in outs)
        assert any(torch.equal(o, img) for o in outs) and any(torch.equal(o, img.flip(dim)) for o in outs)


def test_random_crop_is_a_window_of_the_reflect_padded_image() -> None:
    padded = torch.nn.functional.pad(image()[None].float(), (2, 2, 2, 2), mode="reflect")[0].to(torch.uint8)
    windows = [padded[:, y : y + 16, x : x + 16] for y in range(5) for x in range(5)]
    assert all(any(torch.equal(o, w) for w in windows) for o in draws({"random_crop": 2}))


def test_random_erasing_zeroes_one_rectangle() -> None:
    img = image()
    for out in draws({"random_erasing": 1.0}):
        changed = (out != img).any(dim=0)
        rows, cols = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
        box = out[:, int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]
        assert (box == 0).all() and 0 < changed.sum() < changed.numel()


def test_brightness_jitter_keeps_the_order_of_pixel_values() -> None:
    img = image()
    order = img.flatten().argsort(stable=True)
    for out in draws({"color_jitter": {"brightness": 0.4}}):
        assert not torch.equal(out, img)
        assert (out.flatten()[order].diff() >= 0).all()  # one factor for every pixel, clipped at 255


def test_color_jitter_number_is_brightness_contrast_saturation() -> None:
    jitter = augment(color_jitter=0.3).transforms[-1]
    assert type(jitter).__name__ == "ColorJitter"
    for name in ("brightness", "contrast", "saturation"):
        assert getattr(jitter, name) == pytest.approx((0.7, 1.3))
    assert jitter.hue is None


def test_policy_parameters_change_the_policy() -> None:
    weak = draws({"policy": "randaugment", "randaugment_magnitude": 1}, n=6)
    strong = draws({"policy": "randaugment", "randaugment_magnitude": 25}, n=6)
    assert any(not torch.equal(a, b) for a, b in zip(weak, strong, strict=True))
    cifar = draws({"policy": "autoaugment", "autoaugment_policy": "cifar10"}, n=6)
    svhn = draws({"policy": "autoaugment", "autoaugment_policy": "svhn"}, n=6)
    assert any(not torch.equal(a, b) for a, b in zip(cifar, svhn, strict=True))
    ops = augment(policy="randaugment", randaugment_ops=4, randaugment_magnitude=11).transforms[0]
    assert (ops.num_ops, ops.magnitude) == (4, 11)


def test_order_is_geometric_policy_colour_erasing() -> None:
    every = augment(
        random_resized_crop=[0.5, 1.0],
        random_crop=2,
        rotation=10,
        hflip=True,
        vflip=True,
        policy="randaugment",
        color_jitter=0.2,
        random_erasing=0.5,
    )
    assert [type(t).__name__ for t in every.transforms] == [
        "RandomResizedCrop",
        "RandomCrop",
        "RandomRotation",
        "RandomHorizontalFlip",
        "RandomVerticalFlip",
        "RandAugment",
        "ColorJitter",
        "RandomErasing",
    ]
    assert every.transforms[0].scale == (0.5, 1.0) and list(every.transforms[0].size) == list(SIZE)


def test_only_the_train_split_is_augmented() -> None:
    heavy = {"policy": "trivialaugment", "random_erasing": 1.0, "color_jitter": 0.4, "hflip": True}
    data = {"num_classes": 3, "samples_per_class": 8, "image_size": 16, "test_fraction": 0.25}
    splits = build_splits(validate({"data": {**data, "augment": heavy}}).data, seed=0)
    plain = build_splits(validate({"data": data}).data, seed=0)
    assert splits.train.augment is not None
    assert splits.val.augment is None and splits.test.augment is None
    assert torch.equal(splits.val.images, plain.val.images) and splits.input == plain.input
    options = {"seed": 0, "workers": 0, "pin": False}
    assert isinstance(make_loader(splits.val, 4, shuffle=False, **options), TensorBatches)
    assert isinstance(make_loader(splits.train, 4, shuffle=True, **options), EpochLoader)
    torch.manual_seed(0)
    assert any(not torch.equal(splits.train[i][0], splits.train.images[i]) for i in range(len(splits.train)))
    assert all(torch.equal(splits.val[i][0], splits.val.images[i]) for i in range(len(splits.val)))


@pytest.mark.parametrize(
    ("augment_keys", "expected"),
    [
        (
            {"policy": "trivialaugment", "randaugment_ops": 3},
            "data.augment.randaugment_ops: does not apply to policy 'trivialaugment' (only to: randaugment)",
        ),
        (
            {"randaugment_magnitude": 5},
            "data.augment.randaugment_magnitude: does not apply to policy 'none' (only to: randaugment)",
        ),
        (
            {"policy": "randaugment", "autoaugment_policy": "svhn"},
            "data.augment.autoaugment_policy: does not apply to policy 'randaugment' (only to: autoaugment)",
        ),
        ({"policy": "augmix"}, "data.augment.policy: got 'augmix'; allowed: 'none', 'trivialaugment'"),
        ({"policy": "randaugment", "randaugment_magnitude": 31}, "data.augment.randaugment_magnitude:"),
        (
            {"policy": "autoaugment", "autoaugment_policy": "mnist"},
            "data.augment.autoaugment_policy: got 'mnist'; allowed: 'imagenet', 'cifar10' or 'svhn'",
        ),
        ({"random_erasing": 1.5}, "data.augment.random_erasing: input should be less than or equal to 1"),
        ({"color_jitter": -0.1}, "data.augment.color_jitter: color_jitter is a strength >= 0"),
        ({"color_jitter": {"hue": 0.8}}, "data.augment.color_jitter.hue: input should be less than or equal"),
        ({"color_jitter": {"gamma": 0.1}}, "data.augment.color_jitter.gamma: unknown key"),
        ({"random_resized_crop": [0.8, 0.2]}, "data.augment.random_resized_crop: random_resized_crop is"),
        ({"random_resized_crop": [0.5]}, "data.augment.random_resized_crop: random_resized_crop is"),
    ],
)
def test_augment_errors_are_one_line_naming_the_key(augment_keys: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate({"data": {"augment": augment_keys}}, "c.yaml")
    assert len(str(err.value).splitlines()) == 1
    assert str(err.value).startswith(f"c.yaml: {expected}")


def test_policy_keys_are_shown_only_for_their_policy() -> None:
    rand = validate({"data": {"augment": {"policy": "randaugment"}}}).data.augment.to_plain()
    assert rand["randaugment_ops"] == 2 and "autoaugment_policy" not in rand
    plain = yaml.safe_load(dump_yaml(validate({})))["data"]["augment"]
    assert plain["policy"] == "none" and "randaugment_ops" not in plain


# --------------------------------------------------------------------------------------
# lr-find and optimizer.lr: auto
# --------------------------------------------------------------------------------------


def test_smoothing_is_bias_corrected_and_the_suggestion_needs_a_fall() -> None:
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # no pull towards 0
    lrs = [1e-6 * 10 ** (i / 20) for i in range(121)]  # 1e-6 .. 1
    valley = [1.0 + (math.log10(lr) + 2) ** 2 / 10 for lr in lrs]  # lowest at lr 1e-2
    assert suggest(lrs, valley, valley) == pytest.approx(1e-3)
    noise = (1 + 0.1 * torch.randn(len(lrs), generator=torch.Generator().manual_seed(0))).tolist()
    with pytest.raises(RunFailed, match="within the batch-to-batch noise of the loss"):
        suggest(lrs, smooth(noise), noise)  # a dip of the moving average of noise is no minimum
    assert batch_noise(noise) == pytest.approx(0.1, rel=0.3)


def test_lr_find_suggests_a_sane_lr_and_draws_the_sweep(
    runner, write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "lr-find", write_config(TOY), "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert 1e-4 <= found["suggested_lr"] <= 1.0
    lrs, losses = found["lrs"], found["losses"]
    assert lrs[0] == pytest.approx(1e-7) and len(losses) == len(lrs) == found["steps_run"] <= 200
    ratio = (10 / 1e-7) ** (1 / 199)  # exponential: one constant factor per step
    assert all(b / a == pytest.approx(ratio) for a, b in zip(lrs, lrs[1:], strict=False))
    assert losses == pytest.approx(smooth(found["raw_losses"]))
    if found["diverged"]:  # stopped once the smoothed loss passed 4x its lowest
        assert losses[-1] > 4 * min(losses) and len(lrs) < 200
    assert found["plot"] == "lr_find.png"
    with Image.open(tmp_path / "lr_find.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert not (tmp_path / "runs").exists()  # no run dir, no checkpoint


def test_lr_find_prints_one_line_and_sgd_lands_in_the_band(runner, write_config, tmp_path: Path) -> None:
    config = write_config({**TOY, "optimizer": {"name": "sgd", "lr": 0.1}})
    plot = tmp_path / "plots" / "sgd.png"
    result = invoke(runner, "lr-find", config, "--start", "1e-5", "--steps", "120", "--plot", plot)
    assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[0]
    assert line.startswith("suggested lr ") and "(sgd; lowest smoothed loss at lr " in line
    assert 1e-4 <= float(line.split()[2]) <= 1.0
    assert f"plot written to {plot}" in result.stdout and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_find_steps_like_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """One sweep step is one optimizer step: train.accumulate batches (mixup left out)."""
    import cnnctl.engine.lr_range as lrfind

    seen: list[int] = []
    cycle = lrfind._cycle

    def counting(batches: Any) -> Any:
        for item in cycle(batches):
            seen.append(len(item[1]))
            yield item

    monkeypatch.setattr(lrfind, "_cycle", counting)
    cfg = validate(merge(TINY, {**TOY, "train": {"accumulate": 2, "mixup_alpha": 0.2}}))
    result = find_lr(cfg, start=1e-6, end=1e-4, steps=12)
    assert len(result.lrs) == 12 and len(seen) == 24
    assert all(math.isfinite(v) for v in result.raw_losses)


def test_lr_find_sweeps_without_mixup(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnctl.session import optim

    calls: list[int] = []
    original = optim.batch_mixer

    def spying(*args: Any) -> Any:
        mixer = original(*args)
        return None if mixer is None else (lambda x, y: (calls.append(1), mixer(x, y))[1])

    monkeypatch.setattr("cnnctl.session.build.batch_mixer", spying)
    cfg = validate(merge(TINY, {**TOY, "train": {"mixup_alpha": 0.2}}))
    find_lr(cfg, start=1e-6, end=1e-4, steps=10)
    assert calls == []


def test_lr_find_refuses_a_bad_range(runner, write_config) -> None:
    result = invoke(runner, "lr-find", write_config(), "--start", "1", "--end", "0.1", "--no-plot")
    assert result.exit_code == 2 and "need 0 < start < end" in result.output


def test_lr_auto_trains_with_the_suggestion_and_stores_the_number(runner, write_config) -> None:
    config = write_config(
        {
            **TOY,
            "optimizer": {"name": "adam", "lr": "auto"},
            "data": {"augment": {"hflip": True, "random_erasing": 0.25}},
            "train": {"epochs": 1},
        }
    )
    assert validate(yaml.safe_load(config.read_text())).optimizer.lr == "auto"
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    run = config.parent / "runs" / "tiny"
    lr = yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["lr"]
    assert isinstance(lr, float) and 1e-4 <= lr <= 1.0
    assert f"lr auto: suggested {lr:.3g} (lr-find over " in result.output
    with open(run / "metrics.csv", newline="") as handle:
        assert float(next(csv.DictReader(handle))["lr"]) == pytest.approx(lr)
    stored = torch.load(run / "best.pt", map_location="cpu", weights_only=False)["config"]
    assert stored["optimizer"]["lr"] == lr
    # eval stays deterministic: best.pt on val reproduces the val loss of training (before
    # calibration: summary's nll_before) and evaluate's is the calibrated one (nll_after)
    evaluated = invoke(runner, "evaluate", run, "--split", "val", "--json", "-", "--no-plots")
    assert evaluated.exit_code == 0, evaluated.output
    with open(run / "metrics.csv", newline="") as handle:
        val_loss = float(next(csv.DictReader(handle))["val_loss"])
    calibration = json.loads((run / "summary.json").read_text())["calibration"]
    assert calibration["nll_before"] == pytest.approx(val_loss, rel=1e-5)
    assert json.loads(evaluated.stdout)["loss"] == pytest.approx(calibration["nll_after"], rel=1e-5)


def test_lr_must_be_positive_or_auto_and_is_resolved_before_the_optimizer() -> None:
    with pytest.raises(ConfigError, match="optimizer.lr: got -0.1; the learning rate must be > 0"):
        validate({"optimizer": {"lr": -0.1}})
    with pytest.raises(ConfigError, match="optimizer.lr: input should be a valid number"):
        validate({"optimizer": {"lr": "fast"}})
    from cnnctl.session.optim import build_optimizer

    with pytest.raises(ConfigError, match="optimizer.lr: auto must be resolved"):
        build_optimizer(validate({"optimizer": {"lr": "auto"}}).optimizer, [], torch.device("cpu"))
