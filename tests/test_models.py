"""Models: the labs' architectures, the training cache, pretrained weights offline."""

import inspect
import json
import shutil
import threading
import time

import numpy as np
import pytest

from labhelpers import config, models
from labhelpers.files import file_lock
from labhelpers.kerasapi import keras  # tf-keras when TF_USE_LEGACY_KERAS=1
from labhelpers.models import pretrained

# Keras 3.15 on NumPy 2 warns inside get_weights(); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ----------------------------------------------------------------------------- architectures
def test_fashion_cnn_is_the_labs_network():
    model = models.build_fashion_cnn()
    assert [layer.name for layer in model.layers] == [
        "image", "conv1", "bn1", "leaky_relu1", "pool1", "conv2", "bn2", "leaky_relu2", "pool2", "flatten",
        "dense1", "bn3", "leaky_relu3", "dropout", "predictions"]
    assert model.get_layer("leaky_relu2").output.shape == (None, 11, 11, 64)  # the Grad-CAM layer
    # counted by hand: 3*3*1*32+32, 4*32, 3*3*32*64+64, 4*64, 5*5*64*64+64, 4*64, 64*10+10
    assert model.count_params() == 320 + 128 + 18496 + 256 + 102464 + 256 + 650
    for name in ("conv1", "conv2", "dense1"):
        layer = model.get_layer(name)
        assert isinstance(layer.kernel_initializer, keras.initializers.HeNormal), name
        reg = layer.kernel_regularizer
        assert isinstance(reg, keras.regularizers.L1L2) and (reg.l1, reg.l2) == pytest.approx((1e-5, 1e-4)), name
    assert model.get_layer("dropout").rate == 0.4
    assert model.get_layer("predictions").activation is keras.activations.softmax
    assert model.loss == "sparse_categorical_crossentropy" and isinstance(model.optimizer, keras.optimizers.Adam)


@pytest.mark.parametrize("build, cam_shape, n_layers", [
    (models.build_mnist_cam1, (3, 3), 10),
    (models.build_mnist_cam2, (28, 28), 7),
])
def test_mnist_cam_networks(build, cam_shape, n_layers):
    model = build()
    assert len(model.layers) == n_layers
    assert model.get_layer("conv4").output.shape == (None, *cam_shape, 128)
    assert isinstance(model.get_layer("gap"), keras.layers.GlobalAveragePooling2D)
    assert [model.get_layer(f"conv{i}").filters for i in range(1, 5)] == [16, 32, 64, 128]
    assert all(model.get_layer(f"conv{i}").padding == "same" for i in range(1, 5))
    assert all(isinstance(model.get_layer(f"conv{i}").kernel_initializer, keras.initializers.HeNormal)
               for i in range(1, 5))
    assert model.get_layer("predictions").kernel.shape == (128, 10)
    assert model.loss == "categorical_crossentropy"


def test_architecture_fingerprint_ignores_automatic_names_but_not_structure():
    def build(units=3):
        inputs = keras.Input((4,))
        outputs = keras.layers.Dense(2)(keras.layers.Dense(units)(inputs))  # auto-named dense_N
        model = keras.Model(inputs, outputs)
        model.compile("adam", "mse")  # auto-named adam_N
        return model

    assert models.architecture_fingerprint(build()) == models.architecture_fingerprint(build())
    assert models.architecture_fingerprint(build()) != models.architecture_fingerprint(build(4))
    assert (models.architecture_fingerprint(models.build_mnist_cam1())
            != models.architecture_fingerprint(models.build_mnist_cam2()))


# ----------------------------------------------------------------------------- training cache
def _tiny_cnn(filters=4):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(filters, 3, activation="relu")(inputs)
    x = keras.layers.Dropout(0.3)(x)  # exercises the seeded dropout RNG
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _softmax_net(units=3):
    """The smallest trainable network, a softmax over the pixels: for the tests of the cache's keys and
    checksums, where what is trained does not matter (Keras traces a train step per model: ~0.3 s a
    training here against ~0.8 s for _tiny_cnn on an idle 2-core machine). The seeded bit-identical
    training, dropout included, is _tiny_cnn's test."""
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(units, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    return model


@pytest.fixture
def tiny_data():
    rng = np.random.default_rng(0)
    return rng.random((48, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, size=48)


def _train(x, y, build=_tiny_cnn, epochs=2, **kwargs):
    return models.train_or_load("tiny", build, x, y, epochs=epochs, batch_size=16, seed=7, verbose=0, **kwargs)


def _same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights(), strict=True))


