"""The engine's public API: every name the studio (and other front ends) may use, in one place.

``studio/`` imports the engine only from here (``from engine.api import RunConfig, ...``);
tests/test_architecture.py fails when a studio module reaches past this module or names something
that is not in ``__all__``, and docs/API.md documents each name. Inside the engine, modules import
each other directly, following the layers of docs/ARCHITECTURE.md.

Names are resolved on first use (PEP 562 ``__getattr__``): importing this module imports nothing
else, so a front end pays only for what it uses, in the order it uses it (the studio sets up host
memory before torch is imported; ``engine.race`` and the config stay importable without torch).
"""

from __future__ import annotations

import importlib
from typing import Any

EXPORTS: dict[str, tuple[str, ...]] = {
    # configuration, errors, files
    "engine.config": ("ALGORITHM_CONFIGS", "BUILTIN_GLYPHS", "DataConfig", "EpisodeShape", "FieldSpec",
                      "ModelConfig", "RunConfig", "TaskConfig", "TrainConfig", "check_field", "describe_fields",
                      "validate"),
    "engine.errors": ("ConfigError", "EngineError", "describe_exception"),
    "engine.io": ("atomic_write_json",),
    # algorithms: the registry is the only list; capabilities are attributes of each class
    "engine.algorithms.base": ("Algorithm", "Predictor"),
    "engine.algorithms.registry": ("ALGORITHMS", "algorithm_class", "display_title", "register", "unregister"),
    "engine.algorithms.recipes": ("RECIPES", "Recipe", "apply_recipe"),
    # data
    "engine.data.dataset": ("FewShotData", "load_data", "resolve_root"),
    "engine.data.folder": ("IMAGE_EXTENSIONS", "FolderIndex", "scan_folder"),
    "engine.data.sinusoid": ("SinusoidTask", "SinusoidTasks"),
    "engine.data.splits": ("ClassSplit", "split_classes"),
    "engine.data.strokes": ("drawing_span", "pen_width_for_span"),
    # training: runs, their callbacks and control, the run store, the child process, torchrun
    "engine.training.callbacks": ("Callback", "RunInfo", "RunSummary", "StepMetrics", "ValidationResult"),
    "engine.training.checkpoint": ("load_algorithm", "load_checkpoint"),
    "engine.training.control": ("RunControl",),
    "engine.training.distributed": ("handoff_problems", "torchrun_command"),
    "engine.training.estimate": ("TrainingTimeEstimate", "measure_training_time"),
    "engine.training.hooks": ("callback_hooks", "forwarding_hook"),
    "engine.training.host_memory": ("keep_freed_host_memory_in_all_threads",),
    "engine.runtime.threads": ("torch_threads",),
    "engine.training.process": ("ChildJob", "TrainingJob", "TrainingProcess"),
    "engine.training.run_store": ("RunRecord", "RunStore", "checkpoint_file", "checkpoint_label", "default_runs_root",
                                  "find_checkpoint"),
    "engine.training.evaluation_store": ("StoredEvaluation", "checkpoint_stamp", "evaluation_file", "load_evaluation",
                                         "save_evaluation"),
    "engine.training.trainer": ("Trainer",),
    # analysis: evaluation, episode inspection, inner-loop scrubbing
    "engine.evaluation": ("evaluate",),
    "engine.inspection": ("inspect_episodes",),
    "engine.scrubbing": ("AdaptationTrajectory", "TestEpisode", "adaptation_trajectory", "check_inner_loop",
                         "has_inner_loop", "inner_loop_algorithms", "inner_loop_steps", "sample_test_episode"),
    # races
    "engine.race": ("CPU_MEMORY_METHOD", "CUDA_MEMORY_METHOD", "MAX_ALGORITHMS", "MIN_ALGORITHMS",
                    "SHARED_STREAM_NOTE", "AlgorithmResult", "Race", "RaceCallback", "RaceJob", "RaceConfig", "RaceInfo",
                    "RaceResult", "SavedRace", "default_race_name", "delete_race", "format_accuracy", "format_memory",
                    "list_races", "load_race", "new_race_dir"),
    # hyperparameter sweeps on Optuna (Sweep view)
    "engine.sweep": ("MIN_TRIALS_FOR_IMPORTANCE", "PRUNERS", "SearchDimension", "SearchSpace", "SweepJob",
                     "SweepOutcome", "SweepSettings", "SweepSnapshot", "TrialRow", "build_space",
                     "default_storage_url", "dimension_from_json", "load_sweep"),
    "engine.sweep.space": ("NOT_SEARCHED",),
    # sinusoid regression (teaching view)
    "engine.regression": ("KINDS", "MODEL_TITLES", "RegressionConfig", "RegressionModel", "fit_trajectory",
                          "load_models", "train_both", "trajectory_mse"),
    # meta-RL on 2-D navigation (teaching view)
    "engine.rl.config": ("NavigationConfig", "POLICY_KINDS", "POLICY_TITLES"),
    "engine.rl.env": ("GOAL_HIGH", "GOAL_LOW", "check_goal"),
    "engine.rl.evaluation": ("GoalAdaptation", "adapt_to_goal"),
    "engine.rl.store": ("load_policies",),
    "engine.rl.training": ("NavigationPolicy", "train_policy"),
    # leaderboards (every algorithm's recipe, the same seeded test episodes; the Leaderboard view)
    "engine.leaderboard": ("LEADERBOARDS_FOLDER", "Leaderboard", "LeaderboardCallback", "LeaderboardRow",
                           "LeaderboardSpec", "ShotResult", "format_peak_memory", "format_shot_accuracy",
                           "format_train_time", "latest_leaderboard", "load_leaderboard", "parse_algorithms",
                           "run_leaderboard"),
    # export to ONNX / pt2 / TorchScript with the parity check (the Adapt view's Export dialog)
    "engine.export": ("EXPORT_FORMATS", "PARITY_TOLERANCE", "ExportReport", "ExportSource", "export_source"),
    # interactive sessions (Qt-free state of the Adapt view)
    "engine.sessions": ("BULK_FILES", "DEMO_MODEL", "DEMO_SHOTS", "SESSION_FILES_PREFIX", "AdaptOutput",
                        "AdaptSession", "ClassState", "DecodeResult", "DropListing", "Example", "FeatureCache",
                        "MapData", "OpenedModel", "SupportSet", "class_folder_groups", "decode_files", "list_dropped",
                        "open_model", "remote_message", "support_key", "usable_classes"),
}
"""Owning module -> the public names it provides."""

_OWNER = {name: module for module, names in EXPORTS.items() for name in names}
__all__ = list(_OWNER)


def __getattr__(name: str) -> Any:
    """Import ``name`` from the module that owns it, once (then it is an ordinary module attribute)."""
    module = _OWNER.get(name)
    if module is None:
        raise AttributeError(f"engine.api has no public name {name!r} (see docs/API.md)")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
