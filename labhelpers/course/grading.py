"""Grade a folder of submitted notebooks: ``make grade SUBMISSIONS=folder [LAB=01] [JOBS=n] [SCHEDULER=...]``.

    python -m labhelpers.course.grading SUBMISSIONS [--lab 01] [-j N] [--scheduler tcp://host:8786]
                                        [--out DIR] [--cell-timeout S] [--timeout S] [--max-mb MB]

``SUBMISSIONS`` holds one folder per student with the submitted notebook inside (``alice/01_....ipynb``,
the name of the student edition) or one notebook per student (``alice.ipynb``). The autograder tests,
hidden cases included, are built afresh from the instructor notebook (``otter assign``,
:mod:`labhelpers.course.checks`); they are never written into the repository or a student edition.

Each submission is untrusted input: a file that is not a notebook, is a link or is larger than
``--max-mb`` is refused with its name in the status. The others run one at a time per job, each in its
own temporary folder (its copy of the notebook and of the tests, nothing else; the submissions folder is
never the working directory), in a fresh kernel under a per-cell and a per-notebook timeout
(:mod:`labhelpers.course.gradeworker`). Jobs run in a local pool of ``-j`` worker processes, or as tasks
on a Dask cluster (``--scheduler``; the workers need labhelpers installed). One bad submission never
stops the batch. Written to ``--out`` (default ``reports/grades/<assignment>``):

* ``gradebook.csv``: one row per student, sorted: each question's score (free-text questions empty, to
  grade by hand), the automatic total, its maximum, the status; no time stamp, so that the same
  submissions give the same file;
* ``gradebook.html``: the same table (every text HTML-escaped), linked to the feedback;
* ``feedback/<student>.txt``: per question the public checks' report, how many hidden checks passed
  (with the instructor's failure message), the cells that raised, the status explained.

The kernel runs as the grading user: the timeouts and folders keep honest mistakes apart, not an attacker
(grade untrusted classes inside a container or as a user without access to anything else).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import config
from . import checks
from .gradebook import STATUS_TEXT, write_gradebook

CELL_TIMEOUT_S = 300
NOTEBOOK_TIMEOUT_S = 1800
MAX_MB = 20
GRACE_S = 60  # beyond the notebook's timeout, before the worker itself is killed


@dataclass
class Submission:
    student: str
    file: str                                 # the submitted file's name (relative to SUBMISSIONS)
    data: bytes | None = None                 # the notebook, once read and accepted
    statuses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Graded:
    student: str
    file: str
    statuses: list[str]
    notes: list[str]
    questions: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    seconds: float = 0.0


def _sort_statuses(statuses) -> list[str]:
    order = list(STATUS_TEXT)
    return sorted(set(statuses), key=lambda s: order.index(s) if s in order else len(order))


# --- reading the submissions folder ----------------------------------------------------------------------

def _read_notebook(path: Path, shown: str, max_bytes: int, sub: Submission) -> None:
    """Accept ``path`` as ``sub``'s notebook, or give ``sub`` a status that names the file."""
    if path.is_symlink() or not path.is_file():
        sub.statuses.append("not a notebook")
        sub.notes.append(f"{shown}: refused, not a plain file (a link or a folder)")
        return
    size = path.stat().st_size
    if size > max_bytes:
        sub.statuses.append("too large")
        sub.notes.append(f"{shown}: refused, {size / 2**20:.1f} MB is over the limit of {max_bytes / 2**20:g} MB")
        return
    data = path.read_bytes()
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        sub.statuses.append("not a notebook")
        sub.notes.append(f"{shown}: refused, not a Jupyter notebook ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})")
        return
    sub.data = data