def test_training_is_bit_identical_and_cached(tiny_data, tmp_path, monkeypatch):
    x, y = tiny_data
    monkeypatch.setenv("LABS_CACHE_DIR", str(tmp_path / "a"))
    first, info1 = _train(x, y)
    assert info1.trained and not info1.from_cache and info1.path.exists()
    assert len(info1.history["loss"]) == 2
    monkeypatch.setenv("LABS_CACHE_DIR", str(tmp_path / "b"))  # an empty cache: train again
    second, info2 = _train(x, y)
    assert info2.trained and info2.key == info1.key
    assert _same_weights(first, second), "two trainings with the same seed differ"
    before = [w.copy() for w in first.get_weights()]

    loaded, info3 = _train(x, y)  # same cache: load
    assert info3.from_cache and info3.path == info2.path and info3.history == info2.history
    assert _same_weights(loaded, second) and info3.train_duration_s == pytest.approx(info2.duration_s)
    assert all(np.array_equal(u, v) for u, v in zip(before, first.get_weights(), strict=True))
    assert "loaded from the cache" in str(info3)
    leftovers = [p.name for p in (tmp_path / "b" / "models").iterdir() if ".tmp" in p.name]
    assert leftovers == [], "temporary files left behind"


def test_several_steps_per_execution_train_the_weights_of_a_plain_fit(tiny_data, tmp_path, monkeypatch):
    """train_or_load runs several training steps per call of Keras 3's compiled train function (faster at small
    batches). That is not in the cache key, so it must give the weights of a plain fit, bit for bit, dropout
    included."""
    x, y = tiny_data
    monkeypatch.setenv("LABS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(models.cache, "STEPS_PER_EXECUTION", 5)  # 12 steps an epoch: 5 + 5 + 2
    trained, _ = models.train_or_load("tiny", _tiny_cnn, x, y, epochs=2, batch_size=4, seed=7, verbose=0)
    config.set_seed(7)
    plain = _tiny_cnn()
    plain.fit(x, y, epochs=2, batch_size=4, verbose=0)
    if hasattr(plain, "steps_per_execution") and not models.cache.LEGACY:  # tf-keras: one step per call both times
        assert (plain.steps_per_execution, trained.steps_per_execution) == (1, 5)
    assert _same_weights(trained, plain)


@pytest.mark.mode_independent
def test_a_recipe_in_training_elsewhere_is_waited_for_then_loaded(tiny_data, tmp_path, monkeypatch, capsys):
    """Two notebooks asking for one recipe at once (two pytest workers, a class on a local pool): the
    second waits on the recipe's lock, says so, and loads the first one's weights instead of training."""
    x, y = tiny_data
    monkeypatch.setenv("LABS_CACHE_DIR", str(tmp_path / "elsewhere"))
    trained, info = _train(x, y, build=_softmax_net)
    monkeypatch.setenv("LABS_CACHE_DIR", str(tmp_path / "here"))
    here = tmp_path / "here" / "models"
    here.mkdir(parents=True)
    stem = info.path.name.removesuffix(".weights.h5")
    result, said = {}, ""
    with file_lock(here / f"{stem}.lock"):  # another process holds the recipe: it is training
        waiter = threading.Thread(target=lambda: result.update(out=_train(x, y, build=_softmax_net)))
        waiter.start()
        deadline = time.monotonic() + 60
        while "waiting for its weights" not in said and time.monotonic() < deadline:
            time.sleep(0.05)
            said += capsys.readouterr().out
        assert f"tiny: another process is training this recipe; waiting for its weights (lock {here}" in said
        assert not result, "it did not wait for the lock"
        for suffix in (".weights.h5", ".json"):  # what the other process writes before it lets go
            shutil.copy(info.path.with_name(stem + suffix), here / (stem + suffix))
    waiter.join(60)
    loaded, loaded_info = result["out"]
    assert loaded_info.from_cache and loaded_info.path == here / f"{stem}.weights.h5"
    assert _same_weights(loaded, trained)


@pytest.mark.mode_independent
def test_any_change_to_the_recipe_retrains(tiny_data):
    x, y = tiny_data
    _, base = _train(x, y, build=_softmax_net)
    changed = {
        "architecture": _train(x, y, build=lambda: _softmax_net(units=4))[1],
        "data": _train(x + 0.001, y, build=_softmax_net)[1],
        "labels": _train(x, (y + 1) % 3, build=_softmax_net)[1],
        "epochs": _train(x, y, build=_softmax_net, epochs=1)[1],
        "data fingerprint": _train(x, y, build=_softmax_net, data_fingerprint={"sha256": "other"})[1],
        "profile": _train(x, y, build=_softmax_net, profile="smoke")[1],
    }
    for what, info in changed.items():
        assert info.trained and info.key != base.key, f"a changed {what} reused stale weights"
    assert _train(x, y, build=_softmax_net)[1].from_cache


@pytest.mark.mode_independent
def test_a_damaged_cache_entry_is_retrained_with_a_warning(tiny_data):
    x, y = tiny_data
    first, info = _train(x, y, build=_softmax_net)
    info.path.write_bytes(b"not an HDF5 file")
    with pytest.warns(UserWarning, match="could not be loaded"):
        model, again = _train(x, y, build=_softmax_net)
    assert again.trained and _same_weights(model, first)  # retrained from a fresh, seeded build
    assert _train(x, y, build=_softmax_net)[1].from_cache


@pytest.mark.mode_independent
def test_training_records_provenance(tiny_data, tmp_path, monkeypatch):
    record = tmp_path / "prov.jsonl"
    monkeypatch.setenv("LABS_PROVENANCE_FILE", str(record))
    x, y = tiny_data
    _train(x, y, build=_softmax_net, data_fingerprint={"dataset": "toy", "n_train": 48})
    entry = json.loads(record.read_text().splitlines()[-1])
    assert entry["kind"] == "weights" and entry["source"] == "trained" and entry["name"] == "tiny"
    assert entry["data_fingerprint"] == {"dataset": "toy", "n_train": 48}
    with open(entry["path"].replace(".weights.h5", ".json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    assert meta["recipe"]["epochs"] == 2 and meta["recipe"]["seed"] == 7


@pytest.mark.mode_independent
def test_train_or_load_rejects_bad_input(tiny_data):
    x, y = tiny_data
    with pytest.raises(ValueError, match="48 training images but 47 labels"):
        _train(x, y[:-1])
    with pytest.raises(TypeError, match="not a keras.Model"):
        _train(x, y, build=lambda: "model")
    with pytest.raises(ValueError, match="epochs and batch_size must be positive"):
        _train(x, y, epochs=0)


# ----------------------------------------------------------------------------- pretrained weights
@pytest.mark.mode_independent
def test_known_files_match_keras_sources():
    from keras.src.applications import vgg16, xception

    for module, key in ((vgg16, "vgg16"), (xception, "xception")):
        source = inspect.getsource(module)
        files = models.APPLICATIONS[key].files
        assert files[True].url == module.WEIGHTS_PATH and files[False].url == module.WEIGHTS_PATH_NO_TOP
        for spec in files.values():
            assert f'"{spec.filename}"' in source and f'"{spec.file_hash}"' in source
            assert spec.url.endswith("/" + spec.filename)


def _tiny_application():
    def build(weights, include_top):
        inputs = keras.Input((6, 6, 3))
        x = keras.layers.Conv2D(2, 3, name="block1_conv1")(inputs)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        if include_top:
            x = keras.layers.Dense(4, activation="softmax", name="predictions")(x)
        model = keras.Model(inputs, x, name="tinynet")
        if weights is not None:
            model.load_weights(weights)
        return model
    return build


@pytest.fixture
def fake_app(tmp_path, monkeypatch):
    """A tiny stand-in for VGG16 with a real weights file, and no network at all."""
    build = _tiny_application()
    reference = build(None, True)
    reference.set_weights([np.full(w.shape, i + 0.5, np.float32) for i, w in enumerate(reference.get_weights())])
    store = tmp_path / "store"
    store.mkdir()
    weights_file = store / "tinynet_weights.weights.h5"
    reference.save_weights(weights_file)
    digest = pretrained._hash_file(weights_file, "0" * 64)
    spec = pretrained._WeightsFile(weights_file.name, "https://example.invalid/" + weights_file.name, digest, 1)
    app = pretrained._Application("TinyNet", build, {True: spec, False: spec}, (6, 6))
    monkeypatch.setitem(models.APPLICATIONS, "vgg16", app)
    monkeypatch.setattr(pretrained, "_network_available", lambda *a, **k: False)
    monkeypatch.setattr(pretrained, "_download", lambda spec: pytest.fail("download attempted"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("LABS_WEIGHTS_DIR", str(tmp_path / "weights"))
    return {"file": weights_file, "spec": spec, "reference": reference, "tmp": tmp_path}


def _put(fake, folder):
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / fake["file"].name
    target.write_bytes(fake["file"].read_bytes())
    return target


def test_weights_are_found_in_order(fake_app):
    keras_copy = _put(fake_app, fake_app["tmp"] / "keras" / "models")
    model, info = models.load_vgg16(profile="full")
    assert info.source == "keras-cache" and info.path == str(keras_copy) and not info.fallback
    assert _same_weights(model, fake_app["reference"])
    user_copy = _put(fake_app, fake_app["tmp"] / "weights")  # $LABS_WEIGHTS_DIR comes first
    _, info = models.load_vgg16(profile="full")
    assert info.source == "LABS_WEIGHTS_DIR" and info.path == str(user_copy)
    assert "ImageNet weights from LABS_WEIGHTS_DIR" in str(info)


def test_a_file_with_the_wrong_hash_is_skipped(fake_app):
    bad = fake_app["tmp"] / "weights" / fake_app["file"].name
    bad.parent.mkdir()
    bad.write_bytes(b"truncated")
    _put(fake_app, fake_app["tmp"] / "keras" / "models")
    with pytest.warns(UserWarning, match="Keras expects"):
        _, info = models.load_vgg16(profile="full")
    assert info.source == "keras-cache"


def test_download_is_the_last_resort(fake_app, monkeypatch):
    calls = []

    def download(spec):
        calls.append(spec.url)
        return str(_put(fake_app, fake_app["tmp"] / "keras" / "models"))

    monkeypatch.setattr(pretrained, "_network_available", lambda *a, **k: True)
    monkeypatch.setattr(pretrained, "_download", download)
    model, info = models.load_vgg16(profile="full")
    assert info.source == "download" and calls == [fake_app["spec"].url]
    assert _same_weights(model, fake_app["reference"])
    (fake_app["tmp"] / "keras" / "models" / fake_app["file"].name).unlink()
    monkeypatch.setattr(pretrained, "_download", lambda spec: pytest.fail("download attempted"))
    with pytest.raises(models.WeightsNotFoundError, match="skipped"):  # allow_download=False never calls it
        models.load_vgg16(profile="full", allow_download=False, weights="imagenet", include_top=False)


def test_smoke_falls_back_to_seeded_random_weights_loudly(fake_app, monkeypatch):
    record = fake_app["tmp"] / "prov.jsonl"
    monkeypatch.setenv("LABS_PROVENANCE_FILE", str(record))
    monkeypatch.setattr(pretrained, "_network_available", lambda *a, **k: True)
    monkeypatch.setattr(pretrained, "_download", lambda spec: (_ for _ in ()).throw(OSError("HTTP 503")))
    model, info = models.load_vgg16(profile="smoke")
    again, _ = models.load_vgg16(profile="smoke")
    assert info.fallback and info.source == "random-fallback" and info.path is None
    assert _same_weights(model, again), "random fallback weights must be seeded"
    assert not _same_weights(model, fake_app["reference"])
    banner = str(info)
    for needed in ("RANDOM TinyNet WEIGHTS", fake_app["spec"].filename, fake_app["spec"].url, "HTTP 503",
                   str(fake_app["tmp"] / "weights")):
        assert needed in banner, needed
    entry = json.loads(record.read_text().splitlines()[-1])
    assert entry["kind"] == "weights" and entry["fallback"] is True and entry["summary"].startswith("RANDOM")


def test_full_profile_says_where_to_put_the_weights(fake_app):
    with pytest.raises(models.WeightsNotFoundError) as caught:
        models.load_vgg16(profile="full")
    message = str(caught.value)
    for needed in (fake_app["spec"].filename, fake_app["spec"].url, str(fake_app["tmp"] / "weights"),
                   str(fake_app["tmp"] / "keras" / "models"), "'full' profile"):
        assert needed in message, needed
    with pytest.raises(models.WeightsNotFoundError, match="weights='imagenet'"):
        models.load_vgg16(profile="smoke", weights="imagenet")


def test_explicit_weights_file_and_random(fake_app):
    model, info = models.load_vgg16(weights=str(fake_app["file"]))
    assert info.source == "file" and _same_weights(model, fake_app["reference"])
    _, info = models.load_vgg16(weights=None, profile="full")
    assert info.source == "random" and not info.fallback
    with pytest.raises(models.WeightsNotFoundError, match="does not exist"):
        models.load_vgg16(weights=str(fake_app["tmp"] / "missing.h5"))


@pytest.mark.mode_independent
def test_a_flipped_bit_in_cached_weights_is_detected_and_retrained(tiny_data):
    x, y = tiny_data
    first, info = _train(x, y, build=_softmax_net)
    meta = json.loads(info.path.with_suffix("").with_suffix(".json").read_text())
    assert meta["sha256"] == models.file_sha256(info.path)
    data = bytearray(info.path.read_bytes())
    # flip one bit inside the first weight array's bytes (the file stays a valid HDF5 file)
    kernel = first.get_weights()[0].tobytes()
    at = bytes(data).find(kernel)
    assert at > 0, "the kernel's bytes are not stored contiguously"
    data[at + len(kernel) // 2] ^= 0x04
    info.path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"SHA-256 .* differs") as caught:
        model, again = _train(x, y, build=_softmax_net)
    assert str(info.path) in str(caught[0].message)
    assert again.trained and _same_weights(model, first)
    assert json.loads(info.path.with_suffix("").with_suffix(".json").read_text())["sha256"] == \
        models.file_sha256(info.path)
    assert _train(x, y, build=_softmax_net)[1].from_cache
