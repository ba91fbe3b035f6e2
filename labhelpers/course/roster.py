"""Class-wide runs: every lab for every student of a roster, each into their own report folder.

    labs run --roster roster.csv --profile full -j 2                   # local pool, 2 students at a time
    labs run --roster roster.csv --scheduler tcp://10.0.0.5:8786       # one Dask task per student
    python -m labhelpers.run run --roster roster.csv notebooks/03_*.ipynb   # some labs only

The roster is a CSV with the columns ``student, group, image_folder, class_name`` (more
columns are allowed and ignored; commas, semicolons or tabs, UTF-8 with or without a BOM). ``image_folder`` is relative to the roster file; it and
``class_name`` may be blank (the lab then keeps its own default), and so may ``group``.
Each student's labs get ``student`` and ``group`` plus the lab-specific parameters
``image_dir`` (the absolute image folder) and ``class_name``, each passed only to the labs
that declare it. Output, under ``<output-dir>/<profile>/``::

    students/<slug>/...        one report folder per student, with its own index.html
    class_index.html / .json   students x labs: status with links

Parallelism unit: one student (their labs run one after the other). ``-j N`` runs N students
at a time in a local process pool; ``scheduler="tcp://host:port"`` submits one Dask task per
student instead, calling the same ``run_student`` the pool calls. Dask workers must have
labhelpers installed and see the same filesystem at the same paths.
"""

from __future__ import annotations

import codecs
import concurrent.futures
import csv
import hashlib
import io
import os
import re
import socket
import sys
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import config
from . import stopping
from .class_index import STUDENTS_FOLDER, ClassRun, StudentRun, write_class_index
from .execute import DEFAULT_CELL_TIMEOUT
from .reports import DEFAULT_COURSE, LabResult, clean_title_field, today
from .runner import (
    check_notebooks,
    check_output_dir,
    check_parameters,
    check_run_notebooks,
    check_run_options,
    note_undeclared,
    run_notebooks_into,
)

COLUMNS = ("student", "group", "image_folder", "class_name")
DASK_CONNECT_TIMEOUT = 30  # seconds to reach a scheduler


class RosterError(ValueError):
    """A roster that cannot run: the message names the file, the row and the column."""


@dataclass(frozen=True)
class RosterEntry:
    """One student of the roster."""

    student: str
    group: str
    image_dir: Path | None  # absolute; None when the roster leaves image_folder blank
    class_name: str
    slug: str  # the student's folder name under students/
    row: int  # the roster row it came from, as a spreadsheet numbers it (the header is row 1)

    def parameters(self) -> dict:
        """The lab-specific parameters of this student (blank roster values are left out)."""
        out = {}
        if self.image_dir is not None:
            out["image_dir"] = str(self.image_dir)
        if self.class_name:
            out["class_name"] = self.class_name
        return out


SLUG_MAX_BYTES = 80  # a student's folder name, in UTF-8 bytes (file systems allow 255; paths get long)


