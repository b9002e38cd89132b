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
