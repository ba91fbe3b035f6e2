"""A lab's staging folder, from its creation to publishing it over the previous report.

A lab executes into ``<report_dir>/.staging/<stem>-XXXX/`` (:mod:`.execute`); ``publish`` (in the
process that owns the index, under the report folder's lock) moves the files over the previous
report, or into ``failed/``. Publishing, staging folders and the index change only under
``report_lock``, so concurrent runners never see each other's half-done work. No TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..files import file_lock
from .stopping import STAGING_FOLDERS, critical

STAGING = ".staging"
LOCK_FILE = ".index.lock"
_held = threading.local()  # the report folders whose lock this thread holds (the lock is reentrant per thread)


@dataclass
class LabOutcome:
    """One lab's run, as ``execute_lab`` hands it to ``publish``: before publishing, the files are in
    ``staging``; after, ``html``, ``executed`` and ``figures`` name them relative to the report folder."""

    stem: str
    started_at: str
    staging: str | None = None  # the staging folder (None once published)
    duration_s: float | None = None
    provenance: list[dict] = field(default_factory=list)
    # failed: cell, exec_count, ename, evalue, source, line, stage, message (and stderr_log once published)
    error: dict | None = None
    html: str | None = None
    executed: str | None = None
    figures: str | None = None
    key_figure: str | None = None
    key_figure_from: str | None = None
    thumbnail: str | None = None
    lab_saved_files: bool = False  # the lab wrote into its figures folder (not only the runner's thumbnail)


@contextlib.contextmanager
def report_lock(report_dir: Path):
    """The report folder's lock: publishing, staging folders and the index change only under it, so
    concurrent runners (other processes, other threads) never see each other's half-done work.
    Reentrant within a thread; POSIX ``flock`` (elsewhere only the thread-level part). A SIGTERM
    that arrives while it is held waits for its release (``stopping.critical``)."""
    key = str(Path(report_dir).resolve())
    held = _held.__dict__.setdefault("dirs", set())
    if key in held:
        yield
        return
    Path(report_dir).mkdir(parents=True, exist_ok=True)
    with critical(), file_lock(Path(report_dir) / LOCK_FILE):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


def new_staging(report_dir: Path, stem: str) -> Path:
    """A fresh, uniquely named staging folder ``<report_dir>/.staging/<stem>-XXXX/`` (made under the lock:
    another runner removing an empty ``.staging`` cannot pull it away in between)."""
    with report_lock(report_dir):
        root = Path(report_dir) / STAGING
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=root))
    STAGING_FOLDERS.add(str(staging))
    return staging


def discard_staging(report_dir: Path, staging: Path | str) -> None:
    """Remove a staging folder, and ``.staging`` itself once no run stages there."""
    shutil.rmtree(staging, ignore_errors=True)
    STAGING_FOLDERS.discard(str(staging))
    with report_lock(report_dir), contextlib.suppress(OSError):
        (Path(report_dir) / STAGING).rmdir()


def _replace_tree(source: Path, target: Path) -> None:
    """Put folder ``source`` at ``target`` (renames only; the old folder goes after). Under the lock."""
    old = None
    if target.exists():
        old = source.parent / f".old-{target.name}"
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def publish(report_dir: Path, outcome: LabOutcome) -> LabOutcome:
    """Move a lab's staged files into ``report_dir`` under its lock, then drop the staging folder.
    Success: figures first, the notebook next, the HTML (what readers open) last, over the previous
    report. Failure: the executed notebook, its HTML and the kernel's stderr into ``failed/``; the
    previous report stays. Returns ``outcome`` with the published paths (relative to ``report_dir``)."""
    report_dir = Path(report_dir)
    staging = Path(outcome.staging or report_dir / STAGING / "-")
    outcome.staging = None
    stem = outcome.stem
    executed, page, figures = staging / f"{stem}.ipynb", staging / f"{stem}.html", staging / f"{stem}_files"
    try:
        with report_lock(report_dir):
            if outcome.error is None and executed.exists() and page.exists():
                if figures.is_dir():
                    _replace_tree(figures, report_dir / figures.name)
                    outcome.figures = figures.name if outcome.lab_saved_files else None
                else:
                    shutil.rmtree(report_dir / figures.name, ignore_errors=True)  # stale figures of an older run
                os.replace(executed, report_dir / executed.name)
                os.replace(page, report_dir / page.name)
                outcome.executed, outcome.html = executed.name, page.name
                for stale in (report_dir / "failed").glob(f"{stem}.*"):
                    stale.unlink()
            elif outcome.error is not None:
                failed_dir = report_dir / "failed"
                failed_dir.mkdir(exist_ok=True)
                for stale in failed_dir.glob(f"{stem}.*"):
                    stale.unlink()
                stderr_log = staging / "stderr.log"
                if stderr_log.exists() and stderr_log.stat().st_size:
                    os.replace(stderr_log, failed_dir / f"{stem}.stderr.log")
                    outcome.error["stderr_log"] = f"failed/{stem}.stderr.log"
                if executed.exists():
                    os.replace(executed, failed_dir / executed.name)
                    outcome.executed = f"failed/{executed.name}"
                if page.exists():
                    os.replace(page, failed_dir / page.name)
                    outcome.html = f"failed/{page.name}"
    finally:
        if staging.name != "-":
            discard_staging(report_dir, staging)
    return outcome
