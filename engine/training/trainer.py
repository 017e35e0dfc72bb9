"""The training loop: seeded, reporting through plain callbacks, stoppable and resumable.

``Trainer(config, run_dir=...).run()`` loads the data, builds the algorithm,
meta-trains for ``config.train.steps`` steps, validates every ``val_every``
steps (mean accuracy and 95% CI), keeps the best and the last checkpoint, and
reports every event to its callbacks. It never raises for bad input: an
:class:`~engine.errors.EngineError` ends the run with status ``failed`` and the
message goes to ``Callback.on_failed``.

Step by step: ``Trainer.steps()`` is the same run as a generator that yields a
:class:`StepOutcome` after each step (and that step's validation and
checkpoint), so a caller can interleave several trainers (an algorithm race,
:mod:`engine.race`); ``run()`` simply exhausts it. ``sampler=`` lets several
trainers draw from one shared stream of training batches.

Reproducibility: every checkpoint carries the sampler's random state, so a run
resumed from its checkpoint at step ``s`` continues with exactly the episodes
the uninterrupted run would have drawn (on CPU the curves are identical).

GPU path: ``train.precision`` (autocast, GradScaler for fp16), ``train.channels_last``
and ``train.task_batching`` go to ``Algorithm.configure_runtime``; batches are
pinned and copied to CUDA without blocking; MAML on CUDA first checks that a step
fits in GPU memory (:mod:`engine.training.memory`).

Prefetching (:mod:`engine.training.prefetch`): on CUDA and MPS the next step's batch is
drawn (sampled, collated, pinned) in a background thread while the current step runs,
one batch ahead, so sampling stays off the critical path of a few-millisecond step; the
copy to the device stays in the main thread (``prepare_batch``, non-blocking). The
episodes, the checkpointed sampler state and so the resumed sequence are exactly those
of the inline trainer. On the CPU batches are drawn inline (see
:func:`~engine.training.prefetch.prefetch_default`); a ``sampler=`` passed in is always
drawn inline (it may be shared, and the race already draws ahead of its steps).

torch.distributed (``torchrun ... -m engine train``, see
:mod:`engine.training.distributed`): when a process group is initialised, every
rank draws the same global batch and trains on its slice, gradients are averaged,
logged metrics are the means over ranks, and only rank 0 validates and writes the
run folder.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Iterator, Protocol, Sequence

import torch

from engine.algorithms.base import PRECISIONS, Algorithm
from engine.algorithms.registry import algorithm_class, build_algorithm
from engine.config import RunConfig, resolve_channels_last, validate
from engine.data.dataset import FewShotData, load_data
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError, EngineError, TrainingError
from engine.evaluation import evaluate
from engine.io import atomic_write_json
from engine.runtime import collective
from engine.runtime.precision import resolve_precision
from engine.training import distributed
from engine.training import run_store as rs
from engine.training.callbacks import (Callback, CallbackList, CheckpointInfo, RunInfo, RunSummary,
                                       StepMetrics, ValidationResult)
from engine.training.checkpoint import (load_algorithm, random_state, resolve_device, restore_random_state,
                                       save_checkpoint)
from engine.training.control import RunControl
from engine.training.host_memory import keep_freed_host_memory_if_alone
from engine.training.memory import estimate_maml_memory
from engine.training.prefetch import BatchPrefetcher, pin_batch, prefetch_default
from engine.training.sampling import batch_size_field, build_training_sampler, training_batch_size
from engine.training.schedule import lr_factor
from engine.training.tensorboard import TensorBoardCallback

VALIDATION_SEED_OFFSET = 1_000_003
HOST_OUT_OF_MEMORY = ("out of memory: lower task.meta_batch_size, task.n_query or data.image_size, or "
                      "data.cache_budget_mb to leave more memory to the model")


class BatchSampler(Protocol):
    """What the trainer draws training batches from (EpisodeSampler, ClassBatchSampler, a shared stream)."""

    def sample(self) -> Any: ...

    def sample_batch(self, n: int) -> list[Task]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class StepOutcome:
    """What :meth:`Trainer.steps` yields after each step, its validation and checkpoint done.

    train_seconds: wall-clock seconds of this training step alone (batch to the device,
    forward, backward, update), without validation, checkpoints, callbacks or pauses.
    """

    metrics: StepMetrics
    train_seconds: float


def _is_out_of_memory(error: RuntimeError) -> bool:
    """PyTorch's CPU allocator reports exhaustion as a plain RuntimeError."""
    text = str(error)
    return "can't allocate memory" in text or "not enough memory" in text


