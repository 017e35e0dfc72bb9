"""An algorithm race: 2 to 6 algorithms trained side by side on one data set and one episode stream.

``Race(RaceConfig(...), race_dir=...).run()`` loads the data set once and builds one
:class:`~engine.training.trainer.Trainer` per algorithm (``data=`` the shared data set), then
trains them round-robin, one step each in turn, so every curve grows at the same pace and the
wall-clock comparison sees the same machine conditions. At the end every algorithm is evaluated
on the very same seeded test episodes (:func:`engine.evaluation.evaluate`, ``test_seed``), and
the result table holds test accuracy with its 95% CI, training time and peak memory.

One stream of training batches: the episodic algorithms (ProtoNet, MAML, Reptile, Matching
Networks) draw from one :class:`SharedBatchStream` of seeded episodes, so step ``t`` of each of
them trains on exactly the same tasks (the same tensors). The class-batch algorithms (Baseline,
Baseline++, SimpleShot: ``batch_kind == "classes"``) pre-train on plain class batches instead;
they share a seeded class-batch stream among themselves (one per batch size). Each stream is
the one a solo run with the same config would draw.

Time: each algorithm's own compute time, the wall-clock seconds of its training steps (batch to
the device, forward, backward, update; without validation, checkpoints, pauses or the other
algorithms' steps), recorded per step. Peak memory: on CUDA ``torch.cuda.max_memory_allocated``,
reset before each of the algorithm's steps, minus what the other algorithms hold; on the CPU
(which has no allocator statistics) its weights, gradients and optimiser state plus the input
batch plus the peak of live tensor bytes during one training step profiled with
``torch.profiler`` memory events after the race. ``memory_method`` in each row says which.

A race folder (``<runs root>/races/<name>/``) holds ``race.json`` (config, status and result
table, written atomically), ``curves.jsonl`` (one row per algorithm step and validation, with the
own-time seconds) and one normal run folder per algorithm, which can be opened, evaluated or
resumed like any run. :func:`load_race` reopens it. Reports go through :class:`RaceCallback`;
stop and pause through a :class:`~engine.training.control.RunControl`. Importing this package does
not import torch (the CLI and the studio import it at start-up).

Modules: :mod:`~engine.race.config` (RaceConfig, from the run config's sections),
:mod:`~engine.race.results` (what a race reports; all of it pickles), :mod:`~engine.race.stream`
(the shared batch stream), :mod:`~engine.race.scheduler` (Race: the round-robin over
``Trainer.steps()``), :mod:`~engine.race.table` (the final table), :mod:`~engine.race.store`
(race folders), :mod:`~engine.race.job` (RaceJob: a race in the training child process). Memory measurement: :mod:`engine.training.step_memory`. The text table of
``meta-engine race``: :mod:`engine.cli.race`.
"""

from engine.race.config import (MAX_ALGORITHMS, MIN_ALGORITHMS, SHARED_SECTIONS, RaceConfig, algorithm_configs,
                                batch_kind, default_race_name)
from engine.race.results import (MIB, AlgorithmResult, RaceCallback, RaceCallbackList, RaceInfo, RaceResult,
                                 RaceStep, format_accuracy, format_memory)
from engine.race.job import RaceJob
from engine.race.scheduler import Race
from engine.race.store import (CURVES_FILE, FORMAT, RACE_FILE, RACES_FOLDER, VERSION, RaceCurve, RaceEntry,
                               SavedRace, delete_race, list_races, load_race, new_race_dir, races_root,
                               racer_folder)
from engine.race.stream import SHARED_STREAM_NOTE, SharedBatchStream, StreamReader
from engine.training.step_memory import (CPU_MEMORY_METHOD, CUDA_MEMORY_METHOD, batch_bytes, profiled_step_peak_bytes,
                                         state_bytes)

__all__ = [
    # config
    "MAX_ALGORITHMS", "MIN_ALGORITHMS", "SHARED_SECTIONS", "RaceConfig", "algorithm_configs", "batch_kind",
    "default_race_name",
    # results and callbacks
    "MIB", "AlgorithmResult", "RaceCallback", "RaceCallbackList", "RaceInfo", "RaceResult", "RaceStep",
    "format_accuracy", "format_memory",
    # the race, and the race as a job for the training child process
    "Race", "RaceJob",
    # race folders
    "CURVES_FILE", "FORMAT", "RACE_FILE", "RACES_FOLDER", "VERSION", "RaceCurve", "RaceEntry", "SavedRace",
    "delete_race", "list_races", "load_race", "new_race_dir", "races_root", "racer_folder",
    # the shared batch stream
    "SHARED_STREAM_NOTE", "SharedBatchStream", "StreamReader",
    # memory measurement (engine.training.step_memory)
    "CPU_MEMORY_METHOD", "CUDA_MEMORY_METHOD", "batch_bytes", "profiled_step_peak_bytes", "state_bytes",
]
