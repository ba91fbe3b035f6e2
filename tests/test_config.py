import json

import numpy as np
import pytest

from labhelpers import config


def test_profile_parameter_beats_environment(monkeypatch):
    monkeypatch.setenv("LABS_PROFILE", "full")
    assert config.resolve_profile("smoke").name == "smoke"


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("LABS_PROFILE", "smoke")
    assert config.resolve_profile(None).name == "smoke"
    assert config.resolve_profile("").name == "smoke"  # papermill's empty default


def test_profile_defaults_to_full_for_interactive_use(monkeypatch):
    monkeypatch.delenv("LABS_PROFILE", raising=False)
    assert config.resolve_profile().name == "full"


def test_unknown_profile_names_the_valid_ones(monkeypatch):
    monkeypatch.setenv("LABS_PROFILE", "quick")
    with pytest.raises(ValueError, match=r"'quick'.*LABS_PROFILE.*\['full', 'smoke'\]"):
        config.resolve_profile()


def test_smoke_is_smaller_than_full():
    smoke, full = config.PROFILES["smoke"], config.PROFILES["full"]
    assert smoke.subset(60000) < full.subset(60000) == 60000
    for model in full.epochs:
        assert smoke.epochs_for(model) < full.epochs_for(model)
    assert full.epochs_for("fashion_cnn") == 20 and full.epochs_for("mnist_cam2") == 30  # the labs' settings
    with pytest.raises(KeyError, match="known models"):
        smoke.epochs_for("resnet")


def test_paths_follow_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LABS_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("LABS_DATA_DIR", str(tmp_path / "d"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert config.data_dir() == tmp_path / "d"
    monkeypatch.delenv("LABS_DATA_DIR")
    assert config.data_dir() is None


def test_colab_detection(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv("COLAB_GPU", raising=False)
    assert not config.in_colab()
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261101")
    assert config.in_colab()


def test_provenance_records_only_under_the_runner(monkeypatch, tmp_path):
    config.record_provenance("data", "nothing happens")  # no file set: a no-op
    target = tmp_path / "prov.jsonl"
    monkeypatch.setenv("LABS_PROVENANCE_FILE", str(target))
    config.record_provenance("weights", "random VGG16", fallback=True)
    assert json.loads(target.read_text()) == {"kind": "weights", "summary": "random VGG16", "fallback": True}


def _train_tiny_model(seed):
    import keras

    config.set_seed(seed)
    x = np.random.rand(64, 6, 6, 1).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    model = keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model.get_weights()


def test_set_seed_makes_training_bit_identical():
    first, second = _train_tiny_model(7), _train_tiny_model(7)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    other = _train_tiny_model(8)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_batch_size_is_the_labs_unless_the_profile_departs_from_it():
    smoke, full = config.resolve_profile("smoke"), config.resolve_profile("full")
    assert smoke.batch_size_for("mnist_cam2", default=32) == 2  # the smoke recipe's one change for cam2
    assert smoke.batch_size_for("mnist_cam1", default=32) == 32
    assert full.batch_size_for("mnist_cam2", default=32) == 32  # full: the lab's own recipe
