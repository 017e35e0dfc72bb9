"""The CLI's error contract, end to end through the installed ``meta-engine`` console script.

For every kind of bad input the README lists (an empty folder, a folder with no usable class,
fewer classes than N, corrupt images, impossible hyperparameters, a tampered checkpoint, a missing
device), a real ``meta-engine`` process must print exactly one line on stderr, ``error: `` and a
message naming the file or field, exit with status 2 (bad input), print nothing on stdout, and never
show a traceback. Each case is one short process (tiny data, at most a few steps); nothing trains.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch

from engine.cli.common import EXIT_BAD_INPUT
from tests.conftest import write_dataset

META_ENGINE = Path(sys.executable).with_name("meta-engine")
TINY_TRAIN = ["--steps", "2", "--val-every", "2", "--val-episodes", "2", "--n-way", "3", "--n-shot", "1",
              "--n-query", "2", "--hidden-channels", "8", "--train-ratio", "0.5", "--val-ratio", "0.25", "--quiet"]


def meta_engine(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``meta-engine ARGV`` in a process of its own (the console script the package installs)."""
    assert META_ENGINE.is_file(), f"{META_ENGINE} is missing: install the package (pip install -e .)"
    return subprocess.run([str(META_ENGINE), *map(str, argv)], capture_output=True, text=True, timeout=180,
                          cwd=cwd, stdin=subprocess.DEVNULL)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str,
                          status: int = EXIT_BAD_INPUT) -> str:
    """The contract: exit ``status``, nothing on stdout, one ``error:`` line naming ``needles``, no traceback."""
    lines = done.stderr.splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{done.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert done.returncode == status, (done.returncode, line)
    assert done.stdout == "", done.stdout
    return line


# -- folders -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bad data set folders, each named for what is wrong with it."""
    root = tmp_path_factory.mktemp("bad-folders")
    empty = root / "empty-folder"
    empty.mkdir()
    no_images = root / "no-image-files"
    for name in ("cats", "dogs"):
        (no_images / name).mkdir(parents=True)
        (no_images / name / "notes.txt").write_text("not an image")
    corrupt = root / "corrupt-images"
    for c in range(3):
        (corrupt / f"class{c}").mkdir(parents=True)
        (corrupt / f"class{c}" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64)))  # truncated PNG
        (corrupt / f"class{c}" / "1.jpg").write_bytes(b"random bytes, not a JPEG")
    four = write_dataset(root / "four-classes", n_classes=4, n_images=4)
    return {"empty": empty, "no_images": no_images, "corrupt": corrupt, "four": four}


def test_an_empty_folder(folders: dict[str, Path], tmp_path: Path) -> None:
    done = meta_engine("train", "--dataset", folders["empty"], "--run-dir", tmp_path / "run", *TINY_TRAIN)
    assert_one_line_error(done, str(folders["empty"]), "dataset folder is empty")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_folder_with_no_usable_class(folders: dict[str, Path], tmp_path: Path) -> None:
    done = meta_engine("train", "--dataset", folders["no_images"], "--run-dir", tmp_path / "run", *TINY_TRAIN)
    assert_one_line_error(done, str(folders["no_images"]), "no image classes found")


