"""Hostile and out-of-range configs: each original failure ends in one line, exit code 2, fast.

Issue 15, parts 3 and 7: a 520-byte "billion laughs" ran 59 s into a MemoryError, a 10 KB
nest of lists hit RecursionError, a 50 MB YAML took 6 minutes and 3 GB, an empty config
trained the demo, and values that passed `config validate` crashed `train`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cnnctl.config import MAX_SEED, SMALLEST_CONFIG, load_config, validate
from cnnctl.core.errors import ConfigError
from tests.conftest import TINY, invoke, merge

FAST = 2.0  # seconds: every refusal here is meant to be instant


def refused(result: Any, *expected: str) -> str:
    """The run failed with exit 2 and exactly one `error:` line holding every `expected`."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def timed(runner: Any, *args: Any) -> Any:
    start = time.perf_counter()
    result = invoke(runner, *args)
    assert time.perf_counter() - start < FAST, f"took {time.perf_counter() - start:.1f}s"
    return result


@pytest.fixture(scope="module", autouse=True)
def _torch_imported() -> None:
    """`cnnctl train` imports torch (seconds, once per process) before it reads the config;
    import it up front so the timings measure the refusals, not that import."""
    import cnnctl.workflows.train  # noqa: F401


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from tmp_path, so a config without output.dir could never write into the repo."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def billion_laughs() -> str:
    """The classic: 9 aliases of 9 aliases of ... nine levels deep (9^9 strings), 520 bytes."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    names = "abcdefghij"
    for prev, name in zip(names, names[1:], strict=False):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "data: {source: synthetic}\n" + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# A. YAML bounded before it costs anything
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "train"])
def test_billion_laughs_is_refused_at_once(runner, in_tmp: Path, command: str) -> None:
    path = in_tmp / "lol.yaml"
    path.write_text(billion_laughs(), encoding="utf-8")
    assert len(path.read_bytes()) < 600
    args = ("config", "validate", path) if command == "validate" else ("train", path)
    line = refused(timed(runner, *args), f"{path}:", "aliases expand it to more than 10,000 values")
    assert not (in_tmp / "runs").exists()
    assert line.split(":")[2].isdigit()  # file:line:column


def test_billion_laughs_in_a_set_override(runner, write_config) -> None:
    value = "[" + ", ".join(["*a"] * 9) + "]"
    override = f"data.classes=[&a [x, x, x, x, x, x, x, x, x], {', '.join([value] * 200)}]"
    refused(timed(runner, "config", "validate", write_config(), "--set", override), "--set data.classes")


@pytest.mark.parametrize(
    "nest",
    [
        "[" * 5000 + "]" * 5000,  # 10 KB of nested lists (was RecursionError)
        "{a: " * 2000 + "1" + "}" * 2000,
        "".join(f"\n{'  ' * i}k:" for i in range(1, 200)) + " 1",  # block mappings, 200 deep
    ],
    ids=["flow-lists", "flow-mappings", "block-mappings"],
)
def test_deep_nesting_is_one_line(runner, in_tmp: Path, nest: str) -> None:
    path = in_tmp / "deep.yaml"
    path.write_text(f"data: {{source: synthetic}}\nx: {nest}\n", encoding="utf-8")
    line = refused(timed(runner, "config", "validate", path), f"{path}:")
    assert "nest" in line  # "nested more than 32 levels" (or libyaml's "maximum nesting depth")
    refused(timed(runner, "train", path), f"{path}:")


def test_recursive_alias_is_one_line(runner, in_tmp: Path) -> None:
    path = in_tmp / "loop.yaml"
    path.write_text("data: {source: synthetic}\nx: &loop [1, *loop]\n", encoding="utf-8")
    refused(
        timed(runner, "config", "validate", path),
        f"{path}:2:",
        "alias *loop refers to a node that contains it",
    )


def test_huge_file_is_refused_before_it_is_read(runner, in_tmp: Path) -> None:
    path = in_tmp / "huge.yaml"
    row = "k: [1, 2, 3, 4, 5, 6, 7, 8]\n"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("data: {source: synthetic}\nlist:\n")
        handle.write(("  - " + row) * (50 * 2**20 // (len(row) + 4)))  # 50 MB
    assert path.stat().st_size > 49 * 2**20
    refused(timed(runner, "config", "validate", path), f"{path}: larger than 1 MiB")
    refused(timed(runner, "train", path), "larger than 1 MiB")


def test_many_values_under_the_size_cap_stop_early(runner, in_tmp: Path) -> None:
    path = in_tmp / "bulk.yaml"
    path.write_text("data: {source: synthetic}\nx: [" + "1, " * 300_000 + "1]\n", encoding="utf-8")
    assert path.stat().st_size < 2**20
    refused(timed(runner, "config", "validate", path), "it holds more than 10,000 values")


def test_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "data:\n  <<: {source: synthetic, image_size: &size 16}\n  resize: *size\n"
        "model: {name: mlp, hidden: &width [32]}\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert (cfg.data.source, cfg.data.image_size, cfg.data.resize) == ("synthetic", 16, 16)


def test_not_utf8_file_and_override(runner, in_tmp: Path, write_config) -> None:
    path = in_tmp / "latin1.yaml"
    path.write_bytes("data: {source: synthetic}\n# caf\u00e9\n".encode("latin-1"))
    refused(timed(runner, "config", "validate", path), f"{path}:2: not UTF-8 text (byte 0xe9", "save")
    refused(
        timed(runner, "config", "validate", write_config(), "--set", "output.name=caf\udce9"),
        "--set b'output.name=caf\\xe9': not valid UTF-8",
    )


def test_control_characters_are_one_line(runner, in_tmp: Path) -> None:
    path = in_tmp / "nul.yaml"
    path.write_text("data: {source: synthetic}\nx: a\x00b\n", encoding="utf-8")
    refused(timed(runner, "config", "validate", path), f"{path}: YAML error", "plain UTF-8 text")


@pytest.mark.parametrize(
    ("text", "got"),
    [("- data\n- model\n", "not a list"), ("just words\n", "not a string"), ("42\n", "not a int value")],
)
def test_top_level_must_be_a_mapping(runner, in_tmp: Path, text: str, got: str) -> None:
    path = in_tmp / "flat.yaml"
    path.write_text(text, encoding="utf-8")
    refused(timed(runner, "config", "validate", path), f"{path}: the config must be a YAML mapping", got)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("seed: " + "9" * 5000 + "\n", ":1:7: YAML error: cannot read this value"),
        ("data: {source: synthetic}\nseed: !!python/object:os.system {}\n", ":2:7: YAML error"),
        (
            "data: {source: synthetic}\n---\ndata: {source: csv}\n",
            ":2:1: YAML error: expected a single document",
        ),
    ],
    ids=["5000-digit-int", "python-tag", "two-documents"],
)
def test_values_yaml_cannot_build_are_one_line(runner, in_tmp: Path, text: str, where: str) -> None:
    path = in_tmp / "odd.yaml"
    path.write_text(text, encoding="utf-8")
    refused(timed(runner, "config", "validate", path), f"{path}{where}")


# --------------------------------------------------------------------------------------
# B. A config must name its data
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "the config is empty"),
        ("# only a comment\n\n# and another\n", "the config is empty"),
        ("null\n", "the config is empty"),
        ("~\n", "the config is empty"),
        ("train: {epochs: 1}\n", "no data section"),
        ("data:\ntrain: {epochs: 1}\n", "data is empty"),
        ("data: {image_size: 16}\n", "data names no source"),
    ],
    ids=["empty", "comments", "null", "tilde", "no-data", "data-null", "no-source"],
)
def test_a_config_must_name_its_data(runner, in_tmp: Path, text: str, why: str) -> None:
    path = in_tmp / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    for args in (("config", "validate", path), ("train", path), ("config", "show", path)):
        refused(timed(runner, *args), f"{path}: data.source: missing ({why})", f"`{SMALLEST_CONFIG}`")
    assert not (in_tmp / "runs").exists()  # the demo did not train


def test_the_smallest_config_is_valid(runner, in_tmp: Path) -> None:
    path = in_tmp / "smallest.yaml"
    path.write_text(SMALLEST_CONFIG + "\n", encoding="utf-8")
    assert timed(runner, "config", "validate", path).exit_code == 0
    empty = in_tmp / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    result = timed(runner, "config", "validate", empty, "--set", "data.source=synthetic")
    assert result.exit_code == 0, result.output


def test_a_misspelt_data_section_is_named_as_such(runner, in_tmp: Path) -> None:
    path = in_tmp / "typo.yaml"
    path.write_text("dat: {source: synthetic}\n", encoding="utf-8")
    refused(timed(runner, "config", "validate", path), "dat: unknown key; allowed keys here: data, model")


def test_resume_base_needs_no_file() -> None:
    stored = validate({"data": {"source": "synthetic"}}).to_plain()
    assert load_config(None, ["train.epochs=3"], base=stored).train.epochs == 3


# --------------------------------------------------------------------------------------
# C. Whatever validates trains or fails in one line
# --------------------------------------------------------------------------------------

ISSUE_EXAMPLES = [
    ("data.num_workers=-1", "data.num_workers: got -1; num_workers must be 0-64"),
    ("data.num_workers=1000", "data.num_workers: got 1000"),
    (f"seed={2**64}", "seed: input should be less than or equal to 9223372036854775807"),
    ("seed=100000000000000000000", "seed: input should be less than or equal to"),
    ("model.kernel_size=1000", "model.kernel_size: input should be less than or equal to 31"),
    (
        "data.image_size=[4,100000]",
        "data.image_size: got [4, 100000]; each side of image_size must be 4-2048",
    ),
]

MORE_OUT_OF_RANGE = [
    ("seed=-1", "seed: input should be greater than or equal to 0"),
    ("data.batch_size=0", "data.batch_size: got 0"),
    (f"data.batch_size={10**20}", "data.batch_size: got 100000000000000000000"),
    ("data.image_size=100000", "data.image_size: got 100000"),
    ("data.resize=100000", "data.resize: input should be less than or equal to 2048"),
    ("data.samples_per_class=1000000000", "data.samples_per_class: input should be less than or equal to"),
    ("data.augment.random_crop=100", "data.augment.random_crop: input should be less than or equal to 64"),
    ("data.augment.random_crop=16", "data.augment.random_crop: 16 px of reflect padding"),
    (
        "data.augment.color_jitter=1e300",
        "data.augment.color_jitter: color_jitter is a strength >= 0 and at most 10",
    ),
    ("data.augment.color_jitter={brightness: 1e300}", "data.augment.color_jitter.brightness"),
    ("data.normalize={mean: [.nan], std: [1]}", "data.normalize.mean: input should be a finite number"),
    ("model.channels=[100000]", "model.channels: got [100000]; every width must be 1-16384"),
    ("model.channels=[4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4]", "model.channels: list should have at most 16"),
    ("model.hidden=[0]", "model.hidden: got [0]"),
    ("model.padding=100", "model.padding: input should be less than or equal to 15"),
    ("model.pool=100", "model.pool: input should be less than or equal to 8"),
    (
        "model.kernel_size=31",
        "model.kernel_size: a 3x16x16 input is too small for 2 conv blocks with kernel_size 31, padding 1, "
        "pool 2: block 1 gets 16x16, 18x18 padded, less than the kernel",
    ),
    (
        "model.pool=8",
        "model.pool: a 3x16x16 input is too small for 2 conv blocks with kernel_size 3, padding 1, pool 8",
    ),
    (
        "model.hidden=[16384,16384,16384,16384,16384]",
        "model.hidden: small_cnn would have 1,075,970,459 parameters for a 3x16x16 input (at most 1,073,741,824)",
    ),
    ("optimizer.lr=.inf", "optimizer.lr"),
    ("optimizer.lr=0.0", "optimizer.lr: got 0.0; the learning rate must be > 0"),
    ("optimizer.weight_decay=5.0", "optimizer.weight_decay: input should be less than or equal to 1"),
    ("optimizer={name: sgd, momentum: 1.0}", "optimizer.momentum: input should be less than 1"),
    ("optimizer={name: sgd, nesterov: true}", "optimizer.nesterov: needs optimizer.momentum > 0"),
    ("optimizer.betas=[0.9, 1.0]", "optimizer.betas: got [0.9, 1.0]; each beta must be in [0, 1)"),
    (
        "scheduler.warmup_epochs=1e308",
        "scheduler.warmup_epochs: input should be less than or equal to 100000",
    ),
    ("scheduler={name: step, step_size: 1000000}", "scheduler.step_size"),
    ("scheduler={name: plateau, patience: -1}", "scheduler.patience"),
    ("scheduler={name: cosine, min_lr: 1.0}", "scheduler.min_lr: 1.0 is above optimizer.lr 0.01"),
    ("train.epochs=1000000000", "train.epochs: input should be less than or equal to 100000"),
    ("train.accumulate=1000000", "train.accumulate: input should be less than or equal to 1024"),
    ("train.mixup_alpha=1e300", "train.mixup_alpha: input should be less than or equal to 10"),
    ("train.label_smoothing=1.0", "train.label_smoothing: input should be less than 1"),
    ("train.grad_clip=.nan", "train.grad_clip"),
    ("train.ema={decay: 1.0}", "train.ema.decay: input should be less than 1"),
]


@pytest.mark.parametrize(("override", "expected"), ISSUE_EXAMPLES, ids=[o for o, _ in ISSUE_EXAMPLES])
def test_issue_examples_fail_validate_and_train_in_one_line(runner, write_config, override, expected) -> None:
    config = write_config()
    refused(timed(runner, "config", "validate", config, "--set", override), f"{config}: {expected}")
    refused(timed(runner, "train", config, "--set", override), f"{config}: {expected}")
    assert not (config.parent / "runs").exists()


@pytest.mark.parametrize(("override", "expected"), MORE_OUT_OF_RANGE, ids=[o for o, _ in MORE_OUT_OF_RANGE])
def test_out_of_range_values_fail_validate_in_one_line(runner, write_config, override, expected) -> None:
    config = write_config()
    refused(timed(runner, "config", "validate", config, "--set", override), f"{config}: {expected}")


def test_kernel_larger_than_the_image_fails_train_in_one_line(runner, write_config) -> None:
    config = write_config({"data": {"image_size": 8}, "model": {"kernel_size": 9, "padding": 0}})
    for command in ("config validate", "train"):
        refused(
            timed(runner, *command.split(), config),
            "model.kernel_size: a 3x8x8 input is too small for 2 conv blocks with kernel_size 9, padding 0",
            "block 1 gets 8x8, 8x8 padded, less than the kernel",
        )
    assert not (config.parent / "runs").exists()


def test_kernel_too_large_for_a_size_only_the_data_knows(runner, tmp_path: Path) -> None:
    """csv without image_shape: the size is known once the file is read; the network build
    (cnnctl/models/simple.py) checks it before allocating a layer."""
    rows = ["label," + ",".join(f"p{i}" for i in range(16))]  # 1x4x4 images
    rows += [f"{i % 3}," + ",".join(str((i * 7 + j) % 256) for j in range(16)) for i in range(24)]
    (tmp_path / "tiny.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}})
    cfg["data"] = {
        "source": "csv",
        "train": str(tmp_path / "tiny.csv"),
        "val_fraction": 0.25,
        "batch_size": 8,
    }
    cfg["model"] = {**cfg["model"], "kernel_size": 7, "padding": 1}
    config = tmp_path / "csv.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert invoke(runner, "config", "validate", config).exit_code == 0  # the size is unknown here
    refused(
        invoke(runner, "train", config),
        "error: model.kernel_size: a 1x4x4 input is too small for 2 conv blocks with kernel_size 7, padding 1",
        "block 1 gets 4x4, 6x6 padded",
    )


def test_the_largest_seed_trains(runner, write_config) -> None:
    config = write_config({"train": {"epochs": 1}, "seed": MAX_SEED})
    result = invoke(runner, "train", config, "--quiet")
    assert result.exit_code == 0, result.output


def test_synthetic_data_beyond_memory_is_refused() -> None:
    raw = {"data": {"source": "synthetic", "num_classes": 6, "samples_per_class": 10_000, "image_size": 1024}}
    with pytest.raises(ConfigError, match=r"data\.samples_per_class: 60,000 synthetic 3x1024x1024 images"):
        validate(raw, "c.yaml")


def test_error_reprs_are_short(write_config) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(), ["seed=[" + ", ".join(["1"] * 5000) + "]"])
    assert len(str(err.value)) < 400 and "\n" not in str(err.value)


def test_the_pure_python_loader_has_the_same_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml (PyYAML built without it) the same checks run on PyYAML's own parser."""
    import cnnctl.config as config
    from cnnctl.config import yaml_io

    monkeypatch.setattr(yaml_io, "EventLoader", yaml.SafeLoader)
    monkeypatch.setattr(yaml_io, "FastLoader", yaml_io.Loader)
    cases = {
        billion_laughs(): "aliases expand it to more than 10,000 values",
        "x: " + "[" * 5000 + "]" * 5000: "YAML nested more than 32 levels deep",
        "x: &a [*a]": "alias *a refers to a node that contains it",
        "x: " + "9" * 5000: "cannot read this value",
    }
    for text, expected in cases.items():
        start = time.perf_counter()
        with pytest.raises(ConfigError, match=re.escape(expected)):
            config.parse_yaml(text, "c.yaml")
        assert time.perf_counter() - start < FAST
    assert config.parse_yaml("a: 1e-3\nb: off\nc: &c [1]\nd: *c\n", "c.yaml") == {
        "a": 0.001,
        "b": "off",
        "c": [1],
        "d": [1],
    }
