"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The one home of "write to a temporary file beside the target, then ``os.replace``" for the whole
package (reports, indexes, student editions, PDFs, cached weights and their metadata). Standard
library only, so every module may import it.

    atomic_write_text(path, text)                  # index.json, index.html, a notebook's HTML
    atomic_write_bytes(path, data)
    with atomic_path(path, suffix=".weights.h5") as tmp:   # a writer that wants a path of its own
        model.save_weights(tmp)

and of the lock that lets one process do a piece of work while the others wait for its result:

    with file_lock(folder / "fashion_cnn-1a2b.lock", on_wait=say_so):   # then look again before training
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends
    normally and is removed when it raises (``path`` then stays as it was).

    The name is hidden (a leading dot) and unique per process, thread and call, so concurrent
    writers of the same file never share a temporary file; ``suffix`` ends it, for writers that
    go by the extension (Keras's ``save_weights`` wants ``.weights.h5``). The file gets the
    permissions a plain ``open`` gives (the umask's), unlike ``tempfile.mkstemp``'s 0600.
    """
    path = Path(path)
    token = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".{path.name}.{token}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created when absent, left in place) across processes.

    POSIX ``flock``: the lock goes with the process, so a process that is killed frees it. When another
    process holds it, ``on_wait()`` is called once (to say who waits for what) before blocking. Not
    reentrant: a second ``file_lock`` of the same path in the same process waits for ever. Where there
    is no ``fcntl`` (Windows), or the file system refuses locks, the block runs without one.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None
    with open(path, "a") as handle:
        locked = fcntl is not None
        if locked:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError:  # a file system without locks (some network mounts): run unlocked
                locked = False
        try:
            yield
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)
