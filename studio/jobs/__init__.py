"""The one way the studio runs work off the GUI thread (see docs/ARCHITECTURE.md).

* :mod:`studio.jobs.thread`: :func:`~studio.jobs.thread.run_in_worker`, a function in a worker thread
  (evaluation, data loading, adaptation); :mod:`studio.jobs.latest`: "latest wins" on top of it;
  :mod:`studio.jobs.background`: the one-job-at-a-time view mixin.
* :mod:`studio.jobs.engine_run`: a training run or a race in the training child process, its signals
  generated from the engine's callback protocols; :mod:`studio.jobs.spare`: a child started ahead.
* :mod:`studio.jobs.policy`: garbage collection and PyTorch thread counts of the GUI process.
"""
