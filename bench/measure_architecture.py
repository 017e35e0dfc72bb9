"""The numbers issue 15 asks for, measured on the tree in the current folder.

    cd <tree> && python3 <this repo>/bench/measure_architecture.py [--python .venv/bin/python]

Prints: the 10 largest modules of engine/ and studio/; methods and attributes (distinct self.<name>
assigned) of every QWidget subclass in studio/; the engine names studio/ imports (distinct names,
engine modules) and how many are undeclared (arch_check public-api, plus a distinct count); import
cycles (arch_check cycles); "best.pt" / "last.pt" (arch_check checkpoint, plus every line naming
them); the number of pairs the `duplicates` command reports over engine/ + studio/.
Reads files only (and imports engine modules in a subprocess of --python for the __all__ check).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ARCH_CHECK = str(Path(__file__).resolve().parents[2] / "shared" / "tools" / "arch_check.py")  # ../shared beside the repo
PKGS = ("engine", "studio")
WIDGET_BASES = {"QWidget", "QFrame", "QMainWindow", "QDialog", "QListWidget", "QScrollArea", "QLabel",
                "QTableWidget", "QTreeWidget", "QGroupBox", "QTabWidget", "QPushButton", "QComboBox", "QLineEdit",
                "QPlainTextEdit", "QTextEdit", "QSplitter", "QDockWidget", "QStackedWidget", "QAbstractScrollArea",
                "QGraphicsView", "QOpenGLWidget", "QToolButton", "QCheckBox", "QSpinBox", "QSlider",
                "QProgressBar", "QMenu", "QMessageBox", "QListView", "QTableView", "QTreeView"}
VIEWS = ("AdaptPanel", "InspectorPanel", "ScrubberPanel", "EvaluationPanel", "RacePanel", "DatasetPanel",
         "RegressionPanel", "MainWindow")


def py_files(pkg: str) -> list[Path]:
    return sorted(p for p in Path(pkg).rglob("*.py") if "__pycache__" not in p.parts)


def line_count(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for _ in f)


def section(title: str) -> None:
    print(f"\n== {title}")


# ------------------------------------------------------------------ module sizes
def largest_modules() -> None:
    section("largest modules (lines)")
    sizes = {pkg: sorted(((line_count(p), str(p)) for p in py_files(pkg)), reverse=True) for pkg in PKGS}
    both = sorted(sizes["engine"] + sizes["studio"], reverse=True)
    total = {pkg: sum(n for n, _ in s) for pkg, s in sizes.items()}
    print(f"engine/: {len(sizes['engine'])} modules, {total['engine']} lines; "
          f"studio/: {len(sizes['studio'])} modules, {total['studio']} lines")
    print("10 largest of engine/ + studio/:")
    for n, p in both[:10]:
        print(f"  {n:5d}  {p}")
    for pkg in PKGS:
        print(f"10 largest of {pkg}/: " + ", ".join(f"{Path(p).relative_to(pkg)} {n}" for n, p in sizes[pkg][:10]))
    print(f"modules over 600 lines: {sum(1 for n, _ in both if n > 600)}")


# ------------------------------------------------------------------ view classes
def base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ast.unparse(node)


def self_targets(node: ast.AST) -> set[str]:
    """Distinct ``self.<name>`` assigned anywhere under ``node``."""
    names: set[str] = set()

    def collect(target: ast.AST) -> None:
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
            names.add(target.attr)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                collect(element)
        elif isinstance(target, ast.Starred):
            collect(target.value)

    for sub in ast.walk(node):
        if isinstance(sub, ast.Assign):
            for target in sub.targets:
                collect(target)
        elif isinstance(sub, (ast.AnnAssign, ast.AugAssign)):
            collect(sub.target)
        elif isinstance(sub, (ast.For, ast.AsyncFor, ast.comprehension)):
            collect(sub.target)
        elif isinstance(sub, ast.withitem) and sub.optional_vars is not None:
            collect(sub.optional_vars)
        elif isinstance(sub, ast.NamedExpr):
            collect(sub.target)
    return names


def view_classes() -> None:
    section("view classes (QWidget subclasses in studio/): methods, distinct self.<name> assigned, lines")
    classes: dict[str, tuple[str, ast.ClassDef, list[str]]] = {}
    for path in py_files("studio"):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes[f"{path}:{node.name}"] = (str(path), node, [base_name(b) for b in node.bases])
    widget_names: set[str] = set()
    changed = True
    while changed:  # a class is a widget when a base is a Qt widget, a pyqtgraph *Widget, or a widget class here
        changed = False
        for key, (_, node, bases) in classes.items():
            if node.name not in widget_names and any(
                    b in WIDGET_BASES or b.endswith("Widget") or b in widget_names for b in bases):
                widget_names.add(node.name)
                changed = True
    rows = []
    for key, (path, node, bases) in classes.items():
        if node.name not in widget_names:
            continue
        methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        attributes = self_targets(node)
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        rows.append((node.name in VIEWS, len(methods), node.name, path, len(attributes), lines, bases))
    rows.sort(key=lambda r: (not r[0], -r[1], r[2]))
    print(f"{'class':24s} {'methods':>7s} {'attrs':>5s} {'lines':>5s}  module (bases)")
    for is_view, n_methods, name, path, n_attrs, lines, bases in rows:
        mark = "*" if is_view else " "
        print(f"{mark}{name:23s} {n_methods:7d} {n_attrs:5d} {lines:5d}  {path} ({', '.join(bases)})")
    found = {r[2] for r in rows}
    missing = [v for v in VIEWS if v not in found]
    print(f"(* = the views issue 15 names; {len(rows)} widget classes; not found: {missing or 'none'})")


# ------------------------------------------------------------------ engine names used by studio/
def imports_of(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parts = list(path.with_suffix("").parts)
    module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names]


ALL_CHECK = r"""
import importlib, json, sys
pairs = json.loads(sys.stdin.read())
out = []
for module, name in pairs:
    try:
        mod = importlib.import_module(module)
    except Exception as error:
        out.append([module, name, "import failed: %s" % error]); continue
    public = getattr(mod, "__all__", None)
    value = getattr(mod, name, None)
    if isinstance(value, type(sys)) and (module == "engine" or name in (public or ())):
        continue
    if public is None or name not in public:
        out.append([module, name, "no __all__" if public is None else "not in __all__"])
