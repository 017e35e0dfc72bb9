"""Shared fixtures: isolated run/cache folders and tiny image data sets made on the fly."""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import qt_exit

# Every test gets run folders and settings of its own; the generated glyph set is shared per session.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = os.environ.get("META_STUDIO_CACHE")
    if not cache:
        cache = str(tmp_path_factory.mktemp("meta-studio-cache"))
        os.environ["META_STUDIO_CACHE"] = cache
    return Path(cache)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "meta-studio-home"
    monkeypatch.setenv("META_STUDIO_HOME", str(home))
    return home


def make_class_images(seed: int, n_images: int, size: int = 28, noise: float = 40.0) -> list[np.ndarray]:
    """Images of one synthetic class: a fixed random blob pattern plus per-image noise and shift."""
    rng = np.random.default_rng(seed)
    base = (rng.random((7, 7)) > 0.55).astype(np.float32)
    base = np.kron(base, np.ones((size // 7, size // 7), dtype=np.float32)) * 255.0
    images = []
    for _ in range(n_images):
        shifted = np.roll(base, shift=tuple(rng.integers(-1, 2, size=2)), axis=(0, 1))
        image = np.clip(shifted + rng.normal(0, noise, shifted.shape), 0, 255).astype(np.uint8)
        images.append(image)
    return images


def write_dataset(root: Path, n_classes: int = 12, n_images: int = 10, groups: int = 0, seed: int = 0) -> Path:
    """Write a flat (groups=0) or nested (groups>0) folder of synthetic PNG classes."""
    from PIL import Image

    for c in range(n_classes):
        folder = root / (f"group{c % groups:02d}" if groups else "") / f"class{c:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(make_class_images(seed * 1000 + c, n_images)):
            Image.fromarray(image, mode="L").save(folder / f"{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny-flat"), n_classes=16, n_images=10)


@pytest.fixture(scope="session")
def tiny_nested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny-nested"), n_classes=16, n_images=10, groups=4)


@pytest.fixture(scope="session")
def glyph_root() -> Path:
    """The built-in glyph data set (generated once per session in the session cache)."""
    from engine.data.glyphs import ensure_glyph_dataset

    return ensure_glyph_dataset(seed=0)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a run that used Qt: an orderly teardown and a failure for anything left alive; then the
    interpreter's own exit (tests/qt_exit.py says why this once crashed and what changed)."""
    if not qt_exit.uses_qt():
        return
    report = qt_exit.to_stderr(session.config.pluginmanager.getplugin("capturemanager"))
    done = qt_exit.tear_down_qt()
    alive = qt_exit.leftovers()
    if alive:
        report(f"conftest: still alive after closing {done['windows']} window(s) and stopping {done['jobs']} "
               f"job(s): {'; '.join(alive)}; the run FAILS. The stacks of all threads:")
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


_OUTCOMES = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _OUTCOMES[report.outcome] = _OUTCOMES.get(report.outcome, 0) + 1
    elif report.outcome == "failed":  # a teardown error
        _OUTCOMES["failed"] += 1


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Arm the watchdog as the last test of a Qt run is torn down: a hang at shutdown fails the run,
    naming the live threads with their stacks (tests/qt_exit.py)."""
    if nextitem is not None or not qt_exit.uses_qt():
        return
    qt_exit.arm_watchdog(qt_exit.to_stderr(item.config.pluginmanager.getplugin("capturemanager")),
                         lambda: dict(_OUTCOMES))
