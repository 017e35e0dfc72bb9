"""The studio's one thread worker: :func:`run_in_worker` runs ``fn(progress, should_stop)`` in a
background thread and delivers its result, error and progress in the GUI thread.

Properties the views rely on:

* callbacks run in the GUI thread (queued signals), and are dropped when the Qt object they belong
  to was deleted meanwhile (a closed panel);
* a worker thread runs PyTorch with the full thread count (:func:`studio.jobs.policy.use_compute_threads`);
* progress reports are rate-limited (the last one, ``done == total``, always goes through);
* the QThread is waited for before it may be destroyed (a QThread destroyed between its
  ``finished()`` and the end of its OS thread can deadlock on the GIL), and garbage is collected in
  the GUI thread only (:mod:`studio.jobs.policy`);
* :func:`active_handles` / :func:`stop_all_jobs` see every running job (the window's close).

Why not superqt's ``create_worker`` (measured on a 2-core machine, superqt 0.9.0,
``bench/bench_superqt_workers.py``): it runs jobs in ``QThreadPool.globalInstance()``,
whose ``maxThreadCount`` is the core count (2): a short job queued behind two long ones (a run's
and a race's relay threads) was delivered after 3.10 s, when the long ones ended, against 0.01 s
with a thread per job. And its ``WorkerBase.run`` wraps every job in ``warnings.catch_warnings()``
with ``showwarning`` redirected to the job's ``warned`` signal, which is process-wide state: while a
job ran, a warning issued in the GUI thread never reached logging, and after two overlapping jobs
``warnings.showwarning`` stayed pointed at a finished job. What superqt would save: nothing measurable
(start to result of a trivial job: 0.48 ms superqt, 0.46 ms here on an idle machine; 0.6 and 7.1 ms
on a loaded one), nothing next to the jobs the studio runs (100 ms and more). :class:`WorkThread` (one engine run or race per thread)
is the same thread, for the engine-run worker (:mod:`studio.jobs.engine_run`).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QObject, QThread, Qt, Signal

from engine.api import EngineError, describe_exception
from studio.jobs.policy import use_compute_threads

log = logging.getLogger("studio")

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


def _receiver_alive(callback: Callable[..., Any]) -> bool:
    """False when ``callback`` is a method of a Qt object whose C++ side is gone (a closed panel):
    a job that outlives its view then ends quietly instead of touching deleted widgets."""
    owner = getattr(callback, "__self__", None)
    return not isinstance(owner, QObject) or shiboken6.isValid(owner)


class _Job(QObject):
    """Lives in the GUI thread; the worker thread emits its private signals (queued)."""

    _result = Signal(object)
    _error = Signal(str)
    _progress = Signal(int, int)
    done = Signal()

    def __init__(self, on_result: Callable[[Any], None], on_error: Callable[[str], None],
                 on_progress: ProgressFn | None) -> None:
        super().__init__()
        self.delivered = False
        self._on_result_cb = on_result
        self._on_error_cb = on_error
        self._on_progress_cb = on_progress
        queued = Qt.ConnectionType.QueuedConnection
        self._result.connect(self._deliver_result, queued)
        self._error.connect(self._deliver_error, queued)
        self._progress.connect(self._deliver_progress, queued)

    def _deliver_result(self, value: object) -> None:
        if _receiver_alive(self._on_result_cb):
            self._on_result_cb(value)

    def _deliver_error(self, message: str) -> None:
        if _receiver_alive(self._on_error_cb):
            self._on_error_cb(message)

    def _deliver_progress(self, done: int, total: int) -> None:
        if self._on_progress_cb is not None and _receiver_alive(self._on_progress_cb):
            self._on_progress_cb(done, total)

    def _thread_finished(self) -> None:
        handle = _HANDLES.pop(id(self), None)
        if handle is not None:
            # QThread emits finished() before its OS thread has exited; a QThread destroyed in
            # between (e.g. by Python's garbage collector) can deadlock on the GIL. Wait it out.
            handle.thread.wait()
        self.delivered = True
        self.done.emit()


class _JobThread(QThread):
    def __init__(self, fn: Callable[[ProgressFn, StopFn], Any], job: _Job,
                 stop_event: threading.Event, min_progress_interval_s: float) -> None:
        super().__init__()
        self._fn = fn
        self._job = job
        self._stop_event = stop_event
        self._min_interval = min_progress_interval_s
        self._last_progress = 0.0

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last_progress < self._min_interval:
            return
        self._last_progress = now
        self._job._progress.emit(int(done), int(total))

    def run(self) -> None:  # worker thread
        use_compute_threads()
        try:
            value = self._fn(self._progress, self._stop_event.is_set)
        except BaseException as error:  # noqa: BLE001 - reported to the GUI
            if not isinstance(error, EngineError):
                log.error("background task failed:\n%s", traceback.format_exc())
            self._job._error.emit(describe_exception(error))
        else:
            self._job._result.emit(value)


@dataclass
class WorkerHandle:
    """A running :func:`run_in_worker` job: cancel it, wait for it, ask whether it runs.

    ``handle.done`` (a signal) fires in the GUI thread after the result or error callback.
    """

    thread: _JobThread
    job: _Job
    stop_event: threading.Event

    def stop(self) -> None:
        """Ask the job to stop: its ``should_stop()`` returns True from now on."""
        self.stop_event.set()

    def is_running(self) -> bool:
        """True until the job's result or error has been delivered in the GUI thread."""
        return not self.job.delivered

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the thread ended (its result is delivered by the event loop afterwards)."""
        return self.thread.wait() if timeout_ms < 0 else self.thread.wait(timeout_ms)

    @property
    def done(self) -> Any:
        return self.job.done


_HANDLES: dict[int, WorkerHandle] = {}


def run_in_worker(fn: Callable[[ProgressFn, StopFn], Any], *, on_result: Callable[[Any], None],
                  on_error: Callable[[str], None], on_progress: ProgressFn | None = None,
                  min_progress_interval_s: float = 0.05) -> WorkerHandle:
    """Run ``fn(progress, should_stop)`` in a background thread.

    ``fn`` may call ``progress(done, total)`` as often as it likes (emissions are
    rate-limited) and should return early when ``should_stop()`` is True.
    ``on_result(value)``, ``on_error(message)`` and ``on_progress(done, total)``
    are called in the GUI thread. ``message`` is an EngineError's own text, or
    ``"Type: text"`` for other exceptions, whose traceback goes to the
    ``studio`` logger (shown in the log pane).
    """
    job = _Job(on_result, on_error, on_progress)
    stop_event = threading.Event()
    thread = _JobThread(fn, job, stop_event, min_progress_interval_s)
    handle = WorkerHandle(thread, job, stop_event)
    # Queued after the result/error events posted earlier from the worker thread, so order holds.
    thread.finished.connect(job._thread_finished, Qt.ConnectionType.QueuedConnection)
    _HANDLES[id(job)] = handle  # keep the Python objects alive while the thread runs
    thread.start()
    return handle


def active_handles() -> list[WorkerHandle]:
    """Jobs started by :func:`run_in_worker` that have not finished yet."""
    return list(_HANDLES.values())


def stop_all_jobs(timeout_ms: int = 5000) -> None:
    """Ask every running job to stop and wait for their threads (used when the window closes)."""
    handles = active_handles()
    for handle in handles:
        handle.stop()
    for handle in handles:
        handle.wait(timeout_ms)


class WorkThread(QThread):
    """Runs ``work()`` (a training run, a race) and keeps its return value; reports failures the
    work cannot report itself (building a trainer, a bug, a dead child process) through ``crashed``."""

    crashed = Signal(str)

    def __init__(self, work: Callable[[], Any], what: str) -> None:
        super().__init__()
        self._work = work
        self._what = what
        self.value: Any = None

    def run(self) -> None:  # worker thread
        use_compute_threads()
        try:
            self.value = self._work()
        except BaseException as error:  # noqa: BLE001 - every failure must reach the GUI
            if not isinstance(error, EngineError):
                log.error("%s crashed:\n%s", self._what, traceback.format_exc())
            self.crashed.emit(describe_exception(error))
