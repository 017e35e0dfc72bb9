"""The race itself: a round-robin over each algorithm's ``Trainer.steps()``, then the table.

:class:`Race` loads the data set once, builds one :class:`~engine.training.trainer.Trainer` per
algorithm (``data=`` the shared data set, ``sampler=`` a reader of the shared batch stream), and
advances them one step each in turn, so every curve grows at the same pace and the wall-clock
comparison sees the same machine conditions. :meth:`Race.steps` is the race as a generator (one
algorithm step per iteration, like ``Trainer.steps()``); :meth:`Race.run` drains it.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from engine.config import RunConfig
from engine.errors import ConfigError, EngineError
from engine.race.config import RaceConfig
from engine.race.results import AlgorithmResult, RaceCallback, RaceCallbackList, RaceInfo, RaceResult, RaceStep
from engine.race.store import RaceFolderWriter, racer_folder
from engine.race.stream import (SHARED_STREAM_NOTE, SharedBatchStream, StreamReader, describe_stream, make_stream,
                                stream_key)
from engine.race.table import evaluate_row, measure_row_memory, race_status, racer_row
from engine.training.callbacks import Callback, StepMetrics, ValidationResult
from engine.training.control import RunControl
from engine.training.step_memory import cuda_step_peak_bytes, state_bytes

if TYPE_CHECKING:
    from engine.training.trainer import StepOutcome, Trainer

@dataclass
class _Racer:
    """One algorithm in the race: its trainer, its generator of steps and its stream reader."""

    name: str
    config: RunConfig
    trainer: Trainer
    reader: StreamReader
    run_dir: Path | None
    steps: Iterator[StepOutcome] | None = None
    done: bool = False
    cuda_peak: int = 0


class _RacerRelay(Callback):
    """Forwards one trainer's reports to the race, tagged with the algorithm."""

    def __init__(self, race: "Race", racer_name: str) -> None:
        self.race = race
        self.name = racer_name

    def on_step(self, metrics: StepMetrics) -> None:
        self.race._on_step(self.name, metrics)

    def on_validation(self, result: ValidationResult) -> None:
        self.race._on_validation(self.name, result)

    def on_log(self, message: str, level: str = "info") -> None:
        self.race.callbacks.on_log(f"{self.name}: {message}", level)

    def on_failed(self, message: str, summary: Any) -> None:
        self.race.callbacks.on_log(f"{self.name} failed: {message}", "error")


