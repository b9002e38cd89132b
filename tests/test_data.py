"""Data sources, splits and loaders."""

from __future__ import annotations

import csv
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch
import yaml

from cnnctl.config import validate
from cnnctl.core.errors import DataError
from cnnctl.data import build_splits, folder, make_loader, stratified_split
from cnnctl.data.synthetic import write_image_folder
from cnnctl.data.walk import Walk
from tests.conftest import TINY, invoke, merge

T = TypeVar("T")


def data_cfg(**data):
    return validate({"data": data}).data


def test_stratified_split_is_per_class_and_seeded() -> None:
    labels = [0] * 40 + [1] * 20
    rest, val, test = stratified_split(labels, [0.25, 0.1], seed=3)
    assert Counter(labels[i] for i in val) == {0: 10, 1: 5}
    assert Counter(labels[i] for i in test) == {0: 4, 1: 2}
    assert sorted(rest + val + test) == list(range(60))
    assert stratified_split(labels, [0.25, 0.1], seed=3) == [rest, val, test]
    assert stratified_split(labels, [0.25, 0.1], seed=4) != [rest, val, test]


def test_synthetic_is_deterministic_and_shaped() -> None:
    cfg = data_cfg(num_classes=3, samples_per_class=10, image_size=20, test_fraction=0.2, channels=1)
    a, b = build_splits(cfg, seed=1), build_splits(cfg, seed=1)
    assert a.classes == ["circle", "square", "triangle"]
    assert a.input.shape == (1, 20, 20)
    assert (len(a.train), len(a.val), len(a.test)) == (21, 3, 6)
    assert torch.equal(a.train.images, b.train.images) and a.train.images.dtype == torch.uint8
    assert not torch.equal(a.train.images, build_splits(cfg, seed=2).train.images)


def test_normalize_options() -> None:
    auto = build_splits(data_cfg(samples_per_class=5), 0).input
    images = build_splits(data_cfg(samples_per_class=5), 0).train.images.double() / 255
    assert auto.mean == pytest.approx(images.mean(dim=(0, 2, 3)).tolist())
    assert build_splits(data_cfg(samples_per_class=5, normalize="imagenet"), 0).input.mean == (
        0.485,
        0.456,
        0.406,
    )
    fixed = build_splits(data_cfg(samples_per_class=5, normalize={"mean": [0.5] * 3, "std": [0.25] * 3}), 0)
    assert fixed.input.std == (0.25, 0.25, 0.25)
    with pytest.raises(DataError, match="1 mean/std value"):
        build_splits(data_cfg(samples_per_class=5, normalize={"mean": [0.5], "std": [0.2]}), 0)


def test_tensor_loader_order_depends_on_seed_and_epoch() -> None:
    splits = build_splits(data_cfg(samples_per_class=20), 0)
    loader = make_loader(splits.train, 16, shuffle=True, seed=0, workers=0, pin=False)

    def labels(epoch: int) -> list[int]:
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader]).tolist()

    assert labels(1) == labels(1) and labels(1) != labels(2)
    assert sorted(labels(1)) == sorted(splits.train.targets())


