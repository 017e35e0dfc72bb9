"""The run store under concurrent writers (studio windows + CLI) and kills in the middle of a write.

The worker functions run in separate processes (multiprocessing "spawn"): this
module imports neither torch nor Qt so that they start in a fraction of a second.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from engine.errors import EngineError, TrainingError
from engine.training import run_store as rs

REPO = Path(__file__).resolve().parents[2]
N_WORKERS = 4
ROUNDS = 40
TRAINER_WRITES = 150


def _record(run_dir: Path, name: str, steps_done: int = 0, status: str = "running",
            pid: int | None = None) -> rs.RunRecord:
    return rs.RunRecord(run_dir, name, "protonet", "builtin:glyphs", "cpu", status, None, 0.0,
                        "2026-01-01T00:00:00+00:00", steps_done, TRAINER_WRITES, pid=pid)


# -- workers (top level so that "spawn" can import them) ----------------------------------------------------
def _wait_for(event: Any, what: str, timeout_s: float = 60.0) -> None:
    if not event.wait(timeout_s):
        raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s")


def _studio_like_worker(root: str, worker: int, shared_run: str, errors: multiprocessing.Queue,
                        watching: Any) -> None:
    """Create runs, rename runs (its own and a shared one) and list the history, as fast as it can."""
    try:
        _wait_for(watching, "the watcher's first read")
        store = rs.RunStore(Path(root))
        rng = random.Random(worker)
        mine: list[Path] = []
        for i in range(ROUNDS):
            run_dir = store.new_run_dir(f"w{worker}")
            rs.write_record(_record(run_dir, f"w{worker}-r{i}", status="finished"))
            rs.atomic_write_json(run_dir / rs.CONFIG_FILE, {"name": f"w{worker}-r{i}"})
            mine.append(run_dir)
            store.rename(rng.choice(mine), f"w{worker} renamed {i}")
            store.rename(Path(shared_run), f"shared by w{worker} #{i}")
            for record in store.list_runs():
                if not record.name or record.algorithm != "protonet":
                    raise AssertionError(f"bad record read: {record}")
    except BaseException:  # report everything to the parent, which fails the test with it
        errors.put(f"worker {worker}: {traceback.format_exc()}")


def _trainer_like_worker(run_dir: str, errors: multiprocessing.Queue, watching: Any, seen_midway: Any) -> None:
    """The one writer of run.json: hold the run lock and advance steps_done, then finish. It starts once the
    watcher reads, and halfway waits until the watcher has read a step in the middle of the run."""
    try:
        _wait_for(watching, "the watcher's first read")
        with rs.RunLock(Path(run_dir)):
            for step in range(1, TRAINER_WRITES + 1):
                rs.write_record(_record(Path(run_dir), "trainer's name", step, pid=os.getpid()))
                if step == TRAINER_WRITES // 2:
                    _wait_for(seen_midway, "the watcher's read of a step in the middle of the run")
            rs.write_record(_record(Path(run_dir), "trainer's name", TRAINER_WRITES, status="finished"))
    except BaseException:
        errors.put(f"trainer: {traceback.format_exc()}")


def _progress_watcher(run_dir: str, stop_file: str, errors: multiprocessing.Queue, watching: Any,
                      seen_midway: Any) -> None:
    """Read the shared run while everyone writes: steps_done never goes back, the file always parses."""
    try:
        store = rs.RunStore(Path(run_dir).parent)
        last = 0
        while not os.path.exists(stop_file):
            record = store.record(Path(run_dir))
            watching.set()  # the writers start now: this process reads while they write
            if record.steps_done < last:
                raise AssertionError(f"steps_done went back from {last} to {record.steps_done}: an update was lost")
            if 0 < record.steps_done < TRAINER_WRITES:
                seen_midway.set()
            last = record.steps_done
        final = store.record(Path(run_dir)).steps_done  # the writers are done when the stop file appears
        if final != TRAINER_WRITES:
            raise AssertionError(f"the watcher's final read saw step {final}, not {TRAINER_WRITES}")
    except BaseException:
        errors.put(f"watcher: {traceback.format_exc()}")


# -- tests ------------------------------------------------------------------------------------------------------
def test_concurrent_creators_renamers_listers_and_a_trainer_lose_nothing(tmp_path: Path) -> None:
    store = rs.RunStore(tmp_path)
    shared = store.new_run_dir("shared")
    rs.write_record(_record(shared, "shared", pid=None))
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    watching, seen_midway = context.Event(), context.Event()
    stop_file = tmp_path / ".stop-watcher"
    watcher = context.Process(target=_progress_watcher, args=(str(shared), str(stop_file), errors, watching,
                                                              seen_midway))
    trainer = context.Process(target=_trainer_like_worker, args=(str(shared), errors, watching, seen_midway))
    workers = [context.Process(target=_studio_like_worker, args=(str(tmp_path), w, str(shared), errors, watching))
               for w in range(N_WORKERS)]
    for process in [watcher, trainer, *workers]:
        process.start()
    for process in [trainer, *workers]:
        process.join(timeout=120)
    stop_file.touch()
    watcher.join(timeout=30)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert not problems, "\n".join(problems)
    assert all(p.exitcode == 0 for p in [watcher, trainer, *workers])

    records = store.list_runs()
    assert len(records) == N_WORKERS * ROUNDS + 1  # every run created is there, nothing else
    for record in records:
        json.loads((record.run_dir / rs.RUN_FILE).read_text())  # every run.json is whole
    final = store.record(shared)
    assert (final.status, final.steps_done) == ("finished", TRAINER_WRITES)  # renames lost no progress
    assert final.name.startswith("shared by w")  # ... and the trainer's writes lost no rename
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != stop_file.name]


def test_rename_never_rewrites_run_json_so_the_trainer_keeps_its_fields(tmp_path: Path) -> None:
    store = rs.RunStore(tmp_path)
    run_dir = store.new_run_dir("run")
    rs.write_record(_record(run_dir, "original", steps_done=3, pid=os.getpid()))
    before = (run_dir / rs.RUN_FILE).read_bytes()
    assert store.rename(run_dir, "  new   name ").name == "new name"
    assert (run_dir / rs.RUN_FILE).read_bytes() == before
    # the trainer, unaware of the rename, writes its next progress with its old in-memory record
    rs.write_record(_record(run_dir, "original", steps_done=4, status="finished"))
    record = store.record(run_dir)
    assert (record.name, record.steps_done, record.status) == ("new name", 4, "finished")
    assert [r.name for r in store.list_runs()] == ["new name"]


def test_rename_of_a_deleted_run_does_not_bring_its_folder_back(tmp_path: Path) -> None:
    store = rs.RunStore(tmp_path)
    run_dir = store.new_run_dir("gone")
    rs.write_record(_record(run_dir, "gone", status="finished"))
    store.delete(run_dir)
    with pytest.raises(EngineError, match="gone"):
        store.rename(run_dir, "too late")
    assert list(tmp_path.iterdir()) == []


def test_the_run_lock_tells_live_runs_from_interrupted_ones_even_with_a_reused_pid(tmp_path: Path) -> None:
    store = rs.RunStore(tmp_path)
    run_dir = store.new_run_dir("run")
    lock = rs.RunLock(run_dir).acquire()
    # pid 1 always exists: a pid check alone would call this run alive forever
    rs.write_record(_record(run_dir, "run", pid=1))
    assert store.record(run_dir).status == "running"
    with pytest.raises(TrainingError, match="already being trained"):
        rs.RunLock(run_dir).acquire(timeout_s=0.1)
    with pytest.raises(EngineError, match="still training"):
        store.delete(run_dir)
    lock.release()
    assert store.record(run_dir).status == "interrupted"
    store.delete(run_dir)
    assert store.list_runs() == []


def test_lock_of_a_killed_process_is_free_and_its_temp_files_are_cleaned(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = ("import sys, time; from engine.training.run_store import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline().strip() == "locked"
        assert rs.run_is_locked(run_dir) is True
        stray = run_dir / f".run.json.{child.pid}.abcd1234.tmp"
        stray.write_text("{half a fi")
    finally:
        child.kill()
        child.wait()
    assert rs.run_is_locked(run_dir) is False
    with rs.RunLock(run_dir):
        assert not stray.exists()


def test_a_half_finished_delete_never_shows_half_a_run(tmp_path: Path) -> None:
    store = rs.RunStore(tmp_path)
    keep = store.new_run_dir("keep")
    rs.write_record(_record(keep, "keep", status="finished"))
    # what a kill in the middle of delete() leaves: the folder already moved aside, partly removed
    leftover = tmp_path / f"{rs.TRASH_PREFIX}20260101-run-ab12-cafe"
    (leftover / rs.CHECKPOINT_DIR).mkdir(parents=True)
    rs.write_record(_record(leftover, "half deleted", status="finished"))
    assert [r.name for r in store.list_runs()] == ["keep"]
    other = store.new_run_dir("other")
    rs.write_record(_record(other, "other", status="finished"))
    store.delete(other)
    assert not leftover.exists()
    assert [r.name for r in store.list_runs()] == ["keep"]


_HAMMER = """
import sys
from engine.io import atomic_write_json
path, size = sys.argv[1], int(sys.argv[2])
i = 0
while True:
    i += 1
    atomic_write_json(path, {"version": i, "payload": "x" * size, "end": i})
    if i == 1:
        print("ready", flush=True)
