"""In-graph pieces shared by the compiled steps, and the search for a model's layers.

* :func:`resize` and :func:`normalize` are :mod:`labhelpers.maps`' two formulas as TensorFlow ops,
  so a whole method (forward, backward, map, resize, min-max) is one compiled step;
* :func:`score` picks each image's class logit (a class of ``-1``: the predicted class, picked
  inside the step from the logits it computes anyway); :func:`layer_gradients` takes its gradient to a
  layer's feature maps (and the pixels);
* :func:`find_call` & co. find a layer's call in a rebuilt graph with errors that list the
  valid names; :func:`cam_structure` checks CAM's GlobalAveragePooling2D -> Dense head.
"""

from __future__ import annotations

import difflib

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.eager import context as tf_context

from ..kerasapi import keras
from ..maps import EPSILON
from ..modifiers import CONV_TYPES

GRADIENT_RULES = ("vanilla", "guided", "rectified")
PREDICTED = -1  # a class of -1 inside a compiled step: the image's predicted class


def compiled(fn, input_signature):
    """``fn`` as a ``tf.function`` with a fixed signature and without AutoGraph: the steps have no
    tensor-dependent Python control flow (feature visualisation's loop is a ``tf.while_loop``), and
    skipping the conversion shortens every first call's trace.

    A fixed signature means one trace per step and image shape. TensorFlow counts traces per source
    function, across every step made from it, so five models explained in a row (five contexts, one
    trace each) would print its "5 out of the last 5 calls ... triggered tf.function retracing"
    advice, which does not apply here: that warning is switched off for these steps.

    The steps run without Grappler's graph rewrites (:class:`_WithoutGrappler`): on the course's 2-core
    CPU they made a first call 0.2-0.45 s slower on EfficientNet-Lite0 and no later call faster, on Lite0
    or VGG16 (``bench/bench_grappler.py``, bench/README.md)."""
    step = tf.function(fn, input_signature=input_signature, autograph=False)
    if hasattr(step, "_omit_frequent_tracing_warning"):  # TensorFlow's own switch (its SavedModel loader sets it)
        step._omit_frequent_tracing_warning = True
    return _WithoutGrappler(step)


GRAPPLER = False  # the steps' graph rewrites; bench/bench_grappler.py turns them on to compare


class _WithoutGrappler:
    """A compiled step whose graph TensorFlow runs without Grappler's rewrites. TensorFlow reads the
    rewriter's settings from the call site's ``FunctionCallOptions`` when a concrete function first
    runs; they are set for this call only, so nothing else in the process changes."""

    def __init__(self, step):
        self._step = step

    def __getattr__(self, name):
        return getattr(self._step, name)

    _options: dict = {}  # the process's call options -> the same without Grappler

    def __call__(self, *args, **kwargs):
        if GRAPPLER:
            return self._step(*args, **kwargs)
        ctx = tf_context.context()
        before = ctx.function_call_options
        key = (before.executor_type, before.config_proto_serialized)
        if key not in self._options:
            config = config_pb2.ConfigProto()
            if before.config_proto_serialized:
                config.ParseFromString(before.config_proto_serialized)
            config.graph_options.rewrite_options.disable_meta_optimizer = True
            self._options[key] = tf_context.FunctionCallOptions(executor_type=before.executor_type,
                                                                config_proto=config)
        ctx.function_call_options = self._options[key]
        try:
            return self._step(*args, **kwargs)
        finally:
            ctx.function_call_options = before


def resize(maps, size):
    """(N, h, w) tensor -> (N, H, W): bilinear with aligned corners, which is what
    tf-keras-vis's ``scipy.ndimage.zoom(order=1)`` computes (equal within 1e-6)."""
    size = [int(size[0]), int(size[1])]
    if list(maps.shape[1:3]) == size:
        return maps
    return tf.raw_ops.ResizeBilinear(images=maps[..., None], size=size, align_corners=True,
                                     half_pixel_centers=False)[..., 0]


def normalize(maps):
    """Per-image min-max inside a graph (the formula of :func:`labhelpers.maps.normalize_maps`)."""
    axes = list(range(1, len(maps.shape)))
    low = tf.reduce_min(maps, axis=axes, keepdims=True)
    high = tf.reduce_max(maps, axis=axes, keepdims=True)
    return (maps - low) / (high - low + EPSILON)


def score(logits, classes):
    """The logit of each image's class; a class of ``PREDICTED`` (-1) means the predicted class."""
    logits = tf.cast(logits, tf.float32)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.gather(logits, tf.where(classes < 0, predicted, classes), axis=1, batch_dims=1)


def layer_gradients(model, images, classes, layer_name: str, wrt_images: bool = False):
    """Inside a step, for a (feature maps, logits) model: the feature maps A and dS/dA in float32, S being each
    image's class score, and with ``wrt_images`` also dS/d(images), from the same backward pass."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(images)
        feats, logits = model(images, training=False)
        logit = score(logits, classes)
    grads = tape.gradient(logit, [feats, images] if wrt_images else [feats])
    if grads[0] is None:
        raise ValueError(f"layer {layer_name!r} is not connected to the model's output")
    return (tf.cast(feats, tf.float32), *(tf.cast(grad, tf.float32) for grad in grads))


def check_rule(rule):
    if rule not in GRADIENT_RULES:
        raise ValueError(f"unknown rule {rule!r}; valid rules: {list(GRADIENT_RULES)}")


# ---------------------------------------------------------------------- finding layers
def activation_layer_types():
    names = ("ReLU", "LeakyReLU", "Activation", "ELU", "PReLU")
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


def passthrough_types():
    """Layers that are the identity at inference (allowed between GAP and Dense for CAM)."""
    names = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
             "ActivityRegularization", "Identity", "Flatten")
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


def rank(call) -> int:
    return len(call.outputs[0].shape) if call.outputs else 0


def consumers(graph, call) -> list:
    out = call.outputs[0]
    return [c for c in graph.calls if any(t is out for t in c.inputs)]


def ancestors(graph, call) -> list:
    """Every call whose output reaches ``call``'s inputs (through any number of layers)."""
    found, frontier = [], [call]
    while frontier:
        inputs = frontier.pop().inputs
        for other in graph.calls:
            if other not in found and any(o is t for o in other.outputs for t in inputs):
                found.append(other)
                frontier.append(other)
    return found


