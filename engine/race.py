"""An algorithm race: 2 to 4 algorithms trained side by side on one data set and one episode stream.

``Race(RaceConfig(...), race_dir=...).run()`` loads the data set once and builds one
:class:`~engine.training.trainer.Trainer` per algorithm (``data=`` the shared data set), then
trains them round-robin, one step each in turn, so every curve grows at the same pace and the
wall-clock comparison sees the same machine conditions. At the end every algorithm is evaluated
on the very same seeded test episodes (:func:`engine.evaluation.evaluate`, ``test_seed``), and
the result table holds test accuracy with its 95% CI, training time and peak memory.

One stream of training batches: the episodic algorithms (ProtoNet, MAML, Reptile, Matching
Networks) draw from one :class:`SharedBatchStream` of seeded episodes, so step ``t`` of each of
them trains on exactly the same tasks (the same tensors). The class-batch algorithms (Baseline,
Baseline++, SimpleShot: ``batch_kind == "classes"``) pre-train on plain class batches instead;
they share a seeded class-batch stream among themselves (one per batch size). Each stream is
the one a solo run with the same config would draw.

Time: each algorithm's own compute time, the wall-clock seconds of its training steps (batch to
the device, forward, backward, update; without validation, checkpoints, pauses or the other
algorithms' steps), recorded per step. Peak memory: on CUDA ``torch.cuda.max_memory_allocated``,
reset before each of the algorithm's steps, minus what the other algorithms hold; on the CPU
(which has no allocator statistics) its weights, gradients and optimiser state plus the input
batch plus the peak of live tensor bytes during one training step profiled with
``torch.profiler`` memory events after the race. ``memory_method`` in each row says which.

A race folder (``<runs root>/races/<name>/``) holds ``race.json`` (config, status and result
table, written atomically), ``curves.jsonl`` (one row per algorithm step and validation, with the
own-time seconds) and one normal run folder per algorithm, which can be opened, evaluated or
resumed like any run. :func:`load_race` reopens it. Reports go through :class:`RaceCallback`;
stop and pause through a :class:`~engine.training.control.RunControl`. Importing this module does not
import torch (the CLI and the studio import it at start-up).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from engine.config import (ALGORITHM_CONFIGS, AlgorithmConfig, DataConfig, ModelConfig, RunConfig, TaskConfig,
                           TrainConfig, check_field, config_section, describe_fields, param, validate)
from engine.errors import ConfigError, EngineError
from engine.io import atomic_write_json
from engine.training.callbacks import Callback, StepMetrics, ValidationResult
from engine.training.control import RunControl

if TYPE_CHECKING:
    from torch import Tensor

FORMAT = "meta-studio-race"
VERSION = 1
RACE_FILE = "race.json"
CURVES_FILE = "curves.jsonl"
RACES_FOLDER = "races"
MIN_ALGORITHMS, MAX_ALGORITHMS = 2, 4
MIB = 1024 * 1024

CUDA_MEMORY_METHOD = ("CUDA: torch.cuda.max_memory_allocated during its steps (reset before each of them), "
                      "minus what the other algorithms held")
CPU_MEMORY_METHOD = ("CPU: its weights, gradients and optimiser state + the input batch + the peak of live "
                     "tensor bytes during one training step profiled with torch.profiler memory events")
SHARED_STREAM_NOTE = ("Episodic algorithms train on one shared stream of seeded episodes (step t: the same "
                      "tasks for each); Baseline, Baseline++ and SimpleShot pre-train on their own seeded "
                      "class-batch stream.")


# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RaceConfig:
    """The shared run settings (data, task, model, train) plus the 2 to 4 algorithms that race."""

    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    algorithms: list[AlgorithmConfig] = field(default_factory=list)
    test_episodes: int = param(600, "Seeded test episodes every algorithm is evaluated on at the end (the same "
                               "episodes for each).", min=1, max=100_000)
    test_seed: int = param(0, "Seed of the test episodes.", min=0)
    name: str = ""

    @classmethod
    def from_run_config(cls, config: RunConfig, algorithms: Sequence[str | AlgorithmConfig], *,
                        test_episodes: int = 600, test_seed: int = 0, name: str = "") -> "RaceConfig":
        """A race of ``algorithms`` (names take their registry defaults) with ``config``'s shared sections."""
        return cls(data=copy.deepcopy(config.data), task=copy.deepcopy(config.task),
                   model=copy.deepcopy(config.model), train=copy.deepcopy(config.train),
                   algorithms=algorithm_configs(algorithms), test_episodes=test_episodes, test_seed=test_seed,
                   name=name)

    @property
    def algorithm_names(self) -> list[str]:
        return [a.name for a in self.algorithms]

    @property
    def display_name(self) -> str:
        return self.name or default_race_name(self.algorithm_names)

    def run_config(self, algorithm: AlgorithmConfig) -> RunConfig:
        """The RunConfig of one racer: the shared sections (copied) and its algorithm section."""
        return RunConfig(data=copy.deepcopy(self.data), task=copy.deepcopy(self.task),
                         model=copy.deepcopy(self.model), algorithm=copy.deepcopy(algorithm),
                         train=copy.deepcopy(self.train), name=f"{self.display_name}: {algorithm.name}")

    def validate(self) -> "RaceConfig":
        """Check the algorithm list and every racer's config; ConfigError naming the field."""
        n = len(self.algorithms)
        if not MIN_ALGORITHMS <= n <= MAX_ALGORITHMS:
            raise ConfigError(f"algorithms: a race needs {MIN_ALGORITHMS} to {MAX_ALGORITHMS} algorithms (got {n})")
        seen: set[str] = set()
        for i, algorithm in enumerate(self.algorithms):
            if not isinstance(algorithm, AlgorithmConfig) or algorithm.name not in ALGORITHM_CONFIGS:
                shown = getattr(algorithm, "name", algorithm)
                raise ConfigError(f"algorithms[{i}].name: unknown algorithm {shown!r}; choose one of "
                                  f"{', '.join(ALGORITHM_CONFIGS)}")
            if algorithm.name in seen:
                raise ConfigError(f"algorithms[{i}].name: {algorithm.name!r} is in the race twice (each algorithm "
                                  "races once)")
            seen.add(algorithm.name)
        for spec in describe_fields(RaceConfig, "race"):
            if spec.name in ("test_episodes", "test_seed"):
                message = check_field(spec, getattr(self, spec.name))
                if message:
                    raise ConfigError(message)
        for i, algorithm in enumerate(self.algorithms):
            try:
                validate(self.run_config(algorithm))
            except ConfigError as error:
                raise ConfigError(f"algorithms[{i}] ({algorithm.name}): {error}") from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data": dataclasses.asdict(self.data),
            "task": dataclasses.asdict(self.task),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "algorithms": [{"name": a.name, **dataclasses.asdict(a)} for a in self.algorithms],
            "test_episodes": self.test_episodes,
            "test_seed": self.test_seed,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> "RaceConfig":
        """Build and validate a race config from a dict (parsed JSON); unknown keys are errors."""
        if not isinstance(raw, dict):
            raise ConfigError("race config must be a JSON object")
        known = {"name", "data", "task", "model", "train", "algorithms", "test_episodes", "test_seed"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown race config section(s): {', '.join(sorted(unknown))}")
        algorithms_raw = raw.get("algorithms", [])
        if not isinstance(algorithms_raw, list):
            raise ConfigError("algorithms: expected a list of algorithm objects")
        config = cls(
            name=str(raw.get("name", "")),
            data=config_section(DataConfig, raw.get("data"), "data"),
            task=config_section(TaskConfig, raw.get("task"), "task"),
            model=config_section(ModelConfig, raw.get("model"), "model"),
            train=config_section(TrainConfig, raw.get("train"), "train"),
            algorithms=[_algorithm_from_dict(item, i) for i, item in enumerate(algorithms_raw)],
            test_episodes=_whole_number(raw.get("test_episodes", 600), "test_episodes"),
            test_seed=_whole_number(raw.get("test_seed", 0), "test_seed"),
        )
        return config.validate()


def default_race_name(algorithms: Sequence[str]) -> str:
    """The name of a race that was not given one: "race protonet vs maml"."""
    return "race " + " vs ".join(algorithms)


def _algorithm_from_dict(raw: Any, index: int) -> AlgorithmConfig:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"algorithms[{index}]: expected an object with a name")
    values = dict(raw)
    name = values.pop("name", None)
    if name not in ALGORITHM_CONFIGS:
        raise ConfigError(f"algorithms[{index}].name: unknown algorithm {name!r}; choose one of "
                          f"{', '.join(ALGORITHM_CONFIGS)}")
    return config_section(ALGORITHM_CONFIGS[name], values, f"algorithms[{index}]")