class Race:
    """Train 2 to 6 algorithms round-robin on one data set and one episode stream, then compare them.

    ``race_dir``: the race folder to write (None: nothing is written). ``data``: an already loaded
    data set for ``config.data`` (else it is loaded once here). ``run()`` never raises EngineError:
    a race that cannot start ends with status ``failed`` and ``on_failed``.
    """

    def __init__(self, config: RaceConfig, *, race_dir: Path | str | None = None,
                 callbacks: Sequence[RaceCallback] = (), control: RunControl | None = None,
                 data: Any = None) -> None:
        self.config = config
        self.race_dir = Path(race_dir) if race_dir is not None else None
        self.callbacks = RaceCallbackList(list(callbacks))
        self.control = control or RunControl()
        self.data = data
        self.device = "cpu"
        self.racers: list[_Racer] = []
        self.streams: list[SharedBatchStream] = []
        self.result: RaceResult | None = None
        self._folder = RaceFolderWriter(self.race_dir, config) if self.race_dir is not None else None

    # -- public -------------------------------------------------------------------------------------------
    def run(self) -> RaceResult:
        """Race to the end (or until stopped), evaluate, save and report the table."""
        for _ in self.steps():
            pass
        assert self.result is not None
        return self.result

    def steps(self) -> Iterator[RaceStep]:
        """The race of :meth:`run`, one algorithm step per iteration; ``self.result`` is set when it ends.

        Set-up happens in the first iteration, the evaluation, the table and ``on_race_finished``
        (or ``on_failed``) after the last. Stop through the RunControl: closing the generator early
        only releases the race and run folders (which then read as interrupted).
        """
        started = time.perf_counter()
        try:
            self._setup()
            yield from self._round_robin()
            self.result = self._table(started)
            if self._folder is not None:
                self._folder.write_status(self.result.status, self.result)
            self.callbacks.on_race_finished(self.result)
        except EngineError as error:
            self.result = self._fail(str(error), started)
        except Exception as error:  # a bug: report it, keep the race folder honest
            self.callbacks.on_log(traceback.format_exc(), "error")
            self.result = self._fail(f"internal error: {type(error).__name__}: {error}", started)
        finally:
            self._close()

    # -- set-up -------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        from engine.data.dataset import load_data
        from engine.runtime import collective
        from engine.training.checkpoint import resolve_device

        config = self.config.validate()
        if collective.current_world() is not None:
            raise ConfigError("a race runs in one process; start it without torchrun")
        self.device = str(resolve_device(config.train.device))
        if self.data is None:
            self.callbacks.on_log(f"loading data set {config.data.root}")
            self.data = load_data(config.data)
        task = config.task
        # the test episodes must exist before anyone trains (not after the whole race)
        self.data.episodes("test", task.eval_n_way, task.eval_n_shot, task.n_query, config.test_seed)
        if self._folder is not None:
            self._folder.open()  # TrainingError if another process races here
        self._build_racers()
        info = RaceInfo(self.race_dir, config.display_name, config.algorithm_names, config.train.steps,
                        self.device, self._stream_names(), len(self.data.class_ids("train")),
                        len(self.data.class_ids("test")))
        self.callbacks.on_race_start(info)
        self.callbacks.on_log(f"race {config.display_name} on {self.device}: {', '.join(config.algorithm_names)}, "
                              f"{config.train.steps} steps each, round-robin. {SHARED_STREAM_NOTE}")

    def _build_racers(self) -> None:
        from engine.training.trainer import Trainer

        streams: dict[tuple[str, int], SharedBatchStream] = {}
        for algorithm in self.config.algorithms:
            run_config = self.config.run_config(algorithm)
            key = stream_key(run_config)
            if key not in streams:
                streams[key] = make_stream(run_config, self.data)
            run_dir = self.race_dir / racer_folder(algorithm.name) if self.race_dir is not None else None
            reader = streams[key].reader()
            trainer = Trainer(run_config, run_dir=run_dir, callbacks=[_RacerRelay(self, algorithm.name)],
                              control=self.control, data=self.data, sampler=reader)
            self.racers.append(_Racer(algorithm.name, run_config, trainer, reader, run_dir))
        self.streams = list(streams.values())

    def _stream_names(self) -> dict[str, str]:
        return {racer.name: describe_stream(racer.config, [r.name for r in self.racers
                                                           if r.reader.stream is racer.reader.stream
                                                           and r is not racer])
                for racer in self.racers}

    # -- training -----------------------------------------------------------------------------------------
    def _round_robin(self) -> Iterator[RaceStep]:
        """One step of each racer in turn until every racer has finished, stopped or failed."""
        for racer in self.racers:
            racer.steps = racer.trainer.steps()
        round_index = 0
        active = list(self.racers)
        while active:
            round_index += 1
            for stream in self.streams:
                if any(r.reader.stream is stream for r in active):
                    stream.prefetch(round_index)
            for racer in list(active):
                outcome = self._advance(racer)
                if outcome is None:
                    racer.done = True
                    racer.reader.close()
                    active.remove(racer)
                    summary = racer.trainer.summary
                    self.callbacks.on_algorithm_trained(racer.name, summary.status if summary else "failed")
                else:
                    yield RaceStep(racer.name, outcome.metrics, outcome.train_seconds, racer.trainer.train_seconds)

    def _advance(self, racer: _Racer) -> StepOutcome | None:
        """Run one step of ``racer`` (with its validation/checkpoint): its StepOutcome, or None when its
        run has ended. On CUDA the step's peak memory above the other racers' is recorded."""
        assert racer.steps is not None
        steps = racer.steps
        if not self.device.startswith("cuda"):
            return next(steps, None)
        algorithm = racer.trainer.algorithm
        own = state_bytes(algorithm, "cuda") if algorithm is not None else 0
        outcome, peak = cuda_step_peak_bytes(lambda: next(steps, None), self.device, own)
        racer.cuda_peak = max(racer.cuda_peak, peak)
        return outcome

    def _on_step(self, name: str, metrics: StepMetrics) -> None:
        seconds = self._racer(name).trainer.train_seconds
        if self._folder is not None:
            self._folder.write_step(name, metrics, seconds)
        self.callbacks.on_step(name, metrics, seconds)

    def _on_validation(self, name: str, result: ValidationResult) -> None:
        seconds = self._racer(name).trainer.train_seconds
        if self._folder is not None:
            self._folder.write_validation(name, result, seconds)
        self.callbacks.on_validation(name, result, seconds)

    def _racer(self, name: str) -> _Racer:
        return next(r for r in self.racers if r.name == name)

    # -- the table ----------------------------------------------------------------------------------------
    def _table(self, started: float) -> RaceResult:
        """Evaluate and measure every racer (:mod:`engine.race.table`), reporting each row."""
        stopped = self.control.stop_requested
        rows = []
        for racer in self.racers:
            row = self._row(racer)
            if row.status == "finished" and not stopped:
                self.callbacks.on_log(f"evaluating {racer.name} on {self.config.test_episodes} test episodes "
                                      f"(seed {self.config.test_seed})")
                evaluate_row(row, racer.trainer.algorithm, self.data, self.config,
                             should_stop=lambda: self.control.stop_requested,
                             progress=lambda done, total, name=racer.name:
                             self.callbacks.on_evaluation_progress(name, done, total))
            if row.steps_done > 0 and row.status != "failed" and racer.trainer.algorithm is not None:
                measure_row_memory(row, racer.trainer.algorithm, self.device, racer.cuda_peak,
                                   lambda: self._first_batch(racer.config))
            rows.append(row)
            self.callbacks.on_algorithm_finished(racer.name, row)
        status, message = race_status(rows, stopped or self.control.stop_requested)
        return self._result(status, rows, message, started)

    def _row(self, racer: _Racer) -> AlgorithmResult:
        return racer_row(racer.name, racer.config, racer.trainer, racer.run_dir)

    def _result(self, status: str, rows: list[AlgorithmResult], message: str, started: float) -> RaceResult:
        return RaceResult(status, rows, time.perf_counter() - started, self.device, self.config.test_episodes,
                          self.config.test_seed, message, self.race_dir)

    def _first_batch(self, config: RunConfig) -> Any:
        """A training batch like the racer's first (drawn from a fresh sampler with the same seed)."""
        stream = make_stream(config, self.data)
        stream.prefetch(1)
        return stream.read(1)[0]

    # -- ending -------------------------------------------------------------------------------------------
    def _fail(self, message: str, started: float) -> RaceResult:
        result = self._result("failed", [self._row(racer) for racer in self.racers], message, started)
        if self._folder is not None and self._folder.is_open:
            try:
                self._folder.write_status("failed", result)
            except OSError:
                pass
        elif self._folder is not None:
            self._folder.remove_if_empty()  # a race that failed before writing anything leaves no empty folder
        self.callbacks.on_failed(message)
        return result

    def _close(self) -> None:
        for racer in self.racers:
            if racer.steps is not None and not racer.done:
                racer.steps.close()  # releases the run folder of a racer cut short by an error
        if self._folder is not None:
            self._folder.close()
