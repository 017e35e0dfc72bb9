"""Train in a child process, with the callbacks and the stop/pause control of a run in a thread.

What the child runs is a job (:class:`ChildJob`): a solo run (:class:`TrainingJob`) or a race of
several algorithms (:class:`engine.race.job.RaceJob`, in the race package above this one); each reports through the hooks of its callback protocol, and
the pipe forwards whichever hooks that protocol declares.

Why: a process that trains in one thread and runs a GUI in another shares one interpreter lock
between them. Every PyTorch op releases the lock and takes it back, so while the GUI thread runs
Python (pyqtgraph paints in Python) the training thread waits at each op. Measured on 2 cores
(ProtoNet, the studio bench's run): a thread doing 5 ms of Python 12 times a second (6% of a core)
slowed training by 12-14% in 4 of 4 runs; the same CPU time spent without the lock (hashing) cost
0-6%. In a child process the two share only the CPU.

How: :class:`TrainingProcess` starts a ``spawn`` child (what CUDA needs; nothing inherited, no
threads, no locks). The decoded data set travels through shared memory (torch.multiprocessing's
pickling), so nothing is decoded twice. The child trains in its main thread and sends every
callback over a pipe; :meth:`TrainingProcess.run`, called in a thread of the parent (it blocks
until the run ends), replays them on the parent's callbacks in order and returns the
:class:`RunSummary`. Stop and pause are multiprocessing events that the trainer checks between
steps; when a pause takes hold, the child says so on the pipe after its last step (``on_held``). A
child can be started ahead of its job (a warm spare: the studio keeps one, so a run starts at once
rather than after PyTorch's import).

A run that does not stop when asked (a step that hangs in a driver, a data source that never
answers) can be ended with :meth:`TrainingProcess.kill` from any thread: its :meth:`~TrainingProcess.run`
then raises :class:`RunForceStopped`, saying which steps are lost, instead of blocking forever.

Failures stay contained: if the child dies (killed, out of memory, a crash in native code) the run
ends with a message naming how, the parent goes on, and the run folder keeps its last checkpoint
(its record reads as interrupted, so it can be continued). If the parent dies, the child's next
report fails and it stops after the current step, saving a checkpoint, instead of training on unseen.
"""

from __future__ import annotations

import logging
import signal
import traceback
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any, Protocol

import torch.multiprocessing

from engine.config import RunConfig
from engine.data.dataset import FewShotData
from engine.errors import EngineError, RunForceStopped, TrainingError, describe_exception
from engine.training import host_memory
from engine.training.callbacks import Callback, CheckpointInfo, RunSummary, StepMetrics
from engine.training.control import RunControl
from engine.training.hooks import bound_arguments, callback_hooks
from engine.training.trainer import Trainer

log = logging.getLogger("engine.process")

EXIT_WAIT_S = 30.0  # after its last message, how long the child may take to exit before it is killed


class ChildJob(Protocol):
    """What a :class:`TrainingProcess` runs in its child: a solo run (:class:`TrainingJob`) or a race
    (:class:`engine.race.job.RaceJob`). It pickles (with its decoded data set in shared memory, see :func:`_pickled`),
    and it reports through the hooks of its ``protocol``."""

    data: Any

    @property
    def protocol(self) -> type:
        """The callback protocol whose hooks the child forwards (``Callback``, ``RaceCallback``)."""

    def run(self, callback: Any, control: RunControl) -> Any:
        """Train to the end (in the child), reporting on ``callback``; the result goes to the parent."""

    def force_stopped_message(self, last_step: int, checkpoint_step: int | None) -> str:
        """What :meth:`TrainingProcess.run` raises (as :class:`RunForceStopped`) after a kill."""


