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
import base64
import concurrent.futures
import contextlib
import html
import io
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from string import Template

from . import config

NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
DEFAULT_CELL_TIMEOUT = 1800  # seconds; a full-profile training cell on a slow CPU fits, a hung one does not
DEFAULT_COURSE = "CNN Visualization Labs"  # the default of `course` in the standard parameters cell
KERNEL_NAME = "python3"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
INDEX_SCHEMA = 1
STATUS_OK, STATUS_FAILED, STATUS_NOT_RUN = "ok", "failed", "not run"
# The parameters every course notebook declares (labhelpers.nbtools.STANDARD_NAMES); the runner sets them.
STANDARD_PARAMETERS = ("profile", "seed", "student", "group", "instructor", "course", "output_dir")
TITLE_BLOCK_ROLE = "title-block"  # cell.metadata["labs"]["role"] of the inserted title block
KEY_FIGURE_STEM = "key_figure"  # a lab picks its index figure by saving key_figure.png
THUMBNAIL_NAME = "thumbnail.png"  # written by the runner into <stem>_files/ (a name labs should not use)
THUMBNAIL_SIZE = (320, 220)  # at most, in pixels (aspect ratio kept)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg")


@dataclass
class LabResult:
    """One lab's entry on the index (paths relative to its report folder)."""

    stem: str
    status: str  # "ok", "failed" or "not run"
    notebook: str = ""  # the source notebook
    title: str = ""
    profile: str = ""
    seed: int | None = None
    student: str = ""
    group: str = ""
    instructor: str = ""
    course: str = ""
    parameters: dict = field(default_factory=dict)  # lab-specific parameters passed (image_dir, class_name, ...)
    started_at: str | None = None  # ISO time, UTC
    duration_s: float | None = None
    html: str | None = None  # the HTML report of this run (failed runs: failed/<stem>.html when renderable)
    executed: str | None = None  # the executed notebook (failed runs: failed/<stem>.ipynb)
    figures: str | None = None  # <stem>_files, when the lab saved figures
    key_figure: str | None = None  # the full-size key figure file, when the lab saved one
    key_figure_from: str | None = None  # "key_figure.png", "first saved image" or "last inline figure"
    thumbnail: str | None = None  # small picture of the key figure shown on the index
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


def passed_parameters(parameters: dict, declared) -> dict:
    """The subset of ``parameters`` a notebook declares (the only ones papermill gets)."""
    return {name: value for name, value in parameters.items() if name in declared}


