"""Run the labs with papermill and publish HTML reports with an index page.

    python -m labhelpers.run                          # every notebooks/NN_*.ipynb, smoke profile
    labs notebooks/03_*.ipynb --profile full --seed 1 --student "Ann Lee" --group A-21 -j 2
    labs run notebooks/03_*.ipynb                     # the same, with the subcommand spelled out
    labs run --roster roster.csv -j 2                 # every lab for every student (labhelpers.roster)

Each lab executes in its own kernel (a process pool runs ``-j`` at a time) into a
staging folder; only when execution *and* HTML rendering succeed are its files
moved over the previous report, so a failed run never destroys a good report.
Output, under ``<output-dir>/<profile>/``::

    <stem>.ipynb  <stem>.html  <stem>_files/   executed notebook, HTML, saved figures, thumbnail.png
    failed/<stem>.ipynb                        the executed notebook of a failed run
    index.html  index.json                     every lab: status, timing, provenance, key figure, links

Every report starts with a title block (course, lab, student, group, instructor, date,
profile, seed): a markdown cell the runner puts at the top of the executed notebook,
marked ``metadata["labs"]["role"] == "title-block"``. Parameters reach a notebook only
when its tagged parameters cell declares them, so papermill never meets an unknown one.

No TensorFlow here (papermill and nbconvert are imported inside the worker).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import config
from . import execute as labexec
from . import stopping
from .execute import (  # noqa: F401  (re-exported: the runner's public names live here too)
    IMAGE_SUFFIXES,
    INLINE_BACKEND,
    KERNEL_NAME,
    KEY_FIGURE_STEM,
    THUMBNAIL_NAME,
    THUMBNAIL_SIZE,
    TITLE_BLOCK_ROLE,
    _add_key_figure,
    _execute_lab,
    _index_lock,
    _now,
    _render_html,
    _today,
    _write_atomically,
    insert_title_block,
    key_figure_source,
    last_inline_png,
    passed_parameters,
    write_thumbnail,
)
from .reports import (  # noqa: F401
    DEFAULT_COURSE,
    STATUS_FAILED,
    STATUS_NOT_RUN,
    STATUS_OK,
    TITLE_FIELDS,
    LabResult,
    clean_title_field,
    quote_href,
    render_index_html,
    render_page,
    title_block_html,
)

NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
DEFAULT_CELL_TIMEOUT = 1800  # seconds; a full-profile training cell on a slow CPU fits, a hung one does not
INDEX_SCHEMA = 1
# The parameters every course notebook declares (labhelpers.nbtools.STANDARD_NAMES); the runner sets them.
STANDARD_PARAMETERS = ("profile", "seed", "student", "group", "instructor", "course", "output_dir")
RESERVED_STEMS = frozenset({"index", "class_index"})  # index.html, class_index.html: the runner's own pages


@dataclass(frozen=True)
class Notebook:
    """A checked notebook: its path, title (first markdown heading) and declared parameters."""

    path: Path
    title: str
    declared: frozenset[str]


# ----------------------------------------------------------------------------- inputs


def default_notebooks() -> list[Path]:
    """The course's labs: ``notebooks/NN_*.ipynb`` of the repository, in order."""
    folder = config.repo_root() / "notebooks"
    found = sorted(folder.glob(NOTEBOOK_PATTERN))
    if not found:
        raise FileNotFoundError(f"no notebooks matching {NOTEBOOK_PATTERN} in {folder}; pass notebook paths")
    return found


def default_output_dir() -> Path:
    """The repository's ``reports/`` folder when there is one, else ``./reports``."""
    in_repo = config.repo_root() / "reports"
    return in_repo if in_repo.is_dir() else Path("reports")


def _notebook_title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
            return ""
    return ""


def declared_parameters(path: str | Path) -> frozenset[str]:
    """The names the notebook's cell tagged ``parameters`` assigns (papermill's own parser)."""
    import papermill

    return frozenset(papermill.inspect_notebook(str(path)))


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
            checked.append(Notebook(path, _notebook_title(nb), declared))
    return checked


def check_parameters(parameters: dict | None) -> dict:
    """Lab-specific parameters: identifiers, none of the standard ones (those have their own arguments)."""
    parameters = dict(parameters or {})
    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"parameter name {name!r} is not a Python identifier")
        if name in STANDARD_PARAMETERS:
            raise ValueError(f"parameter {name!r} is a standard one; pass it as the {name} argument "
                             f"(--{name.replace('_', '-')}) instead")
    return parameters


