"""The labs' networks, a training cache, and pretrained ImageNet models that work offline.

* ``build_fashion_cnn``, ``build_mnist_cam1``, ``build_mnist_cam2``: the labs' own
  architectures, as Functional models with readable layer names (``conv1``,
  ``leaky_relu2``, ``gap``, ...) so notebooks and explanations can name layers.
* ``train_or_load``: train once per (architecture, data, epochs, batch size, seed,
  profile, TF/Keras major version) and reuse the weights from
  ``<cache>/models/`` afterwards; files are written atomically, with a SHA-256 that is
  checked on every load (a damaged file is trained again, with a warning).
* ``load_vgg16`` / ``load_xception``: ImageNet weights from ``$LABS_WEIGHTS_DIR``,
  the Keras cache, or a download; else (smoke profile only) seeded random weights
  with a loud banner, or (full profile) an error that says where to put the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import config
from .kerasapi import keras

__all__ = [
    "build_fashion_cnn", "build_mnist_cam1", "build_mnist_cam2", "train_or_load", "TrainInfo",
    "architecture_fingerprint", "load_vgg16", "load_xception", "PretrainedInfo", "WeightsNotFoundError",
]

CACHE_FORMAT = 1  # bump when the cache layout or key recipe changes


# ----------------------------------------------------------------------------- the labs' networks
def build_fashion_cnn(input_shape=(28, 28, 1), n_classes: int = 10) -> keras.Model:
    """The Fashion-MNIST lab's network.

    conv1 (32 3x3) -> bn1 -> leaky_relu1 -> pool1 -> conv2 (64 3x3) -> bn2 -> leaky_relu2
    -> pool2 -> flatten -> dense1 (64) -> bn3 -> leaky_relu3 -> dropout (0.4) -> predictions
    (10, softmax). He-normal initialisation and L1L2(1e-5, 1e-4) kernel regularisation on
    the hidden convolution and dense layers; Adam, sparse categorical cross-entropy.
    Expects images scaled to [0, 1] with a channel axis: ``x[..., None] / 255``.
    """
    layers = keras.layers

    def hidden(kind, units, name, **kwargs):
        return kind(units, name=name, kernel_initializer="he_normal",
                    kernel_regularizer=keras.regularizers.L1L2(l1=1e-5, l2=1e-4), **kwargs)

    inputs = keras.Input(shape=input_shape, name="image")
    x = hidden(layers.Conv2D, 32, "conv1", kernel_size=(3, 3))(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.LeakyReLU(name="leaky_relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = hidden(layers.Conv2D, 64, "conv2", kernel_size=(3, 3))(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.LeakyReLU(name="leaky_relu2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = hidden(layers.Dense, 64, "dense1")(x)
    x = layers.BatchNormalization(name="bn3")(x)
    x = layers.LeakyReLU(name="leaky_relu3")(x)
    x = layers.Dropout(0.4, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="fashion_cnn")
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _mnist_cam(name: str, pooling: bool, input_shape, n_classes: int) -> keras.Model:
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 64, 128), start=1):
        x = layers.Conv2D(filters, (3, 3), padding="same", activation="relu", name=f"conv{i}")(x)
        if pooling and i < 4:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def build_mnist_cam1(input_shape=(28, 28, 1), n_classes: int = 10) -> keras.Model:
    """The CAM lab's first network: conv1 (16) -> pool1 -> conv2 (32) -> pool2 -> conv3 (64)
    -> pool3 -> conv4 (128) -> gap -> predictions (10, softmax); 3x3 ReLU convolutions with
    'same' padding. Its last feature maps, hence its CAM, are 3x3 (28 -> 14 -> 7 -> 3).
    Categorical cross-entropy: one-hot labels."""
    return _mnist_cam("mnist_cam1", True, input_shape, n_classes)


def build_mnist_cam2(input_shape=(28, 28, 1), n_classes: int = 10) -> keras.Model:
    """``build_mnist_cam1`` without the pooling layers: the CAM keeps the full 28x28
    resolution (at about 10x the compute per image)."""
    return _mnist_cam("mnist_cam2", False, input_shape, n_classes)


# ----------------------------------------------------------------------------- fingerprints
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def architecture_fingerprint(model: keras.Model) -> str:
    """SHA-256 of what defines a network: its layer graph and configurations, weight
    shapes, loss and optimizer settings. Layer and model names are replaced by their
    position, so Keras's automatic names (``dense_7``) do not change the fingerprint."""
    spec = json.loads(model.to_json())
    spec.pop("compile_config", None)  # taken from get_compile_config() below, with names dropped
    names = {model.name: "<model>"}
    names.update({layer.name: f"<layer{i}>" for i, layer in enumerate(model.layers)})

    def canonical(obj, drop_names=False):
        if isinstance(obj, dict):
            return {k: canonical(v, drop_names) for k, v in obj.items() if not (drop_names and k == "name")}
        if isinstance(obj, list):
            return [canonical(v, drop_names) for v in obj]
        if isinstance(obj, str):
            return names.get(obj, obj)
        return obj

    try:
        compiled = model.get_compile_config()
    except Exception:  # an uncompiled model: its training recipe is whatever fit() is told
        compiled = None
    return _digest({
        "graph": canonical(spec),
        "weights": [list(w.shape) for w in model.weights],
        "compile": canonical(compiled, drop_names=True),  # optimizers are auto-named too (adam_1)
    })