def _whole_number(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}: expected int, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{key}: expected int, got {value!r}") from None
    if not number.is_integer():
        raise ConfigError(f"{key}: expected int, got {value!r}")
    return int(number)


def algorithm_configs(names: Sequence[str | AlgorithmConfig]) -> list[AlgorithmConfig]:
    """Registry-default configs for algorithm names (configs are kept); ConfigError naming an unknown one."""
    configs = []
    for i, item in enumerate(names):
        if isinstance(item, AlgorithmConfig):
            configs.append(item)
            continue
        name = str(item).strip()
        if name not in ALGORITHM_CONFIGS:
            raise ConfigError(f"algorithms[{i}].name: unknown algorithm {name!r}; choose one of "
                              f"{', '.join(ALGORITHM_CONFIGS)}")
        configs.append(ALGORITHM_CONFIGS[name]())
    return configs


def batch_kind(algorithm: str) -> str:
    """"episodes" or "classes" (pre-training baselines) for an algorithm name (the class declares it)."""
    from engine.algorithms.registry import algorithm_class

    return algorithm_class(algorithm).batch_kind


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RaceInfo:
    """Sent once when the race starts (data loaded, run folders open)."""

    race_dir: Path | None
    name: str
    algorithms: list[str]
    total_steps: int
    device: str
    streams: dict[str, str]   # algorithm -> which training-batch stream it reads
    n_train_classes: int
    n_test_classes: int