def slugify(name: str) -> str:
    """A folder name for a student: ``"José Núñez" -> "jose-nunez"``; non-Latin letters stay. A name
    longer than SLUG_MAX_BYTES in UTF-8 is cut there and gets ``-`` and 8 hex digits of its hash, so two
    long names that share a beginning still get two folders."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    slug = re.sub(r"[\W_]+", "-", plain.lower()).strip("-")
    if len(slug.encode("utf-8")) <= SLUG_MAX_BYTES:
        return slug
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    cut = slug.encode("utf-8")[: SLUG_MAX_BYTES - len(digest) - 1].decode("utf-8", errors="ignore").rstrip("-")
    return f"{cut}-{digest}"


def _decode_roster(path: Path) -> str:
    """The roster's text: UTF-8 (with or without a BOM, as spreadsheets write it), or UTF-16 with a BOM
    (Excel's "Unicode Text"); anything else is a RosterError that says where and how to save it."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"  # -sig: spreadsheets write a BOM
    hint = ('save the roster as UTF-8: in Excel "CSV UTF-8 (Comma delimited)", in LibreOffice "Text CSV" with '
            'character set Unicode (UTF-8)')
    if encoding != "utf-16" and b"\x00" in data:
        raise RosterError(f"{path}: NUL bytes, so probably UTF-16 without a byte order mark; {hint}")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RosterError(f"{path} row {line}: not {encoding.removesuffix('-sig').upper()} text (byte "
                          f"{data[exc.start:exc.start + 1]!r} at offset {exc.start}; a Latin-1 or Windows-1252 "
                          f"file?); {hint}") from None


def read_roster(path: str | Path) -> list[RosterEntry]:
    """Read and check a roster CSV; every problem is a RosterError naming the row and column."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RosterError(f"roster not found: {path} (want a CSV file with columns {', '.join(COLUMNS)})")
    path = path.resolve()
    with io.StringIO(_decode_roster(path), newline="") as handle:
        first_line = handle.readline()
        handle.seek(0)
        # Spreadsheets in many locales save "CSV" with semicolons (or tabs): the header tells which.
        delimiter = max(",;\t", key=first_line.count)
        reader = csv.DictReader(handle, delimiter=delimiter)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in COLUMNS if name not in header]
        if missing:
            raise RosterError(f"{path} row 1 (the header): missing column(s) {', '.join(map(repr, missing))}; the header has "
                              f"{', '.join(map(repr, header)) or 'nothing'} and needs {', '.join(COLUMNS)}")
        reader.fieldnames = header
        entries: list[RosterEntry] = []
        names: dict[str, int] = {}
        slugs: dict[str, tuple[str, int]] = {}
        for row in reader:
            line = reader.line_num
            values = {name: (row.get(name) or "").strip() for name in COLUMNS}
            # single-line text: a quoted cell may hold newlines, which must not reach a title block
            values["student"], values["group"] = (clean_title_field(values[k]) for k in ("student", "group"))
            if not any(values.values()) and not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # a blank line
            where = f"{path} row {line}"  # as a spreadsheet numbers it: the header is row 1
            student = values["student"]
            if not student:
                raise RosterError(f"{where}, column 'student': empty student name")
            if student.casefold() in names:
                raise RosterError(f"{where}, column 'student': duplicate student {student!r} "
                                  f"(already on row {names[student.casefold()]})")
            slug = slugify(student)
            if not slug:
                raise RosterError(f"{where}, column 'student': {student!r} has no letters or digits for a folder name")
            if slug in slugs:
                other, other_line = slugs[slug]
                raise RosterError(f"{where}, column 'student': {student!r} and {other!r} (row {other_line}) "
                                  f"would share the report folder students/{slug}/; "
                                  "make the names differ in letters or digits")
            image_dir = None
            if values["image_folder"]:
                image_dir = (path.parent / Path(values["image_folder"]).expanduser()).resolve()
                if not image_dir.is_dir():
                    what = "is not a folder" if image_dir.exists() else "does not exist"
                    raise RosterError(f"{where}, column 'image_folder': {values['image_folder']!r} {what} "
                                      f"(resolved against the roster's folder to {image_dir})")
            names[student.casefold()] = line
            slugs[slug] = (student, line)
            entries.append(RosterEntry(student=student, group=values["group"], image_dir=image_dir,
                                       class_name=values["class_name"], slug=slug, row=line))
    if not entries:
        raise RosterError(f"{path}: no students (want one row per student under the header {','.join(COLUMNS)})")
    return entries


# ----------------------------------------------------------------------------- one student


@dataclass(frozen=True)
class StudentTask:
    """One student's labs to run: plain data (it travels to a pool worker or a Dask worker)."""

    slug: str
    student: str
    group: str
    notebooks: tuple[str, ...]
    report_dir: str  # students/<slug>/ of the class folder
    profile: str
    seed: int
    instructor: str
    course: str
    parameters: dict  # the class's lab-specific parameters, then the student's own
    cell_timeout: float | None


@dataclass(frozen=True)
class StudentSummary:
    """What ``run_student`` hands back: where it ran and the labs' results."""

    slug: str
    host: str
    pid: int
    worker: str  # the Dask worker ("" in the local pool)
    labs: list[LabResult]

    @property
    def ran_on(self) -> dict:
        return {"host": self.host, "pid": self.pid, "worker": self.worker}


def run_student(task: StudentTask) -> StudentSummary:
    """Run one student's labs one after the other, in this process, into their report folder.

    What the local pool and each Dask task call. Returns where it ran (host, pid, Dask worker)
    and the labs' results.
    """
    checked = check_notebooks(task.notebooks)  # on this machine: it must see the same files
    results = run_notebooks_into(
        task.report_dir, checked, profile=task.profile, seed=task.seed, student=task.student,
        group=task.group, instructor=task.instructor, course=task.course,
        parameters=task.parameters, cell_timeout=task.cell_timeout, in_process=True,
        label=f"{task.slug}: ")
    return StudentSummary(slug=task.slug, host=socket.gethostname(), pid=os.getpid(), worker=_dask_worker_name(),
                          labs=results)


def _dask_worker_name() -> str:
    """The Dask worker this runs on ("" in the local pool)."""
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return ""


# ----------------------------------------------------------------------------- the class


def run_roster(roster: str | Path, notebooks=None, profile: str = "smoke", seed: int = config.DEFAULT_SEED,
               instructor: str = "", course: str = DEFAULT_COURSE, parameters: dict | None = None,
               jobs: int = 1, cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
               output_dir: str | Path | None = None, scheduler: str | None = None) -> ClassRun:
    """Run every lab (``notebooks``, default the course's) for every student of ``roster``.

    ``jobs`` students at a time in a local process pool, or one Dask task per student on
    ``scheduler`` ("tcp://host:port"). ``parameters``: lab-specific parameters for everyone
    (a student's non-blank image_folder / class_name override image_dir / class_name).
    Roster, profile, parameters and notebooks are all checked before anything runs.
    """
    resolved = check_run_options(profile, jobs, cell_timeout)
    parameters = check_parameters(parameters)
    entries = read_roster(roster)
    checked = check_run_notebooks(notebooks)
    note_undeclared({**parameters, **{k: v for e in entries for k, v in e.parameters().items()}}, checked)
    class_dir = check_output_dir(output_dir, resolved)
    course = course or DEFAULT_COURSE
    tasks = [StudentTask(slug=e.slug, student=e.student, group=e.group,
                         notebooks=tuple(str(nb.path) for nb in checked),
                         report_dir=str(class_dir / STUDENTS_FOLDER / e.slug), profile=resolved, seed=int(seed),
                         instructor=instructor or "", course=course, parameters={**parameters, **e.parameters()},
                         cell_timeout=cell_timeout) for e in entries]
    students = {e.slug: StudentRun(student=e.student, group=e.group, slug=e.slug,
                                   index=f"{STUDENTS_FOLDER}/{e.slug}/index.html") for e in entries}
    header = {"course": course, "instructor": instructor or "", "date": today(), "profile": resolved,
              "seed": int(seed)}
    stems = [nb.path.stem for nb in checked]
    client = _dask_client(scheduler) if scheduler else None  # an unreachable scheduler fails before any output
    try:
        return _run_class(client, tasks, students, class_dir, stems, header, Path(roster), jobs)
    finally:
        if client is not None:
            client.close()


def _run_class(client, tasks: list[StudentTask], students: dict[str, StudentRun], class_dir: Path, stems: list[str],
               header: dict, roster: Path, jobs: int) -> ClassRun:
    """Run the checked tasks on the Dask ``client`` (or a local pool of ``jobs``), keeping the class index current."""
    class_dir.mkdir(parents=True, exist_ok=True)
    write_class_index(class_dir, list(students.values()), stems, header, roster=roster)
    started = time.monotonic()
    where = (f"the Dask scheduler {client.scheduler.address}" if client is not None
             else f"{min(int(jobs), len(tasks))} local process(es)")
    print(f"class run: {len(tasks)} student(s) x {len(stems)} lab(s) on {where}", flush=True)
    lock = threading.Lock()
    done = 0

    def finished(slug: str, summary: StudentSummary | None, exc: BaseException | None) -> None:
        nonlocal done
        student = students[slug]
        if exc is not None:
            student.error = _task_error(exc, on_dask=client is not None)
        else:
            student.labs = list(summary.labs)
            student.ran_on = summary.ran_on
        with lock:
            done += 1
            try:
                write_class_index(class_dir, list(students.values()), stems, header, roster=roster)
            except Exception as error:  # the class page is a convenience: the other students keep running
                print(f"warning: class index not updated after {student.student} ({type(error).__name__}: "
                      f"{error})", file=sys.stderr, flush=True)
            state = "ok" if student.ok else f"FAILED ({student.error or _failed_labs(student)})"
            print(f"student {student.student}: {state}  [{done}/{len(tasks)}]", flush=True)

    if client is not None:
        _run_on_dask(client, tasks, finished)
    else:
        # SIGTERM / SIGHUP: each worker ends its kernels and staging folders, this process its workers
        signals = stopping.install_signal_handlers()
        try:
            with stopping.worker_pool(min(int(jobs), len(tasks))) as pool:
                futures = {pool.submit(run_student, task): task.slug for task in tasks}
                for future in concurrent.futures.as_completed(futures):
                    exc = future.exception()
                    finished(futures[future], None if exc else future.result(), exc)
        finally:
            stopping.restore_signal_handlers(signals)
    outcome = ClassRun(class_dir=class_dir, students=list(students.values()))
    failed = [s.student for s in outcome.students if not s.ok]
    print(f"{len(tasks) - len(failed)} of {len(tasks)} student(s) ok in {time.monotonic() - started:.1f} s; "
          f"class index: {outcome.index}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)} (see {outcome.index})", file=sys.stderr)
    return outcome


def _failed_labs(student: StudentRun) -> str:
    return ", ".join(lab.stem for lab in student.labs if not lab.ok)


def _task_error(exc: BaseException, on_dask: bool) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if on_dask and isinstance(exc, (ImportError, FileNotFoundError)):
        text += (" (on a Dask worker: labhelpers must be installed there, and the notebooks, image folders and "
                 "output folder must be at the same paths)")
    return text


def _dask_client(scheduler: str):
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs the 'distributed' package: pip install 'labhelpers[cluster]'") from None
    try:
        return Client(scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler} within {DASK_CONNECT_TIMEOUT} s "
                              f"({type(exc).__name__}: {exc}); start one with `dask scheduler` and workers with "
                              f"`dask worker {scheduler} --nthreads 1`") from exc


def _run_on_dask(client, tasks: list[StudentTask], finished) -> None:
    """One Dask task per student, each calling ``run_student`` on a worker."""
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]  # fresh keys: a rerun must not reuse the results of the last one
    futures = {client.submit(run_student, task, key=f"labs-{task.slug}-{run_id}", pure=False,
                             retries=0): task.slug for task in tasks}
    for future in as_completed(list(futures), loop=client.loop):
        try:
            summary, exc = future.result(), None
        except Exception as error:
            summary, exc = None, error
        finished(futures[future], summary, exc)
