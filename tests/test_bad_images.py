"""Images from the wild: decoded fully once, bad ones listed, odd ones converted, files untouched."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnctl.data.check import check_files, verify_image
from cnnctl.data.transforms import InputSpec, load_for_model


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNCTL_CACHE", str(tmp_path / "cache"))


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def wild_folder(root: Path) -> dict[str, Path]:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    files = {
        "good": save(rgb, root / "good.png"),
        "cmyk": save(rgb.convert("CMYK"), root / "cmyk.jpg"),
        "rgba": save(rgb.convert("RGBA"), root / "rgba.png"),
        "palette": save(rgb.convert("P"), root / "palette.png"),
        "grey": save(rgb.convert("L"), root / "grey.png"),
        "sixteen": save(Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16)), root / "sixteen.png"),
    }
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG")
    (root / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image")
    files.update(
        {n: root / f"{n}.{'png' if n == 'empty' else 'jpg'}" for n in ("truncated", "empty", "text")}
    )
    return files


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_check_lists_bad_files_and_keeps_odd_ones(tmp_path: Path) -> None:
    files = wild_folder(tmp_path / "imgs")
    before = digest(tmp_path / "imgs")
    report = check_files([str(p) for p in files.values()])
    bad = {Path(p).name: reason for p, reason in report.bad}
    assert set(bad) == {"truncated.jpg", "empty.png", "text.jpg"}
    assert bad["empty.png"] == "empty file (0 bytes)"
    assert "truncated" in bad["truncated.jpg"].lower()
    assert bad["text.jpg"] == "UnidentifiedImageError: cannot identify image file"  # the path is listed once
    assert len(report.good) == 6
    assert "skipping 3 unreadable image(s) of 9" in report.summary()
    assert digest(tmp_path / "imgs") == before  # never modified


def test_second_check_uses_the_cache_and_notices_changes(tmp_path: Path) -> None:
    files = [str(p) for p in wild_folder(tmp_path / "imgs").values()]
    assert check_files(files).cached == 0
    again = check_files(files)
    assert again.cached == len(files) and len(again.bad) == 3
    Path(files[0]).write_bytes(b"")  # the good file breaks: its size and mtime change
    third = check_files(files)
    assert third.cached == len(files) - 1 and len(third.bad) == 4


@pytest.mark.parametrize("name", ["cmyk", "rgba", "palette", "grey", "sixteen"])
def test_odd_modes_convert_to_the_model_input(tmp_path: Path, name: str) -> None:
    path = wild_folder(tmp_path / "imgs")[name]
    for channels in (1, 3):
        tensor = load_for_model(path, InputSpec(channels, (8, 8), None, (0.0,), (1.0,)))
        assert tensor.shape == (channels, 8, 8) and tensor.dtype == torch.uint8


def test_sixteen_bit_is_scaled_not_saturated(tmp_path: Path) -> None:
    ramp = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600).astype(np.uint16)
    path = save(Image.fromarray(ramp), tmp_path / "ramp.png")
    tensor = load_for_model(path, InputSpec(1, (10, 10), None, (0.0,), (1.0,)))
    values = tensor.flatten().tolist()
    assert values[0] == 0 and abs(values[-1] - 99 * 600 / 65535 * 255) <= 1 and len(set(values)) > 50


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), "white")
    img.paste((0, 0, 0), (0, 0, 20, 20))  # black on the left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    path = save(img, tmp_path / "rotated.jpg", exif=exif, quality=95)
    tensor = load_for_model(path, InputSpec(1, (40, 20), None, (0.0,), (1.0,)))  # displayed: 20 wide, 40 tall
    assert tensor.shape == (1, 40, 20)
    assert tensor[0, :20].float().mean() < 60 and tensor[0, 20:].float().mean() > 200  # black on top


def test_decompression_bomb_is_rejected_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path, optimize=True)  # tiny file, 400 MP image
    import time

    start = time.perf_counter()
    reason = verify_image(str(path))
    assert reason.startswith("too large") and time.perf_counter() - start < 2


def wild_dataset(root: Path) -> tuple[Path, dict[str, Path]]:
    """Two classes: `wild` holds every odd and broken file (plus hidden ones), `plain` good PNGs."""
    files = wild_folder(root / "wild")
    (root / "wild" / ".DS_Store").write_bytes(b"\0\1junk")
    (root / "wild" / "._good.png").write_bytes(b"AppleDouble")
    rng = np.random.default_rng(1)
    for i in range(6):
        save(Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)), root / "plain" / f"{i}.png")
    return root, files


def folder_config(tmp_path: Path, root: Path, write_config) -> Path:
    import yaml

    from tests.conftest import TINY, merge

    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}})
    cfg["data"] = {
        "source": "image_folder",
        "root": str(root),
        "image_size": 16,
        "batch_size": 4,
        "val_fraction": 0.3,
    }
    path = tmp_path / "wild.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_training_skips_unreadable_files_before_the_first_epoch(runner, write_config, tmp_path: Path) -> None:
    from tests.conftest import invoke

    root, _ = wild_dataset(tmp_path / "data")
    before = {**digest(root / "wild"), **digest(root / "plain")}
    config = folder_config(tmp_path, root, write_config)
    result = invoke(runner, "train", config)
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.output.splitlines() if "skipping" in line)
    assert "skipping 3 unreadable image(s) of 15" in warning
    assert all(name in warning for name in ("truncated.jpg", "empty.png", "text.jpg"))
    summary = (config.parent / "runs" / "wild" / "summary.json").read_text()
    assert '"train_samples": 8' in summary and '"val_samples": 4' in summary  # 12 usable files
    assert {**digest(root / "wild"), **digest(root / "plain")} == before  # nothing touched


def test_data_check_reports_without_training(runner, write_config, tmp_path: Path) -> None:
    import json

    from tests.conftest import invoke

    root, _ = wild_dataset(tmp_path / "data")
    config = folder_config(tmp_path, root, write_config)
    result = invoke(runner, "data", "check", config)
    assert result.exit_code == 1, result.output  # usable, but with unreadable files
    assert (
        "3 unreadable file(s), skipped by training" in result.output
        and "empty file (0 bytes)" in result.output
    )
    assert not (config.parent / "runs").exists()
    again = json.loads(invoke(runner, "data", "check", config, "--json").output)
    assert again["cached"] == 15  # the second check decodes nothing
    assert again["splits"]["all (split by fraction)"] == {"plain": 6, "wild": 6}

    (root / "wild" / "text.jpg").unlink()
    (root / "wild" / "truncated.jpg").unlink()
    (root / "wild" / "empty.png").unlink()
    assert invoke(runner, "data", "check", config).exit_code == 0

    (root / "empty_class").mkdir()
    blocked = invoke(runner, "data", "check", config)
    assert blocked.exit_code == 2 and "empty_class" in blocked.output


def test_a_class_with_only_unreadable_files_stops_before_training(
    runner, write_config, tmp_path: Path
) -> None:
    from tests.conftest import invoke

    root = tmp_path / "data"
    wild_dataset(root)
    broken = root / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"")
    (broken / "b.jpg").write_text("no image")
    result = invoke(runner, "train", folder_config(tmp_path, root, write_config))
    assert result.exit_code == 2
    assert "['broken'] have no readable image left" in result.output.strip().splitlines()[-1]


def test_val_folder_missing_a_class_is_an_error_before_training(runner, write_config, tmp_path: Path) -> None:
    from tests.conftest import invoke

    rng = np.random.default_rng(2)
    for split, classes in (("train", ("a", "b")), ("val", ("a",))):
        for cls in classes:
            for i in range(3):
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                save(Image.fromarray(pixels), tmp_path / "d" / split / cls / f"{i}.png")
    result = invoke(runner, "train", folder_config(tmp_path, tmp_path / "d", write_config))
    assert result.exit_code == 2
    assert "differ from train's" in result.output and "['a']" in result.output


def test_the_check_never_opens_a_fifo_or_a_device(tmp_path: Path) -> None:
    """stat first: a FIFO opened for reading would block forever (bounded here all the same)."""
    import os

    from tests.test_data import bounded, release_fifos

    good = save(Image.new("RGB", (8, 8)), tmp_path / "good.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    device = tmp_path / "zero.png"
    device.symlink_to("/dev/zero")
    files = [str(good), str(fifo), str(device)]
    spec = InputSpec(3, (8, 8), None, (0.0,), (1.0,))
    try:
        for decode in (None, spec):
            report = bounded(lambda d=decode: check_files(files, use_cache=False, decode=d), 30, [fifo])
            assert report.good == [str(good)]
            assert dict(report.bad) == {
                str(fifo): "not a regular file (FIFO)",
                str(device): "not a regular file (character device)",
            }
        assert bounded(lambda: verify_image(str(fifo)), 30, [fifo]) == "not a regular file (FIFO)"
    finally:
        release_fifos([fifo])


def test_the_skipped_files_warning_shows_names_escaped(tmp_path: Path) -> None:
    bad = tmp_path / "esc\x1b[2Jx.png"
    bad.write_bytes(b"")
    summary = check_files([str(bad)], use_cache=False).summary()
    assert "esc\\x1b[2Jx.png: empty file (0 bytes)" in summary and "\x1b" not in summary
