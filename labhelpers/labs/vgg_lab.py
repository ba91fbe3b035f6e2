"""Small pieces the VGG16 labs (03-05) share.

* the two-submodel Grad-CAM that lab 03 derives by hand: :func:`split_at_layer`,
  :func:`score_gradients`, :func:`gradcam_by_hand` (the Explainer's ``gradcam`` computes the
  same map; tests/test_vgg_labs.py checks that they agree);
* the labs' photos: :func:`lab_images` (your own files or the photos bundled with
  scikit-image, with the ImageNet class each one shows), :func:`crops`,
  :func:`side_by_side`, :func:`vgg16_preprocess`;
* where the cat is in the bundled chelsea photo: :func:`cat_box`, :func:`cat_box_mask`
  (``data/chelsea_cat_box.json``), for asserting that a map's peak lies on it;
* the feature-map layers to draw for any of the labs' CNNs: :func:`feature_layer_indices`;
* saying loudly what random weights mean: :func:`weights_note`;
* timing: :func:`timed`, :func:`timing_table`.

TensorFlow and Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.images import IMAGE_SUFFIXES, resize_image

__all__ = [
    "VGG16_FEATURE_LAYER_INDICES", "IMAGE_SUFFIXES", "LabImages", "conv_layer_names", "split_at_layer",
    "score_gradients", "gradcam_by_hand", "lab_images", "crops", "side_by_side", "vgg16_preprocess",
    "feature_layer_indices", "cat_box", "cat_box_mask", "weights_note", "timed", "timing_table",
]

# model.layers indices of the last convolution of each VGG16 block (block1_conv2 ... block5_conv3)
VGG16_FEATURE_LAYER_INDICES = (2, 5, 9, 13, 17)


# ----------------------------------------------------------------------------- Grad-CAM by hand
def _keras():
    from ..kerasapi import keras

    return keras


def conv_layer_names(model) -> list[str]:
    """Names of the model's convolution layers with a 4-D (batch, h, w, channels) output."""
    from ..modifiers import CONV_TYPES

    return [layer.name for layer in model.layers
            if isinstance(layer, CONV_TYPES) and len(layer.output.shape) == 4]


def feature_layer_indices(model) -> list[int]:
    """``model.layers`` indices of the last feature-map layer at each spatial resolution, input to
    output (pooling layers left out): what the labs draw "block by block".

    VGG16: the last convolution of each block, ``VGG16_FEATURE_LAYER_INDICES`` (block1_conv2 ...
    block5_conv3). EfficientNet-Lite0: the ReLU6 output that feeds each stride-2 depthwise
    convolution (``block2a_expand_activation`` ... ``block6a_expand_activation``) and
    ``top_activation``. Any model with 4-D feature maps gets the same rule.
    """
    keras = _keras()
    pooling = tuple(getattr(keras.layers, n) for n in ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                                                        "GlobalMaxPooling2D") if hasattr(keras.layers, n))
    last = {}
    for i, layer in enumerate(model.layers):
        if isinstance(layer, (keras.layers.InputLayer, *pooling)):
            continue
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4:
            last[tuple(shape[1:3])] = i
    return sorted(last.values())


def _layer_or_error(model, layer_name: str, model_name: str):
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        convs = conv_layer_names(model)
        close = difflib.get_close_matches(str(layer_name), names, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"model {model_name!r} has no layer named {layer_name!r}.{hint} "
                         f"Its convolutional layers: {convs}")
    return model.get_layer(layer_name)


