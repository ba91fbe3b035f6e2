"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The one home of "write to a temporary file beside the target, then ``os.replace``" for the whole
package (reports, indexes, student editions, PDFs, cached weights and their metadata). Standard
library only, so every module may import it.

    atomic_write_text(path, text)                  # index.json, index.html, a notebook's HTML
    atomic_write_bytes(path, data)
    with atomic_path(path, suffix=".weights.h5") as tmp:   # a writer that wants a path of its own
        model.save_weights(tmp)
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
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
