"""Run labs into a report folder: check everything first, execute ``-j`` at a time, publish, index.

``run_notebooks`` is the Python API (``lh.run_notebooks``) behind ``labs run``; a class run
(:mod:`.roster`) checks its inputs with the same ``check_*`` functions and runs each student's labs
with ``run_notebooks_into``. Each lab executes in its own kernel (:mod:`.execute`) into a staging
folder; only when execution *and* HTML rendering succeed are its files moved over the previous
report (:mod:`.staging`), so a failed run never destroys a good report. Output, under
``<output-dir>/<profile>/``::

    <stem>.ipynb  <stem>.html  <stem>_files/   executed notebook, HTML, saved figures, thumbnail.png
    failed/<stem>.ipynb                        the executed notebook of a failed run
    index.html  index.json                     every lab: status, timing, provenance, key figure, links

Parameters reach a notebook only when its tagged parameters cell declares them, so papermill
never meets an unknown one. No TensorFlow here (papermill and nbconvert load in the worker).
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import config
from . import stopping
from .execute import DEFAULT_CELL_TIMEOUT, LabTask, broken_outcome, execute_lab, passed_parameters
from .index import read_index, update_index
from .notebooks import (
    NOTEBOOK_PATTERN,
    STANDARD_NAMES,
    declared_parameters,
    display_path,
    lab_notebooks,
    notebook_title,
)
from .reports import DEFAULT_COURSE, STATUS_FAILED, STATUS_OK, LabResult, clean_title_field, today
from .staging import LabOutcome, discard_staging, new_staging, publish, report_lock

RESERVED_STEMS = frozenset({"index", "class_index"})  # index.html, class_index.html: the runner's own pages


@dataclass(frozen=True)
class Notebook:
    """A checked notebook: its path, title (first markdown heading) and declared parameters."""

    path: Path
    title: str
    declared: frozenset[str]


# ----------------------------------------------------------------------------- checks (before anything runs)


def default_notebooks() -> list[Path]:
    """The course's labs: ``notebooks/NN_*.ipynb`` of the repository, in order."""
    found = lab_notebooks()
    if not found:
        raise FileNotFoundError(f"no notebooks matching {NOTEBOOK_PATTERN} in {config.repo_root() / 'notebooks'}; "
                                "pass notebook paths")
    return found


def default_output_dir() -> Path:
    """The repository's ``reports/`` folder when there is one, else ``./reports``."""
    in_repo = config.repo_root() / "reports"
    return in_repo if in_repo.is_dir() else Path("reports")


def check_notebooks(notebooks) -> list[Notebook]:
    """Resolve the paths; fail before anything runs on a missing, odd or duplicate notebook."""
    import nbformat

    checked, seen = [], {}
    for given in notebooks:
        path = Path(given).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"notebook not found: {given} (looked at {path.resolve()})")
        if not path.is_file() or path.suffix != ".ipynb":
            raise ValueError(f"not a notebook file: {given} (want a path to an .ipynb file)")
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as exc:
            raise ValueError(f"cannot read notebook {given}: {exc}") from exc
        path = path.resolve()
        if path.stem.casefold() in RESERVED_STEMS:
            raise ValueError(f"notebook {given}: its report {path.stem}.html would overwrite the report folder's "
                             f"{path.stem.casefold()}.html page; rename the notebook (reserved names: "
                             f"{', '.join(sorted(RESERVED_STEMS))})")
        if path.stem in seen and seen[path.stem] != path:
            raise ValueError(f"two notebooks share the report name {path.stem!r}: {seen[path.stem]} and {path}")
        if path.stem not in seen:
            seen[path.stem] = path
            try:
                declared = declared_parameters(path)
            except Exception as exc:
                raise ValueError(f"cannot read the parameters cell of {given}: {exc}") from exc
            checked.append(Notebook(path, notebook_title(nb), declared))
    return checked


def check_run_notebooks(notebooks) -> list[Notebook]:
    """``notebooks`` (a path, paths, or None: the course's labs) checked; at least one."""
    if isinstance(notebooks, (str, os.PathLike)):
        notebooks = [notebooks]
    checked = check_notebooks(default_notebooks() if notebooks is None else list(notebooks))
    if not checked:
        raise ValueError("no notebooks to run")
    return checked


def check_parameters(parameters: dict | None) -> dict:
    """Lab-specific parameters: identifiers, none of the standard ones (those have their own arguments)."""
    parameters = dict(parameters or {})
    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"parameter name {name!r} is not a Python identifier")
        if name in STANDARD_NAMES:
            raise ValueError(f"parameter {name!r} is a standard one; pass it as the {name} argument "
                             f"(--{name.replace('_', '-')}) instead")
    return parameters