def _display_path(path: Path) -> str:
    """A path relative to the repository when it lives there (stable across checkouts)."""
    try:
        return str(path.relative_to(config.repo_root()))
    except ValueError:
        return str(path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _today() -> str:
    return datetime.now().astimezone().date().isoformat()


# ----------------------------------------------------------------------------- title block and key figure

TITLE_FIELDS = (("student", "Student"), ("group", "Group"), ("instructor", "Instructor"), ("date", "Date"),
                ("profile", "Profile"), ("seed", "Seed"))


def title_block_html(fields: dict) -> str:
    """A report's title page: course, title, then student, group, instructor, date, profile, seed
    (empty ones left out). Inline styles, so it looks the same in Jupyter, nbconvert and a browser.
    No blank or indented lines: it must stay one HTML block inside a markdown cell."""
    esc = html.escape
    rows = "".join(
        f'<tr style="background:transparent"><th style="text-align:right;padding:0.15em 1em 0.15em 0;'
        f'font-weight:normal;color:#555;border:none">{label}</th><td style="text-align:left;padding:0.15em 0;'
        f'font-weight:bold;border:none">{esc(str(fields[key]))}</td></tr>'
        for key, label in TITLE_FIELDS if fields.get(key) not in (None, ""))
    lines = ['<div class="labs-title-block" style="text-align:center;border-top:3px double #444;'
             'border-bottom:3px double #444;padding:1.2em 1em;margin:0 0 1.5em 0">']
    if fields.get("course"):
        lines.append('<div style="font-size:1.05em;letter-spacing:0.08em;text-transform:uppercase;color:#444">'
                     f'{esc(str(fields["course"]))}</div>')
    if fields.get("title"):
        lines.append(f'<div style="font-size:1.8em;font-weight:bold;margin:0.4em 0 0.7em 0">'
                     f'{esc(str(fields["title"]))}</div>')
    lines += [f'<table style="margin:0 auto;border:none;border-collapse:collapse">{rows}</table>', "</div>"]
    return "\n".join(lines)


def insert_title_block(executed: Path, fields: dict) -> None:
    """Put the title block at the very top of an executed notebook, as a markdown cell marked
    ``metadata["labs"] = {"role": "title-block", ...fields}`` (an older one is replaced)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("labs", {}).get("role") != TITLE_BLOCK_ROLE]
    cell = nbformat.v4.new_markdown_cell(title_block_html(fields))
    cell.metadata["labs"] = {"role": TITLE_BLOCK_ROLE, **fields}
    if nb.get("nbformat_minor", 0) >= 5:
        cell["id"] = "labs-title-block"
    else:  # cell ids came with nbformat 4.5; an older notebook must not get one
        cell.pop("id", None)
    nb.cells.insert(0, cell)
    nbformat.write(nb, executed)


def key_figure_source(folder: Path) -> tuple[Path, str] | None:
    """The figure that stands for a lab on the index, among the files it saved in ``folder``:
    ``key_figure.png`` (or another key_figure.* image) when there is one, else the first image it
    saved (oldest modification time, then name). None when it saved no image."""
    if not folder.is_dir():
        return None
    images = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
              and p != folder / THUMBNAIL_NAME]
    keyed = [p for p in images if p.parent == folder and p.stem == KEY_FIGURE_STEM]
    if keyed:
        return min(keyed, key=lambda p: (p.suffix.lower() != ".png", p.name)), f"{KEY_FIGURE_STEM}.png"
    if images:
        return min(images, key=lambda p: (p.stat().st_mtime_ns, str(p))), "first saved image"
    return None


def last_inline_png(executed: Path) -> bytes | None:
    """The last PNG output embedded in a notebook (an inline matplotlib figure), decoded."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    last = None
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            last = output.get("data", {}).get("image/png", last)
    return base64.b64decode(last) if last else None


def write_thumbnail(image, target: Path, size: tuple[int, int] = THUMBNAIL_SIZE) -> None:
    """A small PNG of ``image`` (a path or a file object), aspect ratio kept."""
    from PIL import Image, ImageOps

    with Image.open(image) as opened:
        picture = ImageOps.exif_transpose(opened)
        picture = picture.convert("RGBA" if picture.mode in ("RGBA", "LA", "P", "PA") else "RGB")
        picture.thumbnail(size)
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target, format="PNG", optimize=True)


def _add_key_figure(figures: Path, executed: Path, stem: str) -> dict:
    """Pick the key figure and write ``<stem>_files/thumbnail.png`` (paths relative to the report folder)."""
    info = {"key_figure": None, "key_figure_from": None, "thumbnail": None}
    found = key_figure_source(figures)
    try:
        if found is not None:
            path, why = found
            info["key_figure"] = f"{figures.name}/{path.relative_to(figures).as_posix()}"
            info["key_figure_from"] = why
            if path.suffix.lower() == ".svg":  # a browser scales SVG itself; PIL cannot read it
                info["thumbnail"] = info["key_figure"]
            else:
                write_thumbnail(path, figures / THUMBNAIL_NAME)
                info["thumbnail"] = f"{figures.name}/{THUMBNAIL_NAME}"
        else:
            png = last_inline_png(executed)
            if png is not None:
                write_thumbnail(io.BytesIO(png), figures / THUMBNAIL_NAME)
                info.update(key_figure_from="last inline figure", thumbnail=f"{figures.name}/{THUMBNAIL_NAME}")
    except Exception as exc:  # a picture the index cannot shrink costs the thumbnail, not the report
        print(f"note    {stem}: no thumbnail for the index ({type(exc).__name__}: {exc})", flush=True)
        info["thumbnail"] = None
    return info


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

    # embed_images=False: nbconvert 7's image embedding re-parses every inline HTML tag on its own with
    # BeautifulSoup, which turns "A<sup>k</sup>" into "A<sup></sup>k" (every <sub>/<sup> of the lab texts
    # was lost). Output images are embedded as data URIs either way; the labs' markdown has no local images.
    exporter = HTMLExporter(embed_images=False, exclude_input=False)
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