def _display_path(path: Path) -> str:
    """A path relative to the repository when it lives there (stable across checkouts)."""
    try:
        return str(path.relative_to(config.repo_root()))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- index


def _read_index_data(report_dir: str | Path) -> dict:
    path = Path(report_dir) / "index.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["labs"] = [LabResult.from_dict(entry) for entry in data.get("labs", [])]
        return data
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        print(f"warning: ignoring unreadable {path} ({exc}); the index starts afresh", file=sys.stderr)
        return {}


def read_index(report_dir: str | Path) -> list[LabResult]:
    """The labs listed in ``<report_dir>/index.json`` (empty when there is none)."""
    return _read_index_data(report_dir).get("labs", [])


def _merge(previous: dict[str, LabResult], new: LabResult) -> LabResult:
    """A failed run keeps a pointer to the last successful report (which stays in place)."""
    if new.status == STATUS_FAILED:
        old = previous.get(new.stem)
        if old is not None and old.status == STATUS_OK:
            new.previous_ok = {k: getattr(old, k)
                               for k in ("html", "executed", "started_at", "seed", "duration_s", "thumbnail")}
        elif old is not None:
            new.previous_ok = old.previous_ok
    return new


def update_index(report_dir: Path, profile: str, results: list[LabResult], folders: list[Path],
                 header: dict | None = None) -> list[LabResult]:
    """Merge ``results`` into ``index.json`` and rewrite it and ``index.html``.

    Labs not run this time keep their last entry; notebooks in ``folders`` that never ran
    are listed as "not run". ``header``: the title-block fields shown at the top (course,
    student, group, instructor, date, profile, seed); None keeps the previous ones.
    """
    with _index_lock(report_dir):
        previous = _read_index_data(report_dir)
        labs = {lab.stem: lab for lab in previous.get("labs", [])}
        for result in results:
            labs[result.stem] = _merge(labs, result)
        for folder in folders:
            for path in sorted(folder.glob(NOTEBOOK_PATTERN)):
                labs.setdefault(path.stem, LabResult(stem=path.stem, status=STATUS_NOT_RUN,
                                                     notebook=_display_path(path), profile=profile))
        ordered = [labs[stem] for stem in sorted(labs)]
        header = header if header is not None else previous.get("header")
        data = {"schema": INDEX_SCHEMA, "profile": profile, "updated_at": _now(), "header": header,
                "labs": [asdict(lab) for lab in ordered]}
        _write_atomically(report_dir / "index.json", json.dumps(data, indent=2, default=str) + "\n")
        _write_atomically(report_dir / "index.html",
                          render_index_html(ordered, profile, data["updated_at"], header=header))
    return ordered


# ----------------------------------------------------------------------------- driver


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


def _check_run_options(profile: str, jobs: int, cell_timeout: float | None) -> str:
    resolved = config.resolve_profile(profile).name  # an unknown profile fails here, before any kernel
    if int(jobs) < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if cell_timeout is not None and cell_timeout < 0:
        raise ValueError(f"cell_timeout must be positive seconds (0: no limit), got {cell_timeout}")
    return resolved


