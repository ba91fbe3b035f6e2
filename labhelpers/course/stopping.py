"""Stopping a run cleanly on SIGTERM or SIGHUP (a scheduler, a closed terminal, ``kill``).

The runner's process, its pool workers and a roster's student workers each route both signals to
``_terminate``: it terminates this process's pool workers, kills the kernels this process started,
removes the staging folders of its runs and exits with 128 + the signal (143 for SIGTERM), so that
no orphaned worker publishes a report later. Publishing and the index update are a critical
stretch (``critical``): a signal that arrives there waits for its end, so the reports and the
index stay as they were or are whole. SIGINT (Ctrl-C) keeps Python's own handling.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from pathlib import Path

# What a signal must end or remove; the runner's modules register here (execute: kernels, staging:
# folders, worker_pool: pools).
KERNELS: set[int] = set()  # kernels this process started and has not shut down
STAGING_FOLDERS: set[str] = set()  # staging folders of this process's runs
POOLS: list = []  # process pools of this process (their workers get SIGTERM first)
_state = {"critical": 0, "pending": None}
TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP")


@contextlib.contextmanager
def critical():
    """A stretch a SIGTERM must not cut short (publishing, the index): the signal waits for its end."""
    _state["critical"] += 1
    try:
        yield
    finally:
        _state["critical"] -= 1
        if not _state["critical"] and _state["pending"] is not None:
            _terminate(_state["pending"], None)


def _terminate(signum, frame) -> None:
    """SIGTERM / SIGHUP: stop the pools' workers and this process's kernels, remove the staging folders,
    leave every report and index as it was, exit 128 + signal (143 for SIGTERM)."""
    if _state["critical"]:
        _state["pending"] = signum
        return
    import signal

    for pool in list(POOLS):
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.terminate()
    for pid in list(KERNELS):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # a kernel leads its own session (jupyter_client)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    for pool in list(POOLS):
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.join(max(0.1, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
    for staging in list(STAGING_FOLDERS):
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            Path(staging).parent.rmdir()
    name = signal.Signals(signum).name
    with contextlib.suppress(Exception):
        print(f"labs: stopped by {name}: workers and kernels ended, staging folders removed; the previous "
              "reports and index are unchanged", file=sys.stderr, flush=True)
    os._exit(128 + int(signum))


def install_signal_handlers() -> dict:
    """Route SIGTERM and SIGHUP of this process to ``_terminate`` (main thread only; a Dask worker
    thread keeps its host's handlers). Returns the previous handlers for ``restore_signal_handlers``."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for name in TERMINATING_SIGNALS:
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), _terminate)
    return previous


def restore_signal_handlers(previous: dict) -> None:
    import signal

    for name, handler in previous.items():
        signal.signal(getattr(signal, name), handler)


@contextlib.contextmanager
def worker_pool(workers: int):
    """A pool of ``workers`` fresh spawned processes (the caller, and any TensorFlow it has loaded, stays
    untouched) that SIGTERM / SIGHUP reach: each worker routes them to ``_terminate``, and this process
    terminates the workers first. On leaving, pending work is cancelled and the workers are waited for."""
    import concurrent.futures
    import multiprocessing

    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=install_signal_handlers)
    POOLS.append(pool)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        POOLS.remove(pool)
