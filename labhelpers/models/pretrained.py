"""Pretrained ImageNet models that work offline: ``load_vgg16`` / ``load_xception`` take Keras's weights
files from ``$LABS_WEIGHTS_DIR``, the Keras cache, or a download (Keras's known hash); else (smoke profile
only) seeded random weights with a loud banner, or (full profile) ``WeightsNotFoundError`` that says where
to put the file. ``PretrainedInfo`` says where any pretrained model's weights came from.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import config
from ..kerasapi import keras
from .cache import _atomic_write_json


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
