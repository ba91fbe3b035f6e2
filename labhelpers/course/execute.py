"""One lab's run: papermill in a fresh kernel into a staging folder.

``execute_lab`` (in a pool worker, a Dask worker thread or the runner itself) executes a notebook
into its own staging folder under ``<report_dir>/.staging/``, adds the title block, renders the
HTML and picks the key figure; it publishes nothing: the process that owns the index hands the
``LabOutcome`` to :func:`.staging.publish`. No TensorFlow here (papermill loads in the worker).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import config
from ..files import atomic_write_text
from .colab import BADGE_RE
from .figures import add_key_figure
from .reports import now, title_block_html, today
from .staging import LabOutcome, discard_staging, new_staging
from .stopping import KERNELS, STAGING_FOLDERS

KERNEL_NAME = "python3"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
TITLE_BLOCK_ROLE = "title-block"  # cell.metadata["labs"]["role"] of the inserted title block
DEFAULT_CELL_TIMEOUT = 1800  # seconds; a full-profile training cell on a slow CPU fits, a hung one does not


@dataclass
class LabTask:
    """One lab to run: plain data (it travels to a spawned pool worker)."""

    notebook: str  # the source notebook
    report_dir: str  # where its report is published (its staging folder is made there)
    profile: str
    parameters: dict  # every parameter of the run; the notebook gets those it declares
    declared: frozenset[str]  # the names its parameters cell declares
    title: dict = field(default_factory=dict)  # the title block: course, title, student, group, ...
    cell_timeout: float | None = DEFAULT_CELL_TIMEOUT  # seconds per cell (0 or None: no limit)
    label: str = ""  # prefixes the progress lines (the student, in a class run)
    staging: str | None = None  # its staging folder (None: execute_lab makes one)

    @property
    def stem(self) -> str:
        return Path(self.notebook).stem


def passed_parameters(parameters: dict, declared) -> dict:
    """The subset of ``parameters`` a notebook declares (the only ones papermill gets)."""
    return {name: value for name, value in parameters.items() if name in declared}


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


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_FRAME = re.compile(r"^(?:Cell In\s*\[(?P<count>\d+)\], line (?P<line>\d+)|Input In \[(?P<count2>\d+)\].*line (?P<line2>\d+))")
_ARROW = re.compile(r"^-*>\s*(?P<line>\d+)\s?(?P<code>.*)$")
MESSAGE_LIMIT = 4000  # characters of an error message on the console and the index (a remedy fits; a dump does not)


def raising_line(traceback: list[str] | None, source: str, exec_count: int | None) -> str:
    """The line of the failing cell that raised, from IPython's traceback (the cell's own frame:
    ``Cell In[3], line 2``); else the arrowed line of the first frame; else the cell's first line."""
    lines = _ANSI.sub("", "\n".join(traceback or [])).splitlines()
    source_lines = (source or "").splitlines()
    for line in lines:
        frame = _CELL_FRAME.match(line.strip())
        if frame:
            count = frame.group("count") or frame.group("count2")
            number = int(frame.group("line") or frame.group("line2"))
            if (exec_count is None or count is None or int(count) == exec_count) and 0 < number <= len(source_lines):
                return source_lines[number - 1].strip()
    for line in lines:
        arrow = _ARROW.match(line.strip())
        if arrow and arrow.group("code").strip():
            return arrow.group("code").strip()
    return next((ln.strip() for ln in source_lines if ln.strip()), "")


def error_message(error: dict) -> str:
    """Where and what: ``cell index 3 (In [2]) `raise ValueError(...)`: ValueError: <the whole message>``.
    A multi-line message (a DataSourceError's places tried and its remedy) stays whole."""
    where = "the injected parameters cell" if error.get("cell") is None else f"cell index {error['cell']}"
    if error.get("exec_count") is not None:
        where += f" (In [{error['exec_count']}])"
    line = error.get("line") or next((ln.strip() for ln in (error.get("source") or "").splitlines() if ln.strip()), "")
    if line:
        where += f" `{line[:120]}{'...' if len(line) > 120 else ''}`"
    if error.get("stage") == "html":
        where = "HTML rendering"
    elif error.get("stage") == "start":
        where = "before the first cell"
    evalue = _ANSI.sub("", error.get("evalue") or "").strip()
    if len(evalue) > MESSAGE_LIMIT:
        evalue = evalue[:MESSAGE_LIMIT] + f"... ({len(evalue) - MESSAGE_LIMIT} more characters in the executed notebook)"
    return f"{where}: {error.get('ename', 'Error')}" + (f": {evalue}" if evalue else "")