def check_output_dir(output_dir: str | Path | None, profile: str) -> Path:
    """``<output_dir>/<profile>``, resolved; a clear error when it or a folder above it is a file."""
    target = Path(output_dir if output_dir is not None else default_output_dir()).expanduser().resolve() / profile
    for folder in (target, *target.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"--output-dir {output_dir}: {folder} is a file, not a folder (the reports go to "
                                 f"{target}/); pass a folder, which is created when missing")
            break
    return target


def check_run_options(profile: str, jobs: int, cell_timeout: float | None) -> str:
    """The resolved profile name; a clear error for an unknown profile, jobs < 1 or a negative timeout."""
    resolved = config.resolve_profile(profile).name  # an unknown profile fails here, before any kernel
    if int(jobs) < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if cell_timeout is not None and cell_timeout < 0:
        raise ValueError(f"cell_timeout must be positive seconds (0: no limit), got {cell_timeout}")
    return resolved


def note_undeclared(parameters: dict, checked: list[Notebook]) -> None:
    """A note on stderr for each parameter no notebook declares (it reaches none of them)."""
    for name in parameters:
        if not any(name in nb.declared for nb in checked):
            print(f"note: no notebook declares parameter {name!r} in its parameters cell; it is not passed",
                  file=sys.stderr)


# ----------------------------------------------------------------------------- running


def run_notebooks(notebooks=None, profile: str = "smoke", seed: int = config.DEFAULT_SEED, student: str = "",
                  group: str = "", jobs: int = 1, cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
                  output_dir: str | Path | None = None, instructor: str = "", course: str = DEFAULT_COURSE,
                  parameters: dict | None = None) -> list[LabResult]:
    """Execute notebooks with papermill (``jobs`` at a time) and publish their reports.

    ``notebooks``: paths (None: the course's ``notebooks/NN_*.ipynb``). ``cell_timeout``:
    seconds per cell (0 or None: no limit). Reports go to ``<output_dir>/<profile>/``.
    ``student``, ``group``, ``instructor``, ``course`` fill each report's title block (an empty
    course means the default). ``parameters``: lab-specific papermill parameters (``image_dir``,
    ``class_name``, ...), each passed only to the notebooks whose parameters cell declares it.
    Returns this run's results in the given order; failures do not raise (see ``.ok``).
    Raises ValueError / FileNotFoundError for a bad profile, parameter or notebook before anything runs.
    """
    resolved = check_run_options(profile, jobs, cell_timeout)
    parameters = check_parameters(parameters)
    checked = check_run_notebooks(notebooks)
    note_undeclared(parameters, checked)
    report_dir = check_output_dir(output_dir, resolved)
    return run_notebooks_into(report_dir, checked, profile=resolved, seed=seed, student=student, group=group,
                              instructor=instructor, course=course, parameters=parameters, jobs=jobs,
                              cell_timeout=cell_timeout)


