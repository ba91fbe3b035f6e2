"""Graded exercises with otter-grader: one instructor notebook, a student edition, public and hidden tests.

A graded lab is an instructor notebook in otter-grader's assignment format (raw cells): one
``# ASSIGNMENT CONFIG`` cell, then for each question ``# BEGIN QUESTION`` (name, points, ``manual: true``
for free text), a ``# BEGIN SOLUTION`` block and a ``# BEGIN TESTS`` block whose test cells start with
``# HIDDEN`` (or a ``hidden: true`` test config) when students must not see them. ``otter assign`` turns it
into

* the student edition: solutions replaced by ``...``, free-text answers and their rubric by a prompt,
  a ``grader.check("q1")`` cell after each question (written to ``student/`` by ``make student``);
* the public tests (``labhelpers/course/public_tests/<assignment>/``, shipped in the package, so that
  ``grader.check`` works offline and in Colab after the setup cell's install);
* the autograder tests, public and hidden, which :mod:`labhelpers.course.grading` builds afresh at
  grading time and never writes into the repository.

In a notebook::

    from labhelpers.course import checks
    grader = checks.grader("lab01")
    grader.check("q1")                   # public tests of question q1: pass/fail and what failed

This module imports neither TensorFlow nor the science modules (otter only inside functions).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

ASSIGNMENT_CONFIG = "# ASSIGNMENT CONFIG"
BEGIN_QUESTION = "# BEGIN QUESTION"
PUBLIC_TESTS_DIR = Path(__file__).resolve().parent / "public_tests"


class AssignError(RuntimeError):
    """otter assign failed on an instructor notebook."""


@dataclass(frozen=True)
class Question:
    name: str
    points: float | None
    manual: bool


@dataclass
class Assigned:
    """What ``otter assign`` made of one instructor notebook."""

    name: str                                   # the assignment's name ("lab01")
    student: nbformat.NotebookNode              # the student edition
    public_tests: dict[str, str] = field(default_factory=dict)  # file name -> text (no hidden case)
    all_tests: dict[str, str] = field(default_factory=dict)     # file name -> text (public and hidden)
    questions: list[Question] = field(default_factory=list)

    @property
    def auto_questions(self) -> list[Question]:
        return [q for q in self.questions if not q.manual]

    @property
    def manual_questions(self) -> list[Question]:
        return [q for q in self.questions if q.manual]


def _raw_config(cell, marker: str) -> dict | None:
    if cell.cell_type != "raw" or not cell.source.lstrip().upper().startswith(marker):
        return None
    body = cell.source.lstrip().split("\n", 1)
    loaded = yaml.safe_load(body[1]) if len(body) > 1 else {}
    return loaded if isinstance(loaded, dict) else {}


def _read(nb_or_path) -> nbformat.NotebookNode:
    if isinstance(nb_or_path, (str, Path)):
        return nbformat.read(Path(nb_or_path), as_version=4)
    return nb_or_path


def is_graded(nb_or_path) -> bool:
    """Whether a notebook is in otter's assignment format (it has an ``# ASSIGNMENT CONFIG`` cell)."""
    return any(_raw_config(c, ASSIGNMENT_CONFIG) is not None for c in _read(nb_or_path).cells)


def assignment_name(nb_or_path) -> str:
    nb = _read(nb_or_path)
    for cell in nb.cells:
        config = _raw_config(cell, ASSIGNMENT_CONFIG)
        if config is not None:
            name = str(config.get("name", "")).strip()
            if not name or not name.replace("_", "").isalnum():
                raise AssignError(f"the ASSIGNMENT CONFIG needs a plain `name:` (letters, digits, _), got {name!r}")
            return name
    raise AssignError("not a graded notebook: no raw '# ASSIGNMENT CONFIG' cell")


def questions(nb_or_path) -> list[Question]:
    """The questions of a graded notebook, in order (name, points, manual)."""
    out = []
    for cell in _read(nb_or_path).cells:
        config = _raw_config(cell, BEGIN_QUESTION)
        if config is not None:
            points = config.get("points")
            out.append(Question(str(config["name"]), None if points is None else float(points),
                                bool(config.get("manual", False))))
    return out


def _stable_ids(student, master) -> None:
    """otter gives the cells it adds random ids; number them so that an edition is the same on every run."""
    known, seen = {c.get("id") for c in master.cells}, set()
    for index, cell in enumerate(student.cells):
        if cell.get("id") not in known or cell.get("id") in seen:
            cell["id"] = f"edition-{index:02d}"
        seen.add(cell["id"])


