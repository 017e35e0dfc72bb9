"""Why studio.jobs.thread keeps one QThread per job instead of superqt's create_worker (measured).

    QT_QPA_PLATFORM=offscreen python bench/bench_superqt_workers.py      (needs: pip install superqt)

A: a short job started behind two long ones (a run's and a race's relay threads): superqt queues it in
the global thread pool (as many threads as cores). B: superqt redirects warnings.showwarning around
each job, process-wide. C: the cost of one job, start to result in the GUI thread.
superqt is not a dependency of the studio; this bench alone needs it.
"""
import os, sys, time, threading, warnings
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QThreadPool, QEventLoop, QTimer
from superqt.utils import create_worker
app = QApplication([])
import studio.jobs.thread as old

def spin(cond, timeout=30):
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
    return time.monotonic() - t0

print("global pool maxThreadCount:", QThreadPool.globalInstance().maxThreadCount())
# A: two long jobs (a run's relay, a race's relay) then a short one (an evaluation)
release = threading.Event()
longs = [create_worker(release.wait, _start_thread=True, _ignore_errors=True) for _ in range(2)]
got = []
t0 = time.monotonic()
w = create_worker(lambda: 1, _connect={"returned": got.append}, _start_thread=True)
QTimer.singleShot(3000, release.set)
spin(lambda: got)
print(f"A superqt: short job behind 2 long ones delivered after {time.monotonic()-t0:.2f} s (long ones end at 3 s)")
release.clear(); got.clear()
hs = [old.run_in_worker(lambda p, s: release.wait(), on_result=lambda v: None, on_error=print) for _ in range(2)]
t0 = time.monotonic()
old.run_in_worker(lambda p, s: 1, on_result=got.append, on_error=print)
QTimer.singleShot(3000, release.set)
spin(lambda: got)
print(f"A QThread: short job behind 2 long ones delivered after {time.monotonic()-t0:.2f} s")
spin(lambda: not old.active_handles())
# B: overlapping jobs and the process-wide warnings state
original = warnings.showwarning
a_go, b_go = threading.Event(), threading.Event()
def job_a(): a_go.wait(5)
def job_b(): b_go.wait(5)
done = []
wa = create_worker(job_a, _connect={"finished": lambda: done.append("a")}, _start_thread=True)
spin(lambda: wa.is_running, 2)
wb = create_worker(job_b, _connect={"finished": lambda: done.append("b")}, _start_thread=True)
spin(lambda: wb.is_running, 2); time.sleep(0.1)
during = warnings.showwarning is original
a_go.set(); spin(lambda: "a" in done); b_go.set(); spin(lambda: "b" in done)
print(f"B superqt: warnings.showwarning original while a job runs: {during}; after two overlapping jobs ended: {warnings.showwarning is original}")
caught = []
warnings.showwarning = original
import logging; logging.captureWarnings(True)
class H(logging.Handler):
    def emit(self, r): caught.append(r.getMessage())
logging.getLogger("py.warnings").addHandler(H())
release.clear()
w = create_worker(release.wait, _start_thread=True, _ignore_errors=True); spin(lambda: w.is_running, 2); time.sleep(0.1)
warnings.warn("from the GUI thread while a job runs")
release.set(); spin(lambda: not w.is_running)
print(f"B superqt: a GUI-thread warning while a job runs reaches logging: {bool(caught)}")
logging.captureWarnings(False)
# C: per-job overhead, 300 trivial jobs one after the other
for name in ("superqt", "QThread"):
    t0 = time.perf_counter()
    for _ in range(300):
        got = []
        if name == "superqt":
            create_worker(lambda: 1, _connect={"returned": got.append}, _start_thread=True)
        else:
            old.run_in_worker(lambda p, s: 1, on_result=got.append, on_error=print)
        spin(lambda: got)
    print(f"C {name}: {1000*(time.perf_counter()-t0)/300:.2f} ms per trivial job (start to result in the GUI thread)")