@dataclass
class AlgorithmResult:
    """One row of the race table."""

    algorithm: str
    title: str
    status: str                       # finished | stopped | failed
    steps_done: int
    total_steps: int
    batch_kind: str                   # episodes | classes
    train_seconds: float              # own compute time of its training steps
    test_accuracy: float | None = None
    test_ci95: float | None = None
    test_episodes: int = 0
    best_val_accuracy: float | None = None
    peak_memory_bytes: int | None = None
    memory_method: str = ""
    run_dir: str | None = None        # the algorithm's run folder, relative to the race folder
    message: str = ""

    @property
    def peak_memory_mib(self) -> float | None:
        return None if self.peak_memory_bytes is None else self.peak_memory_bytes / MIB

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "AlgorithmResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class RaceResult:
    """The race table and how the race ended (``status``: finished, stopped or failed)."""

    status: str
    rows: list[AlgorithmResult]
    duration_s: float
    device: str
    test_episodes: int
    test_seed: int
    message: str = ""
    race_dir: Path | None = None

    def row(self, algorithm: str) -> AlgorithmResult:
        return next(r for r in self.rows if r.algorithm == algorithm)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "duration_s": self.duration_s, "device": self.device,
                "test_episodes": self.test_episodes, "test_seed": self.test_seed, "message": self.message,
                "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], race_dir: Path | None = None) -> "RaceResult":
        return cls(status=str(raw["status"]), rows=[AlgorithmResult.from_dict(r) for r in raw["rows"]],
                   duration_s=float(raw["duration_s"]), device=str(raw["device"]),
                   test_episodes=int(raw["test_episodes"]), test_seed=int(raw["test_seed"]),
                   message=str(raw.get("message", "")), race_dir=race_dir)


class RaceCallback:
    """Typed, empty hooks through which a race reports; override what you need.

    ``seconds`` is the algorithm's own compute time so far (the x axis of a time plot).
    """

    def on_race_start(self, info: RaceInfo) -> None: ...

    def on_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None: ...

    def on_validation(self, algorithm: str, result: ValidationResult, seconds: float) -> None: ...

    def on_log(self, message: str, level: str = "info") -> None: ...

    def on_algorithm_finished(self, algorithm: str, row: AlgorithmResult) -> None: ...

    def on_race_finished(self, result: RaceResult) -> None: ...

    def on_failed(self, message: str) -> None: ...


class RaceCallbackList(RaceCallback):
    """Fans each hook out to several race callbacks in order."""

    def __init__(self, callbacks: Sequence[RaceCallback]) -> None:
        self.callbacks = list(callbacks)

    def on_race_start(self, info: RaceInfo) -> None:
        for cb in self.callbacks:
            cb.on_race_start(info)

    def on_step(self, algorithm: str, metrics: StepMetrics, seconds: float) -> None:
        for cb in self.callbacks:
            cb.on_step(algorithm, metrics, seconds)

    def on_validation(self, algorithm: str, result: ValidationResult, seconds: float) -> None:
        for cb in self.callbacks:
            cb.on_validation(algorithm, result, seconds)

    def on_log(self, message: str, level: str = "info") -> None:
        for cb in self.callbacks:
            cb.on_log(message, level)

    def on_algorithm_finished(self, algorithm: str, row: AlgorithmResult) -> None:
        for cb in self.callbacks:
            cb.on_algorithm_finished(algorithm, row)

    def on_race_finished(self, result: RaceResult) -> None:
        for cb in self.callbacks:
            cb.on_race_finished(result)

    def on_failed(self, message: str) -> None:
        for cb in self.callbacks:
            cb.on_failed(message)