def collect(folder: Path, expected_name: str, max_bytes: int) -> list[Submission]:
    """One :class:`Submission` per student of ``folder``, sorted by student."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder {folder}")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            sub = Submission(entry.name, f"{entry.name}/{expected_name}")
            exact = entry / expected_name
            notebooks = sorted(p for p in entry.iterdir() if p.suffix == ".ipynb" and not p.name.startswith("."))
            if exact.exists() or exact.is_symlink():
                _read_notebook(exact, sub.file, max_bytes, sub)
            elif len(notebooks) == 1:
                sub.file = f"{entry.name}/{notebooks[0].name}"
                sub.statuses.append("renamed file")
                sub.notes.append(f"{sub.file}: expected the name {expected_name}; graded all the same")
                _read_notebook(notebooks[0], sub.file, max_bytes, sub)
            else:
                others = sorted(p.name for p in entry.iterdir() if not p.name.startswith("."))
                sub.statuses.append("missing notebook")
                sub.notes.append(f"{entry.name}/: no {expected_name} "
                                 + (f"(found: {', '.join(others[:10])})" if others else "(empty folder)"))
            found.append(sub)
        else:
            sub = Submission(entry.stem, entry.name)
            if entry.suffix != ".ipynb":
                sub.statuses.append("not a notebook")
                sub.notes.append(f"{entry.name}: refused, not an .ipynb file")
            else:
                _read_notebook(entry, entry.name, max_bytes, sub)
            found.append(sub)
    return sorted(found, key=lambda s: (s.student, s.file))


def assignment_of(data: bytes) -> str | None:
    """The assignment a submitted notebook belongs to (otter's metadata), if it says."""
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception:
        return None
    name = nb.metadata.get("otter", {}).get("assignment_name")
    return str(name) if name else None


def check_submission(sub: Submission, assigned: checks.Assigned) -> None:
    """Statuses that need no execution: another lab's notebook, a check cell deleted."""
    if sub.data is None:
        return
    lab = assignment_of(sub.data)
    if lab != assigned.name:
        sub.statuses.append("wrong lab")
        sub.notes.append(f"{sub.file}: this notebook is " + (f"assignment {lab!r}" if lab else "not a graded lab")
                         + f", not {assigned.name!r}; not run")
        sub.data = None
        return
    nb = nbformat.reads(sub.data.decode("utf-8"), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    missing = [q.name for q in assigned.auto_questions
               if not re.search(r"""\.check\(\s*['"]""" + re.escape(q.name) + r"""['"]\s*\)""", code)]
    if missing:
        sub.statuses.append("missing cell")
        sub.notes.append(f"{sub.file}: the check cell of {', '.join(missing)} is missing (its tests ran at the end)")


# --- grading one submission (a local job or a Dask task) ---------------------------------------------------

def grade_payload(payload: dict) -> dict:
    """Grade one notebook in a new temporary folder; a plain function of plain data, so that it runs the
    same in a local pool and on a Dask worker. Never raises: a failure is part of the result."""
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="labs-grade-"))
    worker = None
    try:
        os.chmod(folder, 0o700)
        (folder / "submission.ipynb").write_bytes(payload["data"])
        tests = folder / "tests"
        tests.mkdir()
        for name, text in payload["tests"].items():
            (tests / Path(name).name).write_text(text, encoding="utf-8")
            os.chmod(tests / Path(name).name, 0o444)
        os.chmod(tests, 0o555)
        env = {**os.environ, **payload.get("env", {}), "TMPDIR": str(folder),
               "LABS_OUTPUT_DIR": str(folder / "figures"), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "labhelpers.course.gradeworker", str(folder),
                   "--cell-timeout", str(payload["cell_timeout"]), "--notebook-timeout", str(payload["timeout"])]
        with open(folder / "worker.log", "wb") as log:
            worker = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                worker.wait(timeout=payload["timeout"] + GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                return {"notebook_timeout": True, "problem": "the grader did not finish in time; killed",
                        "questions": {}, "errors": [], "seconds": round(time.monotonic() - started, 1)}
        result_file = folder / "result.json"
        if not result_file.is_file():
            tail = (folder / "worker.log").read_text(encoding="utf-8", errors="replace")[-800:]
            return {"problem": f"the grader wrote no result (exit {worker.returncode}): {tail}", "questions": {},
                    "errors": [], "seconds": round(time.monotonic() - started, 1)}
        result = json.loads(result_file.read_text(encoding="utf-8"))
        result["seconds"] = round(time.monotonic() - started, 1)
        return result
    except Exception as exc:
        return {"problem": f"the grader failed: {type(exc).__name__}: {exc}", "questions": {}, "errors": [],
                "seconds": round(time.monotonic() - started, 1)}
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        for path in (folder, folder / "tests"):
            if path.exists():
                os.chmod(path, 0o700)
        shutil.rmtree(folder, ignore_errors=True)


def interpret(sub: Submission, result: dict | None) -> Graded:
    """A submission's statuses and scores from its checks and its worker's result."""
    graded = Graded(sub.student, sub.file, list(sub.statuses), list(sub.notes))
    if result is None:
        return graded
    graded.questions = result.get("questions", {})
    graded.errors = result.get("errors", [])
    graded.seconds = float(result.get("seconds", 0.0))
    names = {e.get("ename") for e in graded.errors}
    if names & {"SyntaxError", "IndentationError", "TabError"}:
        graded.statuses.append("syntax error")
    if names & {"CellTimeoutError", "KeyboardInterrupt"}:  # only the per-cell timeout interrupts a cell
        graded.statuses.append("timeout")
    if names - {"SyntaxError", "IndentationError", "TabError", "CellTimeoutError", "KeyboardInterrupt"}:
        graded.statuses.append("error")
    if result.get("notebook_timeout"):
        graded.statuses.append("notebook timeout")
    if result.get("problem") and not result.get("notebook_timeout"):
        graded.statuses.append("grader failure")
    if result.get("problem"):
        graded.notes.append(str(result["problem"]))
    for error in graded.errors:
        where = f"cell {error['cell']}" if error.get("cell") is not None else "a check cell"
        graded.notes.append(f"{where}: {error.get('ename')}: {str(error.get('evalue', '')).splitlines()[0][:300]}"
                            if error.get("evalue") else f"{where}: {error.get('ename')}")
    return graded


# --- the batch ---------------------------------------------------------------------------------------------

def _run_local(payloads: list[dict], jobs: int, done) -> None:
    import concurrent.futures

    # each job is a worker process of its own (gradeworker); the threads only wait for them
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_payload, p): p["key"] for p in payloads}
        for future in concurrent.futures.as_completed(futures):
            done(futures[future], future.result())


