import json
import os

import pytest

from engine.errors import ConfigError, EngineError
from engine.training import run_store as rs


def _make_run(store: rs.RunStore, name: str, created: str, status: str = "finished", pid=None):
    run_dir = store.new_run_dir(name)
    rs.write_record(rs.RunRecord(run_dir, name, "protonet", "builtin:glyphs", "cpu", status, 0.5, 1.0, created,
                                 10, 10, pid=pid))
    return run_dir


def test_runs_are_listed_newest_first_and_renamed_and_deleted(tmp_path):
    store = rs.RunStore(tmp_path)
    older = _make_run(store, "a", "2026-01-01T00:00:00")
    newer = _make_run(store, "b", "2026-02-01T00:00:00")
    (tmp_path / "not-a-run").mkdir()
    assert [r.run_dir for r in store.list_runs()] == [newer, older]
    store.rename(older, "renamed")
    assert rs.RunStore(tmp_path).record(older).name == "renamed"
    with pytest.raises(ConfigError):
        store.rename(older, "  ")
    store.delete(newer)
    assert [r.name for r in store.list_runs()] == ["renamed"]


def test_delete_refuses_folders_outside_the_store(tmp_path):
    store = rs.RunStore(tmp_path / "runs")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / rs.RUN_FILE).write_text("{}")
    with pytest.raises(EngineError, match="refusing"):
        store.delete(outside)
    assert outside.exists()


def test_running_run_of_a_dead_process_reads_as_interrupted(tmp_path):
    store = rs.RunStore(tmp_path)
    dead = _make_run(store, "dead", "2026-01-01", status="running", pid=2**22 + 12345)
    alive = _make_run(store, "alive", "2026-01-02", status="running", pid=os.getpid())
    assert store.record(dead).status == "interrupted"
    assert store.record(alive).status == "running"


def test_torn_metrics_line_is_ignored_and_truncation_keeps_earlier_steps(tmp_path):
    path = tmp_path / rs.METRICS_FILE
    writer = rs.MetricsWriter(path)
    for step in range(1, 6):
        writer.write({"kind": "step", "step": step, "loss": 1.0})
    writer.close()
    with open(path, "a") as handle:
        handle.write('{"kind": "step", "ste')  # a kill in the middle of a write
    assert [r["step"] for r in rs.read_metrics(path)] == [1, 2, 3, 4, 5]
    rs.MetricsWriter(path, keep_up_to_step=3).close()
    assert [r["step"] for r in rs.read_metrics(path)] == [1, 2, 3]


def test_corrupt_run_json_is_skipped_not_fatal(tmp_path):
    store = rs.RunStore(tmp_path)
    good = _make_run(store, "good", "2026-01-01")
    bad = store.new_run_dir("bad")
    (bad / rs.RUN_FILE).write_text("{not json")
    assert [r.run_dir for r in store.list_runs()] == [good]
    with pytest.raises(EngineError, match="run.json"):
        store.record(bad)
    assert json.loads((good / rs.RUN_FILE).read_text())["name"] == "good"


def _make_race_run(store: rs.RunStore, race: str, racer: str, created: str):
    run_dir = store.races_root / race / racer
    run_dir.mkdir(parents=True)
    rs.write_record(rs.RunRecord(run_dir, f"{race}: {racer}", racer, "builtin:glyphs", "cpu", "finished", 0.5, 1.0,
                                 created, 10, 10))
    return run_dir


def test_the_runs_of_races_are_listed_with_their_race_and_deleted_only_with_it(tmp_path):
    store = rs.RunStore(tmp_path)
    solo = _make_run(store, "solo", "2026-01-01T00:00:00")
    protonet = _make_race_run(store, "race-1", "protonet", "2026-02-01T00:00:00")
    maml = _make_race_run(store, "race-1", "maml", "2026-02-01T00:00:01")
    (store.races_root / "race-1" / "curves.jsonl").write_text("")  # a race's own files are not runs
    records = {r.run_dir: r for r in store.list_runs()}
    assert list(records) == [maml, protonet, solo]  # newest first, races included
    assert records[maml].race_dir == records[protonet].race_dir == store.races_root / "race-1"
    assert records[solo].race_dir is None
    assert store.record(protonet).race_dir == store.races_root / "race-1"
    assert "race_dir" not in json.loads((protonet / rs.RUN_FILE).read_text())  # where it is, not what it says
    store.rename(protonet, "the prototypes")
    assert store.record(protonet).name == "the prototypes"
    with pytest.raises(EngineError, match="deleted with their race"):
        store.delete(protonet)
    assert protonet.is_dir()


def test_a_runs_root_called_races_does_not_make_solo_runs_race_runs(tmp_path):
    store = rs.RunStore(tmp_path / "races" / "runs")
    solo = _make_run(store, "solo", "2026-01-01T00:00:00")
    assert store.record(solo).race_dir is None
    store.delete(solo)
    assert store.list_runs() == []
