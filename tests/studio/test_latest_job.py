"""studio.jobs.latest.LatestJob: only the newest job's result, error and progress reach the view."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject

from studio.jobs.latest import LatestJob

WAIT_MS = 10_000


def _blocking(release: threading.Event, value: object, stopped: list[bool] | None = None):
    def job(progress, should_stop):
        progress(0, 2)
        release.wait(WAIT_MS / 1000)
        if stopped is not None:
            stopped.append(should_stop())
        progress(1, 2)
        return value
    return job


def test_a_newer_job_wins_and_the_older_one_is_asked_to_stop(qtbot) -> None:
    latest, results, progress, stopped = LatestJob(), [], [], []
    release = threading.Event()
    latest.start(_blocking(release, "old", stopped), on_result=results.append, on_error=results.append,
                 on_progress=lambda done, total: progress.append(("old", done)))
    latest.start(lambda p, s: "new", on_result=results.append, on_error=results.append,
                 on_progress=lambda done, total: progress.append(("new", done)))
    release.set()
    assert latest.wait_all(WAIT_MS)
    qtbot.waitUntil(lambda: not latest.is_running(), timeout=WAIT_MS)
    qtbot.wait(100)  # queued deliveries of the old job would arrive now
    assert results == ["new"]
    assert stopped == [True], "start() must ask the previous job to stop"
    assert all(who == "new" for who, _ in progress)


def test_a_stale_error_is_dropped_and_the_newest_error_is_shown(qtbot) -> None:
    latest, errors = LatestJob(), []
    release = threading.Event()

    def failing_later(progress, should_stop):
        release.wait(WAIT_MS / 1000)
        raise ValueError("stale")

    def failing_now(progress, should_stop):
        raise ValueError("current")

    latest.start(failing_later, on_result=errors.append, on_error=errors.append)
    latest.start(failing_now, on_result=errors.append, on_error=errors.append)
    release.set()
    assert latest.wait_all(WAIT_MS)
    qtbot.waitUntil(lambda: not latest.is_running(), timeout=WAIT_MS)
    qtbot.wait(100)
    assert errors == ["ValueError: current"]


def test_drop_forgets_the_running_job(qtbot) -> None:
    latest, results = LatestJob(), []
    release, stopped = threading.Event(), []
    latest.start(_blocking(release, "dropped", stopped), on_result=results.append, on_error=results.append)
    latest.drop()
    release.set()
    assert latest.wait_all(WAIT_MS)
    qtbot.wait(150)
    assert results == [] and stopped == [True]


def test_stop_previous_false_lets_the_older_job_finish_but_still_drops_its_result(qtbot) -> None:
    latest, results, stopped = LatestJob(), [], []
    release = threading.Event()
    latest.start(_blocking(release, "old", stopped), on_result=results.append, on_error=results.append)
    latest.start(lambda p, s: "new", on_result=results.append, on_error=results.append, stop_previous=False)
    release.set()
    assert latest.wait_all(WAIT_MS)
    qtbot.waitUntil(lambda: not latest.is_running(), timeout=WAIT_MS)
    qtbot.wait(100)
    assert results == ["new"] and stopped == [False]


def test_a_deleted_receiver_gets_nothing(qtbot) -> None:
    class Receiver(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.got: list[object] = []

        def take(self, value: object) -> None:
            self.got.append(value)

    receiver, release = Receiver(), threading.Event()
    latest = LatestJob()
    latest.start(_blocking(release, "late"), on_result=receiver.take, on_error=receiver.take)
    got = receiver.got
    receiver.deleteLater()
    qtbot.waitUntil(lambda: not _alive(receiver), timeout=WAIT_MS)
    release.set()
    assert latest.wait_all(WAIT_MS)
    qtbot.wait(100)
    assert got == []


def _alive(obj: QObject) -> bool:
    import shiboken6

    return shiboken6.isValid(obj)