def split_at_layer(model, layer_name: str = "block5_conv3", linear_head: bool = False):
    """Cut a model after ``layer_name`` into two models that share its weights:

    * ``last_conv_layer_model``: the model's input -> the layer's feature maps A (N, h, w, K);
    * ``classifier_model``: A -> the class scores (VGG16: block5_pool, flatten, fc1, fc2, predictions).

    ``classifier_model(last_conv_layer_model(x))`` equals ``model(x)``. linear_head=True cuts the
    model with its softmax replaced by linear (as ``labhelpers.ReplaceToLinear``), so the
    classifier returns logits. The caller's model is not changed: both halves are cut from a
    view of it (``labhelpers.modifiers.rebuild``) that shares its weight variables.
    """
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"split_at_layer needs a keras.Model, got {type(model).__name__}")
    from ..modifiers import rebuild

    # cut a view of the model (same weight variables, its own graph; a Sequential becomes
    # Functional, nested models are inlined): building the classifier half calls the layers
    # after the cut again, and that must not touch the caller's layers
    view = rebuild(model, linear_head=linear_head, suffix="linear" if linear_head else "view").model
    layer = _layer_or_error(view, layer_name, model.name)
    name, model = model.name, view
    features = layer.output
    if len(features.shape) != 4:
        raise ValueError(f"layer {layer_name!r} outputs shape {tuple(features.shape)}, not feature maps "
                         f"(batch, h, w, channels); convolutional layers: {conv_layer_names(model)}")
    if layer is model.layers[-1]:
        raise ValueError(f"layer {layer_name!r} is the output layer of {name!r}: nothing is left "
                         "for the classifier model")
    last_conv_layer_model = keras.Model(model.inputs[0], features, name="last_conv_layer_model")
    try:  # Keras 3: a Functional model may start at an intermediate tensor of another one
        classifier_model = keras.Model(features, model.outputs[0], name="classifier_model")
    except ValueError as exc:
        raise ValueError(f"cannot cut model {name!r} at {layer_name!r}: the layers after it also "
                         f"need tensors from before it (a skip connection crosses the cut). ({exc})") from None
    return last_conv_layer_model, classifier_model


def score_gradients(last_conv_layer_model, classifier_model, images, class_index=None):
    """The lab's GradientTape step. Returns ``(features, gradients, scores, class_index)`` as NumPy:
    the feature maps A (N, h, w, K), d score / d A (same shape), the classifier's outputs (N, classes)
    and the class explained per image (None: the top prediction; an int or one int per image).
    The score is what ``classifier_model`` outputs: probabilities after a softmax, or logits
    when the model was split with ``linear_head=True``."""
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    if x.shape.rank == 3:
        x = x[None]
    if x.shape[0] == 0:
        raise ValueError("empty image batch: pass at least one image")
    features = last_conv_layer_model(x, training=False)
    with tf.GradientTape() as tape:
        tape.watch(features)  # the feature maps are the variable we differentiate against
        scores = classifier_model(features, training=False)
        if class_index is None:
            chosen = tf.argmax(scores, axis=-1, output_type=tf.int32)
        else:
            chosen = tf.constant(np.broadcast_to(np.asarray(class_index, dtype=np.int32), (x.shape[0],)))
            n_classes = int(scores.shape[-1])
            bad = sorted({int(c) for c in chosen.numpy() if not 0 <= int(c) < n_classes})
            if bad:
                raise ValueError(f"class index {bad} out of range: the model has {n_classes} classes "
                                 f"(0..{n_classes - 1})")
        class_score = tf.gather(scores, chosen, axis=1, batch_dims=1)  # one score per image
    grads = tape.gradient(class_score, features)
    return features.numpy(), grads.numpy(), scores.numpy(), chosen.numpy()


def gradcam_by_hand(last_conv_layer_model, classifier_model, images, class_index=None,
                    normalize: bool = True):
    """Grad-CAM from the two halves: alpha_k = spatial mean of d score / d A_k, heatmap =
    ReLU(sum_k alpha_k A_k) at the layer's resolution (14 x 14 at block5_conv3).
    normalize=True divides by the maximum, as the lab does (an all-zero map stays zero).
    Returns ``(heatmaps (N, h, w), class_index (N,))``."""
    features, grads, _, chosen = score_gradients(last_conv_layer_model, classifier_model, images,
                                                 class_index)
    alphas = grads.mean(axis=(1, 2))  # (N, K): how much channel k matters for the class
    heatmaps = np.maximum(np.einsum("nhwk,nk->nhw", features, alphas), 0.0)
    if normalize:
        peak = heatmaps.max(axis=(1, 2), keepdims=True)
        heatmaps = np.divide(heatmaps, peak, out=np.zeros_like(heatmaps), where=peak > 0)
    return heatmaps.astype(np.float32), chosen


