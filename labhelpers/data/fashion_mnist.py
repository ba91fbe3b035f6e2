"""Fashion-MNIST, offline first: ``$LABS_DATA_DIR`` (flat or ``fashion-mnist/``), the Keras cache, Debian's
``dataset-fashion-mnist`` folder, then a download into the Keras cache (the chain of ``sources.walk``).

The four idx files are checked by the SHA-256 of their decompressed payload (see FASHION_FILES), decoded once
per process, and never used when a check fails (a warning names the file). No TensorFlow here.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import sources
from .dataset import Dataset, Provenance, _record
from .sources import (
    KERAS_DATASETS_URL,
    Download,
    _BadFiles,
    _download_failure,
    _file_key,
    _rejected_note,
    _sha256,
    _skip,
    _tidy_on_failure,
)

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Where Debian's `dataset-fashion-mnist` package puts the four files (tests monkeypatch this).
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# SHA-256 of the DECOMPRESSED idx payload of each Fashion-MNIST file, not of the .gz bytes: Debian
# re-gzipped the files (their .gz MD5s differ from the ones Zalando publishes, and each is 23-24 bytes
# shorter: the original gzip headers carry the file name), so a hash of the .gz bytes would reject
# either Debian's copy or Keras's. The payload is the same everywhere. Computed from Debian's files
# (dataset-fashion-mnist 0.0~git20200523) and cross-checked: idx magic 2051/2049, 60,000/10,000 items,
# 28x28 images, exactly 6,000/1,000 labels per class.
FASHION_FILES = {
    # file name: (payload sha256, idx magic, number of items)
    "train-images-idx3-ubyte.gz": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 2051, 60000),
    "train-labels-idx1-ubyte.gz": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 2049, 60000),
    "t10k-images-idx3-ubyte.gz": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 2051, 10000),
    "t10k-labels-idx1-ubyte.gz": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 2049, 10000),
}
# MD5 of the .gz files as Zalando publishes them (github.com/zalandoresearch/fashion-mnist, the sums
# torchvision checks). Keras's copies at KERAS_DATASETS_URL are those very files (same byte sizes:
# 26,421,880 / 29,515 / 4,422,102 / 5,148), so pooch checks a download against these, and the payload
# SHA-256 above is checked after that as for every other source.
FASHION_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

HOW_TO_GET_DATA = (
    "How to get the data: (1) on Debian/Ubuntu `sudo apt install dataset-fashion-mnist`; "
    "(2) run once with a network connection (the files are cached under $KERAS_HOME/datasets); "
    "(3) put the files in a folder and set $LABS_DATA_DIR to it."
)



def _read_idx(path: Path, name: str) -> tuple[np.ndarray | None, str]:
    """(array, "") for a good file, (None, why) for a bad one."""
    expected_sha, magic, count = FASHION_FILES[name]
    limit = (16 + count * 28 * 28) if magic == 2051 else (8 + count)  # the real file's idx size
    try:  # streamed and bounded: a file that inflates to gigabytes (a decompression bomb) costs limit + 1 bytes
        with gzip.open(path, "rb") as handle:
            payload = handle.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        return None, f"not a readable gzip file ({exc})"
    if len(payload) > limit:
        return None, (f"decompresses to more than {limit:,} bytes, the size of the real file "
                      "(a different file, or a decompression bomb)")
    digest = _sha256(payload)
    if digest != expected_sha:
        return None, (f"SHA-256 of the decompressed data is {digest[:16]}..., expected "
                      f"{expected_sha[:16]}... (corrupt, truncated or a different dataset)")
    header = np.frombuffer(payload[:8], dtype=">u4")  # sha matched, so this is a sanity net only
    if int(header[0]) != magic or int(header[1]) != count:
        return None, f"idx header says magic {header[0]} / {header[1]} items, expected {magic} / {count}"
    if magic == 2051:
        return np.frombuffer(payload, np.uint8, offset=16).reshape(count, 28, 28), ""
    return np.frombuffer(payload, np.uint8, offset=8).astype(np.int64), ""


@lru_cache(maxsize=4)
def _decode_fashion(keys: tuple[tuple[str, int, int], ...]) -> dict[str, np.ndarray]:
    """The four verified arrays (read-only, shared by every caller in this process).

    Keyed by the files themselves (not the folder that was searched), so a notebook that loads twice
    decodes once, and a file replaced on disk is decoded and checked again.
    """
    arrays, problems = {}, []
    for name, (path, _, _) in zip(FASHION_FILES, keys, strict=True):
        array, why = _read_idx(Path(path), name)
        if array is None:
            problems.append((Path(path), why))
        arrays[name] = array
    if problems:
        raise _BadFiles(problems)
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


def _fashion_from_dir(folder: Path) -> tuple[dict[str, np.ndarray] | None, str]:
    """All four arrays from one folder (fresh, writable copies), or (None, why not)."""
    if not folder.is_dir():
        return None, "no such folder"
    missing = [name for name in FASHION_FILES if not (folder / name).is_file()]
    if missing:
        return None, f"missing {', '.join(missing)}"
    try:
        arrays = _decode_fashion(tuple(_file_key(folder / name) for name in FASHION_FILES))
    except _BadFiles as bad:  # warn on every call, naming the file as the user knows it
        return None, "; ".join(_skip(folder / Path(path).name, why) for path, why in bad.problems)
    return {name: array.copy() for name, array in arrays.items()}, ""


def _fashion_download(target: Path) -> tuple[dict[str, np.ndarray] | None, str]:
    """Download the four files into ``target`` (the Keras cache).

    pooch checks each .gz against Zalando's MD5 (FASHION_GZ_MD5); the file then lands in a scratch
    folder, its decompressed payload is checked against the SHA-256 every source is checked against,
    and only then is it moved into the cache.
    """
    with _tidy_on_failure(target) as state:
        arrays, why = _fashion_download_into(target)
        state["ok"] = arrays is not None
    return arrays, why


def _fashion_download_into(target: Path) -> tuple[dict[str, np.ndarray] | None, str]:
    try:
        target.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=target))
    except OSError as exc:
        return None, f"cannot write to the Keras cache {target} ({exc})"
    try:
        for name in FASHION_FILES:
            print(f"Fashion-MNIST: downloading {KERAS_DATASETS_URL}{name} -> {target}", flush=True)
            try:
                got = Path(sources._pooch_retrieve(KERAS_DATASETS_URL + name, f"md5:{FASHION_GZ_MD5[name]}",
                                           name, scratch))
            except Exception as exc:  # no network, HTTP error, ...: report it, do not crash here
                return None, f"{name}: {_download_failure(exc)}"
            array, why = _read_idx(got, name)
            if array is None:
                return None, _skip(Path(KERAS_DATASETS_URL + name), why)
            os.replace(got, target / name)
        return _fashion_from_dir(target)  # now the Keras cache: decoded once, cached like any source
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_fashion_mnist(allow_download: bool | None = None) -> Dataset:
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 uint8, labels 0-9, see FASHION_CLASSES).

    Sources, in order: ``$LABS_DATA_DIR`` (flat or ``fashion-mnist/``), the Keras cache
    (``$KERAS_HOME/datasets/fashion-mnist``), Debian's ``/usr/share/datasets/fashion-mnist``, then a
    download into the Keras cache. ``allow_download=False`` never downloads; None (default) or True
    download only when no local source works.
    """
    attempts: list[tuple[str, str]] = []
    places = sources.local_places(attempts, user=("", "fashion-mnist"), keras_cache="fashion-mnist",
                                  read=_fashion_from_dir)
    places.append(sources.Place("debian-package", DEBIAN_FASHION_DIR, _fashion_from_dir))
    keras_dir = sources.keras_datasets_dir() / "fashion-mnist"

    def fetch():
        arrays, why = _fashion_download(keras_dir)
        return arrays, why, f"{KERAS_DATASETS_URL} -> {keras_dir}"

    found = sources.walk("Fashion-MNIST", places, Download(KERAS_DATASETS_URL, fetch),
                         allow_download=allow_download, remedy=HOW_TO_GET_DATA, attempts=attempts)
    prov = _record(Provenance(
        dataset="Fashion-MNIST", source=found.source, location=found.location,
        sha256={name: FASHION_FILES[name][0] for name in FASHION_FILES},
        n_train=60000, n_test=10000,
        note="SHA-256 checked on the decompressed idx data" + _rejected_note(attempts),
    ))
    arrays = found.arrays
    return Dataset(arrays["train-images-idx3-ubyte.gz"], arrays["train-labels-idx1-ubyte.gz"],
                   arrays["t10k-images-idx3-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"],
                   FASHION_CLASSES, prov)
