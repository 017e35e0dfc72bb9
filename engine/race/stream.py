"""One stream of training batches, read by several trainers in lock step.

The episodic algorithms of a race read one :class:`SharedBatchStream` of seeded episodes; the
class-batch algorithms (``batch_kind == "classes"``) share one per batch size. Each stream is
the very sampler a solo run of the same config would build
(:func:`engine.training.sampling.build_training_sampler`).
"""

from __future__ import annotations

from typing import Any, Sequence

from engine.config import RunConfig
from engine.errors import ConfigError, EngineError

SHARED_STREAM_NOTE = ("Episodic algorithms train on one shared stream of seeded episodes (step t: the same "
                      "tasks for each); Baseline, Baseline++ and SimpleShot pre-train on their own seeded "
                      "class-batch stream.")


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


def stream_key(config: RunConfig) -> tuple[str, int]:
    """Which stream a racer of ``config`` reads: ("episodes", 0) or ("classes", its batch size)."""
    from engine.training import sampling

    kind = sampling.batch_kind(config)
    return (kind, sampling.training_batch_size(config) if kind == "classes" else 0)


def make_stream(config: RunConfig, data: Any) -> SharedBatchStream:
    """A stream over the very sampler a solo run of ``config`` would build
    (:func:`~engine.training.sampling.build_training_sampler`)."""
    from engine.training import sampling

    sampler = sampling.build_training_sampler(config, data)
    episodic = sampling.batch_kind(config) == "episodes"
    return SharedBatchStream(sampler, config.task.meta_batch_size if episodic else None)


def describe_stream(config: RunConfig, sharing: Sequence[str]) -> str:
    """What a racer of ``config`` trains on, for RaceInfo.streams ("shared seeded episodes (with maml)")."""
    kind, batch_size = stream_key(config)
    what = "shared seeded episodes" if kind == "episodes" else f"seeded class batches of {batch_size}"
    return what + (f" (with {', '.join(sharing)})" if sharing else " (its own)")
