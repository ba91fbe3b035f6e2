"""Run the labs with papermill and publish HTML reports with an index page.

    python -m labhelpers.run                          # every notebooks/NN_*.ipynb, smoke profile
    labs notebooks/03_*.ipynb --profile full --seed 1 --student "Ann Lee" --group A-21 -j 2
    labs run notebooks/03_*.ipynb                     # the same, with the subcommand spelled out

Each lab executes in its own kernel (a process pool runs ``-j`` at a time) into a
staging folder; only when execution *and* HTML rendering succeed are its files
moved over the previous report, so a failed run never destroys a good report.
Output, under ``<output-dir>/<profile>/``::

    <stem>.ipynb  <stem>.html  <stem>_files/   executed notebook, HTML, saved figures
    failed/<stem>.ipynb                        the executed notebook of a failed run
    index.html  index.json                     every lab: status, timing, provenance, links

No TensorFlow here (papermill and nbconvert are imported inside the worker).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import html
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from string import Template

from . import config

NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
DEFAULT_CELL_TIMEOUT = 1800  # seconds; a full-profile training cell on a slow CPU fits, a hung one does not
KERNEL_NAME = "python3"
INDEX_SCHEMA = 1
STATUS_OK, STATUS_FAILED, STATUS_NOT_RUN = "ok", "failed", "not run"


@dataclass
class LabResult:
    """One lab's entry on the index (paths relative to ``<output-dir>/<profile>/``)."""

    stem: str
    status: str  # "ok", "failed" or "not run"
    notebook: str = ""  # the source notebook
    title: str = ""
    profile: str = ""
    seed: int | None = None
    student: str = ""
    group: str = ""
    started_at: str | None = None  # ISO time, UTC
    duration_s: float | None = None
    html: str | None = None  # the HTML report of this run (failed runs: failed/<stem>.html when renderable)
    executed: str | None = None  # the executed notebook (failed runs: failed/<stem>.ipynb)
    figures: str | None = None  # <stem>_files, when the lab saved figures
    provenance: list[dict] = field(default_factory=list)
    error: dict | None = None  # failed: cell, exec_count, ename, evalue, source, message
    previous_ok: dict | None = None  # failed: the last successful report, still in place

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def fallbacks(self) -> list[dict]:
        """Provenance records that say the lab did not get the real data or weights."""
        return [p for p in self.provenance if p.get("fallback")]

    @classmethod
    def from_dict(cls, data: dict) -> LabResult:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


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


def _check_notebooks(notebooks) -> list[tuple[Path, str]]:
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
        if path.stem in seen and seen[path.stem] != path:
            raise ValueError(f"two notebooks share the report name {path.stem!r}: {seen[path.stem]} and {path}")
        if path.stem not in seen:
            seen[path.stem] = path
            checked.append((path, _notebook_title(nb)))
    return checked