def render_html(executed: Path, target: Path) -> None:
    """The HTML report of an executed notebook, for reading offline: the Colab badge (an external
    image, a broken icon without a network) becomes a plain "Open in Colab" link."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    offline_badges(nb)
    # embed_images=False: nbconvert 7's image embedding re-parses every inline HTML tag on its own with
    # BeautifulSoup, which turns "A<sup>k</sup>" into "A<sup></sup>k" (every <sub>/<sup> of the lab texts
    # was lost). Output images are embedded as data URIs either way; the labs' markdown has no local images.
    exporter = HTMLExporter(embed_images=False, exclude_input=False)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": executed.stem}})
    atomic_write_text(target, body)


def offline_badges(nb) -> int:
    """Replace each Colab badge (``[![Open In Colab](badge.svg)](url)``) in the markdown cells by a text
    link ``[Open in Colab](url)``; returns how many. Changes ``nb`` in place (never a notebook file)."""
    replaced = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source, count = BADGE_RE.subn(lambda m: f"[Open in Colab]({m.group('url')})", cell.source)
            replaced += count
    return replaced


def _show_final_paths(executed: Path, staged: str, final: str) -> None:
    """The executed notebook names where its files are published, not the staging folder the lab wrote
    them to (``staged`` -> ``final``): the injected parameters cell, papermill's record of them and of
    the output path, and the printed outputs."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    for variant_staged, variant_final in ((json.dumps(staged)[1:-1], json.dumps(final)[1:-1]), (staged, final)):
        for cell in nb.cells:
            if variant_staged in cell.source:
                cell.source = cell.source.replace(variant_staged, variant_final)
            for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
                if isinstance(output.get("text"), str) and variant_staged in output["text"]:
                    output["text"] = output["text"].replace(variant_staged, variant_final)
                for mime, value in (output.get("data") or {}).items():
                    if mime.startswith("text/") and isinstance(value, str) and variant_staged in value:
                        output["data"][mime] = value.replace(variant_staged, variant_final)
    papermill = nb.metadata.get("papermill", {})  # its parameters and output_path
    for record in (papermill, papermill.get("parameters", {})):
        for name, value in record.items():
            if isinstance(value, str) and staged in value:
                record[name] = value.replace(staged, final)
    nbformat.write(nb, executed)


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


def _kernel_manager_class(env: dict, stderr, cwd: str):
    """A kernel manager that starts the kernel with ``env`` (on top of ours), its stderr into
    ``stderr`` and in ``cwd``: nothing process-wide changes, so labs can run in threads
    (a Dask worker) without stepping on each other's environment or working directory.
    Its kernel's pid is known to this process's SIGTERM handler while it runs."""
    from jupyter_client.manager import AsyncKernelManager

    class LabKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = {**os.environ, **kw.get("env", {}), **env}
            kw["stderr"], kw["cwd"] = stderr, cwd
            started = await super().start_kernel(**kw)
            process = getattr(self.provisioner, "process", None)
            if process is not None:
                self._labs_pid = process.pid
                KERNELS.add(process.pid)
            return started

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            KERNELS.discard(getattr(self, "_labs_pid", None))
            await super()._async_cleanup_resources(restart=restart)

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