def _run_dask(payloads: list[dict], scheduler: str, done) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ValueError("--scheduler needs the 'distributed' package: pip install 'labhelpers[cluster]'") from None
    with Client(scheduler, timeout="30s") as client:
        futures = {client.submit(grade_payload, p, key=f"labs-grade-{p['key']}-{time.time_ns()}", pure=False): p["key"]
                   for p in payloads}
        for future in as_completed(list(futures)):
            try:
                result = future.result()
            except Exception as exc:  # a worker that died, labhelpers missing there
                result = {"problem": f"the Dask task failed: {type(exc).__name__}: {exc}", "questions": {}}
            done(futures[future], result)


def grade(submissions: Path, lab: Path, out: Path | None = None, jobs: int = 1, scheduler: str | None = None,
          cell_timeout: float = CELL_TIMEOUT_S, timeout: float = NOTEBOOK_TIMEOUT_S, max_mb: float = MAX_MB,
          env: dict | None = None, log=print) -> list[Graded]:
    """Grade every submission of ``submissions`` against the graded instructor notebook ``lab``."""
    assigned = checks.assign(lab)
    out = Path(out or config.repo_root() / "reports" / "grades" / assigned.name)
    subs = collect(submissions, Path(lab).name, int(max_mb * 2**20))
    for sub in subs:
        check_submission(sub, assigned)
    payloads = [{"key": str(i), "data": sub.data, "tests": assigned.all_tests, "cell_timeout": cell_timeout,
                 "timeout": timeout, "env": dict(env or {})} for i, sub in enumerate(subs) if sub.data is not None]
    results: dict[str, dict] = {}

    def done(key: str, result: dict) -> None:
        results[key] = result
        sub = subs[int(key)]
        log(f"graded {sub.file} in {result.get('seconds', 0):.0f} s ({len(results)}/{len(payloads)})")

    where = f"the Dask scheduler {scheduler}" if scheduler else f"{max(1, jobs)} local job(s)"
    log(f"{assigned.name}: {len(subs)} submission(s), {len(payloads)} to run on {where}")
    if payloads:
        _run_dask(payloads, scheduler, done) if scheduler else _run_local(payloads, jobs, done)
    graded = [interpret(sub, results.get(str(i))) for i, sub in enumerate(subs)]
    for g in graded:
        g.statuses = _sort_statuses(g.statuses) or ["ok"]
    write_gradebook(out, assigned, graded)
    log(f"wrote {out / 'gradebook.csv'}, {out / 'gradebook.html'} and {len(graded)} feedback file(s)")
    return graded