def _display_path(path: Path) -> str:
    """A path relative to the repository when it lives there (stable across checkouts)."""
    try:
        return str(path.relative_to(config.repo_root()))
    except ValueError:
        return str(path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- worker


def _failed_cell(executed_path: Path, cell_index: int | None) -> int | None:
    """Papermill's cell index counts its injected parameters cell; return the index in
    the source notebook instead (None when the failing cell is the injected one)."""
    if cell_index is None or not executed_path.exists():
        return cell_index
    import nbformat

    nb = nbformat.read(executed_path, as_version=4)
    cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    injected = [i for i, c in enumerate(cells) if "injected-parameters" in c.metadata.get("tags", [])]
    if cell_index in injected:
        return None
    return cell_index - sum(1 for i in injected if i < cell_index)


def _last_started_cell(executed_path: Path) -> tuple[int | None, int | None, str]:
    """For errors papermill does not attribute (timeouts, a dead kernel): the last cell
    that started, as (source index, execution count, source)."""
    if not executed_path.exists():
        return None, None, ""
    import nbformat

    nb = nbformat.read(executed_path, as_version=4)
    last = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.metadata.get("papermill", {}).get("start_time"):
            last = index
    if last is None:
        return None, None, ""
    cell = nb.cells[last]
    return _failed_cell(executed_path, last), cell.get("execution_count"), cell.source


def _error_message(error: dict) -> str:
    where = "the injected parameters cell" if error.get("cell") is None else f"cell index {error['cell']}"
    if error.get("exec_count") is not None:
        where += f" (In [{error['exec_count']}])"
    first_line = next((ln.strip() for ln in (error.get("source") or "").splitlines() if ln.strip()), "")
    if first_line:
        where += f" `{first_line[:60]}`"
    if error.get("stage") == "html":
        where = "HTML rendering"
    elif error.get("stage") == "start":
        where = "before the first cell"
    evalue = (error.get("evalue") or "").strip().splitlines()
    return f"{where}: {error.get('ename', 'Error')}" + (f": {evalue[0][:300]}" if evalue else "")


def _render_html(executed: Path, target: Path) -> None:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(embed_images=True, exclude_input=False)
    body, _ = exporter.from_filename(str(executed))
    target.write_text(body, encoding="utf-8")


def _read_provenance(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({"kind": "unreadable", "summary": line[:200]})
    return records


def _replace_tree(source: Path, target: Path) -> None:
    """Put folder ``source`` at ``target`` (renames only; the old folder goes after)."""
    old = None
    if target.exists():
        old = source.parent / f".old-{target.name}"
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send this process's stderr, and so its kernel's, to a file: TensorFlow's C++ start-up
    lines ignore TF_CPP_MIN_LOG_LEVEL and would otherwise flood the console."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _execute_lab(task: dict) -> dict:
    """Run one notebook in a fresh kernel and publish it; runs in a pool worker, whose
    environment (inherited by the kernel) it may change freely."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = Path(task["notebook"])
    stem = source.stem
    report_dir = Path(task["report_dir"])
    staging_root = report_dir / ".staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=staging_root))
    executed = staging / f"{stem}.ipynb"
    figures = staging / f"{stem}_files"
    provenance_file = staging / "provenance.jsonl"
    stderr_log = staging / "stderr.log"
    os.environ.update({
        config.PROVENANCE_ENV: str(provenance_file),
        config.PROFILE_ENV: task["profile"],
        "LABS_OUTPUT_DIR": str(figures),
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
    })
    print(f"start   {stem}", flush=True)
    result = {"stem": stem, "started_at": _now(), "error": None, "html": None, "executed": None,
              "figures": None}
    started = time.monotonic()
    try:
        try:
            with _stderr_to(stderr_log):
                papermill.execute_notebook(
                    str(source), str(executed),
                    parameters={"profile": task["profile"], "seed": task["seed"], "student": task["student"],
                                "group": task["group"], "output_dir": str(figures)},
                    kernel_name=KERNEL_NAME, execution_timeout=math.ceil(task["cell_timeout"] or 0) or None,
                    progress_bar=False, cwd=str(source.parent),
                    # ipykernel warns at every start that localhost TCP is unencrypted; keep errors only
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                )
        except PapermillExecutionError as exc:
            result["error"] = {"cell": _failed_cell(executed, exc.cell_index), "exec_count": exc.exec_count,
                               "ename": exc.ename, "evalue": exc.evalue, "source": exc.source}
        except Exception as exc:  # a cell timeout, a dead kernel, a kernel that never started
            cell, count, cell_source = _last_started_cell(executed)
            result["error"] = {"cell": cell, "exec_count": count, "ename": type(exc).__name__,
                               "evalue": str(exc).strip(), "source": cell_source,
                               "stage": "execute" if cell_source else "start"}
        result["duration_s"] = round(time.monotonic() - started, 2)
        result["provenance"] = _read_provenance(provenance_file)
        if result["error"] is None:
            try:
                _render_html(executed, staging / f"{stem}.html")
            except Exception as exc:
                result["error"] = {"cell": None, "exec_count": None, "ename": type(exc).__name__,
                                   "evalue": str(exc), "source": "", "stage": "html"}
        if result["error"] is None:
            # Publish: figures first, the notebook next, the HTML (what readers open) last.
            if figures.is_dir():
                _replace_tree(figures, report_dir / figures.name)
                result["figures"] = figures.name
            else:
                shutil.rmtree(report_dir / figures.name, ignore_errors=True)  # stale figures of an older run
            os.replace(executed, report_dir / executed.name)
            os.replace(staging / f"{stem}.html", report_dir / f"{stem}.html")
            result["executed"], result["html"] = executed.name, f"{stem}.html"
            for stale in (report_dir / "failed").glob(f"{stem}.*"):
                stale.unlink()
        else:
            result["error"]["message"] = _error_message(result["error"])
            failed_dir = report_dir / "failed"
            failed_dir.mkdir(exist_ok=True)
            for stale in failed_dir.glob(f"{stem}.*"):
                stale.unlink()
            if stderr_log.exists() and stderr_log.stat().st_size:
                os.replace(stderr_log, failed_dir / f"{stem}.stderr.log")
                result["error"]["stderr_log"] = f"failed/{stem}.stderr.log"
            if executed.exists():
                os.replace(executed, failed_dir / executed.name)
                result["executed"] = f"failed/{executed.name}"
                with contextlib.suppress(Exception):  # the HTML is a convenience for a failed run
                    _render_html(failed_dir / executed.name, failed_dir / f"{stem}.html")
                    result["html"] = f"failed/{stem}.html"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging_root.rmdir()  # only when no other run is staging
    return result


# ----------------------------------------------------------------------------- index


@contextlib.contextmanager
def _index_lock(report_dir: Path):
    """Serialise index updates of concurrent runs (POSIX; elsewhere a no-op)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(report_dir / ".index.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_index(report_dir: str | Path) -> list[LabResult]:
    """The labs listed in ``<report_dir>/index.json`` (empty when there is none)."""
    path = Path(report_dir) / "index.json"
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [LabResult.from_dict(entry) for entry in data.get("labs", [])]
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        print(f"warning: ignoring unreadable {path} ({exc}); the index starts afresh", file=sys.stderr)
        return []


def _merge(previous: dict[str, LabResult], new: LabResult) -> LabResult:
    """A failed run keeps a pointer to the last successful report (which stays in place)."""
    if new.status == STATUS_FAILED:
        old = previous.get(new.stem)
        if old is not None and old.status == STATUS_OK:
            new.previous_ok = {k: getattr(old, k) for k in ("html", "executed", "started_at", "seed", "duration_s")}
        elif old is not None:
            new.previous_ok = old.previous_ok
    return new


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def update_index(report_dir: Path, profile: str, results: list[LabResult], folders: list[Path]) -> list[LabResult]:
    """Merge ``results`` into ``index.json`` and rewrite it and ``index.html``.

    Labs not run this time keep their last entry; notebooks in ``folders`` that never ran
    are listed as "not run".
    """
    with _index_lock(report_dir):
        labs = {lab.stem: lab for lab in read_index(report_dir)}
        for result in results:
            labs[result.stem] = _merge(labs, result)
        for folder in folders:
            for path in sorted(folder.glob(NOTEBOOK_PATTERN)):
                labs.setdefault(path.stem, LabResult(stem=path.stem, status=STATUS_NOT_RUN,
                                                     notebook=_display_path(path), profile=profile))
        ordered = [labs[stem] for stem in sorted(labs)]
        data = {"schema": INDEX_SCHEMA, "profile": profile, "updated_at": _now(),
                "labs": [asdict(lab) for lab in ordered]}
        _write_atomically(report_dir / "index.json", json.dumps(data, indent=2, default=str) + "\n")
        _write_atomically(report_dir / "index.html", render_index_html(ordered, profile, data["updated_at"]))
    return ordered


def _link(href: str | None, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>' if href else ""


def _row(lab: LabResult) -> str:
    esc = html.escape
    css = {STATUS_OK: "ok", STATUS_FAILED: "failed"}.get(lab.status, "notrun")
    status = f'<span class="badge {css}">{esc(lab.status)}</span>'
    if lab.fallbacks:
        status += ' <span class="badge fallback" title="ran on fallback data or weights">&#9888; fallback</span>'
    if lab.error:
        status += f'<div class="error">{esc(lab.error.get("message", ""))}</div>'
    name = f"<b>{esc(lab.stem)}</b>" + (f"<br>{esc(lab.title)}" if lab.title else "")
    duration = f"{lab.duration_s:.1f} s" if lab.duration_s is not None else ""
    run_with = []
    if lab.status != STATUS_NOT_RUN:
        run_with.append(f"profile {esc(lab.profile)}, seed {esc(str(lab.seed))}")
        who = " / ".join(x for x in (lab.student, lab.group) if x)
        if who:
            run_with.append(esc(who))
        if lab.started_at:
            run_with.append(f'<span class="small">{esc(lab.started_at)}</span>')
    items = []
    for record in lab.provenance:
        text = f"<b>{esc(str(record.get('kind', '?')))}</b>: {esc(str(record.get('summary', '')))}"
        if record.get("fallback"):
            items.append(f'<li class="fallback-record"><span class="badge fallback">&#9888; FALLBACK</span> {text}</li>')
        else:
            items.append(f"<li>{text}</li>")
    provenance = f'<ul class="prov">{"".join(items)}</ul>' if items else ""
    links = []
    if lab.status == STATUS_OK:
        links += [_link(lab.html, "report"), _link(lab.executed, "notebook"), _link(lab.figures, "figures")]
    elif lab.status == STATUS_FAILED:
        links += [_link(lab.executed, "failed notebook"), _link(lab.html, "failed run (HTML)"),
                  _link((lab.error or {}).get("stderr_log"), "kernel stderr")]
        if lab.previous_ok:
            when = lab.previous_ok.get("started_at") or "an earlier run"
            links.append(f'{_link(lab.previous_ok.get("html"), "last good report")} '
                         f'<span class="small">({esc(when)})</span>')
    links_html = "<br>".join(x for x in links if x)
    return (f"<tr><td>{name}</td><td>{status}</td><td>{duration}</td><td>{'<br>'.join(run_with)}</td>"
            f"<td>{provenance}</td><td>{links_html}</td></tr>")


def render_index_html(labs: list[LabResult], profile: str, updated: str) -> str:
    """The index page: one row per lab, fallbacks and failures impossible to miss."""
    from importlib.resources import files

    template = Template(files("labhelpers").joinpath("report_index.html").read_text(encoding="utf-8"))
    counts = {s: sum(1 for lab in labs if lab.status == s) for s in (STATUS_OK, STATUS_FAILED, STATUS_NOT_RUN)}
    banners = []
    with_fallback = [lab.stem for lab in labs if lab.fallbacks]
    if with_fallback:
        banners.append(f'<div class="banner">&#9888; {len(with_fallback)} lab(s) ran on fallback data or weights '
                       f'(subsets, random weights): {html.escape(", ".join(with_fallback))}. Their numbers are '
                       f"not the real results.</div>")
    failed = [lab.stem for lab in labs if lab.status == STATUS_FAILED]
    if failed:
        banners.append(f'<div class="failbanner">&#10007; failed: {html.escape(", ".join(failed))}</div>')
    return template.substitute(
        title=html.escape(f"CNN Visualization Labs: reports ({profile})"),
        profile=html.escape(profile), updated=html.escape(updated),
        counts=", ".join(f"{n} {s}" for s, n in counts.items() if n),
        banners="\n".join(banners), rows="\n".join(_row(lab) for lab in labs),
    )


# ----------------------------------------------------------------------------- driver


def run_notebooks(notebooks=None, profile: str = "smoke", seed: int = config.DEFAULT_SEED, student: str = "",
                  group: str = "", jobs: int = 1, cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
                  output_dir: str | Path | None = None) -> list[LabResult]:
    """Execute notebooks with papermill (``jobs`` at a time) and publish their reports.

    ``notebooks``: paths (None: the course's ``notebooks/NN_*.ipynb``). ``cell_timeout``:
    seconds per cell (0 or None: no limit). Reports go to ``<output_dir>/<profile>/``.
    Returns this run's results in the given order; failures do not raise (see ``.ok``).
    Raises ValueError / FileNotFoundError for a bad profile or notebook before anything runs.
    """
    resolved = config.resolve_profile(profile).name  # an unknown profile fails here, before any kernel
    if int(jobs) < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if cell_timeout is not None and cell_timeout < 0:
        raise ValueError(f"cell_timeout must be positive seconds (0: no limit), got {cell_timeout}")
    if isinstance(notebooks, (str, os.PathLike)):
        notebooks = [notebooks]
    checked = _check_notebooks(default_notebooks() if notebooks is None else list(notebooks))
    if not checked:
        raise ValueError("no notebooks to run")
    report_dir = Path(output_dir if output_dir is not None else default_output_dir()).resolve() / resolved
    report_dir.mkdir(parents=True, exist_ok=True)
    folders = sorted({path.parent for path, _ in checked})
    tasks = {path.stem: {"notebook": str(path), "report_dir": str(report_dir), "profile": resolved,
                         "seed": int(seed), "student": student or "", "group": group or "",
                         "cell_timeout": cell_timeout} for path, _ in checked}
    meta = {path.stem: (path, title) for path, title in checked}
    results: dict[str, LabResult] = {}
    total = len(tasks)
    started = time.monotonic()
    # A fresh spawned process per worker: each sets its own environment for its kernels,
    # and the caller's environment (and any TensorFlow it has loaded) stays untouched.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(int(jobs), total), mp_context=context) as pool:
        futures = {pool.submit(_execute_lab, task): stem for stem, task in tasks.items()}
        for future in concurrent.futures.as_completed(futures):
            stem = futures[future]
            path, title = meta[stem]
            try:
                outcome = future.result()
            except Exception as exc:  # the worker itself broke (not the notebook)
                outcome = {"stem": stem, "started_at": _now(), "duration_s": None, "provenance": [],
                           "html": None, "executed": None, "figures": None,
                           "error": {"cell": None, "exec_count": None, "ename": type(exc).__name__,
                                     "evalue": str(exc), "source": "", "stage": "start"}}
                outcome["error"]["message"] = f"the runner failed: {type(exc).__name__}: {exc}"
            result = LabResult(
                stem=stem, status=STATUS_FAILED if outcome["error"] else STATUS_OK,
                notebook=_display_path(path), title=title, profile=resolved, seed=int(seed),
                student=student or "", group=group or "", started_at=outcome["started_at"],
                duration_s=outcome["duration_s"], html=outcome["html"], executed=outcome["executed"],
                figures=outcome["figures"], provenance=outcome["provenance"], error=outcome["error"])
            results[stem] = result
            update_index(report_dir, resolved, [result], folders)
            duration = f"{result.duration_s:.1f} s" if result.duration_s is not None else "-"
            if result.ok:
                note = f"  ({len(result.fallbacks)} fallback(s): see the index)" if result.fallbacks else ""
                print(f"ok      {stem}  {duration}  [{len(results)}/{total}]{note}", flush=True)
            else:
                print(f"FAILED  {stem}  {duration}  [{len(results)}/{total}]: {result.error['message']}",
                      flush=True)
    ordered = [results[stem] for stem in tasks]
    failed = [r for r in ordered if not r.ok]
    print(f"{len(ordered) - len(failed)} ok, {len(failed)} failed in {time.monotonic() - started:.1f} s; "
          f"index: {report_dir / 'index.html'}", flush=True)
    for result in failed:
        print(f"failed: {meta[result.stem][0]}: {result.error['message']}", file=sys.stderr)
        if result.executed:
            print(f"        executed notebook kept at {report_dir / result.executed}", file=sys.stderr)
        if result.error.get("stderr_log"):
            print(f"        kernel stderr: {report_dir / result.error['stderr_log']}", file=sys.stderr)
        if result.previous_ok and result.previous_ok.get("html"):
            print(f"        the previous report stays: {report_dir / result.previous_ok['html']}", file=sys.stderr)
    return ordered


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``labs run`` (also what plain ``labs`` takes); extend it for new run modes."""
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help=f"notebooks to run (default: notebooks/{NOTEBOOK_PATTERN} of the repository)")
    parser.add_argument("--profile", default="smoke", help=f"one of {sorted(config.PROFILES)} (default: smoke)")
    parser.add_argument("--seed", type=int, default=config.DEFAULT_SEED,
                        help=f"seed passed to every lab (default: {config.DEFAULT_SEED})")
    parser.add_argument("--student", default="", help="student name shown in the reports")
    parser.add_argument("--group", default="", help="group shown in the reports")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="notebooks run at the same time (default: 1)")
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds a cell may run, 0: no limit (default: {DEFAULT_CELL_TIMEOUT})")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="reports land in OUTPUT_DIR/<profile>/ (default: the repository's reports/)")
    return parser


def run_command(args: argparse.Namespace) -> int:
    """``labs run``: execute the notebooks; 0 when all succeeded, 1 when any failed."""
    results = run_notebooks(args.notebooks or None, profile=args.profile, seed=args.seed,
                            student=args.student, group=args.group, jobs=args.jobs,
                            cell_timeout=args.cell_timeout, output_dir=args.output_dir)
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
    except (ValueError, FileNotFoundError) as exc:
        print(f"labs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