def _note_undeclared(parameters: dict, checked: list[Notebook]) -> None:
    for name in parameters:
        if not any(name in nb.declared for nb in checked):
            print(f"note: no notebook declares parameter {name!r} in its parameters cell; it is not passed",
                  file=sys.stderr)


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
    resolved = _check_run_options(profile, jobs, cell_timeout)
    parameters = check_parameters(parameters)
    if isinstance(notebooks, (str, os.PathLike)):
        notebooks = [notebooks]
    checked = check_notebooks(default_notebooks() if notebooks is None else list(notebooks))
    if not checked:
        raise ValueError("no notebooks to run")
    _note_undeclared(parameters, checked)
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
    tasks = {nb.path.stem: {"notebook": str(nb.path), "report_dir": str(report_dir), "profile": profile,
                            "parameters": {**common, **extra}, "declared": sorted(nb.declared),
                            "title": {**common, "title": nb.title}, "cell_timeout": cell_timeout,
                            "label": label} for nb in checked}
    meta = {nb.path.stem: nb for nb in checked}
    header = {key: common[key] for key in ("course", "student", "group", "instructor")}
    header.update(date=_today(), profile=profile, seed=int(seed))
    results: dict[str, LabResult] = {}
    total = len(tasks)
    started = time.monotonic()

    def record(stem: str, outcome: dict) -> None:
        nb = meta[stem]
        with labexec.report_lock(report_dir):  # publish and index together: a SIGTERM waits for both
            outcome = labexec.publish(report_dir, outcome)
            result = LabResult(
                stem=stem, status=STATUS_FAILED if outcome["error"] else STATUS_OK,
                notebook=_display_path(nb.path), title=nb.title, profile=profile, seed=int(seed),
                student=common["student"], group=common["group"], instructor=common["instructor"], course=course,
                parameters=passed_parameters(extra, nb.declared), started_at=outcome["started_at"],
                duration_s=outcome["duration_s"], html=outcome["html"], executed=outcome["executed"],
                figures=outcome["figures"], key_figure=outcome.get("key_figure"),
                key_figure_from=outcome.get("key_figure_from"), thumbnail=outcome.get("thumbnail"),
                provenance=outcome["provenance"], error=outcome["error"])
            results[stem] = result
            update_index(report_dir, profile, [result], folders, header=header)
        duration = f"{result.duration_s:.1f} s" if result.duration_s is not None else "-"
        if result.ok:
            note = f"  ({len(result.fallbacks)} fallback(s): see the index)" if result.fallbacks else ""
            print(f"ok      {label}{stem}  {duration}  [{len(results)}/{total}]{note}", flush=True)
        else:
            print(f"FAILED  {label}{stem}  {duration}  [{len(results)}/{total}]: {result.error['message']}",
                  flush=True)

    def broken(stem: str, exc: Exception) -> dict:  # the worker itself broke (not the notebook)
        error = {"cell": None, "exec_count": None, "ename": type(exc).__name__, "evalue": str(exc), "source": "",
                 "stage": "start", "message": f"the runner failed: {type(exc).__name__}: {exc}"}
        return {"stem": stem, "started_at": _now(), "duration_s": None, "provenance": [], "html": None,
                "executed": None, "figures": None, "error": error, "staging": tasks[stem]["staging"]}

    signals = stopping.install_signal_handlers()  # SIGTERM / SIGHUP: workers, kernels and staging go, exit 143
    try:
        for stem, task in tasks.items():
            task["staging"] = str(labexec.new_staging(report_dir, stem))
        if in_process:
            for stem, task in tasks.items():
                try:
                    outcome = labexec.execute_lab(task)
                except Exception as exc:
                    outcome = broken(stem, exc)
                record(stem, outcome)
        else:
            # Fresh spawned processes: the caller (and any TensorFlow it has loaded) stays untouched.
            context = multiprocessing.get_context("spawn")
            pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(int(jobs), total), mp_context=context,
                                                          initializer=stopping.install_signal_handlers)
            stopping._POOLS.append(pool)
            try:
                futures = {pool.submit(labexec.execute_lab, task): stem for stem, task in tasks.items()}
                for future in concurrent.futures.as_completed(futures):
                    stem = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as exc:
                        outcome = broken(stem, exc)
                    record(stem, outcome)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                stopping._POOLS.remove(pool)
    finally:
        for task in tasks.values():  # a lab that never reported back (Ctrl-C, a broken pool)
            if task.get("staging") and Path(task["staging"]).exists():
                labexec.discard_staging(report_dir, task["staging"])
        stopping.restore_signal_handlers(signals)
    ordered = [results[stem] for stem in tasks]
    failed = [r for r in ordered if not r.ok]
    print(f"{label}{len(ordered) - len(failed)} ok, {len(failed)} failed in {time.monotonic() - started:.1f} s; "
          f"index: {report_dir / 'index.html'}", flush=True)
    for result in failed:
        print(f"failed: {meta[result.stem].path}: {result.error['message']}", file=sys.stderr)
        if result.executed:
            print(f"        executed notebook kept at {report_dir / result.executed}", file=sys.stderr)
        if result.error.get("stderr_log"):
            print(f"        kernel stderr: {report_dir / result.error['stderr_log']}", file=sys.stderr)
        if result.previous_ok and result.previous_ok.get("html"):
            print(f"        the previous report stays: {report_dir / result.previous_ok['html']}", file=sys.stderr)
    return ordered


