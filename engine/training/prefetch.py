"""Drawing the next training batch in a background thread while the current step runs.

:class:`BatchPrefetcher` keeps exactly one batch ahead: while step t trains, a
daemon thread records the sampler's random state, draws batch t+1 (sample,
collate, and on CUDA pin its tensors) and parks both; the main thread only picks
them up (:meth:`BatchPrefetcher.take`). It draws the next batch only after the
previous one was taken, so nothing runs further ahead. The trainer takes with
``hold=True`` and releases the thread once ``prepare_batch`` has issued the copies
to the device: Python runs one thread at a time (the GIL), and the draw's Python
work would otherwise slow down exactly that part of the critical path.

Measured on an H100 (ProtoNet 5-way 5-shot 15-query, meta-batch 1, medians of per-step
times, see ``bench/bench_protonet_limit.py``): ResNet-12 at 84 px with augmentation
~24 -> ~19 ms a step; without augmentation ~19.2 -> ~18.7 ms. A tiny Conv-4 step
at 28 px (3-5 ms, bound by kernel launches from the main thread) gets its batch wait
down from ~0.54 to ~0.16 ms, but the whole step is not faster (about 0.4 ms slower in
an 8-round A/B, within that machine's noise in others): the draw's Python work then
competes with the main thread for the GIL instead of running while it waits.

Reproducibility: the thread is the only one that touches the sampler while the
prefetcher lives (draws and ``state_dict`` snapshots both happen in it), and the
batches come out in the order they were drawn, so every step trains on the very
batch the inline trainer would draw. A checkpoint saved after step t must hold the
state from before batch t+1 (what the inline trainer saves); that is the state
the thread recorded just before drawing the pending, not yet taken, batch
(:meth:`BatchPrefetcher.pending_state`).

Errors: an exception raised while drawing is handed over with the batch slot and
re-raised, the same object with its message, by the :meth:`~BatchPrefetcher.take`
that needs that batch; the thread then ends. :meth:`BatchPrefetcher.close` stops
and joins the thread (it waits for a draw in progress, a fraction of a millisecond
to a few milliseconds).

Host-to-device copies stay in the main thread (``Algorithm.prepare_batch``):
CUDA copies issued from another thread would run on that thread's current stream
and need a dedicated stream plus ``wait_stream``/``record_stream`` bookkeeping to
be safe. Pinning the batch (a host-only copy into page-locked memory) is done in
the thread instead, so ``prepare_batch`` finds pinned tensors and only enqueues
non-blocking copies on the main thread's stream.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar

import torch

from engine.data.types import ClassBatch, Task
from engine.training.sampling import augments

T = TypeVar("T")

ENABLED: bool | None = None
"""Module-wide override of :func:`prefetch_default` (tests): None = by device, True/False = forced."""

_END = object()
_POLL_S = 0.5


def prefetch_default(device: torch.device, data: Any = None) -> bool:
    """Whether the trainer draws batches in a background thread on ``device`` (unless forced).

    ``data``: the run's ``DataConfig`` (None: judge by the device alone).
    On the CPU: never. The step itself is the CPU work there, sampling is ~0.1% of it, and a
    second busy thread would take a core from the step's own compute on small machines.
    On CUDA (or MPS): when drawing a batch is heavy, i.e. with per-image augmentation (flips,
    colour jitter, affine) or images of 64 px and more. The draw's Python work shares the
    interpreter lock with the main thread, so a background draw is hidden only where it spends
    its time in tensor kernels. Measured on an H100 (ProtoNet 5-way 5-shot, ms per step): ResNet-12
    at 84 px with augmentation 23-25 inline, 18.8 prefetched; Conv-4 on 28 px glyphs 3.97 inline,
    4.39 prefetched (the main thread, which launches the kernels, then waits for the lock).
    ``ENABLED`` overrides this for tests."""
    if ENABLED is not None:
        return bool(ENABLED)
    if device.type not in ("cuda", "mps"):
        return False
    if data is None:
        return True
    return augments(data) or data.image_size >= HEAVY_IMAGE_SIZE


HEAVY_IMAGE_SIZE = 64


def pin_batch(batch: T) -> T:
    """The batch with its CPU tensors in page-locked memory (for non-blocking copies to CUDA).

    ``Tensor.pin_memory()`` returns an already pinned tensor unchanged, so
    ``Algorithm.prepare_batch`` then only enqueues the copies.
    """
    def pin(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.pin_memory() if tensor.device.type == "cpu" and not tensor.is_pinned() else tensor

    if isinstance(batch, ClassBatch):
        return ClassBatch(pin(batch.x), pin(batch.y))  # type: ignore[return-value]
    if isinstance(batch, list):
        return [Task(pin(t.support_x), pin(t.support_y), pin(t.query_x), pin(t.query_y),
                     t.class_ids, t.support_index, t.query_index) if isinstance(t, Task) else t
                for t in batch]  # type: ignore[return-value]
    return batch


class BatchPrefetcher(Generic[T]):
    """Draws up to ``limit`` batches with ``draw()`` in a daemon thread, one batch ahead.

    ``state()`` is called in the thread just before each draw (and once after the last), so
    the sampler is touched by that thread only. ``thread_init`` runs first in the thread (e.g.
    ``torch.cuda.set_device``). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, draw: Callable[[], T], state: Callable[[], dict[str, Any]], limit: int, *,
                 thread_init: Callable[[], None] | None = None, name: str = "batch-prefetch") -> None:
        self._draw, self._state, self._limit = draw, state, max(0, int(limit))
        self._thread_init = thread_init
        self._cond = threading.Condition()
        # the parked item: (state before the draw, batch or _END, exception or None)
        self._pending: tuple[Any, Any, BaseException | None] | None = None
        self._closed = False
        self._held = False  # the next draw waits for release() (see take)
        self._taken = 0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    # -- main thread ------------------------------------------------------------------------------------------
    def take(self, hold: bool = False) -> T:
        """The next batch (waits for it when it is still being drawn); re-raises a draw's exception.

        ``hold``: the thread starts drawing the following batch only at :meth:`release` (or the next
        ``take``/``pending_state``), e.g. after the caller has issued the batch's copies to the device,
        so that the thread's work does not compete with those for the interpreter lock.
        """
        with self._cond:
            if self._held:  # a take without release: let the thread draw this batch now
                self._held = False
                self._cond.notify_all()
            _state, batch, error = self._wait_pending()
            if error is not None:
                raise error
            if batch is _END:
                raise RuntimeError(f"BatchPrefetcher: all {self._limit} batches were already taken")
            self._pending = None
            self._held = hold
            self._taken += 1
            self._cond.notify_all()
        return batch

    def release(self) -> None:
        """Let the thread draw the next batch after a ``take(hold=True)``."""
        with self._cond:
            if self._held:
                self._held = False
                self._cond.notify_all()

    def pending_state(self) -> dict[str, Any]:
        """The sampler state recorded just before drawing the next, not yet taken, batch: the state
        an inline trainer's sampler has now (after the last taken batch)."""
        with self._cond:
            if self._held:
                self._held = False
                self._cond.notify_all()
            state, _batch, error = self._wait_pending()
            if state is None and error is not None:  # state_dict() itself failed
                raise error
            return state

    def close(self) -> None:
        """Stop the thread and join it (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "BatchPrefetcher[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait_pending(self) -> tuple[Any, Any, BaseException | None]:
        """Called with the lock held: wait until the thread parks an item."""
        while self._pending is None:
            if self._closed:
                raise RuntimeError("BatchPrefetcher is closed")
            if not self._thread.is_alive():  # cannot happen: the thread parks an item before it ends
                raise RuntimeError("the batch prefetch thread ended without a batch")
            self._cond.wait(_POLL_S)
        return self._pending

    # -- background thread ------------------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            if self._thread_init is not None:
                self._thread_init()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self._park((None, None, error))
            return
        for _ in range(self._limit):
            if not self._wait_for_free_slot():
                return
            item = self._draw_one()
            self._park(item)
            if item[2] is not None:
                return
        if not self._wait_for_free_slot():
            return
        try:
            self._park((self._state(), _END, None))
        except BaseException as error:  # noqa: BLE001
            self._park((None, None, error))

    def _draw_one(self) -> tuple[Any, Any, BaseException | None]:
        try:
            state = self._state()
        except BaseException as error:  # noqa: BLE001
            return None, None, error
        try:
            with torch.no_grad():
                return state, self._draw(), None
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread by take()
            return state, None, error

    def _wait_for_free_slot(self) -> bool:
        """Wait until the main thread took the parked batch; False when closed."""
        with self._cond:
            while (self._pending is not None or self._held) and not self._closed:
                self._cond.wait()
            return not self._closed

    def _park(self, item: tuple[Any, Any, BaseException | None]) -> None:
        with self._cond:
            self._pending = item
            self._cond.notify_all()
