"""Temporary re-exports: background work moved to :mod:`studio.jobs` (removed once nothing imports it)."""

from engine.errors import describe_exception  # noqa: F401
from studio.jobs.engine_run import (TRAINING_PROCESS_ENV, QtCallbackAdapter, QtRaceAdapter, RaceWorker,  # noqa: F401
                                    TrainingWorker, train_in_child_process)
from studio.jobs.policy import (MainThreadGarbageCollector, install_main_thread_gc,  # noqa: F401
                                keep_gui_thread_single_threaded, use_compute_threads)
from studio.jobs.spare import SPARE_DELAY_MS, SpareTrainingProcess  # noqa: F401
from studio.jobs.thread import (ProgressFn, StopFn, WorkerHandle, active_handles, run_in_worker,  # noqa: F401
                                stop_all_jobs)