def test_image_folder_flat_layout_is_split_by_fractions(tmp_path: Path) -> None:
    write_image_folder(tmp_path, 3, 10, 16, seed=0, noise=0.1)
    (tmp_path / "circle" / ".DS_Store").write_bytes(b"junk")  # hidden files are skipped
    (tmp_path / "circle" / "notes.txt").write_text("not an image")
    cfg = data_cfg(
        source="image_folder", root=str(tmp_path), image_size=12, val_fraction=0.2, test_fraction=0.2
    )
    splits = build_splits(cfg, 0)
    assert splits.classes == ["circle", "square", "triangle"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    image, label = splits.train[0]
    assert image.shape == (3, 12, 12) and image.dtype == torch.uint8 and label == 0


def test_image_folder_uses_train_valid_test_and_matches_classes_by_name(tmp_path: Path) -> None:
    write_image_folder(
        tmp_path, 3, 10, 16, seed=0, noise=0.1, splits={"train": 0.6, "valid": 0.2, "test": 0.2}
    )
    cfg = data_cfg(
        source="image_folder", root=str(tmp_path), classes=["triangle", "circle", "square"], cache="off"
    )
    splits = build_splits(cfg, 0)
    assert splits.classes == ["triangle", "circle", "square"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert splits.val.files[0].startswith(str(tmp_path / "valid" / "circle"))
    assert splits.val.labels[0] == 1  # circle is label 1 in the configured order


def test_image_folder_missing_test_is_skipped_and_missing_val_is_carved(tmp_path: Path) -> None:
    write_image_folder(tmp_path, 2, 10, 16, seed=0, noise=0.1, splits={"train": 1.0})
    splits = build_splits(data_cfg(source="image_folder", root=str(tmp_path), val_fraction=0.3), 0)
    assert splits.test is None and (len(splits.train), len(splits.val)) == (14, 6)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        build_splits(data_cfg(source="image_folder", root=str(tmp_path / "nope")), 0)
    write_image_folder(tmp_path, 2, 4, 16, seed=0, noise=0.1, splits={"train": 0.5, "val": 0.5})
    (tmp_path / "val" / "square").rename(tmp_path / "val" / "blob")
    with pytest.raises(DataError, match=r"classes \['blob', 'circle'\] differ from train's"):
        build_splits(data_cfg(source="image_folder", root=str(tmp_path)), 0)
    (tmp_path / "val" / "blob").rename(tmp_path / "val" / "square")
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) with no images \(empty\)"):
        build_splits(data_cfg(source="image_folder", root=str(tmp_path)), 0)


def test_data_synth_command_writes_an_image_folder(runner, tmp_path: Path) -> None:
    result = invoke(
        runner, "data", "synth", tmp_path / "out", "--classes", "3", "--per-class", "20", "--splits"
    )
    assert result.exit_code == 0, result.output
    assert "wrote 42 train, 9 val, 9 test" in result.output
    files = [p.relative_to(tmp_path / "out").parts[:2] for p in (tmp_path / "out").rglob("*.png")]
    assert Counter(split for split, _ in files) == {"train": 42, "val": 9, "test": 9}
    assert {cls for _, cls in files} == {"circle", "square", "triangle"}


# --------------------------------------------------------------------------------------
# One link policy for every folder walk (issue 15, part 3). Every test is bounded in time:
# a FIFO opened for reading would block forever, so `bounded` releases any FIFO a test made
# (opens it for writing: the reader gets EOF) before it fails.
# --------------------------------------------------------------------------------------


def release_fifos(fifos: Sequence[Path]) -> None:
    for fifo in fifos:
        for _ in range(20):  # a reader may try again after EOF
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: nobody is reading it
                break
            time.sleep(0.05)


def bounded(action: Callable[[], T], seconds: float = 60.0, fifos: Sequence[Path] = ()) -> T:
    """`action()` in a thread: past `seconds` the FIFOs are released and the test fails."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = action()
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        release_fifos(fifos)
        thread.join(10)
        pytest.fail(f"did not finish within {seconds:.0f}s: blocked (a FIFO or device opened?)")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def pngs(folder: Path, count: int, seed: int) -> None:
    """`count` small random PNGs named 00000.png ... in `folder`."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")


def tangled_folder(root: Path, outside: Path) -> dict[str, Any]:
    """An image folder with every kind of link and special file a folder walk meets:

    circle/  6 PNGs, sub/ (2 PNGs, `back -> ..`: a loop), `self -> .` and `up -> ..` (two
             more loops), `hard.png` (a hard link to 00000.png), `twin.png -> 00001.png`,
             `far.png -> outside/far.png` and `ext -> outside/ext` (2 PNGs: counted, and
             a FIFO),
             `gone.png -> nowhere` (dangling), `pipe.png` (a FIFO), `null.png -> /dev/null`,
             `sock.png` (a unix socket)
    square/  6 PNGs and `other -> ../circle` (a folder already read)
    """
    write_image_folder(root, 2, 6, 16, seed=0, noise=0.1)
    circle = root / "circle"
    pngs(circle / "sub", 2, seed=1)
    (circle / "sub" / "back").symlink_to("..")
    (circle / "self").symlink_to(".")
    (circle / "up").symlink_to("..")
    os.link(circle / "00000.png", circle / "hard.png")
    (circle / "twin.png").symlink_to("00001.png")
    pngs(outside / "ext", 2, seed=2)
    (outside / "far.png").write_bytes((circle / "00002.png").read_bytes())
    os.mkfifo(outside / "ext" / "pipe.png")
    (circle / "far.png").symlink_to(outside / "far.png")
    (circle / "ext").symlink_to(outside / "ext")
    (circle / "gone.png").symlink_to(root / "nowhere.png")
    os.mkfifo(circle / "pipe.png")
    (circle / "null.png").symlink_to("/dev/null")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(circle / "sock.png"))
    (root / "square" / "other").symlink_to("../circle")
    return {
        "counts": {"circle": 6 + 2 + 1 + 2, "square": 6},  # real, sub, far.png, ext/
        "fifos": [circle / "pipe.png", outside / "ext" / "pipe.png"],
        "socket": sock,
        "skipped": ("self", "up", "back", "hard.png", "twin.png", "gone.png", "pipe.png", "null.png"),
    }