# ---------------------------------------------------------------------------------------------------------
# One stream of training batches, read by several trainers in lock step
# ---------------------------------------------------------------------------------------------------------
class SharedBatchStream:
    """One seeded sampler whose batches several trainers read: every reader's i-th draw is the
    stream's i-th batch (the very same tensors). A batch is kept until every open reader has read it.

    ``meta_batch_size``: episodes per batch (``sample_batch``), or None for a class-batch sampler
    (``sample``).
    """

    def __init__(self, sampler: Any, meta_batch_size: int | None) -> None:
        self.sampler = sampler
        self.meta_batch_size = meta_batch_size
        self.n_drawn = 0
        self._batches: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._initial_state = sampler.state_dict()
        self._readers: list[StreamReader] = []

    def reader(self) -> "StreamReader":
        reader = StreamReader(self, self._initial_state)
        self._readers.append(reader)
        return reader

    def prefetch(self, index: int) -> None:
        """Draw batches up to number ``index`` now (so no reader's timed step pays for drawing)."""
        while self.n_drawn < index:
            batch = self.sampler.sample_batch(self.meta_batch_size) if self.meta_batch_size else self.sampler.sample()
            self.n_drawn += 1
            self._batches[self.n_drawn] = (batch, self.sampler.state_dict())

    def read(self, index: int) -> tuple[Any, dict[str, Any]]:
        """Batch number ``index`` (1-based) and the sampler state right after drawing it."""
        self.prefetch(index)
        entry = self._batches[index]
        self._forget_read()
        return entry

    def detach(self, reader: "StreamReader") -> None:
        if reader in self._readers:
            self._readers.remove(reader)
        self._forget_read()

    @property
    def n_kept(self) -> int:
        return len(self._batches)

    def _forget_read(self) -> None:
        lowest = min((r.position for r in self._readers), default=self.n_drawn)
        for index in [i for i in self._batches if i <= lowest]:
            del self._batches[index]


class StreamReader:
    """One trainer's view of a :class:`SharedBatchStream` (a drop-in for the trainer's sampler)."""

    def __init__(self, stream: SharedBatchStream, state: dict[str, Any]) -> None:
        self.stream = stream
        self.position = 0
        self._state = state

    def sample_batch(self, n: int) -> list[Any]:
        if n != self.stream.meta_batch_size:
            raise ConfigError(f"task.meta_batch_size: the shared stream draws {self.stream.meta_batch_size} "
                              f"episodes per step, not {n}")
        return self._next()

    def sample(self) -> Any:
        return self._next()

    def _next(self) -> Any:
        self.position += 1
        batch, self._state = self.stream.read(self.position)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The sampler state after this reader's last batch (saved in checkpoints, so a racer's run
        folder resumes alone with exactly the batches it would have drawn next)."""
        return self._state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise EngineError("a race's shared batch stream cannot be restored; resume the algorithm's run folder "
                          "on its own instead")

    def close(self) -> None:
        self.stream.detach(self)


# ---------------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------------
def state_bytes(algorithm: Any, device_type: str) -> int:
    """Bytes of the algorithm's weights, buffers, gradients and optimiser state on ``device_type``."""
    import torch

    seen: set[int] = set()
    total = 0

    def add(tensor: Any) -> None:
        nonlocal total
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != device_type:
            return
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key and key not in seen:
            seen.add(key)
            total += storage.nbytes()

    for module in algorithm.modules().values():
        for parameter in module.parameters():
            add(parameter)
            add(parameter.grad)
        for buffer in module.buffers():
            add(buffer)
    for optimizer in algorithm.optimizers().values():
        for state in optimizer.state.values():
            for value in state.values():
                add(value)
    return total