def _array_digest(*arrays) -> dict:
    """Shape, dtype and SHA-256 of the arrays a model is trained on (after preprocessing,
    so a changed scaling or label encoding also changes the cache key)."""
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        out.append({"shape": list(a.shape), "dtype": str(a.dtype),
                    "sha256": hashlib.sha256(a.view(np.uint8).reshape(-1)).hexdigest()})
    return {"arrays": out}


def _fingerprint_of(data_fingerprint):
    if data_fingerprint is None or isinstance(data_fingerprint, (str, int, float)):
        return data_fingerprint
    if hasattr(data_fingerprint, "to_dict"):
        return data_fingerprint.to_dict()
    if isinstance(data_fingerprint, dict):
        return data_fingerprint
    return str(data_fingerprint)


def _versions() -> dict:
    import tensorflow as tf

    return {"tensorflow": tf.__version__.split(".")[0], "keras": keras.__version__.split(".")[0],
            "legacy_keras": config.legacy_keras()}


# ----------------------------------------------------------------------------- training cache
@dataclass
class TrainInfo:
    """What ``train_or_load`` did: ``source`` is "trained" or "cache"."""

    name: str
    source: str
    path: Path
    key: str
    epochs: int
    batch_size: int
    seed: int
    profile: str | None
    history: dict = field(default_factory=dict)
    duration_s: float = 0.0  # this call: training, or loading from the cache
    train_duration_s: float = 0.0  # the original training run (also when loaded)
    created: str = ""

    @property
    def trained(self) -> bool:
        return self.source == "trained"

    @property
    def from_cache(self) -> bool:
        return self.source == "cache"

    def final(self, metric: str) -> float | None:
        """The last epoch's value of a history metric (e.g. "val_accuracy"), or None."""
        values = self.history.get(metric)
        return float(values[-1]) if values else None

    def __str__(self) -> str:
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        what = (f"trained {epochs} (batch {self.batch_size}, seed {self.seed}) in {self.duration_s:.1f} s"
                if self.trained else
                f"loaded from the cache in {self.duration_s:.1f} s (trained {epochs}, batch "
                f"{self.batch_size}, seed {self.seed}, in {self.train_duration_s:.1f} s on {self.created})")
        return f"{self.name}: {what}\n  weights: {self.path}"


def _atomic_write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file, read in 4 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _load_cached(path: Path, meta_path: Path, key: str, model: keras.Model, redo: str = "retraining"):
    """``model`` (freshly built) with the cached weights, or None when the cache entry is
    absent or unusable (then ``model`` may hold partly loaded weights: build a new one).
    The weights file must have the SHA-256 its metadata recorded: one flipped bit is a
    warning naming the file, and the caller trains (converts) again."""
    if not (path.exists() and meta_path.exists()):
        return None, None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            raise ValueError(f"{meta_path} belongs to another recipe")
        if meta.get("sha256") is None:
            raise ValueError(f"{meta_path} records no SHA-256 of the weights (an older cache entry)")
        if (actual := file_sha256(path)) != meta["sha256"]:
            raise ValueError(f"SHA-256 {actual} differs from the {meta['sha256']} recorded in {meta_path.name}: "
                             "the file was damaged or changed after it was written")
        with warnings.catch_warnings():  # the optimizer's slots are not restored: not needed for inference
            warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
            model.load_weights(path)
        return model, meta
    except Exception as exc:  # a damaged file: say so and train again
        warnings.warn(f"cached weights {path} could not be loaded ({type(exc).__name__}: {exc}); {redo}",
                      stacklevel=3)
        return None, None


