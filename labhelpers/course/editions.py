"""Student editions from one source notebook.

The course notebooks are the *instructor* edition: they hold the solutions, marked
the way nbgrader marks them, and they are what CI executes. A student edition is
derived from each, never edited by hand:

* code: the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` become
  ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` (the lines around them stay);
* markdown: the text between ``<!-- BEGIN ANSWER -->`` and ``<!-- END ANSWER -->``
  becomes a prompt for the student's own answer.

A *graded* notebook (otter-grader's format, an ``# ASSIGNMENT CONFIG`` raw cell) is left to
``otter assign`` instead (:mod:`labhelpers.course.checks`): its edition has a ``grader.check("q1")``
cell after each question, and its public tests are written into the package beside it.

    python -m labhelpers.editions write [--out student] notebooks/*.ipynb
    python -m labhelpers.editions check [--out student] notebooks/*.ipynb   # exit 1 when stale
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

from .. import config
from ..files import atomic_path
from . import checks
from .notebooks import lab_notebooks

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_ANSWER, END_ANSWER = "<!-- BEGIN ANSWER -->", "<!-- END ANSWER -->"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
ANSWER_PROMPT = "_Write your answer here._"
EXERCISE_TAG = "exercise"  # cells holding a solution are tagged so a reader can find them


class MarkerError(ValueError):
    """A solution or answer marker is unbalanced or nested."""


# A line that means a marker but is not spelled exactly like one ("### Begin Solution", "###  BEGIN SOLUTION",
# "#BEGIN SOLUTION", "<!--BEGIN ANSWER-->"): kept as it is, it would leave the solution in the student edition.
NEAR_MISS = {
    BEGIN_SOLUTION: re.compile(r"^#+\s*begin\s*solution\s*$", re.IGNORECASE),
    END_SOLUTION: re.compile(r"^#+\s*end\s*solution\s*$", re.IGNORECASE),
    BEGIN_ANSWER: re.compile(r"^<!--\s*begin\s*answer\s*-->$", re.IGNORECASE),
    END_ANSWER: re.compile(r"^<!--\s*end\s*answer\s*-->$", re.IGNORECASE),
}


def _check_spelling(marker: str, markers: tuple[str, str], where: str, number: int) -> None:
    for exact in markers:
        if marker != exact and NEAR_MISS[exact].match(marker):
            raise MarkerError(f"{where}, line {number}: {marker!r} looks like a marker but is not spelled "
                              f"exactly {exact!r} (upper case, one space); fix it, or the solution would stay "
                              "in the student edition")


def _strip_region(lines: list[str], begin: str, end: str, replacement, where: str) -> tuple[list[str], int]:
    """Replace every begin..end region of ``lines``; ``replacement(indent)`` gives the new lines."""
    out, inside, regions, indent = [], False, 0, ""
    for number, line in enumerate(lines, start=1):
        marker = line.strip()
        _check_spelling(marker, (begin, end), where, number)
        if marker == begin:
            if inside:
                raise MarkerError(f"{where}, line {number}: {begin!r} inside an open region (nested markers)")
            inside, regions = True, regions + 1
            indent = line[: len(line) - len(line.lstrip())]
        elif marker == end:
            if not inside:
                raise MarkerError(f"{where}, line {number}: {end!r} without a matching {begin!r}")
            inside = False
            out.extend(replacement(indent))
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: {begin!r} is never closed by {end!r}")
    return out, regions


def student_cell(cell, where: str):
    """The student version of one cell and whether it held a solution."""
    lines = cell.source.split("\n")
    if cell.cell_type == "code":
        if any(line.strip() in (BEGIN_ANSWER, END_ANSWER) for line in lines):
            raise MarkerError(f"{where}: answer markers belong in markdown cells, not code")
        new, regions = _strip_region(lines, BEGIN_SOLUTION, END_SOLUTION,
                                     lambda indent: [indent + stub for stub in CODE_STUB], where)
    elif cell.cell_type == "markdown":
        new, regions = _strip_region(lines, BEGIN_ANSWER, END_ANSWER, lambda indent: [ANSWER_PROMPT], where)
    else:
        return cell, False
    if not regions:
        return cell, False
    result = copy.deepcopy(cell)
    result.source = "\n".join(new)
    return result, True


def _point_badge_at_student_edition(nb, name: str) -> None:
    from .colab import BADGE_RE, badge

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = BADGE_RE.sub(lambda _: badge(f"student/{name}"), cell.source, count=1)
            return


def student_notebook(path: str | Path):
    """The student edition of the notebook at ``path`` (an nbformat node)."""
    return _edition(Path(path))[0]


def _edition(path: Path):
    """The student edition and, for a graded notebook (otter-grader's format), what ``otter assign``
    made of it (public tests included); ``None`` for a notebook stripped by the markers above."""
    nb = nbformat.read(path, as_version=4)
    assigned = checks.assign(path) if checks.is_graded(nb) else None
    if assigned is not None:
        student = assigned.student
        for cell in student.cells:  # otter's answer cells are the exercises
            tags = cell.metadata.get("tags", [])
            if "otter_answer_cell" in tags and EXERCISE_TAG not in tags:
                cell.metadata["tags"] = [*tags, EXERCISE_TAG]
    else:
        student = _stripped(path, nb)
    _point_badge_at_student_edition(student, path.name)
    student.metadata["labs_edition"] = "student"
    nbformat.validate(student)
    return student, assigned


def _stripped(path: Path, nb):
    student = copy.deepcopy(nb)
    student.cells = []
    for index, cell in enumerate(nb.cells):
        new, changed = student_cell(cell, f"{path.name}, cell {index}")
        if changed:
            tags = [t for t in new.metadata.get("tags", []) if t != EXERCISE_TAG]
            new.metadata["tags"] = tags + [EXERCISE_TAG]
        if new.cell_type == "code" and (new.get("outputs") or new.get("execution_count") is not None):
            new = copy.deepcopy(new) if new is cell else new
            new.outputs, new.execution_count = [], None  # a saved output can show the solution's result
        student.cells.append(new)
    return student


def count_exercises(path: str | Path) -> int:
    nb = nbformat.read(Path(path), as_version=4)
    if checks.is_graded(nb):
        return sum(not q.manual for q in checks.questions(nb))
    return sum(student_cell(c, f"{Path(path).name}, cell {i}")[1] for i, c in enumerate(nb.cells))


def default_out_dir() -> Path:
    return config.repo_root() / "student"


def write_editions(notebooks, out_dir: Path | None = None) -> list[Path]:
    """Write the student edition of each notebook into ``out_dir`` (same file names)."""
    out_dir = Path(out_dir or default_out_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = out_dir / Path(path).name
        student, assigned = _edition(Path(path))
        with atomic_path(target) as tmp:  # never a half-written edition
            nbformat.write(student, tmp)
        written.append(target)
        if assigned is not None:  # grader.check's public tests travel in the package
            checks.write_public_tests(assigned)
    return written


def stale_editions(notebooks, out_dir: Path | None = None) -> list[str]:
    """Student editions that are missing or differ from what the sources give now."""
    out_dir = Path(out_dir or default_out_dir())
    stale = []
    for path in notebooks:
        target = out_dir / Path(path).name
        if not target.exists():
            stale.append(f"{target}: missing (run: make student)")
            continue
        student, assigned = _edition(Path(path))
        if nbformat.read(target, as_version=4) != student:
            stale.append(f"{target}: stale, its source {path} changed (run: make student)")
        if assigned is not None:
            stale += checks.stale_public_tests(assigned)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labhelpers.editions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="folder of student editions (default: student/)")
    args = parser.parse_intermixed_args(argv)  # `write --out DIR nb.ipynb` as well as `write nb.ipynb --out DIR`
    notebooks = args.notebooks or lab_notebooks()
    try:
        if args.command == "write":
            for target in write_editions(notebooks, args.out):
                print(f"wrote {target}")
            return 0
        stale = stale_editions(notebooks, args.out)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(stale) or f"{len(notebooks)} student editions are up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["student_notebook", "write_editions", "stale_editions", "count_exercises", "MarkerError",
           "BEGIN_SOLUTION", "END_SOLUTION", "BEGIN_ANSWER", "END_ANSWER"]