# ----------------------------------------------------------------------------- the labs' photos
@dataclass
class LabImages:
    """A batch of RGB photos (uint8 (N, H, W, 3)) with a name and, where known, the ImageNet
    class each shows (None for your own photos unless you name it)."""

    images: np.ndarray
    names: list[str]
    class_ids: list
    source: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def __str__(self) -> str:
        from ..data import imagenet_class_name

        rows = [f"{len(self)} image(s) from {self.source}"]
        for name, cid in zip(self.names, self.class_ids, strict=True):
            rows.append(f"  {name}: " + (f"{cid} {imagenet_class_name(cid)}" if cid is not None else "class not given"))
        return "\n".join(rows + [f"  note: {n}" for n in self.notes])


def _image_files(folder: Path) -> list[Path]:
    """The photos of the ``image_dir`` parameter, with errors that name the parameter."""
    from ..data import _image_files_in

    if not folder.exists():
        raise FileNotFoundError(f"image_dir {str(folder)!r} does not exist; give a folder of photos "
                                f"({', '.join(IMAGE_SUFFIXES)}) or \"\" for the bundled photos")
    if not folder.is_dir():
        raise NotADirectoryError(f"image_dir {str(folder)!r} is a file, not a folder; for one photo use image_path")
    try:
        return _image_files_in(folder)
    except ValueError as exc:
        raise ValueError(f"image_dir: {exc}") from None


def _class_ids(class_names, n: int) -> list:
    from ..data import imagenet_class_id

    if class_names in (None, "", []):
        return [None] * n
    if isinstance(class_names, (str, int, np.integer)):
        names = [c.strip() for c in str(class_names).split(",")] if isinstance(class_names, str) else [class_names]
    else:
        names = list(class_names)
    if len(names) == 1:
        names = names * n
    if len(names) != n:
        raise ValueError(f"got {len(names)} class names for {n} images: give one for all or one per image")
    return [imagenet_class_id(c) for c in names]


def lab_images(image_dir: str = "", image_path: str = "", names=None, class_names=None, limit=None,
               size=(224, 224)) -> LabImages:
    """The photos a lab explains.

    * ``image_path``: one photo of yours; ``image_dir``: the image files in a folder (sorted by
      name, at most ``limit``);
    * neither: the photos bundled with scikit-image (``names``, e.g. ``["chelsea", "coffee"]``;
      None: all of them), each with the ImageNet class it shows.

    ``class_names``: ImageNet classes for your photos (one for all, one per photo, or a
    comma-separated string), resolved with ``labhelpers.imagenet_class_id`` (close names are
    suggested when one is unknown). Images are resized to ``size`` (no crop, as the labs'
    ``load_img(target_size=...)``).
    """
    from ..data import load_images, sample_images

    if image_path or image_dir:
        files = [Path(image_path)] if image_path else _image_files(Path(image_dir))
        if limit is not None:
            files = files[: int(limit)]
        images = load_images(files, size=size)
        return LabImages(images, [f.stem for f in files], _class_ids(class_names, len(files)),
                         f"your files ({image_path or image_dir})")
    if names is not None and len(list(names)) == 0:
        raise ValueError("no sample photos named: pass names=None for all of them or a non-empty list")
    records = sample_images(names, size=size)
    if limit is not None:
        records = records[: int(limit)]
    ids = [r.class_id for r in records] if class_names in (None, "", []) else _class_ids(class_names, len(records))
    return LabImages(np.stack([r.image for r in records]), [r.name for r in records], ids,
                     "photos bundled with scikit-image", [f"{r.name}: {r.note}" for r in records])


def _center_crop(image, aspect: float) -> np.ndarray:
    """The largest centred region of ``image`` with width / height == aspect."""
    h, w = image.shape[:2]
    if w / h > aspect:
        new_w = max(1, int(round(h * aspect)))
        left = (w - new_w) // 2
        return image[:, left:left + new_w]
    new_h = max(1, int(round(w / aspect)))
    top = (h - new_h) // 2
    return image[top:top + new_h]


