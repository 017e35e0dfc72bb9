"""Hyperparameter sweeps on Optuna: a search space from the config schema, trials that are training runs,
pruning, shared study storages (see :mod:`engine.sweep.study`)."""

from engine.sweep.job import SweepJob
from engine.sweep.results import (MIN_TRIALS_FOR_IMPORTANCE, SweepSnapshot, TrialRow, load_sweep,
                                  parameter_importances, study_names)
from engine.sweep.space import (SearchDimension, SearchSpace, apply_values, build_space, dimension_from_json,
                                dimension_from_text, field_spec, space_from_json)
from engine.sweep.storage import default_storage_url, open_storage
from engine.sweep.study import PRUNERS, SweepOutcome, SweepSettings, open_study, recover_interrupted, run_sweep

__all__ = ["MIN_TRIALS_FOR_IMPORTANCE", "PRUNERS", "SearchDimension", "SearchSpace", "SweepJob", "SweepOutcome",
           "SweepSettings", "SweepSnapshot", "TrialRow", "apply_values", "build_space", "default_storage_url",
           "dimension_from_json", "dimension_from_text", "field_spec", "load_sweep", "open_storage", "open_study",
           "parameter_importances", "recover_interrupted", "run_sweep", "space_from_json", "study_names"]