def _run_precision(cfg: RunConfig, device: torch.device, resumed: object = None) -> tuple[str, str]:
    """(precision, why): ``train.precision`` resolved; a resumed "auto" run keeps the precision it trained in
    (``resumed``, from its checkpoint: auto measures bf16 on some CPUs, and a second measurement could differ), so
    it continues exactly."""
    if cfg.train.precision == "auto" and resumed in PRECISIONS:
        return str(resumed), "auto: as the run chose before it was resumed"
    return resolve_precision(cfg.train.precision, device)


class Trainer:
    """Runs one training run (new or resumed) and reports through callbacks."""

    def __init__(self, config: RunConfig, *, run_dir: Path | None = None, callbacks: Sequence[Callback] = (),
                 control: RunControl | None = None, data: FewShotData | None = None,
                 sampler: BatchSampler | None = None, prefetch: bool | None = None) -> None:
        """``sampler``: draw training batches from it instead of building the seeded sampler of
        ``config`` (several trainers sharing one stream); it must yield what this config trains on
        (``task.meta_batch_size`` episodes per ``sample_batch``, or class batches from ``sample``).
        Such a sampler is always drawn from inline, in the calling thread.

        ``prefetch``: draw the next batch of the trainer's own sampler in a background thread;
        None (default) decides by device (:func:`~engine.training.prefetch.prefetch_default`)."""
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = CallbackList(list(callbacks))
        self.control = control or RunControl()
        self.data = data
        self.algorithm: Algorithm | None = None
        self._resume_from: Path | None = None
        self._start_step = 0
        self._best: tuple[float, int] | None = None
        self._record: rs.RunRecord | None = None
        self._metrics: rs.MetricsWriter | None = None
        self._elapsed_before = 0.0
        self._started: float | None = None
        self._lock: rs.RunLock | None = None
        self._world: collective.World | None = None
        self._device = torch.device("cpu")
        self._given_sampler = sampler
        self._prefetch_choice = prefetch
        self._prefetcher: BatchPrefetcher | None = None
        self.summary: RunSummary | None = None
        self.train_seconds = 0.0  # seconds spent in training steps by this trainer (see StepOutcome)
        # of those, seconds the main thread spent getting each step's batch (waiting for the prefetched
        # batch or drawing it inline) and preparing it (prepare_batch): sampling on the critical path
        self.batch_seconds = 0.0
        self._graphs_note: str | None = None

    @classmethod
    def resume(cls, run_dir: Path | str, *, callbacks: Sequence[Callback] = (), control: RunControl | None = None,
               extra_steps: int = 0, data: FewShotData | None = None, prefetch: bool | None = None) -> "Trainer":
        """Continue a stopped or interrupted run from its last checkpoint (optionally for more steps)."""
        run_dir = Path(run_dir)
        last = rs.checkpoint_file(run_dir, "last")
        if not last.is_file():
            raise EngineError(f"{run_dir}: no checkpoint to resume from ({last} is missing)")
        config = rs.RunStore(run_dir.parent).read_config(run_dir)
        config.train.steps += max(0, extra_steps)
        trainer = cls(config, run_dir=run_dir, callbacks=callbacks, control=control, data=data, prefetch=prefetch)
        trainer._resume_from = last
        return trainer

    # -- public -----------------------------------------------------------
    def run(self) -> RunSummary:
        """Train to the end, until stopped, or until an error; never raises EngineError."""
        for _ in self.steps():
            pass
        assert self.summary is not None
        return self.summary

    def steps(self) -> Iterator[StepOutcome]:
        """The run of :meth:`run`, one step per iteration; ``self.summary`` is set when it ends.

        Set-up happens in the first iteration, the end of the run (record, ``on_finished`` or
        ``on_failed``) after the last. Stop through the RunControl: closing the generator early
        only releases the run folder (which then reads as interrupted).
        """
        started = self._started = time.perf_counter()
        try:
            self._setup()
            status = yield from self._loop(started)
            self.summary = self._finish(status, started)
        except EngineError as error:
            self.summary = self._fail(str(error), started)
        except torch.cuda.OutOfMemoryError:
            self.summary = self._fail("the GPU ran out of memory: lower task.meta_batch_size, task.n_query or "
                                      "data.image_size, or train first-order MAML", started)
        except MemoryError:
            self.summary = self._fail(HOST_OUT_OF_MEMORY, started)
        except Exception as error:  # a bug: keep the run record honest and report it
            if isinstance(error, RuntimeError) and _is_out_of_memory(error):
                self.summary = self._fail(HOST_OUT_OF_MEMORY, started)
            else:
                self.callbacks.on_log(traceback.format_exc(), "error")
                self.summary = self._fail(f"internal error: {type(error).__name__}: {error}", started)
        finally:
            self._stop_prefetching()
            if self._metrics is not None:
                self._metrics.close()
            if self._lock is not None:
                self._lock.release()

    # -- setup ------------------------------------------------------------
    def _setup(self) -> None:
        cfg = validate(self.config)
        if cfg.train.tensorboard:  # event files next to metrics.jsonl
            self.callbacks = CallbackList([*self.callbacks.callbacks, TensorBoardCallback(cfg)])
        device = self._resolve_runtime(cfg)
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        keep_freed_host_memory_if_alone()  # no page faults for each step's fresh activations (host_memory)
        torch.manual_seed(cfg.train.seed)
        try:
            n_train = self._load_and_build(cfg, device)
        except EngineError as error:
            self._agree_on_setup(str(error))
            raise
        self._agree_on_setup(None)
        self._agree_on_precision(cfg)
        collective.broadcast_state(self.algorithm.modules().values())
        self._make_samplers()
        self._open_run_folder(device)
        self.callbacks.on_run_start(RunInfo(self.run_dir, cfg.train.steps, self._start_step, str(device), n_train,
                                            len(self.data.class_ids("val")), len(self.data.class_ids("test"))))
        self.callbacks.on_log(f"training {cfg.algorithm.title or cfg.algorithm.name} on {device}{self._runtime_note()}: "
                              f"{n_train} training classes, steps {self._start_step + 1}..{cfg.train.steps}")
        if self._random_state is not None and not restore_random_state(self._random_state, device):
            self.callbacks.on_log("the checkpoint's random state could not be restored: dropout draws differ from "
                                  "an uninterrupted run", "warning")

    def _resolve_runtime(self, cfg: RunConfig) -> torch.device:
        """The device of this process; under torch.distributed also the checks of an even split."""
        self._world = collective.current_world()
        if self._world is None:
            device = resolve_device(cfg.train.device)
        else:
            device = distributed.local_device(cfg.train.device, self._world.local_rank)
            if not self._world.is_main:
                self.run_dir = None  # only rank 0 writes the run folder
            distributed.check_divisible(training_batch_size(cfg), self._world.world_size, batch_size_field(cfg))
        if cfg.train.precision == "fp16" and device.type == "cpu":
            raise ConfigError("train.precision: fp16 needs a CUDA (or MPS) device; on the CPU use bf16 or fp32")
        self._device = device
        return device

    def _load_and_build(self, cfg: RunConfig, device: torch.device) -> int:
        checkpoint = None
        self._sampler_state = self._random_state = None
        resumed_precision = None
        if self._resume_from is not None:
            algorithm, checkpoint = load_algorithm(self._resume_from, device=str(device))
            split = checkpoint.split
            self._start_step = checkpoint.step
            best = checkpoint.extra.get("best")
            self._best = (float(best[0]), int(best[1])) if best else None
            self._elapsed_before = float(checkpoint.extra.get("elapsed_s", 0.0))
            self._sampler_state = checkpoint.extra.get("sampler")
            self._random_state = checkpoint.extra.get("random")
            resumed_precision = checkpoint.extra.get("precision")
        else:
            split = None
        if self.data is None:
            self.callbacks.on_log(f"loading data set {cfg.data.root}")
            self.data = load_data(cfg.data, split=split, progress=None)
        for warning in self.data.warnings:
            self.callbacks.on_log(warning, "warning")
        n_train = len(self.data.class_ids("train"))
        if checkpoint is None:
            algorithm = build_algorithm(cfg, n_train_classes=n_train)
            algorithm.to(device)
        channels_last = resolve_channels_last(cfg.train.channels_last, device, cfg.data.image_size)
        self._precision, self._precision_reason = _run_precision(cfg, device, resumed_precision)
        algorithm.configure_runtime(self._precision, channels_last, cfg.train.task_batching, cfg.train.vmap_chunk,
                                    cfg.train.cuda_graphs)
        self.algorithm = algorithm
        self._check_memory(cfg, device)
        return n_train

    def _check_memory(self, cfg: RunConfig, device: torch.device) -> None:
        """MAML on CUDA: fail now, with advice, when a step cannot fit; let "auto" fall back to the loop."""
        if device.type != "cuda" or not algorithm_class(cfg.algorithm.name).meta_gradient_memory:
            return
        world_size = self._world.world_size if self._world else 1
        estimate = estimate_maml_memory(cfg, device, world_size=world_size)
        if not estimate.fits:
            raise TrainingError(estimate.message)
        if cfg.train.task_batching == "auto" and not estimate.batched:
            self.algorithm.task_batching = "loop"
        self.callbacks.on_log(estimate.message)

    def _agree_on_precision(self, cfg: RunConfig) -> None:
        """torch.distributed: one precision on every rank. "auto" measures bf16 on some CPUs, and a loaded machine
        could measure differently per process; bf16 wins (after :meth:`_agree_on_setup`: every rank is here)."""
        if self._world is None or cfg.train.precision != "auto":
            return
        if collective.any_rank(self._precision == "bf16", self._device) and self._precision != "bf16":
            self._precision = "bf16"
            self._precision_reason += "; bf16 anyway: another process of this distributed run picked it"
            algorithm = self.algorithm
            algorithm.configure_runtime(self._precision, algorithm.channels_last, algorithm.task_batching,
                                        algorithm.vmap_chunk, algorithm.cuda_graphs)

    def _agree_on_setup(self, error: str | None) -> None:
        """torch.distributed: every rank fails together when one rank's set-up failed."""
        if self._world is None:
            return
        failed_somewhere = collective.any_rank(error is not None, self._device)
        if failed_somewhere and error is None:
            raise TrainingError("another process of this distributed run failed during set-up (see rank 0)")

    def _runtime_note(self) -> str:
        parts = [f"{self._precision}: {self._precision_reason}"]
        if self.algorithm.channels_last:
            parts.append("channels-last")
        if self._world is not None:
            parts.append(f"{self._world.world_size} processes ({self._world.backend})")
        return f" ({', '.join(parts)})" if parts else ""

    def _make_samplers(self) -> None:
        cfg, data = self.config, self.data
        self._sampler = self._given_sampler if self._given_sampler is not None else build_training_sampler(cfg, data)
        if self._sampler_state is not None:
            self._sampler.load_state_dict(self._sampler_state)
        # validation needs enough classes: fail now with a clear message rather than at the first validation
        data.episodes("val", cfg.task.eval_n_way, cfg.task.eval_n_shot, cfg.task.n_query,
                      cfg.train.seed + VALIDATION_SEED_OFFSET)

    def _open_run_folder(self, device: torch.device) -> None:
        if self.run_dir is None:
            return
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = rs.RunLock(self.run_dir).acquire()  # TrainingError when another process trains this run
        (self.run_dir / rs.CHECKPOINT_DIR).mkdir(exist_ok=True)
        atomic_write_json(self.run_dir / rs.CONFIG_FILE, cfg.to_dict())
        atomic_write_json(self.run_dir / rs.SPLIT_FILE, self.data.split.to_dict())
        previous = self._read_previous_record()
        self._record = rs.RunRecord(
            run_dir=self.run_dir, name=previous.get("name") or cfg.name or self.run_dir.name,
            algorithm=cfg.algorithm.name, dataset=cfg.data.root, device=str(device), status="running",
            best_val_accuracy=self._best[0] if self._best else None, duration_s=self._elapsed_before,
            created=previous.get("created") or rs.now_iso(), steps_done=self._start_step,
            total_steps=cfg.train.steps, best_step=self._best[1] if self._best else None, pid=os.getpid(),
            precision=self._precision)
        rs.write_record(self._record)
        keep = self._start_step if self._resume_from is not None else 0
        self._metrics = rs.MetricsWriter(self.run_dir / rs.METRICS_FILE, keep_up_to_step=keep)

    def _read_previous_record(self) -> dict[str, Any]:
        try:
            record = rs.RunStore(self.run_dir.parent).record(self.run_dir)
            return {"name": record.name, "created": record.created}
        except EngineError:
            return {}

    # -- loop -------------------------------------------------------------
    def _loop(self, started: float) -> Generator[StepOutcome, None, str]:
        """Train the remaining steps, yielding after each; returns the status (finished or stopped)."""
        cfg = self.config.train
        step = self._start_step
        tick = time.perf_counter()
        episodes_done = 0
        rate = 0.0
        self._start_prefetching(cfg.steps - self._start_step)
        for step in range(self._start_step + 1, cfg.steps + 1):
            if self._world is None:
                self.control.wait_while_paused()
            if collective.any_rank(self.control.stop_requested, self._device):
                self._save(step - 1, is_best=False)
                return "stopped"
            step_started = time.perf_counter()
            metrics = self._train_step(step)
            train_seconds = time.perf_counter() - step_started
            self.train_seconds += train_seconds
            if self._saves_at(step) and not self._weights_are_finite():  # every rank checks: no rank waits alone
                raise TrainingError(f"the weights became NaN or infinite at step {step}; training stopped there. "
                                    f"Try a lower learning rate ({self._learning_rates()}); the last good "
                                    "checkpoint is kept")
            episodes_done += self._episodes_per_step()
            now = time.perf_counter()
            if now - tick >= 0.5 or step == cfg.steps or rate == 0.0:
                rate = episodes_done / max(now - tick, 1e-9)
                tick, episodes_done = now, 0
            reported = self._report_step(step, metrics, rate, started)
            if (cfg.val_every and step % cfg.val_every == 0) or step == cfg.steps:
                self._validate(step)
            elif step % cfg.checkpoint_every == 0:
                self._save(step, is_best=False)
            yield StepOutcome(reported, train_seconds)
        if step < cfg.steps:
            return "stopped"
        return "finished"

    def _episodes_per_step(self) -> int:
        if self.algorithm.batch_kind == "classes":
            return 1
        return self.config.task.meta_batch_size

    def _train_step(self, step: int) -> dict[str, float]:
        asked = time.perf_counter()
        batch = self.algorithm.prepare_batch(self._take_batch())
        if self._prefetcher is not None:  # the copies are issued: the thread may draw the next batch now
            self._prefetcher.release()
        self.batch_seconds += time.perf_counter() - asked
        self.algorithm.train(True)
        self.algorithm.set_lr_scale(lr_factor(self.config.train, step))
        metrics = self.algorithm.meta_train_step(batch)
        self._log_graphs_note()
        metrics = collective.average_metrics(metrics, self._device)
        loss = float(metrics.get("loss", float("nan")))
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at step {step}; training stopped there. Try a lower "
                                f"learning rate ({self._learning_rates()}); the last good checkpoint is kept")
        return metrics

    def _log_graphs_note(self) -> None:
        """Log when CUDA-graph replay starts, or stops with its reason (``train.cuda_graphs``)."""
        note = self.algorithm.graphs_note
        if note != self._graphs_note:
            self._graphs_note = note
            if note:
                self.callbacks.on_log(note, "warning" if note.startswith("CUDA graphs off") else "info")

    def _learning_rates(self) -> str:
        """'algorithm.lr is X' (and the inner-loop rate of the algorithms that have one)."""
        algorithm = self.config.algorithm
        text = f"algorithm.lr is {algorithm.lr:g}"
        inner = getattr(algorithm, "inner_lr", None)
        return text + (f", algorithm.inner_lr is {inner:g}" if inner is not None else "")

    def _saves_at(self, step: int) -> bool:
        cfg = self.config.train
        validates = bool(cfg.val_every and step % cfg.val_every == 0) or step == cfg.steps
        return validates or step % cfg.checkpoint_every == 0

    def _weights_are_finite(self) -> bool:
        return all(bool(torch.isfinite(tensor).all())
                   for module in self.algorithm.modules().values()
                   for tensor in module.state_dict().values() if tensor.is_floating_point())

    # -- batches ----------------------------------------------------------
    def _uses_prefetch(self) -> bool:
        """Prefetch the trainer's own sampler when asked to, or by default on CUDA/MPS. A sampler passed
        in is never prefetched: it may be shared with other trainers (a race's stream, which the race
        also draws from between steps), and a second thread drawing from it would race with them."""
        if self._given_sampler is not None:
            return False
        if self._prefetch_choice is not None:
            return bool(self._prefetch_choice)
        return prefetch_default(self._device, self.config.data)

    def _start_prefetching(self, n_batches: int) -> None:
        """From here on only the prefetch thread touches the sampler (draws and state snapshots)."""
        if self._prefetcher is not None or n_batches <= 0 or not self._uses_prefetch():
            return
        pin = self._device.type == "cuda"
        cuda_index = (self._device.index if self._device.index is not None else torch.cuda.current_device()) \
            if pin else None

        def draw() -> list[Task] | ClassBatch:
            batch = self._next_batch()
            return pin_batch(batch) if pin else batch

        def thread_init() -> None:
            if cuda_index is not None:  # pin in this device's context (as DataLoader's pin-memory thread does)
                torch.cuda.set_device(cuda_index)

        self._prefetcher = BatchPrefetcher(draw, self._sampler.state_dict, n_batches, thread_init=thread_init,
                                           name=f"batch-prefetch-{id(self):x}")

    def _stop_prefetching(self) -> None:
        prefetcher, self._prefetcher = self._prefetcher, None
        if prefetcher is not None:
            prefetcher.close()

    def _take_batch(self) -> list[Task] | ClassBatch:
        """This step's batch: the prefetched one, or drawn now."""
        if self._prefetcher is not None:
            return self._prefetcher.take(hold=True)  # released in _train_step once prepare_batch is done
        return self._next_batch()

    def _checkpointed_sampler_state(self) -> dict[str, Any]:
        """The sampler state after the last batch a step took (before the next one is drawn)."""
        if self._prefetcher is not None:
            return self._prefetcher.pending_state()
        return self._sampler.state_dict()

    def _next_batch(self) -> list[Task] | ClassBatch:
        """The global batch from the seeded sampler; under torch.distributed this rank's equal slice of it."""
        if self.algorithm.batch_kind == "classes":
            batch = self._sampler.sample()
            if self._world is None:
                return batch
            rows = collective.shard(len(batch.y), self._world)
            return ClassBatch(batch.x[rows], batch.y[rows])
        tasks = self._sampler.sample_batch(self.config.task.meta_batch_size)
        return tasks[collective.shard(len(tasks), self._world)]

    def _report_step(self, step: int, metrics: dict[str, float], rate: float, started: float) -> StepMetrics:
        total = self.config.train.steps
        elapsed = time.perf_counter() - started
        steps_per_s = rate / max(self._episodes_per_step(), 1)
        eta = (total - step) / steps_per_s if steps_per_s > 0 else float("nan")
        row = {"kind": "step", "step": step, "loss": float(metrics["loss"]),
               "accuracy": float(metrics.get("accuracy", float("nan"))), "lr": float(metrics.get("lr", 0.0)),
               "time": round(self._elapsed_before + elapsed, 4)}
        if self._metrics is not None:
            self._metrics.write(row)
        reported = StepMetrics(step, total, row["loss"], row["accuracy"], row["lr"], rate,
                               self._elapsed_before + elapsed, eta)
        self.callbacks.on_step(reported)
        return reported

    def _validate(self, step: int) -> None:
        if self._world is not None and not self._world.is_main:
            return  # rank 0 validates and keeps the checkpoints
        cfg = self.config
        result = evaluate(self.algorithm, self.data, part="val", episodes=cfg.train.val_episodes,
                          n_way=cfg.task.eval_n_way, n_shot=cfg.task.eval_n_shot, n_query=cfg.task.n_query,
                          seed=cfg.train.seed + VALIDATION_SEED_OFFSET, should_stop=None)
        is_best = self._best is None or result.accuracy > self._best[0]
        if is_best:
            self._best = (result.accuracy, step)
        if self._metrics is not None:
            self._metrics.write({"kind": "validation", "step": step, "accuracy": result.accuracy,
                                 "ci95": result.ci95, "episodes": result.n_episodes})
        self.callbacks.on_validation(ValidationResult(step, result.accuracy, result.ci95, result.n_episodes, is_best))
        self._save(step, is_best=is_best)

    def _save(self, step: int, is_best: bool) -> None:
        if self.run_dir is None or step <= 0:
            return
        if self._metrics is not None:
            self._metrics.sync()
        extra = {"best": list(self._best) if self._best else None, "elapsed_s": self._elapsed(),
                 "class_names": list(self.data.store.class_names), "sampler": self._checkpointed_sampler_state(),
                 "random": random_state(self._device), "precision": self._precision}
        # best.pt first: a kill between the two writes never leaves last.pt naming a best model best.pt lacks
        paths = [rs.checkpoint_file(self.run_dir, "best")] if is_best else []
        paths.append(rs.checkpoint_file(self.run_dir, "last"))
        for path in paths:
            save_checkpoint(path, self.algorithm, self.config, self.data.split, self.data.preprocessing, step,
                            len(self.data.class_ids("train")), extra)
            self.callbacks.on_checkpoint(CheckpointInfo(step, path, path == paths[0] and is_best))
        self._update_record(steps_done=step)

    # -- ending -----------------------------------------------------------
    def _elapsed(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._elapsed_before + running

    def _update_record(self, **changes: Any) -> None:
        if self._record is None:
            return
        for key, value in changes.items():
            setattr(self._record, key, value)
        if self._best:
            self._record.best_val_accuracy, self._record.best_step = self._best
        rs.write_record(self._record)

    def _summary(self, status: str, started: float, message: str = "") -> RunSummary:
        steps = self._record.steps_done if self._record else self._start_step
        return RunSummary(self.run_dir, status, steps, self._best[0] if self._best else None,
                          self._best[1] if self._best else None,
                          self._elapsed_before + time.perf_counter() - started, message)

    def _finish(self, status: str, started: float) -> RunSummary:
        self._update_record(status=status, duration_s=self._elapsed_before + time.perf_counter() - started,
                            pid=None)
        summary = self._summary(status, started)
        self.callbacks.on_finished(summary)
        return summary

    def _fail(self, message: str, started: float) -> RunSummary:
        self._update_record(status="failed", message=message,
                            duration_s=self._elapsed_before + time.perf_counter() - started, pid=None)
        summary = self._summary("failed", started, message)
        self.callbacks.on_failed(message, summary)
        return summary

