"""Running a leaderboard: train each algorithm with its recipe (one run in the run store each, one after the
other), evaluate its final weights on the same seeded test episodes at every shot, measure its peak memory,
and write the JSON and Markdown table after every algorithm (so a stopped leaderboard keeps what it did and
``resume`` skips the algorithms already done). One algorithm failing is reported in its row; the others go on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from engine.algorithms.registry import algorithm_class
from engine.config import RunConfig
from engine.data.dataset import FewShotData, load_data, other_folder
from engine.errors import ConfigError, describe_exception
from engine.evaluation import evaluate
from engine.inference import evaluation_classes
from engine.leaderboard.spec import LeaderboardSpec, TestEpisodes, recipe_config, recipe_of
from engine.leaderboard.table import Leaderboard, LeaderboardRow, ShotResult, load_leaderboard, save_leaderboard
from engine.training.callbacks import Callback, StepMetrics
from engine.training.control import RunControl
from engine.training.run_store import RunStore, now_iso
from engine.training.sampling import batch_kind, build_training_sampler
from engine.training.step_memory import cpu_step_memory
from engine.training.trainer import Trainer

CUDA_PEAK_METHOD = "CUDA: torch.cuda.max_memory_allocated over its whole training run (reset before it)"


class LeaderboardCallback:
    """Typed, empty hooks of a running leaderboard; override what you need."""

    def on_log(self, message: str) -> None: ...

    def on_progress(self, done: int, total: int) -> None:
        """Work units done of the total: training steps plus test episodes of every algorithm."""

    def on_row(self, row: LeaderboardRow) -> None: ...


class _Progress:
    """Counts work units (training steps, test episodes) across the algorithms for ``on_progress``."""

    def __init__(self, callback: LeaderboardCallback, spec: LeaderboardSpec) -> None:
        self.callback = callback
        self.per_algorithm = spec.base.train.steps + spec.episodes * len(spec.shots)
        self.total = self.per_algorithm * len(spec.algorithms)
        self.base = 0

    def at(self, done_in_algorithm: int) -> None:
        self.callback.on_progress(min(self.base + done_in_algorithm, self.total), self.total)

    def next_algorithm(self) -> None:
        self.base += self.per_algorithm
        self.at(0)


class _StepForwarder(Callback):
    """Forwards a run's steps to the leaderboard's progress, and stops the run when asked."""

    def __init__(self, progress: _Progress, control: RunControl, should_stop: Callable[[], bool]) -> None:
        self.progress, self.control, self.should_stop = progress, control, should_stop

    def on_step(self, metrics: StepMetrics) -> None:
        self.progress.at(metrics.step)
        if self.should_stop():
            self.control.stop()


def run_leaderboard(spec: LeaderboardSpec, json_path: Path, *, runs_root: Path | None = None, resume: bool = False,
                    command: str = "", callback: LeaderboardCallback | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> Leaderboard:
    """Run (or, with ``resume``, finish) the leaderboard ``spec``, writing ``json_path`` and its ``.md``
    after every algorithm. ConfigError / DatasetError for bad input before any training."""
    callback = callback or LeaderboardCallback()
    spec.validate()
    started = time.perf_counter()
    kept = kept_rows(json_path, spec) if resume else {}
    callback.on_log(f"loading data set {spec.base.data.root}")
    data = load_data(spec.base.data)
    test_data, class_ids, scope = choose_test_classes(spec, data)
    board = Leaderboard(name=spec.display_name, settings=spec.settings(), device=spec.base.train.device,
                        test_classes=scope, created=now_iso(), command=command)
    settings = [TestEpisodes(spec.n_way, shot, spec.n_query, spec.episodes, spec.seed, class_ids) for shot in spec.shots]
    store = RunStore(runs_root)
    progress = _Progress(callback, spec)
    for index, name in enumerate(spec.algorithms):
        if index:
            progress.next_algorithm()
        if should_stop():
            break
        if name in kept:
            callback.on_log(f"{name}: kept from {json_path.name} (already done)")
            row = kept[name]
        else:
            row = run_algorithm(spec, name, data, test_data, settings, store, progress, callback, should_stop)
        board.rows.append(row)
        board.duration_s = time.perf_counter() - started
        save_leaderboard(board, json_path)
        callback.on_row(row)
    progress.at(progress.per_algorithm)
    board.duration_s = time.perf_counter() - started
    save_leaderboard(board, json_path)
    return board


def kept_rows(json_path: Path, spec: LeaderboardSpec) -> dict[str, LeaderboardRow]:
    """The finished rows of an earlier leaderboard in ``json_path`` that this one can keep (same settings, same
    recipe); {} when there is no such file. ConfigError when the file was made with other settings."""
    if not json_path.is_file():
        return {}
    earlier = load_leaderboard(json_path)
    if earlier.settings != spec.settings():
        differ = sorted(key for key in set(earlier.settings) | set(spec.settings())
                        if earlier.settings.get(key) != spec.settings().get(key))
        raise ConfigError(f"{json_path}: made with other settings ({', '.join(differ)}); resume it with the same "
                          "options, or write another file with --out")
    return {row.algorithm: row for row in earlier.rows
            if row.status == "finished" and row.algorithm in spec.algorithms and row.recipe == _recipe_or_none(row)}


def _recipe_or_none(row: LeaderboardRow) -> dict[str, Any] | None:
    try:
        return recipe_of(row.algorithm)
    except ConfigError:
        return None


def choose_test_classes(spec: LeaderboardSpec, data: FewShotData) -> tuple[FewShotData, list[int], str]:
    """(the data set tested on, its class ids, a phrase naming them): the training data set's test classes, or
    with ``spec.test_root`` the classes of that folder unseen in training (their groups too)."""
    if spec.test_root:
        test_data = load_data(*other_folder(spec.base.data, spec.test_root))
        class_ids, scope = evaluation_classes(test_data, data.split.train, "novel", None, own=False)
        scope = f"{scope} of {spec.test_root}"
    else:
        test_data, class_ids, scope = data, data.class_ids("test"), f"the test classes of {spec.base.data.root}"
    if len(class_ids) < spec.n_way:
        raise ConfigError(f"--n-way {spec.n_way}: only {len(class_ids)} classes to test on ({scope})")
    return test_data, class_ids, scope


def new_row(name: str, total_steps: int) -> LeaderboardRow:
    cls = algorithm_class(name)
    return LeaderboardRow(algorithm=name, title=cls.display_title(), kind=cls.kind,
                          transductive=bool(cls.transductive), paper=cls.paper, total_steps=total_steps,
                          recipe=recipe_of(name))


def run_algorithm(spec: LeaderboardSpec, name: str, data: FewShotData, test_data: FewShotData,
                  settings: list[TestEpisodes], store: RunStore, progress: _Progress,
                  callback: LeaderboardCallback, should_stop: Callable[[], bool]) -> LeaderboardRow:
    """Train, evaluate and measure one algorithm; a failure anywhere is the row's status and message."""
    row = new_row(name, spec.base.train.steps)
    try:
        config = recipe_config(spec, name, run_name=f"{spec.display_name}: {row.title}")
        callback.on_log(f"{name}: training {config.train.steps} steps with its recipe {row.recipe or '(defaults)'}")
        trainer = _train(config, data, store, progress, should_stop, row)
        if row.status != "finished":
            return row
        done = config.train.steps
        for setting in settings:
            callback.on_log(f"{name}: evaluating {setting.episodes} episodes, {setting.key} (seed {setting.seed})")
            row.results.append(evaluate_setting(trainer.algorithm, test_data, setting,
                                                lambda d, t, base=done: progress.at(base + d), should_stop))
            done += setting.episodes
        _measure_memory(row, trainer, config, data)
    except Exception as error:  # noqa: BLE001 - one algorithm's failure is its row's; the others go on
        row.status, row.message = "failed", describe_exception(error)
    if should_stop() and row.status == "finished" and any(r.episodes < spec.episodes for r in row.results):
        row.status, row.message = "stopped", "stopped during its test evaluation"
    callback.on_log(f"{name}: {row.status}" + (f" ({row.message})" if row.message else ""))
    return row