def test_a_folder_whose_every_image_is_corrupt_says_no_usable_class_and_why(folders: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    done = meta_engine("train", "--dataset", folders["corrupt"], "--run-dir", tmp_path / "run", *TINY_TRAIN)
    line = assert_one_line_error(done, str(folders["corrupt"]), "no usable class", "none of the 6 image file(s)",
                                 "class0/0.png")
    assert "split 0 classes" not in line


def test_inspecting_a_folder_of_corrupt_images_lists_each_file_and_why(folders: dict[str, Path]) -> None:
    """Not an error: ``datasets inspect`` is how to find out what is wrong with a folder."""
    done = meta_engine("datasets", "inspect", folders["corrupt"])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "Classes: 0    Images: 0" in done.stdout and done.stdout.count("class dropped") == 3


def test_fewer_classes_than_n_way(folders: dict[str, Path], tmp_path: Path) -> None:
    done = meta_engine("train", "--dataset", folders["four"], "--run-dir", tmp_path / "run", *TINY_TRAIN,
                       "--n-way", "5")
    assert_one_line_error(done, "task.n_way=5", "train part")


def test_fewer_classes_than_the_split_needs(folders: dict[str, Path], tmp_path: Path) -> None:
    done = meta_engine("train", "--dataset", folders["four"], "--run-dir", tmp_path / "run", *TINY_TRAIN,
                       "--train-ratio", "0.8", "--val-ratio", "0.15")
    assert_one_line_error(done, "data.train_ratio=0.8", "split 4 classes", "0 test classes")


def test_a_dataset_folder_that_does_not_exist(tmp_path: Path) -> None:
    done = meta_engine("datasets", "inspect", tmp_path / "nowhere")
    assert_one_line_error(done, str(tmp_path / "nowhere"), "does not exist")


# -- hyperparameters -----------------------------------------------------------------------------------------
IMPOSSIBLE = {
    "zero shots": (["--n-shot", "0"], "task.n_shot"),
    "a negative learning rate": (["--lr", "-1"], "algorithm.lr"),
    "not a number": (["--n-way", "five"], "task.n_way"),
    "a flag of another algorithm": (["--algorithm", "protonet", "--inner-lr", "0.1"], "--inner-lr"),
    "a config file that is not JSON": (["--config", "{config}"], "config.json"),
}


@pytest.mark.parametrize("flags,needle", IMPOSSIBLE.values(), ids=IMPOSSIBLE.keys())
def test_impossible_hyperparameters(flags: list[str], needle: str, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{ not json")
    flags = [flag.format(config=config) for flag in flags]
    done = meta_engine("train", "--run-dir", tmp_path / "run", *flags)
    assert_one_line_error(done, needle)


# -- checkpoints ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_flat: Path) -> Path:
    run = tmp_path_factory.mktemp("cli-contract") / "run"
    done = meta_engine("train", "--dataset", tiny_flat, "--run-dir", run, *TINY_TRAIN)
    assert done.returncode == 0 and done.stdout == f"{run}\n", done.stderr  # the control: good input trains
    return run


def _flip_a_weight_bit(raw: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    flipped = bytearray(raw)
    flipped[info.header_offset + 30 + name_length + extra_length + 5] ^= 0x01
    return bytes(flipped)


def _invalid_config(raw: bytes) -> bytes:
    payload = torch.load(io.BytesIO(raw), weights_only=True)
    payload["config"]["task"]["n_way"] = 1
    out = io.BytesIO()
    torch.save(payload, out)
    return out.getvalue()


TAMPERINGS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "one weight bit flipped": (_flip_a_weight_bit, "do not match their checksum"),
    "truncated": (lambda raw: raw[: len(raw) // 2], ""),
    "a config that fails validation": (_invalid_config, "task.n_way"),
}


TAMPERED_USES = [("evaluate", "one weight bit flipped"), ("evaluate", "truncated"),
                 ("evaluate", "a config that fails validation"), ("predict", "one weight bit flipped"),
                 ("resume", "one weight bit flipped")]


@pytest.mark.parametrize("command,tampering", TAMPERED_USES, ids=[f"{c}-{t}" for c, t in TAMPERED_USES])
def test_a_tampered_checkpoint(run_dir: Path, tiny_flat: Path, tmp_path: Path, command: str,
                               tampering: str) -> None:
    tamper, needle = TAMPERINGS[tampering]
    copy = tmp_path / "tampered-run"
    shutil.copytree(run_dir, copy)
    checkpoint = copy / "checkpoints" / "last.pt"
    checkpoint.write_bytes(tamper(checkpoint.read_bytes()))
    if command == "evaluate":
        done = meta_engine("evaluate", "--checkpoint", checkpoint, "--episodes", "2", "--n-way", "3")
    elif command == "predict":
        done = meta_engine("predict", "--checkpoint", checkpoint, "--support", tiny_flat, "--query",
                           tiny_flat / "class000")
    else:
        done = meta_engine("train", "--resume", copy, "--extra-steps", "1", "--quiet")
    assert_one_line_error(done, str(checkpoint), needle)


def test_a_checkpoint_that_does_not_exist(tmp_path: Path) -> None:
    done = meta_engine("evaluate", "--checkpoint", tmp_path / "model.pt")
    assert_one_line_error(done, str(tmp_path / "model.pt"))


# -- devices -------------------------------------------------------------------------------------------------
MISSING_DEVICE = "cuda:99"  # no machine has it; on a machine without CUDA, "no CUDA GPU"


def test_training_on_a_missing_device(tiny_flat: Path, tmp_path: Path) -> None:
    done = meta_engine("train", "--dataset", tiny_flat, "--run-dir", tmp_path / "run", *TINY_TRAIN,
                       "--device", MISSING_DEVICE)
    assert_one_line_error(done, "train.device", MISSING_DEVICE)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_evaluating_on_a_missing_device(run_dir: Path) -> None:
    done = meta_engine("evaluate", "--checkpoint", run_dir / "checkpoints" / "last.pt", "--episodes", "2",
                       "--n-way", "3", "--device", MISSING_DEVICE)
    assert_one_line_error(done, MISSING_DEVICE)
