"""``meta-engine algorithms [--json]`` lists the registry: every algorithm, a throwaway one registered here included,
with its title, paper, kind, transductive flag and every capability Algorithm declares."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import pytest

from engine.algorithms import registry
from engine.algorithms.base import Algorithm
from engine.algorithms.protonet import ProtoNet
from engine.cli import main
from engine.config import ProtoNetConfig

NAME = "throwaway-listing"
CAPABILITIES = ("short_title", "batch_kind", "one_pass_adaptation", "cacheable_features", "inner_loop",
                "meta_gradient_memory", "transductive", "kind", "paper")


@dataclass
class ThrowawayConfig(ProtoNetConfig):
    name: ClassVar[str] = NAME
    title: ClassVar[str] = "Throwaway listed algorithm"
    summary: ClassVar[str] = "Registered by a test only."


class Throwaway(ProtoNet):
    short_title = "Throwaway"
    transductive = True
    kind = "transductive"
    paper = "Nobody 2099, A Test Only"


@pytest.fixture
def registered() -> Iterator[str]:
    registry.register(ThrowawayConfig, Throwaway)
    yield NAME
    registry.unregister(NAME)


def listed(capsys: Any, *flags: str) -> str:
    capsys.readouterr()
    assert main(["algorithms", *flags]) == 0
    return capsys.readouterr().out


def test_json_lists_every_registered_algorithm_with_its_capabilities(capsys: Any) -> None:
    rows = json.loads(listed(capsys, "--json"))
    assert [row["name"] for row in rows] == list(registry.ALGORITHMS)
    for row in rows:
        cls = registry.ALGORITHMS[row["name"]]
        assert row["title"] and row["kind"] == cls.kind and row["paper"] == cls.paper
        assert row["transductive"] is bool(cls.transductive)
        for capability in CAPABILITIES:
            assert row["capabilities"][capability] == getattr(cls, capability), (row["name"], capability)
    maml = next(row for row in rows if row["name"] == "maml")
    assert maml["kind"] == "optimisation" and maml["capabilities"]["inner_loop"] is True


def test_a_throwaway_algorithm_shows_up_in_json_and_text(registered: str, capsys: Any) -> None:
    (row,) = [row for row in json.loads(listed(capsys, "--json")) if row["name"] == registered]
    assert row["title"] == "Throwaway listed algorithm" and row["short_title"] == "Throwaway"
    assert row["transductive"] is True and row["kind"] == "transductive" and row["paper"] == "Nobody 2099, A Test Only"
    (line,) = [line for line in listed(capsys).splitlines() if line.startswith(registered)]
    assert "Throwaway listed algorithm" in line and "transductive" in line and line.endswith("Nobody 2099, A Test Only")


def test_a_capability_added_to_algorithm_is_listed(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setitem(Algorithm.__annotations__, "new_capability", "ClassVar[bool]")
    monkeypatch.setattr(Algorithm, "new_capability", True, raising=False)
    rows = json.loads(listed(capsys, "--json"))
    assert all(row["capabilities"]["new_capability"] is True for row in rows)