def _train(config: RunConfig, data: FewShotData, store: RunStore, progress: _Progress,
           should_stop: Callable[[], bool], row: LeaderboardRow) -> Trainer:
    """Train one run in the run store (on the shared decoded data when the recipe leaves the data settings
    alone); the row gets its status, steps, time and run folder."""
    import torch

    control = RunControl()
    run_dir = store.new_run_dir(config.name or config.algorithm.name)
    row.run_dir = str(run_dir)
    shared = data if config.data == data.config else None
    cuda = config.train.device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats(torch.device(config.train.device))
    trainer = Trainer(config, run_dir=run_dir, data=shared, control=control,
                      callbacks=[_StepForwarder(progress, control, should_stop)])
    summary = trainer.run()
    row.status, row.steps_done, row.message = summary.status, summary.steps_done, summary.message
    row.train_seconds = trainer.train_seconds
    if cuda:
        row.peak_memory_bytes = int(torch.cuda.max_memory_allocated(torch.device(config.train.device)))
        row.memory_method = CUDA_PEAK_METHOD
    return trainer


def evaluate_setting(algorithm: Any, data: FewShotData, setting: TestEpisodes,
                     progress: Callable[[int, int], None], should_stop: Callable[[], bool]) -> ShotResult:
    """Accuracy of ``algorithm`` on the setting's seeded episodes (every algorithm draws the same ones: the
    episode sampler is seeded with ``setting.seed`` over ``setting.class_ids``)."""
    result = evaluate(algorithm, data, episodes=setting.episodes, n_way=setting.n_way, n_shot=setting.n_shot,
                      n_query=setting.n_query, seed=setting.seed, progress=progress, should_stop=should_stop,
                      class_ids=setting.class_ids)
    return ShotResult(n_way=setting.n_way, n_shot=setting.n_shot, episodes=result.n_episodes, seed=setting.seed,
                      accuracy=result.accuracy if result.n_episodes else None,
                      ci95=result.ci95 if result.n_episodes else None)


def _measure_memory(row: LeaderboardRow, trainer: Trainer, config: RunConfig, data: FewShotData) -> None:
    """On the CPU: one profiled training step on a batch like the run's first
    (:func:`~engine.training.step_memory.cpu_step_memory`); CUDA was measured while training."""
    if row.memory_method or trainer.algorithm is None:
        return
    if config.train.device != "cpu":
        row.memory_method = f"not measured on {config.train.device}"
        return
    training_data = trainer.data if trainer.data is not None else data
    sampler = build_training_sampler(config, training_data)
    batch = sampler.sample_batch(config.task.meta_batch_size) if batch_kind(config) == "episodes" else sampler.sample()
    row.peak_memory_bytes, row.memory_method = cpu_step_memory(trainer.algorithm, batch)