def batch_bytes(batch: Any) -> int:
    """Bytes of the image and label tensors of a training batch (list of Tasks or a ClassBatch)."""
    import torch

    tensors: list[Tensor] = []
    for item in batch if isinstance(batch, list) else [batch]:
        tensors += [v for v in vars(item).values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide the profiler's native start/stop chatter on file descriptor 2 (restored afterwards)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profiled_step_peak_bytes(algorithm: Any, batch: Any) -> int | None:
    """Peak of live CPU tensor bytes allocated during one ``meta_train_step`` on ``batch``
    (torch.profiler memory events, summed in time order), or None when the profiler gives none."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    algorithm.train(True)
    prepared = algorithm.prepare_batch(batch)
    with _native_stderr_silenced():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            algorithm.meta_train_step(prepared)
    try:
        events = [e for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    except AttributeError:  # a PyTorch without the raw event list
        return None
    if not events:
        return None
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


# ---------------------------------------------------------------------------------------------------------
# The race
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Racer:
    """One algorithm in the race: its trainer, its generator of steps and its stream reader."""

    name: str
    config: RunConfig
    trainer: Any
    reader: StreamReader
    run_dir: Path | None
    steps: Iterator[Any] | None = None
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
    """Train 2 to 4 algorithms round-robin on one data set and one episode stream, then compare them.

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
        self._curves: Any = None
        self._lock: Any = None
        self._created = ""

    # -- public -------------------------------------------------------------------------------------------
    def run(self) -> RaceResult:
        """Race to the end (or until stopped), evaluate, save and report the table."""
        started = time.perf_counter()
        try:
            self._setup()
            self._train_round_robin()
            result = self._results(started)
            self._write_race_file(result.status, result)
            self.callbacks.on_race_finished(result)
            return result
        except EngineError as error:
            return self._fail(str(error), started)
        except Exception as error:  # a bug: report it, keep the race folder honest
            self.callbacks.on_log(traceback.format_exc(), "error")
            return self._fail(f"internal error: {type(error).__name__}: {error}", started)
        finally:
            for racer in self.racers:
                if racer.steps is not None and not racer.done:
                    racer.steps.close()  # releases the run folder of a racer cut short by an error
            if self._curves is not None:
                self._curves.close()
            if self._lock is not None:
                self._lock.release()

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
        self._open_race_folder()
        self._build_racers()
        info = RaceInfo(self.race_dir, config.display_name, config.algorithm_names, config.train.steps,
                        self.device, self._stream_names(), len(self.data.class_ids("train")),
                        len(self.data.class_ids("test")))
        self.callbacks.on_race_start(info)
        self.callbacks.on_log(f"race {config.display_name} on {self.device}: {', '.join(config.algorithm_names)}, "
                              f"{config.train.steps} steps each, round-robin. {SHARED_STREAM_NOTE}")

    def _open_race_folder(self) -> None:
        from engine.training import run_store as rs

        if self.race_dir is None:
            return
        self.race_dir.mkdir(parents=True, exist_ok=True)
        self._lock = rs.RunLock(self.race_dir).acquire()  # TrainingError if another process races here
        self._created = rs.now_iso()
        self._write_race_file("running", None)
        self._curves = rs.MetricsWriter(self.race_dir / CURVES_FILE, keep_up_to_step=0)

    def _build_racers(self) -> None:
        from engine.training.trainer import Trainer

        streams: dict[tuple[str, int], SharedBatchStream] = {}
        for algorithm in self.config.algorithms:
            run_config = self.config.run_config(algorithm)
            stream = streams.get(self._stream_key(run_config))
            if stream is None:
                stream = streams[self._stream_key(run_config)] = self._make_stream(run_config)
            run_dir = self.race_dir / racer_folder(algorithm.name) if self.race_dir is not None else None
            reader = stream.reader()
            trainer = Trainer(run_config, run_dir=run_dir, callbacks=[_RacerRelay(self, algorithm.name)],
                              control=self.control, data=self.data, sampler=reader)
            self.racers.append(_Racer(algorithm.name, run_config, trainer, reader, run_dir))
        self.streams = list(streams.values())

    @staticmethod
    def _stream_key(config: RunConfig) -> tuple[str, int]:
        from engine.training import sampling

        kind = sampling.batch_kind(config)
        return (kind, sampling.training_batch_size(config) if kind == "classes" else 0)

    def _make_stream(self, config: RunConfig) -> SharedBatchStream:
        """The very sampler a solo run of ``config`` would build (:func:`~engine.training.sampling.build_training_sampler`)."""
        from engine.training import sampling

        sampler = sampling.build_training_sampler(config, self.data)
        episodic = sampling.batch_kind(config) == "episodes"
        return SharedBatchStream(sampler, config.task.meta_batch_size if episodic else None)

    def _stream_names(self) -> dict[str, str]:
        names = {}
        for racer in self.racers:
            kind, batch_size = self._stream_key(racer.config)
            sharing = [r.name for r in self.racers if r.reader.stream is racer.reader.stream and r is not racer]
            what = "shared seeded episodes" if kind == "episodes" else f"seeded class batches of {batch_size}"
            names[racer.name] = what + (f" (with {', '.join(sharing)})" if sharing else " (its own)")
        return names

    # -- training -----------------------------------------------------------------------------------------
    def _train_round_robin(self) -> None:
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
                if not self._advance(racer):
                    racer.done = True
                    racer.reader.close()
                    active.remove(racer)

    def _advance(self, racer: _Racer) -> bool:
        """Run one step of ``racer`` (with its validation/checkpoint); False when its run has ended."""
        import torch

        measure = self.device.startswith("cuda")
        if measure:
            device = torch.device(self.device)
            torch.cuda.synchronize(device)
            others = torch.cuda.memory_allocated(device) - self._own_cuda_bytes(racer)
            torch.cuda.reset_peak_memory_stats(device)
        try:
            next(racer.steps)
            ended = False
        except StopIteration:
            ended = True
        if measure:
            racer.cuda_peak = max(racer.cuda_peak, torch.cuda.max_memory_allocated(device) - others)
        return not ended

    @staticmethod
    def _own_cuda_bytes(racer: _Racer) -> int:
        algorithm = racer.trainer.algorithm
        return state_bytes(algorithm, "cuda") if algorithm is not None else 0

    def _on_step(self, name: str, metrics: StepMetrics) -> None:
        seconds = self._racer(name).trainer.train_seconds
        if self._curves is not None:
            self._curves.write({"kind": "step", "algorithm": name, "step": metrics.step, "loss": metrics.loss,
                                "accuracy": metrics.accuracy, "seconds": round(seconds, 6)})
        self.callbacks.on_step(name, metrics, seconds)

    def _on_validation(self, name: str, result: ValidationResult) -> None:
        seconds = self._racer(name).trainer.train_seconds
        if self._curves is not None:
            self._curves.write({"kind": "validation", "algorithm": name, "step": result.step,
                                "accuracy": result.accuracy, "ci95": result.ci95, "episodes": result.n_episodes,
                                "seconds": round(seconds, 6)})
        self.callbacks.on_validation(name, result, seconds)

    def _racer(self, name: str) -> _Racer:
        return next(r for r in self.racers if r.name == name)

    # -- the table ----------------------------------------------------------------------------------------
    def _results(self, started: float) -> RaceResult:
        stopped = self.control.stop_requested
        rows = []
        for racer in self.racers:
            row = self._row(racer)
            if row.status == "finished" and not stopped:
                self._evaluate(racer, row)
            if row.steps_done > 0 and row.status != "failed":
                self._measure_memory(racer, row)
            rows.append(row)
            self.callbacks.on_algorithm_finished(racer.name, row)
        if stopped or self.control.stop_requested:
            status = "stopped"
        elif all(r.status == "failed" for r in rows):
            status = "failed"
        else:
            status = "finished"
        failed = [r.algorithm for r in rows if r.status == "failed"]
        message = f"failed: {', '.join(failed)}" if failed else ""
        if status == "stopped":
            message = "stopped before the end: no test evaluation" + (f"; {message}" if message else "")
        return RaceResult(status, rows, time.perf_counter() - started, self.device, self.config.test_episodes,
                          self.config.test_seed, message, self.race_dir)

    def _row(self, racer: _Racer) -> AlgorithmResult:
        summary = racer.trainer.summary
        config = racer.config
        return AlgorithmResult(
            algorithm=racer.name, title=config.algorithm.title or racer.name,
            status=summary.status if summary is not None else "failed",
            steps_done=summary.steps_done if summary is not None else 0, total_steps=config.train.steps,
            batch_kind=batch_kind(racer.name), train_seconds=racer.trainer.train_seconds,
            best_val_accuracy=summary.best_val_accuracy if summary is not None else None,
            run_dir=racer.run_dir.name if racer.run_dir is not None and racer.run_dir.is_dir() else None,
            message=summary.message if summary is not None else "")

    def _evaluate(self, racer: _Racer, row: AlgorithmResult) -> None:
        """Test accuracy of the final weights on the race's seeded test episodes (the same for everyone)."""
        from engine.evaluation import evaluate

        task = self.config.task
        self.callbacks.on_log(f"evaluating {racer.name} on {self.config.test_episodes} test episodes "
                              f"(seed {self.config.test_seed})")
        try:
            result = evaluate(racer.trainer.algorithm, self.data, part="test", episodes=self.config.test_episodes,
                              n_way=task.eval_n_way, n_shot=task.eval_n_shot, n_query=task.n_query,
                              seed=self.config.test_seed, should_stop=lambda: self.control.stop_requested)
        except EngineError as error:
            row.message = f"test evaluation failed: {error}"
            return
        if result.n_episodes:
            row.test_accuracy, row.test_ci95, row.test_episodes = result.accuracy, result.ci95, result.n_episodes

    def _measure_memory(self, racer: _Racer, row: AlgorithmResult) -> None:
        algorithm = racer.trainer.algorithm
        if algorithm is None:
            return
        if self.device.startswith("cuda"):
            row.peak_memory_bytes, row.memory_method = int(racer.cuda_peak), CUDA_MEMORY_METHOD
            return
        if self.device != "cpu":
            row.memory_method = f"not measured on {self.device}"
            return
        batch = self._first_batch(racer.config)
        try:
            peak = profiled_step_peak_bytes(algorithm, batch)
        except (RuntimeError, EngineError) as error:
            row.memory_method = f"not measured (the profiled step failed: {error})"
            return
        if peak is None:
            row.memory_method = "not measured (this PyTorch's profiler reports no memory events)"
            return
        row.peak_memory_bytes = state_bytes(algorithm, "cpu") + batch_bytes(batch) + peak
        row.memory_method = CPU_MEMORY_METHOD

    def _first_batch(self, config: RunConfig) -> Any:
        """A training batch like the racer's first (drawn from a fresh sampler with the same seed)."""
        stream = self._make_stream(config)
        stream.prefetch(1)
        return stream.read(1)[0]

    # -- ending -------------------------------------------------------------------------------------------
    def _fail(self, message: str, started: float) -> RaceResult:
        rows = [self._row(racer) for racer in self.racers]
        result = RaceResult("failed", rows, time.perf_counter() - started, self.device, self.config.test_episodes,
                            self.config.test_seed, message, self.race_dir)
        if self._lock is not None:
            try:
                self._write_race_file("failed", result)
            except OSError:
                pass
        elif self.race_dir is not None:
            try:
                self.race_dir.rmdir()  # a race that failed before writing anything leaves no empty folder
            except OSError:
                pass
        self.callbacks.on_failed(message)
        return result

    def _write_race_file(self, status: str, result: RaceResult | None) -> None:
        if self.race_dir is None:
            return
        atomic_write_json(self.race_dir / RACE_FILE, {
            "format": FORMAT, "version": VERSION, "name": self.config.display_name, "created": self._created,
            "status": status, "algorithms": self.config.algorithm_names, "config": self.config.to_dict(),
            "result": result.to_dict() if result is not None else None,
        })


def racer_folder(algorithm: str) -> str:
    """The run folder name of an algorithm inside a race folder ("baseline++" -> "baseline-pp")."""
    return algorithm.replace("++", "-pp").replace("+", "-p")


# ---------------------------------------------------------------------------------------------------------
# Race folders
# ---------------------------------------------------------------------------------------------------------
def races_root(runs_root: Path | str) -> Path:
    """Where races live under a runs root (``<runs>/races``)."""
    return Path(runs_root) / RACES_FOLDER


def new_race_dir(runs_root: Path | str, name: str) -> Path:
    """A fresh, unique race folder under ``<runs_root>/races``."""
    from engine.training.run_store import RunStore

    return RunStore(races_root(runs_root)).new_run_dir(name)


@dataclass
class RaceCurve:
    """One algorithm's curves as saved: per-step values and the validation points."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    val_ci95: list[float] = field(default_factory=list)
    val_seconds: list[float] = field(default_factory=list)


@dataclass
class SavedRace:
    """A race folder as read back by :func:`load_race`."""

    folder: Path
    name: str
    created: str
    status: str                      # finished | stopped | failed | running | interrupted
    config: RaceConfig
    result: RaceResult | None
    curves: dict[str, RaceCurve]

    def run_dir(self, algorithm: str) -> Path:
        """The algorithm's run folder (open it with RunStore(folder).record(...), evaluate its checkpoints)."""
        return self.folder / racer_folder(algorithm)


@dataclass(frozen=True)
class RaceEntry:
    """One line of the list of saved races (``status`` "damaged" when race.json cannot be read)."""

    folder: Path
    name: str
    created: str
    status: str
    algorithms: list[str]


def _read_race_json(folder: Path) -> dict[str, Any]:
    path = folder / RACE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"{path}: file not found (not a race folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EngineError(f"{path}: damaged race file ({error})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise EngineError(f"{path}: damaged race file (not a {FORMAT} file)")
    if not isinstance(raw.get("version"), int) or raw["version"] > VERSION:
        raise EngineError(f"{path}: race file version {raw.get('version')!r} is not supported (newest {VERSION})")
    return raw


def _status(folder: Path, status: str) -> str:
    from engine.training.run_store import run_is_locked

    if status == "running" and not run_is_locked(folder):
        return "interrupted"
    return status


def load_race(folder: Path | str) -> SavedRace:
    """Read a race folder: config, status, result table and curves; EngineError naming a damaged file."""
    from engine.training.run_store import read_metrics

    folder = Path(folder)
    raw = _read_race_json(folder)
    path = folder / RACE_FILE
    try:
        config = RaceConfig.from_dict(raw.get("config"))
    except ConfigError as error:
        raise EngineError(f"{path}: damaged race file (config: {error})") from None
    try:
        result = RaceResult.from_dict(raw["result"], folder) if raw.get("result") is not None else None
    except (KeyError, TypeError, ValueError) as error:
        raise EngineError(f"{path}: damaged race file (result: {type(error).__name__} {error})") from None
    curves = {name: RaceCurve() for name in config.algorithm_names}
    for row in read_metrics(folder / CURVES_FILE):
        _add_curve_row(curves, row)
    return SavedRace(folder, str(raw.get("name") or config.display_name), str(raw.get("created", "")),
                     _status(folder, str(raw.get("status", ""))), config, result, curves)


def _add_curve_row(curves: dict[str, RaceCurve], row: dict[str, Any]) -> None:
    curve = curves.get(row.get("algorithm"))
    if curve is None:
        return
    try:
        if row.get("kind") == "step":
            values = (int(row["step"]), float(row["loss"]), float(row["accuracy"]), float(row["seconds"]))
            for target, value in zip((curve.step, curve.loss, curve.accuracy, curve.seconds), values):
                target.append(value)
        elif row.get("kind") == "validation":
            values = (int(row["step"]), float(row["accuracy"]), float(row["ci95"]), float(row["seconds"]))
            for target, value in zip((curve.val_step, curve.val_accuracy, curve.val_ci95, curve.val_seconds),
                                     values):
                target.append(value)
    except (KeyError, TypeError, ValueError):
        return  # a malformed row is skipped like a torn one


def list_races(runs_root: Path | str) -> list[RaceEntry]:
    """The races under ``<runs_root>/races``, newest first; damaged ones are listed as "damaged"."""
    root = races_root(runs_root)
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    entries = []
    for folder in folders:
        if not (folder / RACE_FILE).exists():
            continue
        try:
            raw = _read_race_json(folder)
            algorithms = [str(a) for a in raw.get("algorithms") or []]
            entries.append(RaceEntry(folder, str(raw.get("name") or folder.name), str(raw.get("created", "")),
                                     _status(folder, str(raw.get("status", ""))), algorithms))
        except EngineError:
            entries.append(RaceEntry(folder, folder.name, "", "damaged", []))
    return sorted(entries, key=lambda e: (e.created, e.folder.name), reverse=True)


# ---------------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------------
def format_accuracy(row: AlgorithmResult) -> str:
    if row.test_accuracy is None:
        return "-"
    return f"{100 * row.test_accuracy:.2f}% +- {100 * (row.test_ci95 or 0.0):.2f}%"


def format_memory(row: AlgorithmResult) -> str:
    return "-" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / MIB:.1f} MiB"


def format_table(result: RaceResult) -> str:
    """The race table as aligned text (what ``meta-engine race`` prints)."""
    header = ("algorithm", "status", "steps", "test accuracy (95% CI)", "train time", "peak memory")
    lines = [header]
    for row in result.rows:
        lines.append((row.algorithm, row.status, f"{row.steps_done}/{row.total_steps}", format_accuracy(row),
                      f"{row.train_seconds:.1f} s", format_memory(row)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) if i in (0, 1, 3) else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths))) for line in lines]
    episodes = {row.test_episodes for row in result.rows if row.test_accuracy is not None}
    notes = [f"race {result.status} in {result.duration_s:.1f} s on {result.device}"
             + (f"; {result.message}" if result.message else "")]
    if episodes:
        notes.append(f"test accuracy: the same {', '.join(map(str, sorted(episodes)))} seeded test episodes "
                     f"(seed {result.test_seed}) for every algorithm, final weights")
    notes.append("train time: each algorithm's own compute seconds in its training steps")
    methods = sorted({row.memory_method for row in result.rows if row.memory_method})
    notes += [f"peak memory: {method}" for method in methods]
    notes += [f"{row.algorithm}: {row.message}" for row in result.rows if row.message]
    return "\n".join(text + [""] + notes)