def train_or_load(name: str, build_fn: Callable[[], keras.Model], x_train, y_train, *, epochs: int,
                  batch_size: int, validation_data=None, profile=None, seed: int = config.DEFAULT_SEED,
                  data_fingerprint=None, verbose: int | str = 2, shuffle: bool = True):
    """Train ``build_fn()`` on (x_train, y_train), or load the weights of an identical run.

    The cache key covers the architecture (``architecture_fingerprint``), the training
    arrays themselves (SHA-256), ``data_fingerprint`` (the dataset's provenance, recorded
    and part of the key), epochs, batch size, seed, the profile's name and the
    TensorFlow/Keras major versions. Weights (``.weights.h5``) and a JSON of history and
    metadata land in ``<cache>/models/`` via temporary files and ``os.replace``, the
    JSON last, so a parallel notebook sees a complete entry or none.

    The seed is set (``config.set_seed``, op determinism on) before building, so two
    trainings with the same inputs give bit-identical weights on the CPU.
    Returns ``(model, TrainInfo)``.
    """
    if not callable(build_fn):
        raise TypeError(f"build_fn must be a function returning a compiled keras.Model, got {build_fn!r}")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs and batch_size must be positive, got epochs={epochs}, batch_size={batch_size}")
    if len(x_train) != len(y_train):
        raise ValueError(f"{name}: {len(x_train)} training images but {len(y_train)} labels")
    profile_name = config.resolve_profile(profile).name if profile is not None else None
    epochs, batch_size, seed = int(epochs), int(batch_size), int(seed)

    config.set_seed(seed)
    model = build_fn()
    if not isinstance(model, keras.Model):
        raise TypeError(f"build_fn for {name!r} returned {type(model).__name__}, not a keras.Model")
    data = _array_digest(x_train, y_train)
    if validation_data is not None:
        data["validation"] = _array_digest(*validation_data[:2])
    recipe = {
        "format": CACHE_FORMAT, "name": name, "architecture": architecture_fingerprint(model),
        "data": data, "data_fingerprint": _fingerprint_of(data_fingerprint), "epochs": epochs,
        "batch_size": batch_size, "seed": seed, "shuffle": bool(shuffle), "profile": profile_name,
        "versions": _versions(),
    }
    key = _digest(recipe)
    folder = config.cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{key[:16]}"
    path, meta_path = folder / f"{stem}.weights.h5", folder / f"{stem}.json"

    start = time.perf_counter()
    cached, meta = _load_cached(path, meta_path, key, model)
    if cached is not None:
        info = TrainInfo(name=name, source="cache", path=path, key=key, epochs=epochs, batch_size=batch_size,
                         seed=seed, profile=profile_name, history=meta.get("history", {}),
                         duration_s=time.perf_counter() - start,
                         train_duration_s=float(meta.get("train_duration_s", 0.0)), created=meta.get("created", ""))
        model = cached
    else:
        if path.exists() or meta_path.exists():  # a failed load may have touched the weights
            config.set_seed(seed)
            model = build_fn()
        history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size,
                            validation_data=validation_data, shuffle=shuffle, verbose=verbose)
        duration = time.perf_counter() - start
        hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        created = time.strftime("%Y-%m-%d %H:%M:%S")
        tmp = folder / f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.weights.h5"
        model.save_weights(tmp)
        digest = file_sha256(tmp)
        os.replace(tmp, path)
        _atomic_write_json(meta_path, {"key": key, "recipe": recipe, "history": hist, "sha256": digest,
                                       "train_duration_s": duration, "created": created})
        info = TrainInfo(name=name, source="trained", path=path, key=key, epochs=epochs, batch_size=batch_size,
                         seed=seed, profile=profile_name, history=hist, duration_s=duration,
                         train_duration_s=duration, created=created)
    config.record_provenance(kind="weights", summary=str(info).splitlines()[0], name=name, source=info.source,
                             path=str(path), key=key, fallback=False,
                             data_fingerprint=recipe["data_fingerprint"])
    return model, info