"""


def test_sigkill_while_hammering_atomic_write_json_leaves_old_or_new_content(tmp_path: Path) -> None:
    store = rs.RunStore(tmp_path)
    run_dir = store.new_run_dir("hammered")
    target = run_dir / rs.RUN_FILE
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    last_version = 0
    for _ in range(8):
        child = subprocess.Popen([sys.executable, "-c", _HAMMER, str(target), str(rng.choice([10, 200_000]))],
                                 stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        content = json.loads(target.read_text())  # never torn: parses, and is one whole version
        assert content["version"] == content["end"] >= 1
        assert set(content) == {"version", "payload", "end"}
        last_version = content["version"]
    assert last_version >= 1
    assert [r.run_dir for r in _listing_runs(tmp_path)] == []  # a bare JSON is no run record...
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.name]  # ...and temp files never become runs
    assert all(p.name.startswith(".") for p in run_dir.iterdir() if p.name != rs.RUN_FILE)
    with rs.RunLock(run_dir):  # the next trainer of the run sweeps the killed writers' temp files
        assert sorted(p.name for p in run_dir.iterdir()) == [rs.LOCK_FILE, rs.RUN_FILE]


def _listing_runs(root: Path) -> list[rs.RunRecord]:
    return rs.RunStore(root).list_runs()


def test_a_run_with_a_corrupt_run_json_can_still_be_deleted(tmp_path: Path) -> None:
    store = rs.RunStore(tmp_path)
    run_dir = store.new_run_dir("torn")
    (run_dir / rs.RUN_FILE).write_text('{"name": "to')
    store.delete(run_dir)
    assert list(tmp_path.iterdir()) == []
