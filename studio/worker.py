"""The one bridge between engine callbacks and Qt signals.

Everything slow (training, evaluation, data loading, adaptation) runs in a
``QThread`` (training itself in a child process that such a thread watches); results
come back as queued signals, so slots always run in the GUI thread. Nothing in this
module trains or evaluates anything itself: it only calls the engine and forwards what
the engine reports.

* :class:`QtCallbackAdapter` is an :class:`engine.training.callbacks.Callback`
  whose hooks emit signals. Step metrics are coalesced: at most
  ``max_rate_hz`` emissions per second, each carrying every step since the last
  one, so no point is lost and the GUI is never flooded.
* :class:`TrainingWorker` runs one :class:`engine.training.trainer.Trainer` in a
  child process (:mod:`engine.training.process`) or a thread and exposes
  ``pause()`` / ``resume()`` / ``stop()`` through a :class:`engine.training.control.RunControl`.
* :func:`run_in_worker` runs any function in a thread with progress, cancel and
  error reporting (evaluation, data loading, the adapt panel).
* :class:`RaceWorker` runs one :class:`engine.race.Race` (2 to 4 algorithms on one data
  set and one episode stream) in a thread; :class:`QtRaceAdapter` turns its callbacks into
  signals with the same step coalescing.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Qt, Signal

from engine.config import RunConfig
from engine.errors import EngineError, describe_exception
from engine.race import AlgorithmResult, Race, RaceCallback, RaceConfig, RaceInfo, RaceResult
from engine.training.callbacks import (Callback, CheckpointInfo, RunInfo, RunSummary, StepMetrics,
                                       ValidationResult)
from engine.training.control import RunControl
from engine.training.process import TrainingJob, TrainingProcess

log = logging.getLogger("studio")

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


class MainThreadGarbageCollector(QObject):
    """Run Python's cyclic garbage collector only in the GUI thread.

    Automatic collection runs in whichever thread happens to allocate; when that
    is a worker thread and the garbage holds Qt objects of the GUI (a closed
    window, a finished job), their C++ destructors run there and can deadlock
    with the GUI thread (a Qt mutex on one side, the GIL on the other). So the
    automatic collector is switched off and a timer collects in the GUI thread,
    with the thresholds Python would have used.
    """

    def __init__(self, interval_ms: int = 500) -> None:
        super().__init__()
        self.thresholds = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)

    def check(self) -> None:
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.thresholds[generation]:
                gc.collect(generation)
                return


_collector: MainThreadGarbageCollector | None = None


def install_main_thread_gc() -> MainThreadGarbageCollector:
    """Install the :class:`MainThreadGarbageCollector` once (call from the GUI thread)."""
    global _collector
    if _collector is None:
        _collector = MainThreadGarbageCollector()
        _collector.moveToThread(QCoreApplication.instance().thread())
    return _collector


# ---------------------------------------------------------------------------
# Training callbacks -> signals
# ---------------------------------------------------------------------------
class _StepBatcher:
    """Steps collected in the producing thread and handed out in batches, at most ``max_rate_hz``
    batches per second (thread-safe). Shared by :class:`QtCallbackAdapter` and :class:`QtRaceAdapter`."""

    def __init__(self, max_rate_hz: float) -> None:
        self.min_interval_s = 1.0 / max_rate_hz
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self._last_emit = 0.0

    def add(self, item: Any) -> list[Any] | None:
        """Collect ``item``; return the batch to emit now, or None while the rate limit holds."""
        with self._lock:
            self._pending.append(item)
            return self._take_locked(only_if_stale=True)

    def take(self, only_if_stale: bool = False) -> list[Any] | None:
        """The pending batch (None if empty; with ``only_if_stale`` also None while the rate limit holds)."""
        with self._lock:
            return self._take_locked(only_if_stale)

    def _take_locked(self, only_if_stale: bool) -> list[Any] | None:
        now = time.monotonic()
        if not self._pending or (only_if_stale and now - self._last_emit < self.min_interval_s):
            return None
        batch, self._pending = self._pending, []
        self._last_emit = now
        return batch


class QtCallbackAdapter(QObject, Callback):
    """Turns trainer callbacks (called in the worker thread) into Qt signals.

    ``steps`` carries a ``list[StepMetrics]``: the steps since the previous
    emission. Call :meth:`flush` (from any thread) to emit what is pending now,
    e.g. after a pause; every other hook flushes pending steps first so the
    order of events is kept.
    """

    run_started = Signal(object)      # RunInfo
    steps = Signal(list)              # list[StepMetrics]
    validation = Signal(object)       # ValidationResult
    checkpoint = Signal(object)       # CheckpointInfo
    log = Signal(str, str)            # message, level
    finished = Signal(object)         # RunSummary
    failed = Signal(str, object)      # message, RunSummary | None

    def __init__(self, max_rate_hz: float = 20.0, parent: QObject | None = None) -> None:
        QObject.__init__(self, parent)
        self._batcher = _StepBatcher(max_rate_hz)
        self.n_emissions = 0

    # -- hooks (worker thread) ----------------------------------------------
    def on_run_start(self, info: RunInfo) -> None:
        self.run_started.emit(info)

    def on_step(self, metrics: StepMetrics) -> None:
        self._emit_steps(self._batcher.add(metrics))

    def on_validation(self, result: ValidationResult) -> None:
        self.flush()
        self.validation.emit(result)

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        self.flush()
        self.checkpoint.emit(info)

    def on_log(self, message: str, level: str = "info") -> None:
        self.log.emit(message, level)

    def on_finished(self, summary: RunSummary) -> None:
        self.flush()
        self.finished.emit(summary)

    def on_failed(self, message: str, summary: RunSummary) -> None:
        self.flush()
        self.failed.emit(message, summary)

    # -- any thread ---------------------------------------------------------
    def flush(self, only_if_stale: bool = False) -> None:
        """Emit the pending steps now (with ``only_if_stale``: only if the rate limit allows)."""
        self._emit_steps(self._batcher.take(only_if_stale))

    def _emit_steps(self, batch: list[StepMetrics] | None) -> None:
        if batch:
            self.n_emissions += 1
            self.steps.emit(batch)


_COMPUTE_THREADS: int | None = None


def keep_gui_thread_single_threaded() -> None:
    """Run PyTorch single-threaded in the GUI thread; worker threads keep the full thread count.

    On a small CPU, once the GUI thread has run one large (OpenMP-parallel) tensor op, PyTorch
    in every other thread of the process runs about 30% slower for the rest of its life
    (measured on 2 cores without Qt: `bench/bench_thread_penalty.py`). With one thread in the
    GUI thread no second OpenMP team ever exists. Worker threads call
    :func:`use_compute_threads` when they start. Call once, in the GUI thread, at start-up.
    """
    global _COMPUTE_THREADS
    import torch

    if _COMPUTE_THREADS is None:
        _COMPUTE_THREADS = torch.get_num_threads()
    torch.set_num_threads(1)


def use_compute_threads() -> None:
    """In a worker thread: PyTorch's default thread count (undoing the GUI thread's 1)."""
    if _COMPUTE_THREADS is not None:
        import torch

        torch.set_num_threads(_COMPUTE_THREADS)


TRAINING_PROCESS_ENV = "META_STUDIO_TRAINING_PROCESS"


def train_in_child_process() -> bool:
    """Whether runs train in a child process (default) rather than a thread of the studio.

    A child process keeps the GUI thread's Python work (plot painting) from holding up the
    training at every PyTorch op through the interpreter lock (measured in
    :mod:`engine.training.process`). ``META_STUDIO_TRAINING_PROCESS=0`` trains in a thread
    instead (to debug the trainer in the studio's own process)."""
    return os.environ.get(TRAINING_PROCESS_ENV, "1") != "0"


SPARE_DELAY_MS = 2000  # after the window opens or a run ends, before a training process is started ahead


class SpareTrainingProcess(QObject):
    """One training child process started ahead of its run: it imports PyTorch (2-3 s on a small
    machine) while the user is busy elsewhere, so Train starts training at once.

    Started ``SPARE_DELAY_MS`` after :meth:`prepare_later`, and only while ``is_idle()`` (a spare
    starting during a run would take CPU from it); handed out by :meth:`take`; ended by :meth:`close`.
    Costs an idle process holding PyTorch (~300 MB) while the window is open."""

    def __init__(self, is_idle: Callable[[], bool], enabled: bool = True, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process: TrainingProcess | None = None
        self._is_idle = is_idle
        self._enabled = enabled
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SPARE_DELAY_MS)
        self._timer.timeout.connect(self._prepare)

    def prepare_later(self) -> None:
        if self._enabled and train_in_child_process():
            self._timer.start()

    def _prepare(self) -> None:
        if not self._enabled or not self._is_idle() or (self.process is not None and self.process.is_alive()):
            return
        try:
            self.process = TrainingProcess().start()
        except OSError as error:  # the run then starts its own process, as without a spare
            log.warning("could not start a training process ahead: %s", error)

    def take(self) -> TrainingProcess | None:
        """The spare for a run now (None if there is none or it died); the owner calls
        :meth:`prepare_later` for the next one when the run has ended."""
        process, self.process = self.process, None
        if process is not None and not process.is_alive():
            process.close()
            return None
        return process

    def close(self) -> None:
        """End the spare and prepare no more (the window closes)."""
        self._enabled = False
        self._timer.stop()
        if self.process is not None:
            self.process.close()
            self.process = None


class _WorkThread(QThread):
    """Runs ``work()`` (a training run, a race) and keeps its return value; reports failures the
    work cannot report itself (building a trainer, a bug) through ``crashed``."""

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


class _WorkerControls:
    """Start, pause/resume/stop (through ``self.control``), wait, and the end of the thread:
    shared by :class:`TrainingWorker` and :class:`RaceWorker` (GUI thread)."""

    control: RunControl
    adapter: Any
    _thread: _WorkThread
    _flush_timer: QTimer
    done: Any

    def _make_flush_timer(self) -> None:
        """Steps that arrived just before a pause (or a slow step) would otherwise wait for the next one."""
        self._flush_timer = QTimer(self)  # (self is the QObject subclass using this mixin)
        self._flush_timer.setInterval(200)
        self._flush_timer.timeout.connect(lambda: self.adapter.flush(only_if_stale=True))

    def start(self) -> None:
        self._flush_timer.start()
        self._thread.start()

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    @property
    def paused(self) -> bool:
        return self.control.paused

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the thread ended; True if it did."""
        return self._thread.wait() if timeout_ms < 0 else self._thread.wait(timeout_ms)

    def _on_thread_finished(self) -> None:
        self._thread.wait()  # see _Job._thread_finished: the OS thread must be gone before GC may run
        self._flush_timer.stop()
        self.adapter.flush()
        self.done.emit()


class TrainingWorker(QObject, _WorkerControls):
    """One training run, in a child process (default, see :func:`train_in_child_process`) or in a
    background thread; either way a worker thread of the studio prepares it and relays its reports.

    Signals mirror :class:`QtCallbackAdapter` and are delivered in the GUI
    thread. ``failed`` fires once whether the trainer reported the failure
    itself or could not even be built; ``done`` fires last, always.
    """

    run_started = Signal(object)
    steps = Signal(list)
    validation = Signal(object)
    checkpoint = Signal(object)
    log = Signal(str, str)
    finished = Signal(object)
    failed = Signal(str, object)
    done = Signal()

    def __init__(self, config: RunConfig, run_dir: Path | None, *, data: Any = None,
                 resume_from: Path | None = None, extra_steps: int = 0,
                 max_rate_hz: float = 5.0, in_child_process: bool | None = None,
                 process: TrainingProcess | None = None, parent: QObject | None = None) -> None:
        """``max_rate_hz``: step batches delivered to the GUI thread per second (5: the plots redraw
        at most twice a second and the progress text as often; every delivery is GUI-thread CPU that
        a training run on a small machine loses). ``in_child_process``: train in a child process (see
        :mod:`engine.training.process`) or in a thread of this one; None (default) decides by
        :func:`train_in_child_process`. ``process``: the child to train in, e.g. one started ahead
        (else a new one)."""
        super().__init__(parent)
        self.config = config
        self.run_dir = run_dir if resume_from is None else resume_from
        if in_child_process is None:
            in_child_process = process is not None or train_in_child_process()
        self.process = (process or TrainingProcess()) if in_child_process else None
        self.control = self.process.control if self.process is not None else RunControl()
        self.adapter = QtCallbackAdapter(max_rate_hz)
        self._failed_reported = False
        self._data = data
        self._resume_from = resume_from
        self._extra_steps = extra_steps
        queued = Qt.ConnectionType.QueuedConnection
        self.adapter.run_started.connect(self.run_started, queued)
        self.adapter.steps.connect(self.steps, queued)
        self.adapter.validation.connect(self.validation, queued)
        self.adapter.checkpoint.connect(self.checkpoint, queued)
        self.adapter.log.connect(self.log, queued)
        self.adapter.finished.connect(self.finished, queued)
        self.adapter.failed.connect(self._on_failed, queued)
        self._thread = _WorkThread(self._train, "training")
        self._thread.crashed.connect(self._on_crashed, queued)
        self._thread.finished.connect(self._on_thread_finished, queued)
        self._make_flush_timer()

    def _train(self) -> RunSummary:  # worker thread
        job = self._make_job()
        if self.process is None:
            return job.make_trainer([self.adapter], self.control).run()
        return self.process.run(job, self.adapter)

    def _make_job(self) -> TrainingJob:  # worker thread
        from studio.datasets import load_data_cached  # decoded once per process, shared by all views

        if self._resume_from is not None:
            from engine.training.checkpoint import load_checkpoint
            from engine.training.run_store import CHECKPOINT_DIR, LAST_CHECKPOINT

            last = Path(self._resume_from) / CHECKPOINT_DIR / LAST_CHECKPOINT
            data = None
            if last.is_file():  # else Trainer.resume reports the missing checkpoint itself
                checkpoint = load_checkpoint(last)
                data = load_data_cached(checkpoint.config.data, split=checkpoint.split)
            return TrainingJob(resume_from=Path(self._resume_from), extra_steps=self._extra_steps, data=data)
        data = self._data
        if data is None:
            self.adapter.on_log(f"loading data set {self.config.data.root}")
            data = load_data_cached(self.config.data)
        return TrainingJob(self.config, self.run_dir, data)

    @property
    def summary(self) -> RunSummary | None:
        return self._thread.value

    @property
    def can_force_stop(self) -> bool:
        """A run in a training process can be ended at once; one in a thread only when it stops."""
        return self.process is not None

    @property
    def force_stopped(self) -> bool:
        return self.process is not None and self.process.kill_requested

    def force_stop(self) -> bool:
        """End the run's training process now (a run that does not stop when asked); the run then
        fails with :class:`engine.errors.RunForceStopped`. False when there was nothing to end."""
        return self.process is not None and (self.process.kill() or self.process.kill_requested)

    # -- internal -----------------------------------------------------------
    def _on_failed(self, message: str, summary: object) -> None:
        if not self._failed_reported:
            self._failed_reported = True
            self.failed.emit(message, summary)

    def _on_crashed(self, message: str) -> None:
        self._on_failed(message, None)


# ---------------------------------------------------------------------------
# Generic background jobs
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# Algorithm races
# ---------------------------------------------------------------------------
class QtRaceAdapter(QObject, RaceCallback):
    """Turns race callbacks (called in the race thread) into Qt signals.

    ``steps`` carries a ``list[tuple[str, StepMetrics, float]]`` (algorithm, metrics, its own
    compute seconds): every step since the previous emission, at most ``max_rate_hz`` emissions
    per second, as :class:`QtCallbackAdapter` does for one run. Every other hook flushes pending
    steps first, so the order of events is kept.
    """

    race_started = Signal(object)            # RaceInfo
    steps = Signal(list)                     # list[tuple[str, StepMetrics, float]]
    validation = Signal(str, object, float)  # algorithm, ValidationResult, seconds
    log = Signal(str, str)                   # message, level
    algorithm_finished = Signal(str, object) # algorithm, AlgorithmResult
    race_finished = Signal(object)           # RaceResult
    failed = Signal(str)                     # message

    def __init__(self, max_rate_hz: float = 20.0, parent: QObject | None = None) -> None:
        QObject.__init__(self, parent)
        self._batcher = _StepBatcher(max_rate_hz)
        self.n_emissions = 0

    # -- hooks (race thread) ---------------------------------------------------
    def on_race_start(self, info: RaceInfo) -> None:
        self.race_started.emit(info)

    def on_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None:
        self._emit_steps(self._batcher.add((algorithm, metrics, seconds)))

    def on_validation(self, algorithm: str, result: ValidationResult, seconds: float) -> None:
        self.flush()
        self.validation.emit(algorithm, result, seconds)

    def on_log(self, message: str, level: str = "info") -> None:
        self.log.emit(message, level)

    def on_algorithm_finished(self, algorithm: str, row: AlgorithmResult) -> None:
        self.flush()
        self.algorithm_finished.emit(algorithm, row)

    def on_race_finished(self, result: RaceResult) -> None:
        self.flush()
        self.race_finished.emit(result)

    def on_failed(self, message: str) -> None:
        self.flush()
        self.failed.emit(message)

    # -- any thread ---------------------------------------------------------------
    def flush(self, only_if_stale: bool = False) -> None:
        """Emit the pending steps now (with ``only_if_stale``: only if the rate limit allows)."""
        self._emit_steps(self._batcher.take(only_if_stale))

    def _emit_steps(self, batch: list[tuple[str, StepMetrics, float]] | None) -> None:
        if batch:
            self.n_emissions += 1
            self.steps.emit(batch)


class RaceWorker(QObject, _WorkerControls):
    """One :class:`engine.race.Race` in a background thread, with pause / resume / stop.

    Signals mirror :class:`QtRaceAdapter` and are delivered in the GUI thread; ``failed``
    fires at most once, ``done`` fires last, always. ``data``: the already decoded data set
    (else it is loaded, through the studio's cache, in the race thread).
    """

    race_started = Signal(object)
    steps = Signal(list)
    validation = Signal(str, object, float)
    log = Signal(str, str)
    algorithm_finished = Signal(str, object)
    race_finished = Signal(object)
    failed = Signal(str)
    done = Signal()

    def __init__(self, config: RaceConfig, race_dir: Path | None, *, data: Any = None,
                 max_rate_hz: float = 20.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.config = config
        self.race_dir = race_dir
        self.control = RunControl()
        self.adapter = QtRaceAdapter(max_rate_hz)
        self._data = data
        self._failed_reported = False
        queued = Qt.ConnectionType.QueuedConnection
        self.adapter.race_started.connect(self.race_started, queued)
        self.adapter.steps.connect(self.steps, queued)
        self.adapter.validation.connect(self.validation, queued)
        self.adapter.log.connect(self.log, queued)
        self.adapter.algorithm_finished.connect(self.algorithm_finished, queued)
        self.adapter.race_finished.connect(self.race_finished, queued)
        self.adapter.failed.connect(self._on_failed, queued)
        self._thread = _WorkThread(self._run_race, "race")
        self._thread.crashed.connect(self._on_failed, queued)
        self._thread.finished.connect(self._on_thread_finished, queued)
        self._make_flush_timer()

    def _run_race(self) -> RaceResult:  # race thread
        from studio.datasets import load_data_cached  # decoded once per process, shared by all views

        data = self._data
        if data is None:
            self.adapter.on_log(f"loading data set {self.config.data.root}")
            data = load_data_cached(self.config.data)
        return Race(self.config, race_dir=self.race_dir, callbacks=[self.adapter], control=self.control,
                    data=data).run()

    @property
    def result(self) -> RaceResult | None:
        return self._thread.value

    # -- internal -------------------------------------------------------------
    def _on_failed(self, message: str) -> None:
        if not self._failed_reported:
            self._failed_reported = True
            self.failed.emit(message)