print(json.dumps(out))
"""


def engine_names(python: str) -> None:
    section("engine names imported by studio/")
    names: set[tuple[str, str]] = set()
    plain: set[str] = set()
    for path in py_files("studio"):
        for target, imported in imports_of(path):
            if target.split(".")[0] != "engine":
                continue
            if imported is None:
                plain.add(target)
            else:
                names.update((target, n) for n in imported)
    modules = {m for m, _ in names} | plain
    print(f"{len(names)} distinct names from {len(modules)} engine modules "
          f"({len(plain)} modules imported whole: {sorted(plain) or 'none'})")
    by_module = defaultdict(list)
    for m, n in sorted(names):
        by_module[m].append(n)
    for m, ns in sorted(by_module.items()):
        print(f"  {m}: {', '.join(ns)}")
    api_doc = Path("docs/API.md")
    if api_doc.is_file():
        text = api_doc.read_text(encoding="utf-8")
        not_in_doc = sorted(f"{m}.{n}" for m, n in names if not re.search(rf"\b{re.escape(n)}\b", text))
        print(f"{len(not_in_doc)} distinct names not mentioned in docs/API.md: {', '.join(not_in_doc)}")
    import json

    env = dict(os.environ, PYTHONPATH=os.getcwd())
    try:
        result = subprocess.run([python, "-c", ALL_CHECK], input=json.dumps(sorted(names)), capture_output=True,
                                text=True, env=env, timeout=600)
        undeclared = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as error:
        undeclared, result = None, error
    if undeclared is None:
        print(f"distinct __all__ check failed: {getattr(result, 'stderr', result)}")
    else:
        modules_hit = {m for m, _, _ in undeclared}
        print(f"{len(undeclared)} of {len(names)} distinct names (from {len(modules_hit)} modules) are not declared "
              "public (__all__)")
        for m, n, why in undeclared[:200]:
            print(f"  undeclared: {m}.{n} ({why})")
    run_arch("public-api", python)


# ------------------------------------------------------------------ arch_check, duplicates
def run_arch(what: str, python: str = sys.executable) -> None:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    try:
        result = subprocess.run([python, ARCH_CHECK, what], capture_output=True, text=True, env=env, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"arch_check {what}: {error}")
        return
    lines = result.stdout.strip().splitlines()
    if what == "public-api":  # its per-occurrence list is long: the summary line only
        lines = [ln for ln in lines if not ln.startswith("undeclared:")] + \
                [f"({sum(ln.startswith('undeclared:') for ln in result.stdout.splitlines())} 'undeclared:' lines "
                 "printed by arch_check, at most 40)"]
    print(f"arch_check {what} (exit {result.returncode}):")
    for line in lines:
        print(f"  {line}")
    if result.stderr.strip():
        print("  stderr: " + result.stderr.strip().splitlines()[-1])


def checkpoint_names() -> None:
    section("checkpoint file names")
    run_arch("checkpoint")
    hits = []
    for pkg in PKGS:
        for path in py_files(pkg):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "best.pt" in line or "last.pt" in line:
                    hits.append(f"{path}:{number}: {line.strip()[:110]}")
    files = {h.split(':')[0] for h in hits}
    print(f"lines naming best.pt / last.pt (any form, comments included): {len(hits)} in {len(files)} modules")
    for hit in hits:
        print(f"  {hit}")


def duplicate_pairs() -> None:
    section("duplicates over engine/ + studio/")
    scratch = Path(tempfile.mkdtemp(prefix="measure-dups-"))
    try:
        for pkg in PKGS:
            shutil.copytree(pkg, scratch / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        result = subprocess.run(["duplicates", "--repo", str(scratch), "--most", "200", "--seconds", "300"],
                                capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"duplicates failed: {error}")
        return
    finally:
        pass
    output = result.stdout.replace(str(scratch) + "/", "")
    lines = output.strip().splitlines()
    print(f"summary: {lines[0] if lines else '(no output)'}")
    rows = [ln for ln in lines if re.match(r"\s*D\d+ ", ln)]
    shape = sum(" shape" in ln for ln in rows)
    boiler = sum("boilerplate" in ln for ln in rows)
    print(f"rows: {len(rows)} ({len(rows) - shape} identical, {shape} shape, of which {boiler} boilerplate)")
    for ln in lines[1:]:
        print(f"  {ln}")
    shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"),
                        help="an interpreter with torch, for the __all__ checks")
    args = parser.parse_args()
    if not all(Path(p).is_dir() for p in PKGS):
        sys.exit("run from the root of a Meta Studio tree (engine/ and studio/ here)")
    print(f"tree: {os.getcwd()}")
    largest_modules()
    view_classes()
    engine_names(args.python)
    section("import cycles")
    run_arch("cycles")
    checkpoint_names()
    duplicate_pairs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