# ----------------------------------------------------------------------------- pretrained models
class WeightsNotFoundError(FileNotFoundError):
    """No ImageNet weights file could be found or downloaded (and random ones are not allowed)."""


@dataclass(frozen=True)
class _WeightsFile:
    filename: str
    url: str
    file_hash: str  # Keras's own hash: MD5 (32 hex digits) or SHA-256 (64)
    size_mb: int


@dataclass(frozen=True)
class _Application:
    name: str
    build: Callable  # build(weights: str | None, include_top: bool) -> keras.Model
    files: dict  # include_top (bool) -> _WeightsFile
    input_size: tuple[int, int]
    last_conv_layer: str = ""
    preprocess: Callable | None = None  # RGB images in [0, 255] -> the model's input


def _keras_preprocess(module: str) -> Callable:
    def preprocess(images):  # on a float32 copy: keras's preprocess_input works in place on floats
        return getattr(keras.applications, module).preprocess_input(np.array(images, dtype=np.float32))

    preprocess.__name__ = f"{module}_preprocess"
    return preprocess


_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"

# File names, URLs and hashes exactly as keras/src/applications/{vgg16,xception}.py use them.
APPLICATIONS = {
    "vgg16": _Application(
        name="VGG16",
        build=lambda weights, include_top: keras.applications.VGG16(weights=weights, include_top=include_top),
        files={
            True: _WeightsFile("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                               _KERAS_WEIGHTS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                               "64373286793e3c8b2b4e3219cbf3544b", 528),
            False: _WeightsFile("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                _KERAS_WEIGHTS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                "6d6bbae143d832006294945121d1f1fc", 56),
        },
        input_size=(224, 224), last_conv_layer="block5_conv3", preprocess=_keras_preprocess("vgg16"),
    ),
    "xception": _Application(
        name="Xception",
        build=lambda weights, include_top: keras.applications.Xception(weights=weights, include_top=include_top),
        files={
            True: _WeightsFile("xception_weights_tf_dim_ordering_tf_kernels.h5",
                               _KERAS_WEIGHTS + "xception/xception_weights_tf_dim_ordering_tf_kernels.h5",
                               "0a58e3b7378bc2990ea3b43d5981f1f6", 88),
            False: _WeightsFile("xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                _KERAS_WEIGHTS + "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                "b0042744bf5b25fce3cb969f33bebb97", 80),
        },
        input_size=(299, 299), last_conv_layer="block14_sepconv2", preprocess=_keras_preprocess("xception"),
    ),
}


@dataclass
class PretrainedInfo:
    """Where a pretrained model's weights came from. ``fallback``: random weights because
    the ImageNet ones were missing; then ``banner`` says so loudly (print it).
    ``stand_in_for``: the model the lab wanted (e.g. "VGG16") when this real model replaces
    it; ``banner`` then says so plainly. For model-agnostic notebooks: ``preprocess`` (RGB in
    [0, 255] -> model input), ``input_size`` (H, W), ``last_conv_layer`` and ``name``."""

    name: str
    source: str  # LABS_WEIGHTS_DIR, keras-cache, download, file, random, random-fallback, converted, cache
    path: str | None
    fallback: bool = False
    banner: str = ""
    attempts: list = field(default_factory=list)
    duration_s: float = 0.0
    input_size: tuple = (224, 224)
    last_conv_layer: str = ""
    preprocess: Callable | None = field(default=None, repr=False, compare=False)
    stand_in_for: str = ""
    details: dict = field(default_factory=dict)  # e.g. the converted weights' provenance

    @property
    def real_weights(self) -> bool:
        """True unless the weights are random (requested or a fallback)."""
        return not self.fallback and self.source not in ("random", "random-fallback")

    def __str__(self) -> str:
        if self.fallback or self.stand_in_for:
            return self.banner
        if self.source == "random":
            return f"{self.name}: random weights (requested with weights=None), built in {self.duration_s:.1f} s"
        return f"{self.name}: ImageNet weights from {self.source} ({self.path}), built in {self.duration_s:.1f} s"

    def to_dict(self) -> dict:
        """The fields as plain data (``preprocess`` by name), e.g. for provenance records."""
        out = asdict(self)
        out["preprocess"] = getattr(self.preprocess, "__name__", None)
        return out


def _hash_file(path: Path, expected: str) -> str:
    algorithm = hashlib.sha256 if len(expected) == 64 else hashlib.md5
    h = algorithm()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, expected: str) -> tuple[bool, str]:
    """Does ``path`` have Keras's known hash? Hashing 528 MB takes a second or two, so a
    positive answer is remembered per (path, size, mtime) in ``<cache>/verified_weights.json``."""
    stat = path.stat()
    memo_path = config.cache_dir() / "verified_weights.json"
    stamp = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{expected}"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if memo.get(stamp):
        return True, ""
    actual = _hash_file(path, expected)
    if actual != expected:
        return False, f"its hash is {actual}, Keras expects {expected} (incomplete or a different file)"
    memo[stamp] = True
    try:
        _atomic_write_json(memo_path, memo)
    except OSError:
        pass  # the memo only saves time
    return True, ""


def _network_available(host: str = "storage.googleapis.com", timeout: float = 2.0) -> bool:
    """A quick probe, so that an offline machine falls through in milliseconds."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download(spec: _WeightsFile) -> str:
    """Download a weights file into the Keras cache (the one place that touches the
    network; tests replace it). Returns the local path."""
    return keras.utils.get_file(spec.filename, spec.url, file_hash=spec.file_hash, cache_subdir="models",
                                cache_dir=str(config.keras_home()))


def _where_to_put(app: _Application, spec: _WeightsFile) -> str:
    user = config.weights_dir()
    target = f"$LABS_WEIGHTS_DIR ({user})" if user else "a folder named by $LABS_WEIGHTS_DIR (unset now)"
    return (f"put {spec.filename} ({spec.size_mb} MB, hash {spec.file_hash}) into {target} or into "
            f"{config.keras_home() / 'models'}; download it from {spec.url}")


def _find_weights(app: _Application, spec: _WeightsFile, allow_download: bool | None):
    """(path, source, attempts): the first usable weights file, or (None, None, attempts)."""
    attempts = []
    places = []
    if (user := config.weights_dir()) is not None:
        places.append(("LABS_WEIGHTS_DIR", user / spec.filename))
    places.append(("keras-cache", config.keras_home() / "models" / spec.filename))
    for source, path in places:
        if not path.is_file():
            attempts.append((f"{source} {path}", "no such file"))
            continue
        ok, why = _verified(path, spec.file_hash)
        if ok:
            return path, source, attempts
        warnings.warn(f"{path}: {why}; not used", stacklevel=4)
        attempts.append((f"{source} {path}", why))
    if allow_download is False:
        attempts.append((f"download {spec.url}", "skipped (allow_download=False)"))
    elif not _network_available():
        attempts.append((f"download {spec.url}", "no network"))
    else:
        try:
            print(f"{app.name}: downloading {spec.url} ({spec.size_mb} MB) into {config.keras_home() / 'models'}",
                  flush=True)
            return Path(_download(spec)), "download", attempts
        except Exception as exc:  # HTTP error, hash mismatch, interrupted: report it, decide below
            attempts.append((f"download {spec.url}", f"{type(exc).__name__}: {exc}"))
    return None, None, attempts


def _banner(app: _Application, spec: _WeightsFile, attempts) -> str:
    rule = "!" * 100
    tried = "\n".join(f"!!   {place}: {why}" for place, why in attempts)
    return (f"{rule}\n!! RANDOM {app.name} WEIGHTS: the ImageNet weights were not found, so this model is "
            f"UNTRAINED (seeded random).\n!! Its predictions are noise and every explanation below shows "
            f"what an untrained network does,\n!! not what {app.name} looks at. (The smoke profile allows "
            f"this so the lab still runs end to end.)\n!! Tried:\n{tried}\n!! To fix: "
            f"{_where_to_put(app, spec)}\n{rule}")


def _load_pretrained(key: str, weights="auto", profile=None, include_top: bool = True,
                     allow_random: bool | None = None, allow_download: bool | None = None,
                     seed: int = config.DEFAULT_SEED):
    """A keras.applications model with ImageNet weights found offline first; the shared
    logic of ``load_vgg16`` and ``load_xception``."""
    app = APPLICATIONS[key]
    spec = app.files[bool(include_top)]
    start = time.perf_counter()
    about = {"input_size": app.input_size, "last_conv_layer": app.last_conv_layer, "preprocess": app.preprocess}

    if weights is None or weights == "random":
        config.set_seed(seed)
        model = app.build(None, include_top)
        info = PretrainedInfo(app.name, "random", None, duration_s=time.perf_counter() - start, **about)
        config.record_provenance(kind="weights", summary=f"{app.name}: random weights (requested)",
                                 name=app.name, source="random", fallback=False)
        return model, info
    if weights not in ("auto", "imagenet"):  # an explicit weights file
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"{app.name} weights file {path} does not exist; weights= takes "
                                       "'auto', 'imagenet', None (random) or the path of a weights file")
        model = app.build(str(path), include_top)
        info = PretrainedInfo(app.name, "file", str(path), duration_s=time.perf_counter() - start, **about)
        config.record_provenance(kind="weights", summary=str(info), **info.to_dict())
        return model, info

    path, source, attempts = _find_weights(app, spec, allow_download)
    if path is not None:
        model = app.build(str(path), include_top)
        info = PretrainedInfo(app.name, source, str(path), attempts=attempts,
                              duration_s=time.perf_counter() - start, **about)
        config.record_provenance(kind="weights", summary=str(info), **info.to_dict())
        return model, info

    resolved = config.resolve_profile(profile)
    if allow_random is None:
        allow_random = weights == "auto" and resolved.allow_random_weights
    if not allow_random:
        tried = "; ".join(f"{place}: {why}" for place, why in attempts)
        why = (f"the {resolved.name!r} profile needs real weights" if weights == "auto"
               else "weights='imagenet' needs real weights")
        raise WeightsNotFoundError(f"{app.name} ImageNet weights not found and {why}. To fix: "
                                   f"{_where_to_put(app, spec)}. Tried: {tried}")
    config.set_seed(seed)
    model = app.build(None, include_top)
    info = PretrainedInfo(app.name, "random-fallback", None, fallback=True, banner=_banner(app, spec, attempts),
                          attempts=attempts, duration_s=time.perf_counter() - start, **about)
    config.record_provenance(kind="weights", fallback=True, name=app.name, source="random-fallback",
                             summary=f"RANDOM {app.name} weights: ImageNet weights not found "
                                     f"({spec.filename}); predictions and explanations are meaningless")
    return model, info


def load_vgg16(weights="auto", profile=None, include_top: bool = True, allow_random: bool | None = None,
               allow_download: bool | None = None, seed: int = config.DEFAULT_SEED):
    """VGG16 with ImageNet weights, offline first. Returns ``(model, PretrainedInfo)``.

    ``weights``: "auto" (sources below, then the profile decides), "imagenet" (real
    weights or an error), None (seeded random, on purpose) or the path of a weights file.
    Sources: ``$LABS_WEIGHTS_DIR/<Keras's file name>``, ``<keras_home>/models/``, then a
    download with Keras's known hash (only if the network answers; ``allow_download=False``
    never tries). With none: a profile with ``allow_random_weights`` (smoke) gets seeded
    random weights, ``info.fallback`` True and ``info.banner`` to print; otherwise
    ``WeightsNotFoundError`` names the file, the folders and the URL.
    """
    return _load_pretrained("vgg16", weights, profile, include_top, allow_random, allow_download, seed)


def load_xception(weights="auto", profile=None, include_top: bool = True, allow_random: bool | None = None,
                  allow_download: bool | None = None, seed: int = config.DEFAULT_SEED):
    """Xception (299x299 inputs) with ImageNet weights, exactly as ``load_vgg16``.
    For "CAM where the weights exist", pass ``allow_random=False`` and catch
    ``WeightsNotFoundError``."""
    return _load_pretrained("xception", weights, profile, include_top, allow_random, allow_download, seed)