@dataclass
class TrainingJob:
    """One run to train: a new one (``config``, ``run_dir``) or one continued from ``resume_from``.

    ``data``: the decoded data set, or None for the trainer to load it (in the child)."""

    config: RunConfig | None = None
    run_dir: Path | None = None
    data: FewShotData | None = None
    resume_from: Path | None = None
    extra_steps: int = 0

    @property
    def protocol(self) -> type:
        return Callback

    def make_trainer(self, callbacks: list[Callback], control: RunControl) -> Trainer:
        if self.resume_from is not None:
            return Trainer.resume(self.resume_from, callbacks=callbacks, control=control,
                                  extra_steps=self.extra_steps, data=self.data)
        if self.config is None:
            raise ValueError("a TrainingJob needs a config or resume_from")
        return Trainer(self.config, run_dir=self.run_dir, callbacks=callbacks, control=control, data=self.data)

    def run(self, callback: Callback, control: RunControl) -> RunSummary:
        held = getattr(callback, HELD_HOOK, None)  # a caller that wants to know when a pause holds the run
        if held is not None:
            control = HoldReportingControl(control, held)  # type: ignore[assignment]
        return self.make_trainer([callback], control).run()

    def force_stopped_message(self, last_step: int, checkpoint_step: int | None) -> str:
        if checkpoint_step is not None:
            kept = f"the run keeps its checkpoint of step {checkpoint_step} and can be continued"
        elif self.resume_from is not None:
            kept = "the run keeps the checkpoint it was continued from"
        else:
            kept = "no checkpoint had been saved yet"
        return f"the training process was ended on request after step {last_step}; {kept}"


HELD_HOOK = "on_held"
"""``callback.on_held(held: bool)``, where a job's callback has it: the run is held by a pause (True, after
the last step trained before it) or goes on (False). Not a protocol hook: an acknowledgement of the control."""


class HoldReportingControl:
    """The trainer's view of a :class:`RunControl` that also reports when a pause holds the run:
    ``report(True)`` as the trainer stops between two steps, ``report(False)`` when it goes on (resumed or
    stopped). The report comes from the training thread after every step before it, so a caller (a test,
    the studio) waits for the pause to take effect rather than for a quiet period."""

    def __init__(self, control: RunControl, report: Any) -> None:
        self._control = control
        self._report = report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._control, name)

    def wait_while_paused(self, poll_s: float = 0.1) -> None:
        if not self._control.paused:
            return
        self._report(True)
        try:
            self._control.wait_while_paused(poll_s)
        finally:
            self._report(False)


class _PipeCallback:
    """Child side: each call of a hook of ``protocol`` becomes one message ``("hook", name, arguments)``
    (whatever hooks the protocol declares: none is listed here). When the parent is gone the job is
    stopped (after the current step, with a checkpoint)."""

    def __init__(self, connection: Connection, control: RunControl, protocol: type = Callback) -> None:
        self._connection = connection
        self._control = control
        self._parent_gone = False
        self._hooks = callback_hooks(protocol)

    def __getattr__(self, name: str) -> Any:
        signature = self.__dict__.get("_hooks", {}).get(name)
        if signature is None:
            raise AttributeError(name)
        return lambda *args, **kwargs: self._send(name, *bound_arguments(signature, args, kwargs))

    def on_held(self, held: bool) -> None:
        """The pause acknowledgement (:data:`HELD_HOOK`), in order with the hooks."""
        self._post(("held", held))

    def _send(self, hook: str, *arguments: Any) -> None:
        self._post(("hook", hook, arguments))

    def _post(self, message: tuple[Any, ...]) -> None:
        if self._parent_gone:
            return
        try:
            self._connection.send(message)
        except OSError:  # BrokenPipeError and friends: nobody reads any more
            self._parent_gone = True
            self._control.stop()


