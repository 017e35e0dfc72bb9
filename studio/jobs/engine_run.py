"""The one engine-run worker: a solo training run or a race, in the training child process.

Nothing here trains anything: it starts a job of :mod:`engine.training.process` (a
:class:`~engine.training.process.TrainingJob` or an :class:`~engine.race.job.RaceJob`) in
a child process (or, with ``META_STUDIO_TRAINING_PROCESS=0``, in a thread of this one), and turns
the job's callbacks into Qt signals delivered in the GUI thread.

The signals are generated from the engine's callback protocol, one per hook (see
:func:`signal_name`): :class:`engine.training.callbacks.Callback` for runs
(``run_started``, ``steps``, ``validation``, ``checkpoint``, ``log``, ``finished``, ``failed``),
``engine.race.RaceCallback`` for races (``race_started``, ``steps``, ``validation``, ``log``,
``algorithm_finished``, ``race_finished``, ``failed``); a hook added to a protocol becomes a signal
here with no edit. Step metrics are coalesced: at most ``max_rate_hz`` emissions per second, each
carrying every step since the last one, so no point is lost and the GUI is never flooded; every
other hook emits the pending steps first, so the order of events is kept.

* :func:`protocol_adapter` builds the adapter class of a protocol: a QObject with one signal per
  hook whose hooks (called in the worker thread) emit them. :data:`QtCallbackAdapter` and
  :data:`QtRaceAdapter` are the two the studio uses.
* :class:`TrainingWorker` and :class:`RaceWorker` share :class:`_EngineRun`: start, pause / resume /
  stop through a :class:`~engine.training.control.RunControl` (``held`` says when a pause has taken
  hold: after the last step trained before it), force stop (the child process is
  ended), ``wait``; ``failed`` fires at most once (also for a job that could not start or whose
  process died), ``done`` fires last, always.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from engine.api import (Callback, ChildJob, RaceCallback, RaceConfig, RaceJob, RaceResult, RunConfig, RunControl,
                        RunSummary, TrainingJob, TrainingProcess, callback_hooks, forwarding_hook)
from studio.jobs.thread import WorkThread

log = logging.getLogger("studio")

STEP_HOOK = "on_step"
STEPS_SIGNAL = "steps"
CLOSE_STOP_WAIT_MS = 20_000  # closing mid-job: how long it may take to stop before its process is ended
STOP_POLL_MS = 100  # stop_and_wait: how often it looks at its clock while the job stops
TRAINING_PROCESS_ENV = "META_STUDIO_TRAINING_PROCESS"
_SIGNAL_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def train_in_child_process() -> bool:
    """Whether runs and races train in a child process (default) rather than a thread of the studio.

    A child process keeps the GUI thread's Python work (plot painting) from holding up the
    training at every PyTorch op through the interpreter lock (measured in
    :mod:`engine.training.process`). ``META_STUDIO_TRAINING_PROCESS=0`` trains in a thread
    instead (to debug the trainer in the studio's own process)."""
    return os.environ.get(TRAINING_PROCESS_ENV, "1") != "0"


# ---------------------------------------------------------------------------
# Callback protocol -> signals
# ---------------------------------------------------------------------------
def signal_name(hook: str) -> str:
    """The signal of a hook: ``on_step`` -> ``steps`` (batched), ``on_run_start`` -> ``run_started``,
    otherwise the hook without ``on_`` (``on_validation`` -> ``validation``)."""
    if hook == STEP_HOOK:
        return STEPS_SIGNAL
    base = hook.removeprefix("on_")
    return base + "ed" if base.endswith("_start") else base


def _signal_arguments(signature: inspect.Signature) -> list[type]:
    """Qt argument types of a hook's parameters (annotated ``str``/``int``/``float``/``bool``, else object)."""
    return [_SIGNAL_TYPES.get(str(p.annotation), object) for p in signature.parameters.values()]


def protocol_signals(protocol: type) -> dict[str, Signal]:
    """One signal per hook of ``protocol``; the step hook's carries a list of steps."""
    return {signal_name(hook): Signal(list) if hook == STEP_HOOK else Signal(*_signal_arguments(signature))
            for hook, signature in callback_hooks(protocol).items()}


class _StepBatcher:
    """Steps collected in the producing thread and handed out in batches, at most ``max_rate_hz``
    batches per second (thread-safe)."""

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


class _AdapterBase(QObject):
    """What every generated adapter does with a hook call (in the producing thread)."""

    held = Signal(bool)  # a pause holds the run (after its last step), or it goes on: see on_held

    def __init__(self, max_rate_hz: float = 20.0, parent: QObject | None = None) -> None:
        QObject.__init__(self, parent)
        self._batcher = _StepBatcher(max_rate_hz)
        self.n_emissions = 0

    def on_held(self, held: bool) -> None:
        """The engine's pause acknowledgement (``engine.training.process.HELD_HOOK``): the steps before it
        are emitted first."""
        self.flush()
        self.held.emit(held)

    def _relay(self, hook: str, arguments: tuple[Any, ...]) -> None:
        if hook == STEP_HOOK:  # one step: the metrics alone, or the tuple (a race's algorithm, metrics, seconds)
            self._emit_steps(self._batcher.add(arguments[0] if len(arguments) == 1 else arguments))
            return
        self.flush()
        getattr(self, signal_name(hook)).emit(*arguments)

    def flush(self, only_if_stale: bool = False) -> None:
        """Emit the pending steps now (with ``only_if_stale``: only if the rate limit allows); any thread."""
        self._emit_steps(self._batcher.take(only_if_stale))

    def _emit_steps(self, batch: list[Any] | None) -> None:
        if batch:
            self.n_emissions += 1
            getattr(self, STEPS_SIGNAL).emit(batch)


def protocol_adapter(protocol: type, name: str) -> type:
    """A QObject subclass of ``protocol`` with one signal per hook (:func:`protocol_signals`) whose
    hooks emit them: ``steps`` coalesced, every other hook after flushing the pending steps.
    ``flush()`` (any thread) emits what is pending now, e.g. after a pause."""
    namespace: dict[str, Any] = {"__doc__": f"{protocol.__name__} hooks as Qt signals (generated).",
                                 **protocol_signals(protocol)}
    for hook, signature in callback_hooks(protocol).items():
        namespace[hook] = forwarding_hook(hook, signature, _AdapterBase._relay)
    return type(name, (_AdapterBase, protocol), namespace)


QtCallbackAdapter = protocol_adapter(Callback, "QtCallbackAdapter")
QtRaceAdapter = protocol_adapter(RaceCallback, "QtRaceAdapter")


def _worker_signals(protocol: type, name: str) -> type:
    """The QObject base of a worker: the protocol's signals plus ``held`` (bool), ``done`` and
    ``_drained`` (``done``'s queued forerunner, see :meth:`_EngineRun._on_thread_finished`)."""
    return type(name, (QObject,), {**protocol_signals(protocol), "held": Signal(bool), "done": Signal(),
                                   "_drained": Signal()})


# ---------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------
class _EngineRun:
    """One job (:meth:`_make_job`) in a child process or a thread; its adapter's signals relayed as
    the worker's own (queued, GUI thread). Mixed into a QObject with the protocol's signals."""

    adapter_class: type
    protocol: type
    what = "job"
    done: Any
    failed: Any

    def _set_up(self, max_rate_hz: float, in_child_process: bool | None, process: TrainingProcess | None) -> None:
        if in_child_process is None:
            in_child_process = process is not None or train_in_child_process()
        self.process = (process or TrainingProcess()) if in_child_process else None
        self.control = self.process.control if self.process is not None else RunControl()
        self.adapter = self.adapter_class(max_rate_hz)
        self._failed_reported = False
        queued = Qt.ConnectionType.QueuedConnection
        for signal in protocol_signals(self.protocol):
            target = self._on_failed if signal == "failed" else getattr(self, signal)
            getattr(self.adapter, signal).connect(target, queued)
        self.is_held = False  # a pause holds the run now (acknowledged by the engine, after its last step)
        self.adapter.held.connect(self._on_held, queued)
        self._drained.connect(self.done, queued)  # type: ignore[attr-defined]
        self._thread = WorkThread(self._work, self.what)
        # direct: runs in the worker thread, so the failure is queued behind the steps it flushes first
        self._thread.crashed.connect(self._relay_crash, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._on_thread_finished, queued)
        # steps that arrived just before a pause (or a slow step) would otherwise wait for the next one
        self._flush_timer = QTimer(self)  # type: ignore[arg-type] (self is the QObject)
        self._flush_timer.setInterval(200)
        self._flush_timer.timeout.connect(lambda: self.adapter.flush(only_if_stale=True))

    def _make_job(self) -> ChildJob:  # worker thread
        raise NotImplementedError

    def _shared_data(self, config: Any) -> Any:  # worker thread
        """The data set given to the worker, else ``config.data`` decoded through the studio's cache
        (decoded once per process, shared by all views)."""
        from studio.datasets import load_data_cached

        if self._data is not None:
            return self._data
        self.adapter.on_log(f"loading data set {config.data.root}")
        return load_data_cached(config.data)

    def _work(self) -> Any:  # worker thread
        job = self._make_job()
        if self.process is None:
            return job.run(self.adapter, self.control)
        return self.process.run(job, self.adapter)

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

    def stop_and_wait(self, timeout_ms: int = CLOSE_STOP_WAIT_MS,
                      clock: Callable[[], float] | None = None) -> bool:
        """Stop, wait up to ``timeout_ms`` as ``clock`` (seconds; default ``time.monotonic``) measures
        it, then end the process of a job that did not stop; wait for the end. True when it had to be
        force-stopped (the window closes). A test passes a clock of its own to run the real delay
        without waiting for it."""
        clock = clock or time.monotonic
        self.stop()
        deadline = clock() + timeout_ms / 1000
        while not self.wait(STOP_POLL_MS):
            if clock() >= deadline:
                forced = self.force_stop()
                self.wait()
                return forced
        return False

    @property
    def value(self) -> Any:
        """What the job returned (a RunSummary, a RaceResult), once it ended; None if it failed."""
        return self._thread.value

    @property
    def can_force_stop(self) -> bool:
        """A job in a training process can be ended at once; one in a thread only when it stops."""
        return self.process is not None

    @property
    def force_stopped(self) -> bool:
        return self.process is not None and self.process.kill_requested

    def force_stop(self) -> bool:
        """End the job's training process now (a job that does not stop when asked); it then fails
        with :class:`engine.errors.RunForceStopped`. False when there was nothing to end."""
        return self.process is not None and (self.process.kill() or self.process.kill_requested)

    def _on_held(self, held: bool) -> None:
        self.is_held = held
        self.held.emit(held)

    def _on_failed(self, message: str, *rest: Any) -> None:
        if not self._failed_reported:
            self._failed_reported = True
            self.failed.emit(message, *rest)

    def _relay_crash(self, message: str) -> None:  # worker thread
        """A failure the job could not report itself (a dead child process, a bug): relayed like the job's
        own ``on_failed``, after the steps still pending, so a view never shows a step after the failure.
        The failed signal's other arguments are None."""
        n_more = len(callback_hooks(self.protocol)["on_failed"].parameters) - 1
        self.adapter.flush()
        self.adapter.failed.emit(message, *([None] * n_more))

    def _on_thread_finished(self) -> None:
        self._thread.wait()  # the OS thread must be gone before GC may run (see studio.jobs.thread)
        self._flush_timer.stop()
        self.adapter.flush()
        # queued like the steps the flush just relayed, so ``done`` comes after them: a window that
        # starts the next run on ``done`` never receives this run's last steps as the new run's
        self._drained.emit()  # type: ignore[attr-defined]


class TrainingWorker(_worker_signals(Callback, "_RunSignals"), _EngineRun):  # type: ignore[misc]
    """One training run, in a child process (default, see :func:`train_in_child_process`) or in a
    background thread; either way a worker thread of the studio prepares it and relays its reports.

    Signals: one per :class:`~engine.training.callbacks.Callback` hook (``run_started``, ``steps``
    (``list[StepMetrics]``), ``validation``, ``checkpoint``, ``log``, ``finished``, ``failed``
    (message, RunSummary | None)), ``held`` (bool: a pause holds the run, after its last step; or it goes
    on) and ``done``, delivered in the GUI thread.
    """

    adapter_class = QtCallbackAdapter
    protocol = Callback
    what = "training"

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
        self._data = data
        self._resume_from = resume_from
        self._extra_steps = extra_steps
        self._set_up(max_rate_hz, in_child_process, process)

    def _make_job(self) -> TrainingJob:  # worker thread
        from studio.datasets import load_data_cached  # decoded once per process, shared by all views

        if self._resume_from is not None:
            from engine.api import checkpoint_file, load_checkpoint

            last = checkpoint_file(Path(self._resume_from), "last")
            data = None
            if last.is_file():  # else Trainer.resume reports the missing checkpoint itself
                checkpoint = load_checkpoint(last)
                data = load_data_cached(checkpoint.config.data, split=checkpoint.split)
            return TrainingJob(resume_from=Path(self._resume_from), extra_steps=self._extra_steps, data=data)
        return TrainingJob(self.config, self.run_dir, self._shared_data(self.config))

    @property
    def summary(self) -> RunSummary | None:
        return self.value


class RaceWorker(_worker_signals(RaceCallback, "_RaceSignals"), _EngineRun):  # type: ignore[misc]
    """One :class:`engine.race.Race`, in a child process like a training run (default; see
    :func:`train_in_child_process`), with pause / resume / stop and force stop.

    Signals: one per ``RaceCallback`` hook (``race_started``, ``steps`` (``list[tuple[str,
    StepMetrics, float]]``: algorithm, metrics, its own compute seconds), ``validation``, ``log``,
    ``algorithm_finished``, ``race_finished``, ``failed`` (message)) and ``done``, delivered in the
    GUI thread. ``data``: the already decoded data set (else it is loaded, through the studio's
    cache, in the worker thread). ``process``: the child to race in, e.g. one started ahead.
    """

    adapter_class = QtRaceAdapter
    protocol = RaceCallback
    what = "race"

    def __init__(self, config: RaceConfig, race_dir: Path | None, *, data: Any = None,
                 max_rate_hz: float = 20.0, in_child_process: bool | None = None,
                 process: TrainingProcess | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.config = config
        self.race_dir = race_dir
        self._data = data
        self._set_up(max_rate_hz, in_child_process, process)

    def _make_job(self) -> RaceJob:  # worker thread
        return RaceJob(self.config, self.race_dir, self._shared_data(self.config))

    @property
    def result(self) -> RaceResult | None:
        return self.value