def execute_lab(task: LabTask) -> LabOutcome:
    """Run one notebook in a fresh kernel into its staging folder (``task.staging``, else a new
    one), add the title block, render the HTML and pick the key figure. Publishes nothing: the
    caller hands the outcome to ``staging.publish``. Called in a pool worker, a Dask worker thread or
    the runner; it changes nothing process-wide (the kernel gets its own environment)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = Path(task.notebook)
    stem = source.stem
    label = task.label
    report_dir = Path(task.report_dir)
    staging = Path(task.staging) if task.staging else new_staging(report_dir, stem)
    STAGING_FOLDERS.add(str(staging))
    executed = staging / f"{stem}.ipynb"
    figures = staging / f"{stem}_files"
    provenance_file = staging / "provenance.jsonl"
    stderr_log = staging / "stderr.log"
    kernel_env = {
        config.PROVENANCE_ENV: str(provenance_file),
        config.PROFILE_ENV: task.profile,
        "LABS_OUTPUT_DIR": str(figures),
        # The inline backend (headless, Agg-based) puts figures in the report; MPLBACKEND=Agg, which a
        # test run or a CI shell may export, would silently drop every figure the labs show.
        "MPLBACKEND": INLINE_BACKEND,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
    }
    parameters = passed_parameters({**task.parameters, "output_dir": str(figures)}, task.declared)
    print(f"start   {label}{stem}", flush=True)
    result = LabOutcome(stem=stem, started_at=now(), staging=str(staging))
    title = {**task.title, "date": today()}
    started = time.monotonic()
    try:
        try:
            # TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL: the kernel's stderr goes to a log
            with open(stderr_log, "ab") as kernel_stderr, _papermill_log_to(stderr_log):
                papermill.execute_notebook(
                    str(source), str(executed), parameters=parameters,
                    kernel_name=KERNEL_NAME, execution_timeout=math.ceil(task.cell_timeout or 0) or None,
                    progress_bar=False,
                    # the outputs are in hand when the last cell ends: a graceful shutdown of a TensorFlow kernel
                    # only waits (3-5 s a lab on the course VM, measured side by side with lab 00)
                    shutdown_kernel="immediate",
                    kernel_manager_class=_kernel_manager_class(kernel_env, kernel_stderr, str(source.parent)),
                    # ipykernel warns at every start that localhost TCP is unencrypted; keep errors only
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                )
        except PapermillExecutionError as exc:
            result.error = {"cell": _failed_cell(executed, exc.cell_index), "exec_count": exc.exec_count,
                            "ename": exc.ename, "evalue": exc.evalue, "source": exc.source,
                            "line": raising_line(exc.traceback, exc.source, exc.exec_count)}
        except Exception as exc:  # a cell timeout, a dead kernel, a kernel that never started
            cell, count, cell_source = _last_started_cell(executed)
            result.error = {"cell": cell, "exec_count": count, "ename": type(exc).__name__,
                            "evalue": str(exc).strip(), "source": cell_source,
                            "stage": "execute" if cell_source else "start"}
        result.duration_s = round(time.monotonic() - started, 2)
        result.provenance = _read_provenance(provenance_file)
        if executed.exists():  # after the error's cell index is known: the title block shifts the cells
            try:
                _show_final_paths(executed, str(staging), str(report_dir))
                insert_title_block(executed, title)
            except Exception as exc:  # the report is still worth having without it
                print(f"note    {label}{stem}: no title block ({type(exc).__name__}: {exc})", flush=True)
        if result.error is None:
            try:
                render_html(executed, staging / f"{stem}.html")
            except Exception as exc:
                result.error = {"cell": None, "exec_count": None, "ename": type(exc).__name__,
                                "evalue": str(exc), "source": "", "stage": "html"}
        if result.error is None:
            result.lab_saved_files = figures.is_dir()
            key = add_key_figure(figures, executed, stem)
            result.key_figure, result.key_figure_from, result.thumbnail = (key.key_figure, key.key_figure_from,
                                                                           key.thumbnail)
        else:
            result.error["message"] = error_message(result.error)
            if executed.exists():
                with contextlib.suppress(Exception):  # the HTML is a convenience for a failed run
                    render_html(executed, staging / f"{stem}.html")
    except BaseException:  # Ctrl-C, a signal: nothing of this run stays behind
        discard_staging(report_dir, staging)
        raise
    return result


def broken_outcome(task: LabTask, exc: BaseException) -> LabOutcome:
    """The outcome of a lab whose worker itself broke (not the notebook): a failure to publish as such."""
    error = {"cell": None, "exec_count": None, "ename": type(exc).__name__, "evalue": str(exc), "source": "",
             "stage": "start", "message": f"the runner failed: {type(exc).__name__}: {exc}"}
    return LabOutcome(stem=task.stem, started_at=now(), error=error, staging=task.staging)