def _graded_labs() -> list[Path]:
    from .notebooks import lab_notebooks

    return [p for p in lab_notebooks() if checks.is_graded(p)]


def resolve_lab(lab: str | None, submissions: Path) -> Path:
    """The instructor notebook to grade against: ``--lab`` (a number, a name or a path), else the graded
    lab most submissions say they are."""
    labs = _graded_labs()
    if lab:
        if Path(lab).is_file():
            return Path(lab)
        matches = [p for p in labs if p.name.startswith(f"{lab}_") or p.stem == lab or checks.assignment_name(p) == lab]
        if len(matches) != 1:
            raise ValueError(f"--lab {lab!r} names {len(matches)} graded labs; graded: "
                             + ", ".join(p.name for p in labs))
        return matches[0]
    by_name = {checks.assignment_name(p): p for p in labs}
    votes = collections.Counter()
    for path in sorted(Path(submissions).rglob("*.ipynb")):
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_MB * 2**20:
            name = assignment_of(path.read_bytes())
            if name in by_name:
                votes[name] += 1
    if not votes:
        raise ValueError(f"no submission in {submissions} says which lab it is; name it with --lab (LAB=01)")
    (best, count), *rest = votes.most_common() + [(None, 0)]
    if rest and rest[0][1] == count:
        raise ValueError(f"the submissions are split between labs ({dict(votes)}); name one with --lab (LAB=01)")
    return by_name[best]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labhelpers.course.grading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path)
    parser.add_argument("--lab", default=None, help="01, lab01 or a notebook path (default: what the submissions say)")
    parser.add_argument("--out", type=Path, default=None, help="default: reports/grades/<assignment>")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="submissions graded at once (local pool)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="grade on this Dask scheduler")
    parser.add_argument("--cell-timeout", type=float, default=CELL_TIMEOUT_S, help="seconds per cell")
    parser.add_argument("--timeout", type=float, default=NOTEBOOK_TIMEOUT_S, help="seconds per notebook")
    parser.add_argument("--max-mb", type=float, default=MAX_MB, help="largest notebook accepted")
    parser.add_argument("--profile", default=None, help="LABS_PROFILE of the kernels (smoke / full)")
    args = parser.parse_args(argv)
    env = {"LABS_PROFILE": args.profile} if args.profile else {}
    try:
        lab = resolve_lab(args.lab, args.submissions)
        graded = grade(args.submissions, lab, args.out, args.jobs, args.scheduler, args.cell_timeout, args.timeout,
                       args.max_mb, env)
    except (ValueError, FileNotFoundError, checks.AssignError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = collections.Counter(s for g in graded for s in g.statuses)
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