def _clean_text(master) -> str:
    """The notebook otter assign is given: ``master`` without outputs (a saved output can show a solution)."""
    clean = copy.deepcopy(master)
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nbformat.writes(clean)


_ASSIGNED: dict[tuple[str, str], Assigned] = {}  # (file name, SHA-256 of what otter reads) -> its result
_ASSIGN_LOCK = threading.Lock()


def assign(path: str | Path) -> Assigned:
    """Run ``otter assign`` on the instructor notebook at ``path`` (a temporary folder, no tests run).

    otter runs in this process (importing it costs seconds, a run a tenth of one; a ``python -m otter``
    per call cost ~10 s on the course's VM) and its result is kept for the life of the process, keyed by
    the notebook's file name and the SHA-256 of the exact text otter reads: the same bytes give the same
    edition and tests (the ids otter draws at random are numbered by ``_stable_ids``), any changed byte runs
    otter again. Each call returns its own copy. otter changes the working directory while it runs (into
    the temporary folder, and back); the calls are serialised by a lock."""
    path = Path(path)
    master = nbformat.read(path, as_version=4)
    name = assignment_name(master)
    text = _clean_text(master)
    key = (path.name, hashlib.sha256(text.encode("utf-8")).hexdigest())
    with _ASSIGN_LOCK:
        if key not in _ASSIGNED:
            _ASSIGNED[key] = _otter_assign(path, text, name, master)
        return copy.deepcopy(_ASSIGNED[key])


def _otter_assign(path: Path, text: str, name: str, master) -> Assigned:
    import otter.assign  # heavy (nbconvert, pandas): only when an edition is made

    with tempfile.TemporaryDirectory(prefix="labs-assign-") as tmp:
        source = Path(tmp) / path.name
        source.write_text(text, encoding="utf-8")
        dist = Path(tmp) / "dist"
        said = io.StringIO()
        try:  # what otter prints is shown only in the error when it fails, its warnings never (as before,
            # from a `python -m otter` whose output was captured)
            with (contextlib.redirect_stdout(said), contextlib.redirect_stderr(said),
                  warnings.catch_warnings()):
                warnings.simplefilter("ignore")
                otter.assign.main(str(source), str(dist), no_pdfs=True, no_run_tests=True)
        except Exception as exc:
            raise AssignError(f"{path}: otter assign failed: {type(exc).__name__}: {exc}\n"
                              f"{said.getvalue()[-3000:]}") from exc
        student = nbformat.read(dist / "student" / path.name, as_version=4)
        _stable_ids(student, master)
        tests = {kind: {p.name: p.read_text(encoding="utf-8") for p in sorted((dist / kind / "tests").glob("*.py"))}
                 for kind in ("student", "autograder")}
    return Assigned(name, student, tests["student"], tests["autograder"], questions(master))


def public_tests_dir(name: str) -> Path:
    return PUBLIC_TESTS_DIR / name


def write_public_tests(assigned: Assigned, root: Path | None = None) -> list[Path]:
    """Write the public tests of an assignment into ``root/<name>/`` (the package's copy by default),
    removing test files that no longer exist."""
    folder = Path(root or PUBLIC_TESTS_DIR) / assigned.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.py"):
        if old.name not in assigned.public_tests:
            old.unlink()
    written = []
    for file_name, text in assigned.public_tests.items():
        target = folder / file_name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def stale_public_tests(assigned: Assigned, root: Path | None = None) -> list[str]:
    folder = Path(root or PUBLIC_TESTS_DIR) / assigned.name
    have = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.py")} if folder.is_dir() else {}
    if have != assigned.public_tests:
        return [f"{folder}: public tests differ from the instructor notebook (run: make student)"]
    return []


def grader(name: str):
    """An ``otter.Notebook`` whose ``check("q1")`` runs question q1's public tests of assignment ``name``.

    The tests come with the package (offline, and in Colab after the setup cell's install); at grading
    time otter replaces them with the full set, hidden tests included."""
    folder = public_tests_dir(name)
    if not folder.is_dir():
        raise FileNotFoundError(f"no public tests for {name!r} in {PUBLIC_TESTS_DIR} (run: make student)")
    import otter

    return otter.Notebook(tests_dir=str(folder))


__all__ = ["Assigned", "AssignError", "Question", "assign", "assignment_name", "grader", "is_graded",
           "public_tests_dir", "questions", "stale_public_tests", "write_public_tests"]