def crops(image, boxes, size=(224, 224)) -> np.ndarray:
    """Regions of one photo as a batch: ``boxes`` are (top, left, height, width) as fractions of
    the image (e.g. (0, 0, 1, 1) is the whole photo); each crop is resized to ``size``.
    A box with ``flip=True`` as fifth entry is mirrored left-right."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    out = []
    for box in boxes:
        top, left, height, width = (float(v) for v in box[:4])
        if not (0 <= top < 1 and 0 <= left < 1 and 0 < height <= 1 - top + 1e-9 and 0 < width <= 1 - left + 1e-9):
            raise ValueError(f"crop box {box} is not inside the image: (top, left, height, width) are "
                             "fractions with top + height <= 1 and left + width <= 1")
        y0, x0 = int(round(top * h)), int(round(left * w))
        region = image[y0:y0 + max(1, int(round(height * h))), x0:x0 + max(1, int(round(width * w)))]
        if len(box) > 4 and box[4]:
            region = region[:, ::-1]
        out.append(resize_image(np.asarray(region, dtype=np.uint8), size))
    return np.stack(out)


def side_by_side(left, right, size=(224, 224)) -> np.ndarray:
    """Two photos in one image of ``size``: the centre of each, cropped to half the width
    (no squashing), left and right. Used where a lab wants one photo with two objects."""
    height, width = size
    half = width // 2
    parts = [resize_image(_center_crop(np.asarray(im, dtype=np.uint8), half / height), (height, w))
             for im, w in ((left, half), (right, width - half))]
    return np.concatenate(parts, axis=1)


def vgg16_preprocess(images) -> np.ndarray:
    """``keras.applications.vgg16.preprocess_input`` on a float32 copy (it works in place on
    float arrays): RGB -> BGR, minus the ImageNet channel means, no scaling."""
    keras = _keras()

    return keras.applications.vgg16.preprocess_input(np.array(images, dtype=np.float32, copy=True))


CAT_BOX_FILE = "chelsea_cat_box.json"


def cat_box() -> dict:
    """The box around the cat's face in ``skimage.data.chelsea()`` (original 451 x 300 pixels):
    ``{"x0", "y0", "x1", "y1"}`` (x1, y1 exclusive), from ``data/chelsea_cat_box.json`` (drawn by
    hand once; provenance in ``data/README.md``)."""
    import json

    from ..config import project_data_dir

    record = json.loads((project_data_dir() / CAT_BOX_FILE).read_text(encoding="utf-8"))
    return {**record["box"], "width": record["image_size"]["width"], "height": record["image_size"]["height"]}


def cat_box_mask(size=(224, 224)) -> np.ndarray:
    """Boolean (H, W) mask of :func:`cat_box` in the photo as the labs feed it: the whole photo
    resized to ``size`` = (H, W) without a crop (``lab_images``, ``sample_images(size=...)``).
    With ``metrics.pointing_game(maps, masks)``: does a map's peak lie on the cat's face?"""
    box = cat_box()
    height, width = (int(v) for v in size)
    sx, sy = width / box["width"], height / box["height"]
    mask = np.zeros((height, width), dtype=bool)
    mask[int(np.floor(box["y0"] * sy)):int(np.ceil(box["y1"] * sy)),
         int(np.floor(box["x0"] * sx)):int(np.ceil(box["x1"] * sx))] = True
    return mask


# ----------------------------------------------------------------------------- honesty and timing
def weights_note(info) -> str:
    """One line to print next to a figure: what the model's weights make of it."""
    if getattr(info, "fallback", False) or getattr(info, "source", "") in ("random", "random-fallback"):
        return (f"!! RANDOM {getattr(info, 'name', 'model')} WEIGHTS: this figure shows an UNTRAINED network; "
                "it says nothing about the class. !!")
    stand_in = getattr(info, "stand_in_for", "")
    return (f"{getattr(info, 'name', 'model')} with ImageNet weights ({getattr(info, 'source', '?')})"
            + (f", standing in for the lab's {stand_in}." if stand_in else "."))


def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def timing_table(rows) -> str:
    """A plain-text table of ``(method, seconds[, note])`` rows."""
    rows = [tuple(r) + ("",) * (3 - len(r)) for r in rows]
    width = max([len("method")] + [len(str(r[0])) for r in rows])
    lines = [f"{'method':<{width}}  {'seconds':>8}  note", "-" * (width + 24)]
    lines += [f"{str(m):<{width}}  {float(s):8.2f}  {n}" for m, s, n in rows]
    return "\n".join(lines)