def _child_main(jobs: Connection, connection: Connection, control: RunControl) -> None:
    """The child's whole life: wait for the job, train it, report, send the result (or the error) last."""
    host_memory.keep_freed_host_memory()  # the main thread, before any other thread starts
    try:
        job: ChildJob = jobs.recv()
    except (EOFError, OSError):
        return  # a spare the parent did not need
    except BaseException as error:  # noqa: BLE001 - a job that cannot be unpickled here
        _send_last(connection, _error_message(error))
        return
    finally:
        jobs.close()
    try:
        result = job.run(_PipeCallback(connection, control, job.protocol), control)
        _send_last(connection, ("result", result))
    except BaseException as error:  # noqa: BLE001 - the parent must learn of every failure
        _send_last(connection, _error_message(error))


def _error_message(error: BaseException) -> tuple[Any, ...]:
    return "error", describe_exception(error), isinstance(error, EngineError), traceback.format_exc()


def _send_last(connection: Connection, message: tuple[Any, ...]) -> None:
    try:
        connection.send(message)
    except OSError:
        pass  # the parent is gone; the run folder already holds what the trainer wrote
    finally:
        connection.close()


def describe_exit(exitcode: int | None) -> str:
    """How a child process ended, in words: "exit code 3", "killed by SIGKILL (perhaps out of memory)"."""
    if exitcode is None:
        return "still running"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    return f"killed by {name}" + (" (perhaps out of memory)" if name == "SIGKILL" else "")