def _kernel_manager_class(env: dict, stderr, cwd: str):
    """A kernel manager that starts the kernel with ``env`` (on top of ours), its stderr into
    ``stderr`` and in ``cwd``: nothing process-wide changes, so labs can run in threads
    (a Dask worker) without stepping on each other's environment or working directory."""
    from jupyter_client.manager import AsyncKernelManager

    class LabKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = {**os.environ, **kw.get("env", {}), **env}
            kw["stderr"], kw["cwd"] = stderr, cwd
            return await super().start_kernel(**kw)

    return LabKernelManager


class _ThisThread(logging.Filter):
    def __init__(self):
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


@contextlib.contextmanager
def _papermill_log_to(path: Path):
    """Papermill's and nbclient's warnings of this thread (a cell timeout, a dead kernel) into ``path``."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ThisThread())
    logger = logging.getLogger("papermill")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def _execute_lab(task: dict) -> dict:
    """Run one notebook in a fresh kernel and publish it. Called in a pool worker or a Dask
    worker thread; it changes nothing process-wide (the kernel gets its own environment)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = Path(task["notebook"])
    stem = source.stem
    label = task.get("label", "")
    report_dir = Path(task["report_dir"])
    staging_root = report_dir / ".staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=staging_root))
    executed = staging / f"{stem}.ipynb"
    figures = staging / f"{stem}_files"
    provenance_file = staging / "provenance.jsonl"
    stderr_log = staging / "stderr.log"
    kernel_env = {
        config.PROVENANCE_ENV: str(provenance_file),
        config.PROFILE_ENV: task["profile"],
        "LABS_OUTPUT_DIR": str(figures),
        # The inline backend (headless, Agg-based) puts figures in the report; MPLBACKEND=Agg, which a
        # test run or a CI shell may export, would silently drop every figure the labs show.
        "MPLBACKEND": INLINE_BACKEND,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
    }
    parameters = passed_parameters({**task["parameters"], "output_dir": str(figures)}, task["declared"])
    print(f"start   {label}{stem}", flush=True)
    result = {"stem": stem, "started_at": _now(), "error": None, "html": None, "executed": None,
              "figures": None, "key_figure": None, "key_figure_from": None, "thumbnail": None}
    title = {**task["title"], "date": _today()}
    started = time.monotonic()
    try:
        try:
            # TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL: the kernel's stderr goes to a log
            with open(stderr_log, "ab") as kernel_stderr, _papermill_log_to(stderr_log):
                papermill.execute_notebook(
                    str(source), str(executed), parameters=parameters,
                    kernel_name=KERNEL_NAME, execution_timeout=math.ceil(task["cell_timeout"] or 0) or None,
                    progress_bar=False,
                    kernel_manager_class=_kernel_manager_class(kernel_env, kernel_stderr, str(source.parent)),
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
        if executed.exists():  # after the error's cell index is known: the title block shifts the cells
            try:
                insert_title_block(executed, title)
            except Exception as exc:  # the report is still worth having without it
                print(f"note    {label}{stem}: no title block ({type(exc).__name__}: {exc})", flush=True)
        if result["error"] is None:
            try:
                _render_html(executed, staging / f"{stem}.html")
            except Exception as exc:
                result["error"] = {"cell": None, "exec_count": None, "ename": type(exc).__name__,
                                   "evalue": str(exc), "source": "", "stage": "html"}
        if result["error"] is None:
            lab_saved_files = figures.is_dir()
            result.update(_add_key_figure(figures, executed, stem))
            # Publish: figures first, the notebook next, the HTML (what readers open) last.
            if figures.is_dir():
                _replace_tree(figures, report_dir / figures.name)
                result["figures"] = figures.name if lab_saved_files else None
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


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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


def _link(href: str | None, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>' if href else ""


def _thumbnail_cell(lab: LabResult) -> str:
    esc = html.escape
    if lab.status == STATUS_OK and lab.thumbnail:
        why = f"key figure: {lab.key_figure_from or '?'}" + (f" ({lab.key_figure})" if lab.key_figure else "")
        return (f'<a href="{esc(lab.html or lab.thumbnail)}"><img class="thumb" src="{esc(lab.thumbnail)}" '
                f'alt="{esc(lab.stem)} key figure" title="{esc(why)}" loading="lazy"></a>')
    previous = lab.previous_ok or {}
    if lab.status == STATUS_FAILED and previous.get("thumbnail"):
        return (f'<a href="{esc(previous.get("html") or previous["thumbnail"])}"><img class="thumb old" '
                f'src="{esc(previous["thumbnail"])}" alt="{esc(lab.stem)}: last good key figure"></a>'
                '<div class="small">last good run</div>')
    return ""


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
        for pname, value in (lab.parameters or {}).items():
            run_with.append(f'<span class="small">{esc(pname)} = {esc(str(value))}</span>')
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
            f"<td>{provenance}</td><td>{_thumbnail_cell(lab)}</td><td>{links_html}</td></tr>")


def render_page(title: str, header: dict, meta: str, banners: list[str], columns: list[str], rows: list[str],
                footer: str) -> str:
    """Fill ``report_index.html`` (shared by the lab index and the class index)."""
    from importlib.resources import files

    template = Template(files("labhelpers").joinpath("report_index.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=html.escape(title), header=title_block_html(header), meta=meta, banners="\n".join(banners),
        thead="<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>",
        rows="\n".join(rows), footer=footer)


def render_index_html(labs: list[LabResult], profile: str, updated: str, header: dict | None = None) -> str:
    """The index page: a title block, then one row per lab, fallbacks and failures impossible to miss."""
    header = {"course": DEFAULT_COURSE, "profile": profile, **(header or {})}
    header.setdefault("title", f"Lab reports ({profile})")
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
    meta = (f"profile <b>{html.escape(profile)}</b> &middot; updated {html.escape(updated)} &middot; "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    footer = ('Machine-readable: <a href="index.json">index.json</a>. Reports are replaced only when a lab runs '
              "and renders successfully; a failed run keeps the previous report.")
    return render_page(f"{header['course'] or DEFAULT_COURSE}: reports ({profile})", header, meta, banners,
                       ["Lab", "Status", "Duration", "Run with", "Data and weights", "Key figure", "Report"],
                       [_row(lab) for lab in labs], footer)


# ----------------------------------------------------------------------------- driver


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
    report_dir = Path(output_dir if output_dir is not None else default_output_dir()).resolve() / resolved
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
                "executed": None, "figures": None, "error": error}

    if in_process:
        for stem, task in tasks.items():
            try:
                outcome = _execute_lab(task)
            except Exception as exc:
                outcome = broken(stem, exc)
            record(stem, outcome)
    else:
        # Fresh spawned processes: the caller (and any TensorFlow it has loaded) stays untouched.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(int(jobs), total), mp_context=context) as pool:
            futures = {pool.submit(_execute_lab, task): stem for stem, task in tasks.items()}
            for future in concurrent.futures.as_completed(futures):
                stem = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:
                    outcome = broken(stem, exc)
                record(stem, outcome)
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
