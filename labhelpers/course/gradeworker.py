"""Grade one submitted notebook in the folder it was copied to (the child process of ``make grade``).

    python -m labhelpers.course.gradeworker FOLDER --cell-timeout S --notebook-timeout S

``FOLDER`` holds ``submission.ipynb`` and ``tests/`` (otter's test files, hidden cases included). The
notebook runs in a fresh kernel whose working directory is ``FOLDER``, with otter-grader's grading cells
around it (:class:`otter.execute.preprocessor.GradingPreprocessor`, what ``otter run`` uses, without
Docker): every question's tests run once, where the student's check cell stands or at the end. A cell
that runs over ``--cell-timeout`` is interrupted and the notebook goes on (otter's own cells get at least
``OTTER_CELL_MIN_S``); at ``--notebook-timeout`` the
kernel is killed. The outcome goes to ``FOLDER/result.json``; this process never raises on a bad
submission. No TensorFlow here: the kernel imports what the notebook imports.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

import nbformat  # the wing's package, imported first, keeps rfc3987-syntax out (labhelpers/course/__init__.py)

INDEX_KEY = "labs_grading_index"      # a submitted cell's index, kept through otter's added cells
TIMEOUT_ENAME = "CellTimeoutError"
MAX_TEXT = 2000                       # characters kept of an error or a summary
FILE_SIZE_LIMIT = 512 * 2**20         # no file the kernel writes grows past this (RLIMIT_FSIZE)
# the kernel's first cell, before otter's own (which imports otter, hence nbformat and jsonschema): no Lark parser
# of RFC 3987 at import (labhelpers/course/__init__.py), ~0.9 s of CPU per submission (tiny notebook: 4.1 -> 3.2 s)
KERNEL_PRELUDE = 'import sys\nsys.modules.setdefault("rfc3987_syntax", None)'
OTTER_CELL_MIN_S = 60                 # otter's own cells (its set-up, which imports otter; the final check of
# every question) run under at least this per-cell timeout: a short --cell-timeout is meant for the student's
# cells, and on a loaded machine it interrupted otter's import, which cost every score (no test results)


def _short(text: str, limit: int = MAX_TEXT) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 20] + " ... (cut)"


def _errors(executed) -> list[dict]:
    """The error outputs of the submitted cells (otter's own cells are reported by their scores)."""
    found = []
    for cell in executed.cells:
        index = cell.get("metadata", {}).get(INDEX_KEY)
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                found.append({"cell": index, "ename": _short(output.get("ename", ""), 200),
                              "evalue": _short(output.get("evalue", ""), 500)})
    return found


def _question_results(results) -> dict:
    out = {}
    for name, test_file in sorted(results.results.items()):
        hidden = [r for r in test_file.test_case_results if r.test_case.hidden]
        out[name] = {
            "score": float(test_file.score), "possible": float(test_file.possible),
            "public": _short(test_file.summary(public_only=True)),
            "hidden_passed": sum(bool(r.passed) for r in hidden), "hidden_total": len(hidden),
            # an instructor-written failure_message only, never the hidden test's code
            "hidden_messages": sorted({_short(r.test_case.failure_message, 500) for r in hidden
                                       if not r.passed and r.test_case.failure_message}),
        }
    return out


def _kill_kernel(km) -> None:
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()


class NotebookTimeout(RuntimeError):
    """The notebook ran over its time; its kernel was killed."""


def _executor(expired: threading.Event, **options):
    """nbconvert's ExecutePreprocessor that starts no cell once the notebook's time is up (a killed
    kernel would otherwise cost every remaining cell its own timeout)."""
    from nbconvert.preprocessors import ExecutePreprocessor

    class Executor(ExecutePreprocessor):
        def preprocess_cell(self, cell, resources, index):
            if expired.is_set():
                raise NotebookTimeout("the notebook ran over its time; its kernel was killed")
            return super().preprocess_cell(cell, resources, index)

    return Executor(**options)


def grade_folder(folder: Path, cell_timeout: float, notebook_timeout: float) -> dict:
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from otter.execute.logging import start_server
    from otter.execute.preprocessor import GradingPreprocessor
    from otter.test_files import GradingResults
    from traitlets.config import Config

    started = time.monotonic()
    nb = nbformat.read(folder / "submission.ipynb", as_version=4)
    for index, cell in enumerate(nb.cells):
        cell.setdefault("metadata", {})[INDEX_KEY] = index
    tests = sorted(str(p) for p in (folder / "tests").glob("*.py"))
    results_path = folder / "otter-results.pkl"
    config = Config()
    (host, port), stop_server = start_server()
    config.GradingPreprocessor.update(cwd=str(folder), test_dir=str(folder / "tests"), tests_glob=tests,
                                      results_path=str(results_path), seed=None, seed_variable=None, logging_server_host=host,
                                      logging_server_port=port, force_python3_kernel=True)
    grading = GradingPreprocessor(config=config)
    outcome = {"executed": False, "notebook_timeout": False, "errors": [], "questions": {}, "problem": ""}
    km = AsyncKernelManager(kernel_name="python3")  # nbclient needs the asynchronous one: a blocking client
    # would wait for output inside its event loop, and no timeout would ever fire
    expired = threading.Event()

    def deadline():
        expired.set()
        _kill_kernel(km)

    timer = threading.Timer(notebook_timeout, deadline)
    try:
        nb, _ = grading.preprocess(nb)
        nb.cells.insert(0, nbformat.v4.new_code_cell(KERNEL_PRELUDE))
        executor = _executor(
            expired, timeout=cell_timeout, interrupt_on_timeout=True, allow_errors=True, kernel_name="python3",
            timeout_func=lambda cell: (cell_timeout if INDEX_KEY in cell.get("metadata", {})
                                       else max(cell_timeout, OTTER_CELL_MIN_S)),
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": f"the cell ran over {cell_timeout:g} s and was "
                              "interrupted", "traceback": []})
        timer.start()
        try:
            executed, _ = executor.preprocess(nb, {"metadata": {"path": str(folder)}}, km=km)
            outcome["executed"] = True
        except Exception as exc:  # a dead kernel (killed at the deadline, or crashed), a broken notebook
            executed = nb
            outcome["problem"] = _short(f"{type(exc).__name__}: {exc}", 500)
        outcome["notebook_timeout"] = expired.is_set()
        outcome["errors"] = _errors(executed)
        nbformat.write(executed, folder / "executed.ipynb")
    finally:
        timer.cancel()
        stop_server()
        try:
            run_sync(km.shutdown_kernel)(now=True)
        except Exception:
            _kill_kernel(km)
    try:
        with open(results_path, "rb") as f:
            results = pickle.load(f)
        if not isinstance(results, GradingResults):
            raise TypeError("the results file does not hold otter's GradingResults")
        outcome["questions"] = _question_results(results)
    except Exception as exc:  # the notebook never reached otter's last cell
        outcome["problem"] = outcome["problem"] or _short(f"no test results ({type(exc).__name__}: {exc})", 500)
    outcome["seconds"] = round(time.monotonic() - started, 1)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labhelpers.course.gradeworker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cell-timeout", type=float, required=True)
    parser.add_argument("--notebook-timeout", type=float, required=True)
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    try:
        outcome = grade_folder(folder, args.cell_timeout, args.notebook_timeout)
    except Exception as exc:  # never a traceback instead of a result
        outcome = {"executed": False, "notebook_timeout": False, "errors": [], "questions": {},
                   "problem": _short(f"the grader failed: {type(exc).__name__}: {exc}", 500)}
    (folder / "result.json").write_text(json.dumps(outcome, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