# ----------------------------------------------------------------------------- command line


def parse_parameter(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` from the command line; VALUE stays a string unless it is a JSON number,
    true, false or null."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"want NAME=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
        if isinstance(parsed, (int, float, bool)) or parsed is None:
            return name.strip(), parsed
    except json.JSONDecodeError:
        pass
    return name.strip(), value


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``labs run`` (also what plain ``labs`` takes); extend it for new run modes."""
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help=f"notebooks to run (default: notebooks/{NOTEBOOK_PATTERN} of the repository)")
    parser.add_argument("--profile", default="smoke", help=f"one of {sorted(config.PROFILES)} (default: smoke)")
    parser.add_argument("--seed", type=int, default=config.DEFAULT_SEED,
                        help=f"seed passed to every lab (default: {config.DEFAULT_SEED})")
    title = parser.add_argument_group("title block (top of every report and of the index)")
    title.add_argument("--student", default="", help="student name")
    title.add_argument("--group", default="", help="student group")
    title.add_argument("--instructor", default="", help="instructor name")
    title.add_argument("--course", default=DEFAULT_COURSE,
                       help=f"course name (default, also when empty: {DEFAULT_COURSE!r})")
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", type=parse_parameter,
                        default=[], metavar="NAME=VALUE",
                        help="a lab-specific papermill parameter (e.g. class_name=tabby), passed only to the "
                             "notebooks whose parameters cell declares NAME; repeatable")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="notebooks run at the same time; with --roster: students at a time (default: 1)")
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds a cell may run, 0: no limit (default: {DEFAULT_CELL_TIMEOUT})")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="reports land in OUTPUT_DIR/<profile>/ (default: the repository's reports/)")
    klass = parser.add_argument_group("class-wide runs (labhelpers.roster)")
    klass.add_argument("--roster", type=Path, default=None, metavar="CSV",
                       help="run every lab for every student of this CSV (columns: student, group, image_folder, "
                            "class_name; image_folder relative to the CSV, may be blank) into "
                            "OUTPUT_DIR/<profile>/students/<slug>/, plus OUTPUT_DIR/<profile>/class_index.html; "
                            "-j N runs N students at a time in a local process pool")
    klass.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="with --roster: run each student as one task on this Dask distributed scheduler "
                            "instead of the local pool (-j is then ignored: the workers' threads decide). The "
                            "workers need labhelpers installed and must see the same filesystem at the same "
                            "paths (notebooks, image folders, OUTPUT_DIR); start them with --nthreads 1")
    return parser


def run_command(args: argparse.Namespace) -> int:
    """``labs run``: execute the notebooks; 0 when all succeeded, 1 when any failed."""
    parameters = dict(args.parameters)
    if args.roster is not None:
        if args.student or args.group:
            raise ValueError("--student and --group come from the roster's columns; leave them out with --roster")
        from . import roster

        outcome = roster.run_roster(args.roster, args.notebooks or None, profile=args.profile, seed=args.seed,
                                    instructor=args.instructor, course=args.course, parameters=parameters,
                                    jobs=args.jobs, cell_timeout=args.cell_timeout, output_dir=args.output_dir,
                                    scheduler=args.scheduler)
        return 0 if outcome.ok else 1
    if args.scheduler:
        raise ValueError("--scheduler needs --roster (a Dask cluster runs class-wide runs, one task per student)")
    results = run_notebooks(args.notebooks or None, profile=args.profile, seed=args.seed,
                            student=args.student, group=args.group, jobs=args.jobs,
                            cell_timeout=args.cell_timeout, output_dir=args.output_dir,
                            instructor=args.instructor, course=args.course, parameters=parameters)
    return 0 if all(r.ok for r in results) else 1


# subcommand -> (help, adds its arguments, runs it and returns the exit code)
SUBCOMMANDS = {
    "run": ("execute notebooks and write HTML reports with an index (the default)", add_run_arguments,
            run_command),
}
DEFAULT_SUBCOMMAND = "run"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labs", description="Execute the labs with papermill and write HTML reports with an index. "
                                 f"Without a subcommand, `labs ARGS` means `labs {DEFAULT_SUBCOMMAND} ARGS`.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, handler) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``labs`` command; returns the exit code (2: bad arguments, nothing ran)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, DEFAULT_SUBCOMMAND)  # plain `labs nb.ipynb --profile full`
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
        print(f"labs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
