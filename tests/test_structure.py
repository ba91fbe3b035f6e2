"""Structure facts of the package (issue 14): the course wing imports without TensorFlow or the lab
science, no module imports itself back through a circle, no module is over 500 lines.

Reads the source (AST) for the import graph and the sizes; imports the course wing in a fresh
interpreter. No TensorFlow here.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import labhelpers

PACKAGE_DIR = Path(labhelpers.__file__).resolve().parent
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """Every module of labhelpers (a package as its __init__), by dotted name: the .py files of folders
    that are packages all the way up (not, say, otter's test files under course/public_tests/)."""
    def in_packages(path: Path) -> bool:
        return all((folder / "__init__.py").is_file()
                   for folder in [path.parent, *path.parent.parents] if folder.is_relative_to(PACKAGE_DIR))

    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py")) if in_packages(p)}


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The labhelpers modules ``name`` imports, anywhere in it (inside functions too): an import of a
    package counts as its __init__; ``from package import name`` counts the submodule when ``name``
    is one. importlib calls (labhelpers/__init__'s lazy names) are not import statements: not counted."""
    is_package = path.name == "__init__.py"
    found = set()

    def resolve(base: str, names: list[str]) -> None:
        if base not in modules:
            return
        submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
        found.update(submodules)
        if len(submodules) < len(names):  # some names are attributes of the package itself
            found.add(base)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "labhelpers":
                    target = alias.name
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                    resolve(target, [])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + (node.module.split(".") if node.module else []))
            elif node.module and node.module.split(".")[0] == "labhelpers":
                base = node.module
            else:
                continue
            resolve(base, [alias.name for alias in node.names])
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(circle: tuple[str, ...], graph: dict[str, set[str]]) -> str:
    members = set(circle)
    arrows = [f"{a} -> {b}" for a in circle for b in sorted(graph[a] & members)]
    return f"{', '.join(circle)} ({'; '.join(arrows)})"


# ----------------------------------------------------------------------------- the graph reader itself


def test_the_import_graph_sees_relative_absolute_and_function_level_imports():
    graph = import_graph()
    assert "labhelpers.config" in graph["labhelpers.course.cli"]  # from .. import config
    assert "labhelpers.course.runner" in graph["labhelpers.course.roster"]  # from .runner import (...)
    assert "labhelpers.course.cli" in graph["labhelpers.run"]  # the alias: from .course.cli import main
    assert graph["labhelpers"] == set()  # __init__'s lazy importlib is no import statement
    assert graph["labhelpers.files"] == set()  # stdlib only
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]


# ----------------------------------------------------------------------------- the course wing


def course_modules() -> list[str]:
    return sorted(name for name in package_modules() if name == "labhelpers.course"
                  or name.startswith("labhelpers.course."))


def test_the_course_wing_imports_without_tensorflow_or_the_lab_science():
    """Every course module, imported in a fresh interpreter, loads no TensorFlow, no Keras, no NumPy
    and, of labhelpers, only config, files and the course wing itself."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        "import labhelpers.course as course\n"
        "names = [m.name for m in pkgutil.walk_packages(course.__path__, 'labhelpers.course.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({'imported': names, 'loaded': sorted(sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(report["imported"]) == [m for m in course_modules() if m != "labhelpers.course"]
    loaded = set(report["loaded"])
    heavy = sorted(loaded & {"tensorflow", "keras", "tf_keras", "numpy", "matplotlib", "scipy", "cv2", "torch"})
    assert heavy == [], f"importing the course wing loaded {heavy}"
    allowed = {"labhelpers", "labhelpers.config", "labhelpers.files", *course_modules()}
    science = sorted(m for m in loaded if m.split(".")[0] == "labhelpers" and m not in allowed)
    assert science == [], f"the course wing imported {science} (it may import labhelpers.config and files only)"


def test_the_course_wing_imports_only_config_files_and_itself():
    """The same fact from the source, for imports inside functions that the import above does not run."""
    graph = import_graph()
    allowed = {"labhelpers.config", "labhelpers.files", *course_modules()}
    outside = {name: sorted(graph[name] - allowed) for name in course_modules() if graph[name] - allowed}
    assert outside == {}


def test_no_import_circle_runs_through_the_course_wing():
    graph = import_graph()
    found = [c for c in circles(graph) if any(m.startswith("labhelpers.course") for m in c)]
    assert found == [], "import circles: " + " | ".join(describe(c, graph) for c in found)


# ----------------------------------------------------------------------------- the whole package


def test_no_import_circles_in_labhelpers():
    graph = import_graph()
    found = circles(graph)
    assert found == [], "import circles: " + " | ".join(describe(c, graph) for c in found)


@pytest.mark.parametrize("rel", sorted(p.relative_to(PACKAGE_DIR.parent).as_posix() for p in package_modules().values()))
def test_no_module_over_500_lines(rel):
    lines = len((PACKAGE_DIR.parent / rel).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{rel} has {lines} lines (at most {MAX_LINES}: split it where the ideas part)"


def test_the_suites_longest_first_list_names_its_files():
    import importlib.util

    root = PACKAGE_DIR.parent  # tests/conftest.py read by path: notebooks/ has a conftest module too
    spec = importlib.util.spec_from_file_location("tests_conftest", root / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    LONGEST_FIRST = conftest.LONGEST_FIRST  # the order in which `make test` hands the files out
    missing = [path for path in LONGEST_FIRST if not (root / path).is_file()]
    assert missing == [], f"tests/conftest.py's LONGEST_FIRST names files that do not exist (renamed?): {missing}"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
