"""The GUI process's policies for garbage collection and PyTorch's thread count.

* :class:`MainThreadGarbageCollector` (installed once by :func:`install_main_thread_gc`): Python's
  cyclic collector runs only in the GUI thread.
* :func:`keep_gui_thread_single_threaded` / :func:`use_compute_threads`: PyTorch runs single-threaded
  in the GUI thread and with the full thread count in every worker thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QTimer


class MainThreadGarbageCollector(QObject):
    """Run Python's cyclic garbage collector only in the GUI thread.

    Automatic collection runs in whichever thread happens to allocate; when that
    is a worker thread and the garbage holds Qt objects of the GUI (a closed
    window, a finished job), their C++ destructors run there and can deadlock
    with the GUI thread (a Qt mutex on one side, the GIL on the other). So the
    automatic collector is switched off and a timer collects in the GUI thread,
    with the thresholds Python would have used.
    """

    def __init__(self, interval_ms: int = 500) -> None:
        super().__init__()
        self.thresholds = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)

    def check(self) -> None:
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.thresholds[generation]:
                gc.collect(generation)
                return


_collector: MainThreadGarbageCollector | None = None


def install_main_thread_gc() -> MainThreadGarbageCollector:
    """Install the :class:`MainThreadGarbageCollector` once (call from the GUI thread)."""
    global _collector
    if _collector is None:
        _collector = MainThreadGarbageCollector()
        _collector.moveToThread(QCoreApplication.instance().thread())
    return _collector


_COMPUTE_THREADS: int | None = None


def keep_gui_thread_single_threaded() -> None:
    """Run PyTorch single-threaded in the GUI thread; worker threads keep the full thread count.

    On a small CPU, once the GUI thread has run one large (OpenMP-parallel) tensor op, PyTorch
    in every other thread of the process runs about 30% slower for the rest of its life
    (measured on 2 cores without Qt: `bench/bench_thread_penalty.py`). With one thread in the
    GUI thread no second OpenMP team ever exists. Worker threads call
    :func:`use_compute_threads` when they start. Call once, in the GUI thread, at start-up.
    """
    global _COMPUTE_THREADS
    import torch

    if _COMPUTE_THREADS is None:
        _COMPUTE_THREADS = torch.get_num_threads()
    torch.set_num_threads(1)


def use_compute_threads() -> None:
    """In a worker thread: PyTorch's default thread count (undoing the GUI thread's 1)."""
    if _COMPUTE_THREADS is not None:
        import torch

        torch.set_num_threads(_COMPUTE_THREADS)
