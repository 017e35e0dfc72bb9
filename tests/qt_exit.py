"""The end of a test run that used Qt: an orderly teardown, a failure for anything left alive, a watchdog.

The interpreter's own exit used to crash now and then after a green run (exit 139), and the suite
left with ``os._exit`` to hide it. The cause was ours: the paste tests put a QMimeData made in
Python on the clipboard. The clipboard owns it, and QtGui deletes it in a C exit handler after the
interpreter has finalised; the wrapper's destructor then needs Python and the process dies with
SIGSEGV (gdb: ``__run_exit_handlers`` -> libQt6Gui -> QtCore wrapper -> ``Shiboken::Object::destroy``
-> ``_PyErr_Fetch(tstate=NULL)``; ``tests/studio/test_adapt_panel.py`` alone reproduces it). Now:

1. :func:`tear_down_qt`, in the GUI thread, after the last test: every top-level widget is closed (a
   window's close stops its run, race and jobs, and ends its spare training process) and deleted,
   the studio's background jobs are stopped, the clipboard is cleared, Qt's deferred deletions are
   delivered and garbage is collected;
2. :func:`leftovers`: any thread, background job or child process still alive is named on stderr
   with every thread's stack and FAILS the run;
3. then the interpreter exits as usual, running its whole finalisation: a crash there shows.

:func:`arm_watchdog` guards the end of the run: if the process is still alive
``META_STUDIO_TEST_WATCHDOG_S`` seconds after the last test, it names the live threads, dumps every
thread's stack (faulthandler) and exits with status 1: a hang at shutdown fails the run.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import sys
import threading
from typing import Any, Callable

WATCHDOG_S = float(os.environ.get("META_STUDIO_TEST_WATCHDOG_S", "90"))
_JOB_WAIT_MS = 30_000


def uses_qt() -> bool:
    return "PySide6.QtWidgets" in sys.modules


def tear_down_qt() -> dict[str, int]:
    """Close and delete every top-level widget, stop background jobs, clear the clipboard, deliver
    deferred deletions and collect garbage, in the GUI thread; how many windows and jobs there were."""
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
    clear_clipboard()
    for _ in range(3):  # deletions can post more deletions (children, then their signals' receivers)
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        QCoreApplication.processEvents()
        gc.collect()
    return done


def clear_clipboard() -> None:
    """Delete what the tests left on the clipboard while Python is alive (see the module doc)."""
    from PySide6.QtGui import QClipboard, QGuiApplication

    clipboard = QGuiApplication.clipboard()
    clipboard.clear(QClipboard.Mode.Clipboard)
    if clipboard.supportsSelection():
        clipboard.clear(QClipboard.Mode.Selection)


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
