"""The layering rules of docs/ARCHITECTURE.md, checked on the source (no Qt, no torch needed).

- studio/ uses the engine only through its declared public API (``engine.api.__all__``), and docs/API.md
  names every public name;
- no import cycle among project modules, imports inside functions included;
- no module in engine/ or studio/ over 600 lines;
- the checkpoint file names live in one engine module (the run store) and nowhere in studio/;
- engine/ never imports Qt;
- each module imports only from its own layer or the layers below it (:data:`LAYERS`, the table of
  docs/ARCHITECTURE.md), and every module belongs to a layer.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "studio")
MAX_MODULE_LINES = 600
LAYERS: tuple[tuple[str, ...], ...] = (
    # engine, bottom up
    ("engine", "engine.errors", "engine.io", "engine.config"),
    ("engine.data", "engine.models", "engine.runtime"),
    ("engine.algorithms",),
    ("engine.evaluation", "engine.evaluation_protocols"),
    ("engine.training",),
    ("engine.adapted", "engine.inference", "engine.inspection", "engine.scrubbing", "engine.race", "engine.regression",
     "engine.rl", "engine.sweep", "engine.leaderboard", "engine.export"),
    ("engine.sessions",),
    ("engine.cli", "engine.__main__", "engine.api"),
    # studio, bottom up (it sees the engine only through engine.api)
    ("studio", "studio.settings", "studio.rate_limit", "studio.datasets", "studio.qt_libs"),
    ("studio.jobs", "studio.widgets"),
    ("studio.panels",),
    ("studio.window", "studio.main_window"),
    ("studio.app", "studio.screenshot", "studio.__main__"),
)
"""Layers, lowest first: a module may import from its own layer and the ones below."""
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6", "superqt", "qtpy")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str] | None, int]]:
    """(imported module, imported names or None, line) for every import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str] | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, names, _ in _imports(name, path):
            candidates = [target] + [f"{target}.{n}" for n in names or ()]
            graph[name] |= {c for c in candidates if c in MODULES and c != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (a package importing its own submodules
    from its ``__init__`` is not a design cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return [c for c in components if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]


def test_no_import_cycle_among_project_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def _layer(module: str) -> int | None:
    """Index in :data:`LAYERS` of the longest prefix of ``module`` (None: in no layer)."""
    best: tuple[int, int] | None = None
    for index, members in enumerate(LAYERS):
        for member in members:
            if module == member or module.startswith(member + "."):
                if best is None or len(member) > best[0]:
                    best = (len(member), index)
    return None if best is None else best[1]


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
                  for module, targets in graph.items() for target in targets
                  if (_layer(module) or 0) < (_layer(target) or 0))


def test_every_module_belongs_to_a_layer() -> None:
    assert [name for name in MODULES if _layer(name) is None] == []


def test_imports_go_down_the_layers_only() -> None:
    assert _upward_imports(_graph()) == []


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {"engine.training.process": {"engine.race.job"}, "engine.race.job": {"engine.training.process"}}
    assert _upward_imports(graph) == ["engine.training.process (layer 4) imports engine.race.job (layer 5)"]


def test_no_module_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_checkpoint_file_names_live_in_the_run_store_only() -> None:
    pattern = re.compile(r"""["'](best|last)\.pt["']""")
    holders = sorted(name for name, path in MODULES.items() if pattern.search(path.read_text(encoding="utf-8")))
    assert holders == ["engine.training.run_store"]


def test_engine_never_imports_qt() -> None:
    offenders = [f"{name}:{line} {target}" for name, path in MODULES.items() if name.startswith("engine")
                 for target, _, line in _imports(name, path) if target.split(".")[0] in QT_MODULES]
    assert offenders == []


def _public_names() -> list[str]:
    import engine.api  # imports nothing else: its names resolve on first use

    return list(engine.api.__all__)


def _undeclared_engine_imports(modules: dict[str, Path], public: set[str]) -> list[str]:
    """Imports of engine names in studio modules that go past ``engine.api`` or are not in its ``__all__``."""
    offenders = []
    for name, path in modules.items():
        if not name.startswith("studio"):
            continue
        for target, names, line in sorted(_imports(name, path), key=lambda found: found[2]):
            if target.split(".")[0] != "engine":
                continue
            if target != "engine.api":
                offenders.append(f"{path.name}:{line} imports {target} (use engine.api)")
            else:
                offenders += [f"{path.name}:{line} engine.api.{n} is not in __all__"
                              for n in names or () if n not in public]
    return offenders


def test_studio_uses_only_declared_engine_names() -> None:
    assert _undeclared_engine_imports(MODULES, set(_public_names())) == []


def test_every_public_name_exists_and_is_documented() -> None:
    import engine.api

    names = _public_names()
    assert len(names) == len(set(names)), "a name is declared twice"
    assert [n for n in names if not hasattr(engine.api, n)] == []
    document = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    assert [n for n in names if not re.search(rf"\b{re.escape(n)}\b", document)] == []


def test_the_public_api_check_catches_undeclared_imports(tmp_path: Path) -> None:
    module = tmp_path / "view.py"
    module.write_text("from engine.training.trainer import Trainer\n"
                      "def later():\n    import engine.data.folder\n"
                      "from engine.api import RunConfig, NotPublic\n")
    found = _undeclared_engine_imports({"studio.view": module}, {"RunConfig"})
    assert found == ["view.py:1 imports engine.training.trainer (use engine.api)",
                     "view.py:3 imports engine.data.folder (use engine.api)",
                     "view.py:4 engine.api.NotPublic is not in __all__"]