def last_conv_call(graph, model_name: str):
    convs = [c for c in graph.calls if isinstance(c.layer, CONV_TYPES) and rank(c) == 4]
    if not convs:
        raise ValueError(f"model {model_name!r} has no convolutional layer with a 4-D output; pass layer= explicitly")
    return convs[-1]


def default_call(graph, model_name: str):
    """The last convolution, or the activation right after it (through BatchNorm) if there is one."""
    chosen = current = last_conv_call(graph, model_name)
    follow = (keras.layers.BatchNormalization,) + activation_layer_types()
    while True:
        after = consumers(graph, current)
        if len(after) != 1 or not isinstance(after[0].layer, follow) or rank(after[0]) != 4:
            return chosen
        current = after[0]
        if isinstance(current.layer, activation_layer_types()):
            chosen = current


def find_call(model, graph, spec, need_4d: bool):
    """The call (in ``graph``, a rebuild of ``model``) of the layer that ``spec`` names: a name,
    a layer object, an index into ``model.layers`` or None (the default layer); clear errors."""
    calls = [c for c in graph.calls if not isinstance(c.layer, keras.Model)] + \
            [c for c in graph.calls if isinstance(c.layer, keras.Model)]
    conv_names = [c.layer.name for c in calls if isinstance(c.layer, CONV_TYPES) and rank(c) == 4]
    if spec is None:
        return default_call(graph, model.name)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        n = len(model.layers)
        if not -n <= int(spec) < n:
            raise IndexError(f"layer index {spec} out of range: model {model.name!r} has {n} "
                             f"layers (indices 0..{n - 1})")
        spec = model.layers[int(spec)]
    if isinstance(spec, str):
        matches = [c for c in calls if c.layer.name == spec]
        if not matches:
            names = [c.layer.name for c in calls]
            close = difflib.get_close_matches(spec, names, n=3)
            hint = f" Did you mean {close}?" if close else ""
            valid = conv_names if need_4d else names
            kind = "convolutional layers" if need_4d else "layers"
            raise ValueError(f"model {model.name!r} has no layer named {spec!r}.{hint} Valid {kind}: {valid}")
    else:
        matches = [c for c in calls if c.layer is spec or c.op is spec]
        if not matches:
            raise ValueError(f"layer {getattr(spec, 'name', spec)!r} is not part of model "
                             f"{model.name!r}; convolutional layers: {conv_names}")
    call = matches[-1]
    if need_4d and rank(call) != 4:
        raise ValueError(
            f"layer {call.layer.name!r} outputs shape {tuple(call.outputs[0].shape)}; this method needs "
            f"a 4-D (batch, h, w, channels) feature map. Convolutional layers: {conv_names}"
        )
    return call


def cam_structure(graph, model_name: str):
    """(GAP call, Dense layer) of a GlobalAveragePooling2D -> Dense head, or a clear error."""
    gaps = [c for c in graph.calls if isinstance(c.layer, keras.layers.GlobalAveragePooling2D)]
    advice = ("CAM does not apply to model {!r}: {}. CAM needs the features to go through "
              "GlobalAveragePooling2D straight into the output Dense layer; use gradcam() instead, "
              "which works for any CNN (and equals CAM on such models).")
    if not gaps:
        raise ValueError(advice.format(model_name, "it has no GlobalAveragePooling2D layer"))
    gap = gaps[-1]
    if getattr(gap.layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(advice.format(model_name, "its pooling is channels_first"))
    if not any(isinstance(c.layer, CONV_TYPES) for c in ancestors(graph, gap)):
        raise ValueError(advice.format(
            model_name, f"no convolutional layer comes before its GlobalAveragePooling2D "
            f"{gap.layer.name!r}, so there are no feature maps to weight"))
    current = gap
    while True:
        after = consumers(graph, current)
        if len(after) != 1:
            raise ValueError(advice.format(model_name, f"layer {current.layer.name!r} feeds {len(after)} layers"))
        current = after[0]
        if isinstance(current.layer, keras.layers.Dense):
            break
        if not isinstance(current.layer, passthrough_types()):
            raise ValueError(advice.format(
                model_name, f"GlobalAveragePooling2D is followed by {current.layer.name!r} "
                f"({type(current.layer).__name__}), not by the output Dense layer"))
    dense_call = current
    while current.outputs[0] is not graph.output:  # only activations may follow
        after = consumers(graph, current)
        ok = len(after) == 1 and isinstance(
            after[0].layer, (keras.layers.Activation, keras.layers.Softmax, keras.layers.Identity))
        if not ok:
            raise ValueError(advice.format(model_name, f"Dense layer {dense_call.layer.name!r} is not the output layer"))
        current = after[0]
    return gap, dense_call.layer
