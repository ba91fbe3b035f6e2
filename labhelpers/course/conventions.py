"""The course notebooks' conventions, checked and kept: one tagged parameters cell (the
standard one first), the shared setup cell, no stored outputs, no cell longer than a screen.

    python -m labhelpers.nbtools check notebooks/*.ipynb   # exit 1 and list problems
    python -m labhelpers.nbtools sync notebooks/*.ipynb    # rewrite setup cell, strip outputs

``new_notebook`` is what lab authors use to start a notebook with the standard
first cells. No TensorFlow here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from ..files import atomic_path
from .colab import badge, install_command
from .notebooks import STANDARD_NAMES, STANDARD_PARAMETERS

MAX_CELL_LINES = 40  # "no cell longer than a screen"

SETUP_MARKER = "# Shared setup: identical in every lab"


def setup_source() -> str:
    """The shared setup cell. In Colab (only there) it first installs labhelpers from the
    repository at the ref pinned in pyproject's [tool.labs]."""
    return f'''\
{SETUP_MARKER} (python -m labhelpers.nbtools sync keeps it so).
import importlib.util
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("labhelpers") is None:
    %{install_command()}
    importlib.invalidate_caches()
import labhelpers as lh

lab = lh.setup(profile=profile, seed=seed, output_dir=output_dir,
               student=student, group=group, instructor=instructor, course=course)'''


SETUP_SOURCE = setup_source()


def parameters_source(extra: str = "") -> str:
    extra = extra.strip("\n")
    return STANDARD_PARAMETERS + ("\n" + extra if extra else "")


def _lab_specific_parameters(source: str) -> str:
    """The lines of a parameters cell that are not the standard ones (a lab's own)."""
    standard = set(STANDARD_PARAMETERS.splitlines())
    keep = []
    for line in source.splitlines():
        name = line.split("=", 1)[0].strip() if "=" in line and not line.startswith("#") else None
        if line in standard or name in STANDARD_NAMES or (line.startswith("# Parameters") and not keep):
            continue
        keep.append(line)
    return "\n".join(keep)


def new_notebook(path: str | Path, cells: list[tuple[str, str]], extra_parameters: str = "") -> Path:
    """Write a notebook: ``cells[0]`` (markdown title) first, then the parameters and
    setup cells, then the remaining ``(kind, source)`` cells (kind "md" or "code")."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    built = []
    for index, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        if index == 0 and kind == "md":  # the title cell carries the Colab badge
            source = badge(f"notebooks/{Path(path).name}") + "\n\n" + source
        built.append(nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source))
        if index == 0:
            params = nbformat.v4.new_code_cell(parameters_source(extra_parameters))
            params.metadata["tags"] = ["parameters"]
            built += [params, nbformat.v4.new_code_cell(SETUP_SOURCE)]
    nb.cells = built
    for i, cell in enumerate(nb.cells):  # stable ids keep diffs small
        cell["id"] = f"cell-{i:02d}"
    path = Path(path)
    nbformat.write(nb, path)
    return path


def problems(path: str | Path) -> list[str]:
    """Everything about one notebook that breaks the course's conventions."""
    path = Path(path)
    out = []
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # unreadable or invalid notebook: nothing else to check
        return [f"{path}: not a valid notebook ({exc})"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        out.append(f"{path}: {len(tagged)} cells tagged 'parameters' (want exactly 1)")
    elif not tagged[0].source.startswith(STANDARD_PARAMETERS):
        out.append(f"{path}: the parameters cell does not start with the standard parameters")
    setup = [c for c in code if c.source.startswith(SETUP_MARKER)]
    if len(setup) != 1 or setup[0].source != SETUP_SOURCE:
        out.append(f"{path}: the shared setup cell is missing or differs (run: python -m labhelpers.nbtools sync)")
    elif code.index(setup[0]) != 1:
        out.append(f"{path}: the shared setup cell must be the code cell right after the parameters")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            out.append(f"{path}: cell {i} has stored outputs (notebooks are committed without outputs)")
        n_lines = len(cell.source.splitlines())
        if n_lines > MAX_CELL_LINES:
            out.append(f"{path}: cell {i} has {n_lines} lines (at most {MAX_CELL_LINES}: one screen)")
    return out


def sync(path: str | Path) -> bool:
    """Rewrite the shared setup cell and strip outputs; True when the file changed."""
    path = Path(path)
    before = path.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if cell.source.startswith(SETUP_MARKER):
            cell.source = SETUP_SOURCE
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = parameters_source(_lab_specific_parameters(cell.source))
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)
    return path.read_text(encoding="utf-8") != before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labhelpers.nbtools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "sync"])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "sync":
        for path in args.notebooks:
            print(f"{'updated' if sync(path) else 'unchanged'}: {path}")
        return 0
    found = [p for path in args.notebooks for p in problems(path)]
    print("\n".join(found) or f"{len(args.notebooks)} notebooks follow the conventions")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
