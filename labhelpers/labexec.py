"""One lab's run: papermill in a fresh kernel into a staging folder, then publishing.

``execute_lab`` (in a pool worker, a Dask worker thread or the runner itself) executes a notebook
into its own staging folder under ``<report_dir>/.staging/``, adds the title block, renders the
HTML and picks the key figure; ``publish`` (in the process that owns the index, under the report
folder's lock) moves the files over the previous report, or into ``failed/``. No TensorFlow here.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from . import config
from .report_html import title_block_html

KERNEL_NAME = "python3"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
TITLE_BLOCK_ROLE = "title-block"  # cell.metadata["labs"]["role"] of the inserted title block
KEY_FIGURE_STEM = "key_figure"  # a lab picks its index figure by saving key_figure.png
THUMBNAIL_NAME = "thumbnail.png"  # written by the runner into <stem>_files/ (a name labs should not use)
THUMBNAIL_SIZE = (320, 220)  # at most, in pixels (aspect ratio kept)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _today() -> str:
    return datetime.now().astimezone().date().isoformat()


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


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
