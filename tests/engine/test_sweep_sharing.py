"""Sweeps outlive their processes: two processes share one SQLite study, and a sweep killed with
SIGKILL mid-trial continues when the same command runs again (the killed trial failed, its run
continued from its checkpoint, no finished trial lost or run twice)."""

from __future__ import annotations

import multiprocessing
import signal
import time

from optuna.trial import TrialState

from engine.cli import main
from engine.training.run_store import RunStore, checkpoint_file
from tests.engine.sweep_helpers import TINY_FLAGS, start_sweep, study_of

DEADLINE_S = 600


def _open_together(urls: list[str], barrier, results) -> None:  # a spawned process: one opening per round
    from engine.sweep.storage import open_storage

    for url in urls:
        barrier.wait()
        try:
            open_storage(url)
            results.put("ok")
        except Exception as error:  # the ConfigError the user would read
            results.put(str(error))


def test_sweeps_started_together_on_a_new_database_all_open_it(tmp_path):
    """Four processes open one new SQLite study database at the same moment, five times over: each creates
    its tables, all but one lose that race, and every one must still open it (before the fix, 7 rounds in
    10 had a process fail with "table studies already exists")."""
    urls = [f"sqlite:///{tmp_path / f'round{i}.db'}" for i in range(5)]
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(4), spawn.Queue()
    processes = [spawn.Process(target=_open_together, args=(urls, barrier, results)) for _ in range(4)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=DEADLINE_S) for _ in range(4 * len(urls))]
    for process in processes:
        process.join(60)
    assert outcomes == ["ok"] * len(outcomes), [o for o in outcomes if o != "ok"][:2]


def _catch_frozen(process, condition, what: str, slice_s: float = 0.02):
    """Let ``process`` run in short slices (SIGCONT, sleep, SIGSTOP) until ``condition`` holds while it is
    frozen, and return the condition's value with the process still frozen: a moment that lasts a
    fraction of a second in the process (a trial between its first validation and its end) cannot
    slip between two looks, however fast or loaded the machine."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        process.send_signal(signal.SIGSTOP)
        value = condition()  # a lock the frozen process holds makes this a miss (None), never a wait
        if value:
            return value
        assert process.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        process.send_signal(signal.SIGCONT)
        time.sleep(slice_s)


def _trials(runs, name):
    try:
        return study_of(runs, name).get_trials()
    except (KeyError, Exception):  # the study or its database not created yet
        return []


def test_two_processes_share_one_study_without_duplicates(tmp_path):
    runs = tmp_path / "runs"
    # both start together (each imports torch and decodes the data set first) and each trial is long enough
    # (60 steps) for the other to join before the first has run them all; the counts below hold however the
    # two interleave
    args = ("--steps", "60", "--val-every", "20", "--trials", "4", "--study", "shared", "--pruner", "none",
            "--param", "algorithm.lr=1e-4:1e-2:log")
    first = start_sweep(runs, *args)
    second = start_sweep(runs, *args)
    assert first.wait(DEADLINE_S) == 0 and second.wait(DEADLINE_S) == 0
    trials = study_of(runs, "shared").get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == len(complete) and 4 <= len(complete) <= 5  # both asked while 3 were counted: one more
    assert len({t.user_attrs["pid"] for t in complete}) == 2  # both processes ran trials of the one study
    run_dirs = [t.user_attrs["run_dir"] for t in complete]
    assert len(set(run_dirs)) == len(run_dirs)  # no trial run twice, no run folder shared
    assert sorted(str(r.run_dir) for r in RunStore(runs).list_runs()) == sorted(run_dirs)


def test_a_killed_sweep_continues_where_it_was(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ("--steps", "30", "--trials", "2", "--study", "killed", "--pruner", "none",
            "--param", "algorithm.lr=1e-4:1e-2:log")
    sweep = start_sweep(runs, *args)
    try:
        def second_trial_validated():
            trials = _trials(runs, "killed")
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values
                       and "run_dir" in t.user_attrs and checkpoint_file(t.user_attrs["run_dir"], "last").is_file()]
            return (done, running) if done and running else None

        (finished,), (killed,) = _catch_frozen(sweep, second_trial_validated,
                                               "a finished trial and a validated running one")
        sweep.send_signal(signal.SIGKILL)  # frozen or not, SIGKILL ends it
        sweep.wait(60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert study_of(runs, "killed").trials[killed.number].state == TrialState.RUNNING  # as the kill left it
    finished_checkpoint = checkpoint_file(finished.user_attrs["run_dir"], "last").stat().st_mtime_ns
    assert main(["sweep", *TINY_FLAGS, "--runs-dir", str(runs), *args, "--quiet"]) == 0
    trials = study_of(runs, "killed").get_trials()
    assert trials[finished.number].state == TrialState.COMPLETE and trials[finished.number].value == finished.value
    assert trials[killed.number].state == TrialState.FAIL  # marked failed on restart
    (continued,) = [t for t in trials if t.user_attrs.get("resume_run_dir") == killed.user_attrs["run_dir"]]
    assert continued.state == TrialState.COMPLETE and continued.params == killed.params
    assert continued.user_attrs["run_dir"] == killed.user_attrs["run_dir"]  # its run continued, not restarted
    assert set(killed.intermediate_values.items()) <= set(continued.intermediate_values.items())
    assert sorted(continued.intermediate_values) == list(range(2, 31, 2))
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2  # the study's 2 trials, none run twice
    assert checkpoint_file(finished.user_attrs["run_dir"], "last").stat().st_mtime_ns == finished_checkpoint
    record = RunStore(runs).record(killed.user_attrs["run_dir"])
    assert record.status == "finished" and record.steps_done == 30


class _ReportedTrial:
    """The parts of an Optuna trial a trial's PruningReporter uses."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, float]] = []

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return False


def test_a_resumed_trial_replays_every_validation_up_to_the_checkpoint_it_resumes_from(tmp_path):
    """A kill between writing last.pt and updating run.json leaves the record a checkpoint behind: the
    replay must follow the checkpoint the run resumes from, not the record (the CI failure of
    test_a_killed_sweep_continues_where_it_was: the continued trial lacked the killed trial's step-2 value)."""
    from dataclasses import replace

    from engine.sweep.objective import PruningReporter, TrialControl
    from engine.training.control import RunControl
    from engine.training.run_store import read_metrics, write_record
    from engine.training.trainer import Trainer
    from tests.engine.sweep_helpers import tiny_glyph_config

    run_dir = tmp_path / "runs" / "trial"
    config = tiny_glyph_config(steps=4)
    config.train.checkpoint_every = 2
    assert Trainer(config, run_dir=run_dir).run().status == "finished"
    store = RunStore(run_dir.parent)
    write_record(replace(store.record(run_dir), steps_done=0))  # the record lags behind last.pt (step 4)
    trial = _ReportedTrial()
    reporter = PruningReporter(trial, TrialControl(RunControl()))
    assert Trainer.resume(run_dir, callbacks=[reporter], extra_steps=2).run().status == "finished"
    validations = [(int(r["step"]), float(r["accuracy"])) for r in read_metrics(run_dir / "metrics.jsonl")
                   if r["kind"] == "validation"]
    assert [step for step, _ in validations] == [2, 4, 6]
    assert trial.reports == validations  # steps 2 and 4 replayed from before the resume, then step 6
