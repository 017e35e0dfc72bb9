"""studio.jobs: callbacks become throttled, queued signals; background jobs report results and errors."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from engine.config import RunConfig
from engine.errors import DatasetError
from engine.training.callbacks import RunSummary, StepMetrics, ValidationResult
from engine.errors import describe_exception
from studio.jobs.engine_run import QtCallbackAdapter, TrainingWorker
from studio.jobs.thread import run_in_worker


def _metrics(step: int) -> StepMetrics:
    return StepMetrics(step, 1000, 1.0 / step, 0.5, 1e-3, 10.0, step * 0.01, 1.0)


def test_adapter_coalesces_steps_without_losing_any(qtbot):
    adapter = QtCallbackAdapter(max_rate_hz=25)
    batches: list[list[StepMetrics]] = []
    threads: list[object] = []
    adapter.steps.connect(lambda batch: (batches.append(batch), threads.append(threading.current_thread())))
    done = threading.Event()

    def trainer_thread() -> None:
        for step in range(1, 1001):
            adapter.on_step(_metrics(step))
        adapter.on_validation(ValidationResult(1000, 0.5, 0.1, 5, True))
        done.set()

    validations = []
    adapter.validation.connect(validations.append)
    worker = threading.Thread(target=trainer_thread)
    worker.start()
    qtbot.waitUntil(lambda: done.is_set() and bool(validations), timeout=10_000)
    worker.join()
    steps = [m.step for batch in batches for m in batch]
    assert steps == list(range(1, 1001))  # every point, in order
    assert len(batches) < 100  # but far fewer signals than steps
    assert all(t is threading.main_thread() for t in threads)  # delivered in the GUI thread


def test_adapter_flush_delivers_steps_left_before_a_pause(qtbot):
    adapter = QtCallbackAdapter(max_rate_hz=1)
    received = []
    adapter.steps.connect(received.extend)
    adapter.on_step(_metrics(1))   # emitted: first call
    adapter.on_step(_metrics(2))   # held back by the rate limit
    assert [m.step for m in received] == [1]
    adapter.flush()
    assert [m.step for m in received] == [1, 2]


class _FakeTrainer:
    """Stands in for engine.training.trainer.Trainer: steps until stopped, honouring pause."""

    instances: list["_FakeTrainer"] = []

    def __init__(self, config, *, run_dir=None, callbacks=(), control=None, data=None):
        self.callbacks, self.control, self.run_dir = callbacks, control, run_dir
        self.step = 0
        _FakeTrainer.instances.append(self)

    def run(self):
        step = 0
        while True:
            self.control.wait_while_paused()
            if self.control.stop_requested:
                break
            step += 1
            self.step = step
            for cb in self.callbacks:
                cb.on_step(_metrics(step))
            time.sleep(0.002)
        summary = RunSummary(self.run_dir, "stopped", step, None, None, 0.1)
        for cb in self.callbacks:
            cb.on_finished(summary)
        return summary


def test_training_worker_pause_resume_stop(qtbot, monkeypatch):
    import engine.training.process as process_module  # where TrainingJob finds the Trainer

    monkeypatch.setattr(process_module, "Trainer", _FakeTrainer)
    worker = TrainingWorker(RunConfig(), None, data=object(), in_child_process=False)  # the fake lives here
    received: list[int] = []
    events: list[tuple[str, object]] = []  # steps and pause acknowledgements, in the order the GUI thread got them
    worker.steps.connect(lambda batch: received.extend(m.step for m in batch))
    worker.steps.connect(lambda batch: events.extend(("step", m.step) for m in batch))
    worker.held.connect(lambda held: events.append(("held", held)))
    finished = []
    worker.finished.connect(finished.append)
    worker.start()
    qtbot.waitUntil(lambda: len(received) > 20, timeout=10_000)
    with qtbot.waitSignal(worker.held, timeout=10_000, check_params_cb=lambda held: held):
        worker.pause()
    paused_at = len(received)
    assert paused_at == _FakeTrainer.instances[-1].step  # every step trained arrived before the acknowledgement
    assert worker.is_held and events[-2:] == [("step", paused_at), ("held", True)]
    with qtbot.waitSignal(worker.held, timeout=10_000, check_params_cb=lambda held: not held):
        worker.resume()
    held_at = events.index(("held", True))
    assert events[held_at + 1] == ("held", False)  # no step while held
    qtbot.waitUntil(lambda: len(received) > paused_at + 10, timeout=10_000)
    assert events[held_at + 2] == ("step", paused_at + 1)
    with qtbot.waitSignal(worker.done, timeout=10_000):
        worker.stop()
    assert finished and finished[0].status == "stopped"
    assert received == list(range(1, len(received) + 1))
    assert finished[0].steps_done == received[-1]


def test_done_comes_after_the_last_steps_of_a_job_that_ended_without_a_word(qtbot):
    """A killed child reports nothing after its last steps: they are relayed when the thread ends, and
    ``done`` (on which a window starts the next run) must come after them, never before."""
    worker = TrainingWorker(RunConfig(), None, data=object(), max_rate_hz=0.01, in_child_process=False)

    class StepsThenSilence:  # runs in the worker thread: steps held back by the rate limit, then the end
        def run(self, adapter, control):
            for step in range(1, 6):
                adapter.on_step(_metrics(step))

    worker._make_job = StepsThenSilence
    events: list[object] = []
    worker.steps.connect(lambda batch: events.extend(m.step for m in batch))
    worker.done.connect(lambda: events.append("done"))
    with qtbot.waitSignal(worker.done, timeout=10_000):
        worker.start()
    qtbot.wait(50)  # anything still queued behind done would arrive now
    assert events == [1, 2, 3, 4, 5, "done"]


def test_a_crash_is_reported_after_the_last_steps_it_left(qtbot):
    """A job that dies (a killed child process raises in the worker thread) after steps held back by the rate
    limit: the steps come first, then ``failed``, then ``done``; a view that shows "force-stopped" on
    ``failed`` must not be overwritten by a step afterwards."""
    worker = TrainingWorker(RunConfig(), None, data=object(), max_rate_hz=0.01, in_child_process=False)

    class StepsThenDeath:  # runs in the worker thread
        def run(self, adapter, control):
            for step in range(1, 6):
                adapter.on_step(_metrics(step))
            raise RuntimeError("the training process was ended")

    worker._make_job = StepsThenDeath
    events: list[object] = []
    worker.steps.connect(lambda batch: events.extend(m.step for m in batch))
    worker.failed.connect(lambda message, summary: events.append(("failed", message, summary)))
    worker.done.connect(lambda: events.append("done"))
    with qtbot.waitSignal(worker.done, timeout=10_000):
        worker.start()
    qtbot.wait(50)
    assert events[:5] == [1, 2, 3, 4, 5] and events[-1] == "done"
    assert len(events) == 7 and events[5][0] == "failed" and "ended" in events[5][1] and events[5][2] is None


def test_training_worker_reports_a_trainer_that_cannot_be_built(qtbot, monkeypatch):
    import engine.training.process as process_module  # where TrainingJob finds the Trainer

    def broken(*args, **kwargs):
        raise DatasetError("/data/missing: dataset folder not found")

    monkeypatch.setattr(process_module, "Trainer", broken)
    worker = TrainingWorker(RunConfig(), None, data=object(), in_child_process=False)
    failures = []
    worker.failed.connect(lambda message, summary: failures.append((message, summary)))
    with qtbot.waitSignal(worker.done, timeout=10_000):
        worker.start()
    assert failures == [("/data/missing: dataset folder not found", None)]


def test_run_in_worker_result_and_progress(qtbot):
    progress, results = [], []

    def job(report, should_stop):
        for i in range(1, 6):
            report(i, 5)
        return threading.current_thread() is not threading.main_thread()

    handle = run_in_worker(job, on_result=results.append, on_error=pytest.fail,
                           on_progress=lambda d, t: progress.append((d, t)))
    with qtbot.waitSignal(handle.done, timeout=10_000):
        pass
    assert results == [True]  # ran in another thread
    assert progress[-1] == (5, 5)


def test_run_in_worker_engine_error_is_its_message(qtbot):
    errors = []

    def job(report, should_stop):
        raise DatasetError("/photos/cat.png: not an image")

    handle = run_in_worker(job, on_result=pytest.fail, on_error=errors.append)
    with qtbot.waitSignal(handle.done, timeout=10_000):
        pass
    assert errors == ["/photos/cat.png: not an image"]


def test_run_in_worker_bug_gives_type_and_logs_the_traceback(qtbot, caplog):
    errors = []

    def job(report, should_stop):
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="studio"):
        handle = run_in_worker(job, on_result=pytest.fail, on_error=errors.append)
        with qtbot.waitSignal(handle.done, timeout=10_000):
            pass
    assert errors == ["ValueError: boom"]
    assert "Traceback" in caplog.text and "boom" in caplog.text


def test_run_in_worker_can_be_cancelled(qtbot):
    results = []
    started = threading.Event()

    def job(report, should_stop):
        started.set()
        count = 0
        while not should_stop():
            count += 1
            time.sleep(0.001)
        return "stopped"

    handle = run_in_worker(job, on_result=results.append, on_error=pytest.fail)
    assert started.wait(5)
    with qtbot.waitSignal(handle.done, timeout=10_000):
        handle.stop()
    assert results == ["stopped"] and not handle.is_running()


def test_describe_exception():
    assert describe_exception(DatasetError("x.png: bad")) == "x.png: bad"
    assert describe_exception(KeyError("k")) == "KeyError: 'k'"
    assert describe_exception(RuntimeError()) == "RuntimeError"


def test_gui_thread_runs_torch_single_threaded_and_workers_get_the_full_count(qtbot):
    import torch

    import studio.jobs.policy as worker

    before = torch.get_num_threads()
    try:
        worker.keep_gui_thread_single_threaded()
        assert torch.get_num_threads() == 1
        results = []
        handle = run_in_worker(lambda progress, should_stop: torch.get_num_threads(),
                               on_result=results.append, on_error=results.append)
        qtbot.waitUntil(lambda: bool(results), timeout=30_000)
        handle.wait(10_000)
        assert results == [worker._COMPUTE_THREADS] and worker._COMPUTE_THREADS >= 1
    finally:
        torch.set_num_threads(before)



def test_the_generated_adapters_have_one_signal_per_hook_and_each_hook_emits_it(qtbot):
    import inspect

    from engine.race import RaceCallback
    from engine.training.callbacks import Callback
    from studio.jobs.engine_run import QtRaceAdapter, protocol_adapter, signal_name

    assert signal_name("on_run_start") == "run_started" and signal_name("on_step") == "steps"
    for protocol, adapter_class in ((Callback, QtCallbackAdapter), (RaceCallback, QtRaceAdapter)):
        hooks = [name for name, _ in inspect.getmembers(protocol, inspect.isfunction) if name.startswith("on_")]
        for hook in hooks:
            adapter = adapter_class(max_rate_hz=1000)
            received = []
            getattr(adapter, signal_name(hook)).connect(lambda *args: received.append(args))
            parameters = list(inspect.signature(getattr(protocol, hook)).parameters.values())[1:]
            examples = {"str": "text", "float": 1.5, "int": 3}
            arguments = [examples.get(str(p.annotation), object()) for p in parameters]
            n_parameters = len(parameters)
            getattr(adapter, hook)(*arguments)
            step = arguments[0] if n_parameters == 1 else tuple(arguments)  # a step travels in a list
            assert received == ([([step],)] if hook == "on_step" else [tuple(arguments)]), hook

    class WithANewHook(RaceCallback):
        def on_heartbeat(self, algorithm: str, beats: int) -> None: ...

    adapter = protocol_adapter(WithANewHook, "Adapter")()
    beats = []
    adapter.heartbeat.connect(lambda algorithm, n: beats.append((algorithm, n)))  # no studio edit needed
    adapter.on_heartbeat("maml", 3)
    assert beats == [("maml", 3)]


def test_the_race_adapter_coalesces_steps_and_flushes_them_before_other_hooks(qtbot):
    from studio.jobs.engine_run import QtRaceAdapter

    adapter = QtRaceAdapter(max_rate_hz=1)
    events = []
    adapter.steps.connect(lambda batch: events.append(("steps", [(name, m.step) for name, m, _ in batch])))
    adapter.algorithm_finished.connect(lambda name, row: events.append(("finished", name)))
    for step in (1, 2, 3):
        adapter.on_step("maml", _metrics(step), 0.1 * step)
    adapter.on_algorithm_finished("maml", None)
    assert events == [("steps", [("maml", 1)]), ("steps", [("maml", 2), ("maml", 3)]), ("finished", "maml")]