@pytest.fixture
def tangled(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    found = tangled_folder(tmp_path / "data", tmp_path / "outside")
    yield tmp_path / "data", found
    found["socket"].close()
    release_fifos(found["fifos"])


def test_walk_counts_each_file_once_and_names_what_it_skipped(
    tangled: tuple[Path, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    root, expected = tangled
    split = bounded(lambda: folder.scan_split(root, folder.normalise_extensions(None)), 30, expected["fifos"])
    assert Counter(split.class_of_file) == expected["counts"]
    assert len(split.files) == len(set(split.files))
    ids = {(os.stat(f).st_dev, os.stat(f).st_ino) for f in split.files}
    assert len(ids) == len(split.files)  # no file twice under two names
    circle = [os.path.relpath(f, root / "circle") for f in split.files if "/circle/" in f]
    assert "far.png" in circle and os.path.join("ext", "00000.png") in circle
    assert not any(part in ("self", "up", "back", "other") for f in circle for part in Path(f).parts)
    warning = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped"))
    assert warning.startswith(
        f"skipped 11 entries under {root}: circle/ext/pipe.png (not a regular file: FIFO), "
    )
    assert "circle/self (symlink loop)" in warning and "circle/sub/back (symlink loop)" in warning
    assert len(warning) < 1000 and warning.endswith(", and 3 more")  # the first eight by path


def test_walk_messages_name_every_reason(tangled: tuple[Path, dict[str, Any]]) -> None:
    root, expected = tangled
    walk = Walk(folder.normalise_extensions(None))
    bounded(lambda: walk.run([root / "circle", root / "square"]), 30, expected["fifos"])
    reasons = {os.path.relpath(path, root): reason for path, reason in walk.skipped}
    assert reasons == {
        "circle/self": "symlink loop",
        "circle/up": "symlink loop",
        "circle/sub/back": "symlink loop",
        "circle/ext/pipe.png": "not a regular file: FIFO",
        "circle/hard.png": f"same file as {root}/circle/00000.png",
        "circle/twin.png": f"same file as {root}/circle/00001.png",
        "circle/gone.png": "dangling symlink",
        "circle/pipe.png": "not a regular file: FIFO",
        "circle/null.png": "not a regular file: character device",
        "circle/sock.png": "not a regular file: socket",
        "square/other": f"same folder as {root}/circle",
    }


def test_a_link_loses_to_the_real_file_whatever_the_order(tmp_path: Path) -> None:
    """A link in the first class to a file of the second: the file stays in its own class."""
    write_image_folder(tmp_path, 2, 3, 16, seed=0, noise=0.1)
    (tmp_path / "circle" / "borrowed.png").symlink_to("../square/00000.png")
    (tmp_path / "circle" / "shared").symlink_to("../square")
    split = folder.scan_split(tmp_path, folder.normalise_extensions(None))
    assert Counter(split.class_of_file) == {"circle": 3, "square": 3}
    assert all(Path(f).parent.name == c for f, c in zip(split.files, split.class_of_file, strict=True))


def test_two_loops_do_not_multiply_the_files(tmp_path: Path) -> None:
    write_image_folder(tmp_path, 2, 3, 16, seed=0, noise=0.1)
    (tmp_path / "circle" / "a").symlink_to(".")
    (tmp_path / "circle" / "b").symlink_to(".")
    (tmp_path / "circle" / "c").symlink_to("..")
    (tmp_path / "loop.png").symlink_to("loop.png")  # ELOOP on its own
    (tmp_path / "circle" / "x.png").symlink_to("x.png")
    split = bounded(lambda: folder.scan_split(tmp_path, folder.normalise_extensions(None)), 30)
    assert Counter(split.class_of_file) == {"circle": 3, "square": 3}


def test_train_and_data_check_on_a_tangled_folder(
    runner, tangled: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, expected = tangled
    cfg = merge(TINY, {"output": {"dir": str(tmp_path / "runs")}, "train": {"epochs": 1}})
    cfg["data"] = {"source": "image_folder", "root": str(root), "image_size": 16, "batch_size": 8}
    config = tmp_path / "tangled.yaml"
    config.write_text(yaml.safe_dump(cfg))
    check = bounded(lambda: invoke(runner, "data", "check", config, "--json"), 60, expected["fifos"])
    assert check.exit_code == 0, check.output
    report = json.loads(check.stdout)
    assert report["splits"]["all (split by fraction)"] == expected["counts"] and report["unreadable"] == []
    assert "symlink loop" in check.stderr
    result = bounded(lambda: invoke(runner, "train", config), 120, expected["fifos"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "tangled" / "summary.json").read_text())
    total = sum(expected["counts"].values())
    assert summary["train_samples"] + summary["val_samples"] + summary["test_samples"] == total
    assert "warning: skipped 11 entries under" in result.output


def test_predict_walks_folders_by_the_same_policy(
    runner, trained_run: Path, tangled: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, expected = tangled
    out = tmp_path / "p.csv"
    result = bounded(
        lambda: invoke(runner, "predict", trained_run, root, "--out", out), 120, expected["fifos"]
    )
    assert result.exit_code == 0, result.output
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(expected["counts"].values()) and not any(r["error"] for r in rows)
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    assert "warning: skipped 11 entries: " in result.output and "(symlink loop)" in result.output


def test_predict_gives_a_named_fifo_a_row_without_opening_it(
    runner, trained_run: Path, tmp_path: Path
) -> None:
    write_image_folder(tmp_path / "imgs", 2, 1, 16, seed=0, noise=0.1)
    fifo = tmp_path / "named.png"
    os.mkfifo(fifo)
    good = tmp_path / "imgs" / "circle" / "00000.png"
    out = tmp_path / "p.json"
    try:
        result = bounded(
            lambda: invoke(runner, "predict", trained_run, fifo, good, good, "--out", out), 60, [fifo]
        )
    finally:
        release_fifos([fifo])
    assert result.exit_code == 0, result.output
    records = json.loads(out.read_text())
    assert [r["path"] for r in records] == [str(fifo), str(good)]  # a file named twice: one row
    assert records[0]["label"] == "" and "not a regular file (FIFO)" in records[0]["error"]
    assert records[1]["error"] == ""


def test_collect_images_files_folders_and_errors(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imgs", 2, 2, 16, seed=0, noise=0.1)
    (tmp_path / "imgs" / ".hidden").mkdir()
    (tmp_path / "imgs" / ".hidden" / "x.png").write_bytes(b"")
    (tmp_path / "imgs" / "circle" / "notes.txt").write_text("no image")
    single = tmp_path / "imgs" / "square" / "00001.png"
    found = folder.collect_images([single, tmp_path / "imgs", tmp_path / "imgs" / "circle"])
    imgs = tmp_path / "imgs"
    assert found == [
        single,
        imgs / "circle" / "00000.png",
        imgs / "circle" / "00001.png",
        imgs / "square" / "00000.png",
    ]
    with pytest.raises(DataError, match="no such file or folder"):
        folder.collect_images([tmp_path / "nope"])
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match="a dangling symlink"):
        folder.collect_images([tmp_path / "dangling.png"])
    (tmp_path / "linked").symlink_to(tmp_path / "imgs")  # a named link to a folder is followed
    assert len(folder.collect_images([tmp_path / "linked"])) == 4
