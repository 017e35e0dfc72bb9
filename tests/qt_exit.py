"""The end of a test run that used Qt: an orderly teardown, a report of what is still alive, the exit.

Why not simply let the interpreter tear everything down: with PySide6 (6.11 here) on Linux, the
destruction of the QApplication and of Qt objects still referenced by module globals during the
interpreter's own finalisation can crash now and then (exit 139 after a green run; the PySide
end-of-process crashes of PYSIDE-2254 and pyface#1211). That finalisation runs no code of ours, so
the run does what it can first and then leaves without it:

1. :func:`tear_down_qt`, in the GUI thread: every top-level widget is closed (a window's close
   stops its run, race and jobs, and ends its spare training process) and deleted, the studio's
   background jobs are stopped, Qt's deferred deletions are delivered and garbage is collected,
   then multiprocessing's and logging's exit steps run;
2. :func:`leftovers`: any thread, background job or child process of ours still alive is named on
   stderr with every thread's stack and FAILS the run, so leaving early can never hide a failure of
   our code;
3. :func:`exit_now` prints one line saying what it skipped and exits with pytest's status.
   ``META_STUDIO_TEST_REAL_EXIT=1`` runs the interpreter's finalisation instead (to check whether
   PySide still needs this).

:func:`arm_watchdog` guards the whole end of the run: if the process is still alive
``META_STUDIO_TEST_WATCHDOG_S`` seconds after the last test, it names the live threads, dumps every
thread's stack (faulthandler) and exits with status 1: a hang at shutdown fails the run.
"""

from __future__ import annotations

import atexit
import faulthandler
import gc
import logging
import os
import sys
import threading
from typing import Any, Callable

REAL_EXIT_ENV = "META_STUDIO_TEST_REAL_EXIT"
WATCHDOG_S = float(os.environ.get("META_STUDIO_TEST_WATCHDOG_S", "90"))
_JOB_WAIT_MS = 30_000


def uses_qt() -> bool:
    return "PySide6.QtWidgets" in sys.modules


def real_exit_wanted() -> bool:
    return os.environ.get(REAL_EXIT_ENV) == "1"


def tear_down_qt() -> dict[str, int]:
    """Close and delete every top-level widget, stop background jobs, deliver deferred deletions and
    collect garbage, in the GUI thread; how many windows and jobs there were."""
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    done = {"windows": 0, "jobs": 0}
    if app is None:
        return done
    for widget in QApplication.topLevelWidgets():
        if widget.isVisible():
            done["windows"] += 1
        widget.close()
        widget.deleteLater()
    thread_jobs = sys.modules.get("studio.jobs.thread")
    if thread_jobs is not None:
        done["jobs"] = len(thread_jobs.active_handles())
        thread_jobs.stop_all_jobs(_JOB_WAIT_MS)
    for _ in range(3):  # deletions can post more deletions (children, then their signals' receivers)
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QCoreApplication.processEvents()
        gc.collect()
    return done


def leftovers() -> list[str]:
    """What of ours is still alive after :func:`tear_down_qt`, in words (empty when nothing)."""
    import multiprocessing

    found = []
    thread_jobs = sys.modules.get("studio.jobs.thread")
    if thread_jobs is not None and thread_jobs.active_handles():
        found.append(f"{len(thread_jobs.active_handles())} background job(s) of studio.jobs.thread")
    children = multiprocessing.active_children()  # also joins the children that have ended
    found += [f"child process {child.name} (pid {child.pid})" for child in children]
    found += [f"thread {thread.name!r}" for thread in _other_threads() if not thread.daemon]
    return found


def run_exit_steps() -> None:
    """The interpreter's exit steps that are safe to run here: multiprocessing's (terminate and join
    daemon children) and logging's (flush and close handlers)."""
    import multiprocessing.util

    multiprocessing.util._exit_function()
    logging.shutdown()


def skipped_line(alive: list[str]) -> str:
    """The line :func:`exit_now` prints: what leaving without the interpreter's finalisation skips."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    qt = f"the QApplication and {len(QApplication.allWidgets())} widget(s) left to it" if app else "no QApplication"
    return (f"conftest: left without the interpreter's finalisation (it can crash in PySide6 at exit; "
            f"{REAL_EXIT_ENV}=1 runs it): skipped {atexit._ncallbacks()} atexit callback(s), the destruction "
            f"of {qt}, and module cleanup; {'still alive: ' + '; '.join(alive) if alive else 'nothing of ours was alive'}")


def exit_now(exitstatus: int, report: Callable[[str], None], alive: list[str]) -> None:
    report(skipped_line(alive))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exitstatus)


def arm_watchdog(report: Callable[[str], None], counts: Callable[[], dict[str, int]],
                 on_fire: Callable[[], None] = lambda: None) -> threading.Thread:
    """Fail the run (status 1) if the process is still alive :data:`WATCHDOG_S` after now, naming the
    live threads and dumping their stacks."""
    def watch() -> None:
        threading.Event().wait(WATCHDOG_S)  # the process normally ends long before
        on_fire()
        names = ", ".join(f"{t.name!r}{' (daemon)' if t.daemon else ''}" for t in _other_threads())
        report(f"watchdog: the run did not end {WATCHDOG_S:.0f} s after its last test (a hang at shutdown); "
               f"the run FAILS. Threads alive besides the main one: {names or 'none'}. Their stacks:")
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        n = counts()
        report(f"watchdog: {n.get('passed', 0)} passed, {n.get('failed', 0)} failed, "
               f"{n.get('skipped', 0)} skipped before the hang")
        os._exit(1)

    thread = threading.Thread(target=watch, name="pytest-exit-watchdog", daemon=True)
    thread.start()
    return thread


def _other_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t is not threading.main_thread() and t.is_alive() and t.name != "pytest-exit-watchdog"]


def to_stderr(capture: Any) -> Callable[[str], None]:
    """A ``report(line)`` that reaches the terminal even while pytest captures output."""
    def report(line: str) -> None:
        if capture is not None:
            capture.suspend_global_capture(in_=False)
        print(line, file=sys.__stderr__, flush=True)
    return report
