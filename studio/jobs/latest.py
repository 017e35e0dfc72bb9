""""Latest wins": a view that re-runs a job whenever its inputs change keeps one :class:`LatestJob`.

``start()`` asks the previous job to stop and makes sure its late result (or error, or progress)
is dropped, so what the view shows always belongs to the newest request. The job itself runs
through :func:`studio.jobs.thread.run_in_worker` like every other background job.
"""

from __future__ import annotations

from typing import Any, Callable

from studio.jobs.thread import ProgressFn, StopFn, WorkerHandle, run_in_worker


class LatestJob:
    """At most one live job per view; only the newest job's callbacks ever run (in the GUI thread)."""

    def __init__(self) -> None:
        self._handle: WorkerHandle | None = None
        self._started: list[WorkerHandle] = []  # jobs whose threads may still run (the newest and stopped ones)
        self._generation = 0

    @property
    def handle(self) -> WorkerHandle | None:
        """The newest job's handle (None before the first start)."""
        return self._handle

    def start(self, fn: Callable[[ProgressFn, StopFn], Any], *, on_result: Callable[[Any], None],
              on_error: Callable[[str], None], on_progress: ProgressFn | None = None,
              stop_previous: bool = True) -> WorkerHandle:
        """Run ``fn(progress, should_stop)`` in a worker thread; the previous job is asked to stop
        (unless ``stop_previous`` is False) and whatever it still delivers is dropped."""
        if stop_previous and self._handle is not None:
            self._handle.stop()
        self._generation += 1
        generation = self._generation

        def current(callback: Callable[..., None] | None) -> Callable[..., None] | None:
            if callback is None:
                return None

            def deliver(*args: Any) -> None:
                if generation == self._generation:
                    callback(*args)
            deliver.__self__ = getattr(callback, "__self__", None)  # type: ignore[attr-defined]
            return deliver

        self._handle = run_in_worker(fn, on_result=current(on_result), on_error=current(on_error),
                                     on_progress=current(on_progress))
        self._started = [h for h in self._started if h.is_running()] + [self._handle]
        return self._handle

    def drop(self) -> None:
        """Forget the running job: ask it to stop, and drop whatever it still delivers."""
        if self._handle is not None:
            self._handle.stop()
        self._generation += 1

    def is_running(self) -> bool:
        """True while the newest job has not delivered its result or error."""
        return self._handle is not None and self._handle.is_running()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until the newest job's thread has ended (True if none runs)."""
        return self._handle.wait(timeout_ms) if self._handle is not None else True

    def wait_all(self, timeout_ms: int = -1) -> bool:
        """Block until every job started here has ended, stopped ones included (closing a view, tests);
        True if they all did within ``timeout_ms`` each."""
        return all([handle.wait(timeout_ms) for handle in self._started])
