"""A small process-wide cache of loaded data sets (engine.data.dataset.load_data results).

Decoding a folder takes seconds; the dataset panel, the trainer and the
evaluation view often need the very same data (same DataConfig, same split),
so the studio keeps the last few :class:`FewShotData` and hands them to the
engine (``Trainer(..., data=...)``, ``evaluate(algorithm, data)``). Thread
safe: loads run in worker threads.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from collections import OrderedDict
from typing import Callable

from engine.api import ClassSplit, DataConfig, FewShotData, load_data

MAX_ENTRIES = 2

_lock = threading.Lock()
_cache: "OrderedDict[str, FewShotData]" = OrderedDict()


def cache_key(cfg: DataConfig, split: ClassSplit | None = None) -> str:
    """The identity of a loaded data set: every data setting and the split."""
    return json.dumps({"data": asdict(cfg), "split": split.to_dict() if split is not None else None},
                      sort_keys=True)


def cached_data(cfg: DataConfig, split: ClassSplit | None = None) -> FewShotData | None:
    """The loaded data for ``cfg`` (and ``split``) if it is in the cache."""
    key = cache_key(cfg, split)
    with _lock:
        data = _cache.get(key)
        if data is not None:
            _cache.move_to_end(key)
        return data


def load_data_cached(cfg: DataConfig, split: ClassSplit | None = None,
                     progress: Callable[[int, int], None] | None = None, refresh: bool = False) -> FewShotData:
    """``engine.data.dataset.load_data`` through the cache (``refresh`` re-reads the folder)."""
    key = cache_key(cfg, split)
    if not refresh:
        data = cached_data(cfg, split)
        if data is not None:
            if progress is not None:
                progress(1, 1)
            return data
    data = load_data(cfg, split=split, progress=progress)
    with _lock:
        _cache[key] = data
        # a run whose split came from the config is also found under its explicit split
        if split is None:
            _cache[cache_key(cfg, data.split)] = data
        while len(_cache) > MAX_ENTRIES * 2:
            _cache.popitem(last=False)
    return data


def clear_cache() -> None:
    with _lock:
        _cache.clear()