class TrainingProcess:
    """Runs one :class:`ChildJob` (a :class:`TrainingJob` or an ``engine.race.job.RaceJob``) in a child process
    (see the module doc).

    ``control`` pauses, resumes and stops the run from any thread of the parent, also before it
    starts. :meth:`run` blocks: call it in a worker thread. :meth:`start` spawns the child ahead of
    its job: it imports PyTorch (2-3 s on a small machine) and waits, so a later :meth:`run` trains
    at once. :meth:`close` ends a child that got no job."""

    def __init__(self) -> None:
        self._context = torch.multiprocessing.get_context("spawn")
        self.control = RunControl(self._context.Event)
        self.pid: int | None = None  # the child's, once started
        self.exitcode: int | None = None
        self._process: Any = None
        self._jobs: Connection | None = None      # parent -> child: the one job
        self._reports: Connection | None = None   # child -> parent: hooks, then the result
        self._job_sent = False
        self._kill_requested = False
        self._job: ChildJob | None = None
        self.last_step = 0          # the last step the child reported
        self.held = False           # whether a pause holds the child's run (see HELD_HOOK)
        self.checkpoint_step: int | None = None  # the step of its last checkpoint, if any

    def start(self) -> "TrainingProcess":
        """Spawn the child now, if not yet done; it waits for the job of :meth:`run`."""
        if self._process is not None:
            return self
        reports, child_reports = self._context.Pipe(duplex=False)
        child_jobs, jobs = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_child_main, args=(child_jobs, child_reports, self.control),
                                        name="meta-studio-training", daemon=True)
        try:
            process.start()
        except BaseException:
            reports.close()
            jobs.close()
            raise
        finally:  # the child holds the other ends now: its exit is our end of file
            child_reports.close()
            child_jobs.close()
        self._process, self._jobs, self._reports, self.pid = process, jobs, reports, process.pid
        return self

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def run(self, job: ChildJob, callback: Any) -> Any:
        """Train ``job`` in the child (started now unless :meth:`start` did it), replay its reports on
        ``callback`` (an object with the hooks of ``job.protocol``) until it ends, and return its result
        (a run's :class:`RunSummary`, a race's ``RaceResult``).

        Raises :class:`EngineError` with the child's message when it could not train (a bad run
        folder), :class:`TrainingError` when it crashed or died."""
        if self._job_sent:
            raise RuntimeError("a TrainingProcess trains one job")
        self._job_sent = True
        self._job = job
        if self._kill_requested:
            self._end(kill=True)
            raise RunForceStopped("the run was ended on request before it started")
        self.start()
        assert self._jobs is not None and self._reports is not None
        try:
            self._jobs.send_bytes(_pickled(job, callback))
            outcome = self._replay(self._reports, callback)
        except (BrokenPipeError, ConnectionResetError):  # the child died before it took the job
            outcome = None
        finally:
            self._end(kill=False)
        return self._result_of(outcome)

    def kill(self) -> bool:
        """End the child now, from any thread: for a run that does not stop when asked (see
        ``control``). :meth:`run` then raises :class:`RunForceStopped` (unless the child had already
        sent its result); the run folder keeps its last checkpoint. Before :meth:`run`, the job will not
        start. False when the child has already ended."""
        process = self._process
        if self.exitcode is not None or (process is not None and not process.is_alive()):
            return False
        self._kill_requested = True
        if process is not None:
            process.kill()
        return True

    @property
    def kill_requested(self) -> bool:
        """Whether :meth:`kill` ended (or will keep from starting) this process's run."""
        return self._kill_requested

    def close(self) -> None:
        """End a child that got no job (a spare not needed). A run's child ends with its run (stop it
        through ``control``)."""
        if not self._job_sent:
            self._end(kill=True)

    def _end(self, kill: bool) -> None:
        if self._process is None or self.exitcode is not None:
            return
        for connection in (self._jobs, self._reports):
            connection.close()
        if kill:
            self._process.kill()
        self.exitcode = _reap(self._process)

    def _replay(self, receiver: Connection, callback: Callback) -> tuple[Any, ...] | None:
        """The child's hooks on ``callback``, in order; its last message (result or error), None if it died."""
        while True:
            try:
                message = receiver.recv()
            except EOFError:
                return None
            if message[0] == "hook":
                self._note(message[1], message[2])
                getattr(callback, message[1])(*message[2])
            elif message[0] == "held":
                self.held = bool(message[1])
                getattr(callback, HELD_HOOK, lambda held: None)(self.held)
            else:
                return message

    def _note(self, hook: str, arguments: tuple[Any, ...]) -> None:
        """Remember how far the job got, for the message of a forced stop (a race's steps carry
        the algorithm's name first: the metrics are found by type)."""
        for argument in arguments:
            if hook == "on_step" and isinstance(argument, StepMetrics):
                self.last_step = argument.step
            elif hook == "on_checkpoint" and isinstance(argument, CheckpointInfo) and not argument.is_best:
                self.checkpoint_step = argument.step

    def _result_of(self, outcome: tuple[Any, ...] | None) -> Any:
        if outcome is None and self._kill_requested:
            assert self._job is not None
            raise RunForceStopped(self._job.force_stopped_message(self.last_step, self.checkpoint_step))
        if outcome is None:
            raise TrainingError(f"the training process ended unexpectedly ({describe_exit(self.exitcode)}); "
                                "the run keeps its last checkpoint and can be continued")
        if outcome[0] == "result":
            return outcome[1]
        _, text, is_engine_error, child_traceback = outcome
        if is_engine_error:
            raise EngineError(text)
        log.error("the training process failed:\n%s", child_traceback)
        raise TrainingError(f"the training process failed: {text}")


def _pickled(job: ChildJob, callback: Any) -> bytes:
    """``job`` pickled for the child, its data set's tensors in shared memory. Where they cannot be
    shared (a small /dev/shm in a container, say), the job goes without its data and the child
    loads the data set itself; ``callback`` is told why."""
    try:
        return bytes(ForkingPickler.dumps(job))
    except Exception as error:  # noqa: BLE001 - any failure to share falls back to loading
        if job.data is None:
            raise
        callback.on_log(f"the data set could not be shared with the training process ({error}); "
                        "it loads the data set again", "warning")
        return bytes(ForkingPickler.dumps(replace(job, data=None)))  # type: ignore[type-var]


def _reap(process: Any) -> int | None:
    """Wait for ``process`` to exit (killing it after :data:`EXIT_WAIT_S`); its exit code."""
    process.join(EXIT_WAIT_S)
    if process.is_alive():
        log.warning("the training process did not exit after its run; killing it")
        process.kill()
        process.join()
    return process.exitcode