def run_notebooks_into(report_dir: str | Path, checked: list[Notebook], *, profile: str, seed: int,
                       student: str = "", group: str = "", instructor: str = "", course: str = DEFAULT_COURSE,
                       parameters: dict | None = None, jobs: int = 1,
                       cell_timeout: float | None = DEFAULT_CELL_TIMEOUT, in_process: bool = False,
                       label: str = "") -> list[LabResult]:
    """Run checked notebooks into ``report_dir`` (its own index). ``in_process``: one after the
    other in this process (a roster task on a pool or Dask worker) instead of a pool of ``jobs``.
    ``label`` prefixes the progress lines (the student, in a class run)."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    student, group, instructor, course = (clean_title_field(x) for x in (student, group, instructor, course))
    course = course or DEFAULT_COURSE
    common = {"profile": profile, "seed": int(seed), "student": student or "", "group": group or "",
              "instructor": instructor or "", "course": course}
    extra = dict(parameters or {})
    folders = sorted({nb.path.parent for nb in checked})
    tasks = {nb.path.stem: LabTask(notebook=str(nb.path), report_dir=str(report_dir), profile=profile,
                                   parameters={**common, **extra}, declared=nb.declared,
                                   title={**common, "title": nb.title}, cell_timeout=cell_timeout, label=label)
             for nb in checked}
    meta = {nb.path.stem: nb for nb in checked}
    header = {key: common[key] for key in ("course", "student", "group", "instructor")}
    header.update(date=today(), profile=profile, seed=int(seed))
    results: dict[str, LabResult] = {}
    started = time.monotonic()

    def record(stem: str, outcome: LabOutcome) -> None:
        nb = meta[stem]
        with report_lock(report_dir):  # publish and index together: a SIGTERM waits for both
            outcome = publish(report_dir, outcome)
            result = LabResult(
                stem=stem, status=STATUS_FAILED if outcome.error else STATUS_OK,
                notebook=display_path(nb.path), title=nb.title, profile=profile, seed=int(seed),
                student=common["student"], group=common["group"], instructor=common["instructor"], course=course,
                parameters=passed_parameters(extra, nb.declared), started_at=outcome.started_at,
                duration_s=outcome.duration_s, html=outcome.html, executed=outcome.executed,
                figures=outcome.figures, key_figure=outcome.key_figure, key_figure_from=outcome.key_figure_from,
                thumbnail=outcome.thumbnail, provenance=outcome.provenance, error=outcome.error)
            results[stem] = result
            update_index(report_dir, profile, [result], folders, header=header)
        _say_done(result, label, f"[{len(results)}/{len(tasks)}]")

    signals = stopping.install_signal_handlers()  # SIGTERM / SIGHUP: workers, kernels and staging go, exit 143
    try:
        for task in tasks.values():
            task.staging = str(new_staging(report_dir, task.stem))
        if in_process:
            for stem, task in tasks.items():
                try:
                    outcome = execute_lab(task)
                except Exception as exc:
                    outcome = broken_outcome(task, exc)
                record(stem, outcome)
        else:
            with stopping.worker_pool(min(int(jobs), len(tasks))) as pool:
                futures = {pool.submit(execute_lab, tasks[stem]): stem for stem in start_order(tasks, report_dir)}
                for future in concurrent.futures.as_completed(futures):
                    stem = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as exc:
                        outcome = broken_outcome(tasks[stem], exc)
                    record(stem, outcome)
    finally:
        for task in tasks.values():  # a lab that never reported back (Ctrl-C, a broken pool)
            if task.staging and Path(task.staging).exists():
                discard_staging(report_dir, task.staging)
        stopping.restore_signal_handlers(signals)
    ordered = [results[stem] for stem in tasks]
    _say_summary(ordered, meta, report_dir, label, time.monotonic() - started)
    return ordered


def start_order(stems, report_dir: Path) -> list[str]:
    """The order in which a pool starts the labs ``stems``: the longest first, so that no job waits at the
    end for a long lab that started last (the 10 smoke labs' times at the last stop, scheduled on 2 jobs:
    166 s in course order, 156 s longest first, for 154 s of work per job). "Longest" is the lab's last
    run in this report folder (its index); labs without one (a new folder) start before those, the later
    labs first, as they are the longer ones."""
    last = {lab.stem: lab.duration_s for lab in read_index(report_dir) if lab.duration_s}
    unknown = [stem for stem in reversed(list(stems)) if stem not in last]
    return unknown + sorted((stem for stem in stems if stem in last), key=lambda stem: -last[stem])


def _say_done(result: LabResult, label: str, progress: str) -> None:
    duration = f"{result.duration_s:.1f} s" if result.duration_s is not None else "-"
    if result.ok:
        note = f"  ({len(result.fallbacks)} fallback(s): see the index)" if result.fallbacks else ""
        print(f"ok      {label}{result.stem}  {duration}  {progress}{note}", flush=True)
    else:
        print(f"FAILED  {label}{result.stem}  {duration}  {progress}: {result.error['message']}", flush=True)


def _say_summary(ordered: list[LabResult], meta: dict[str, Notebook], report_dir: Path, label: str,
                 seconds: float) -> None:
    failed = [r for r in ordered if not r.ok]
    print(f"{label}{len(ordered) - len(failed)} ok, {len(failed)} failed in {seconds:.1f} s; "
          f"index: {report_dir / 'index.html'}", flush=True)
    for result in failed:
        print(f"failed: {meta[result.stem].path}: {result.error['message']}", file=sys.stderr)
        if result.executed:
            print(f"        executed notebook kept at {report_dir / result.executed}", file=sys.stderr)
        if result.error.get("stderr_log"):
            print(f"        kernel stderr: {report_dir / result.error['stderr_log']}", file=sys.stderr)
        if result.previous_ok and result.previous_ok.get("html"):
            print(f"        the previous report stays: {report_dir / result.previous_ok['html']}", file=sys.stderr)
