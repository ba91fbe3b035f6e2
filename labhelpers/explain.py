"""One implementation of each explanation method: feature maps, CAM, saliency
(vanilla / guided / rectified, SmoothGrad), Grad-CAM (+ rules), Grad-CAM++,
Score-CAM (and Faster Score-CAM), LayerCAM.

    ex = Explainer(model)                       # never changes `model`
    ex.saliency(images, classes)                # (N, H, W) in [0, 1]
    ex.gradcam(images, classes, layer=None)     # (N, H, W) in [0, 1]

Conventions (those of tf-keras-vis 0.8.7, so results agree with it):

* the score of class ``c`` is the pre-softmax logit, from ``ex.model_linear``
  (the model with its output activation replaced by linear, built once);
* saliency: absolute gradient, max over channels, per-image min-max;
* CAMs: computed at the layer's resolution, ReLU, resized to the input size by
  bilinear interpolation with aligned corners (what tf-keras-vis's
  ``scipy.ndimage.zoom(order=1)`` computes, here inside the compiled step), per-image
  min-max ``(x - min) / (max - min + 1e-7)``; ``upsample=False`` keeps the layer's
  resolution (the raw 14 x 14 / 7 x 7 heatmap), ``normalize=False`` the raw values;
* every gradient method is one compiled ``tf.function`` per image shape (forward,
  backward, map, resize, normalisation), with the batch axis left free, so calls with
  other batch sizes or classes never retrace;
* ``classes``: None (the predicted class), an int, one int per image, or class
  names (``class_names=`` given to the Explainer, else ImageNet names resolved by
  ``labhelpers.data.imagenet_class_id``);
* ``layer``: a name, a layer object or an index into ``model.layers``; default: the
  last convolution (or the activation right after it, through BatchNorm);
* images are used as given: apply the model's preprocessing first.

This module loads no data; the functional helpers ``feature_maps``,
``class_activation_map`` and ``gradcam`` are thin wrappers over a cached Explainer.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict

import numpy as np
import tensorflow as tf

from . import modifiers
from .kerasapi import keras
from .modifiers import CONV_TYPES

EPSILON = 1e-7  # keras.backend.epsilon(), as tf-keras-vis's normalize() uses
GRADIENT_RULES = ("vanilla", "guided", "rectified")


def normalize_maps(maps) -> np.ndarray:
    """Per-image min-max to [0, 1] (tf-keras-vis's ``normalize``)."""
    maps = np.asarray(maps, dtype=np.float32)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    high = maps.max(axis=axes, keepdims=True)
    return ((maps - low) / (high - low + EPSILON)).astype(np.float32)


def _resize(maps, size):
    """(N, h, w) tensor -> (N, H, W): bilinear with aligned corners, which is what
    tf-keras-vis's ``scipy.ndimage.zoom(order=1)`` computes (equal within 1e-6)."""
    size = [int(size[0]), int(size[1])]
    if list(maps.shape[1:3]) == size:
        return maps
    return tf.raw_ops.ResizeBilinear(images=maps[..., None], size=size, align_corners=True,
                                     half_pixel_centers=False)[..., 0]


def _normalize(maps):
    """Per-image min-max inside a graph (the same formula as :func:`normalize_maps`)."""
    axes = list(range(1, len(maps.shape)))
    low = tf.reduce_min(maps, axis=axes, keepdims=True)
    high = tf.reduce_max(maps, axis=axes, keepdims=True)
    return (maps - low) / (high - low + EPSILON)


def resize_maps(maps, size) -> np.ndarray:
    """Resize (N, h, w) maps to (N, H, W) as tf-keras-vis does (bilinear, corners aligned)."""
    return _resize(tf.constant(np.asarray(maps, dtype=np.float32)), size).numpy()


def _score(logits, classes):
    """The logit of each image's class; a class of -1 means the predicted class."""
    logits = tf.cast(logits, tf.float32)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.gather(logits, tf.where(classes < 0, predicted, classes), axis=1, batch_dims=1)


def _cam_from_gradients(kind, feats, grads):
    """Grad-CAM, Grad-CAM++ or LayerCAM (N, h, w) from A and d score / d A (N, h, w, K)."""
    if kind == "gradcam":
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(feats * weights, axis=-1))
    if kind == "layercam":
        return tf.nn.relu(tf.reduce_sum(tf.nn.relu(grads) * feats, axis=-1))
    # Grad-CAM++ as tf-keras-vis computes it, without its exp(score) factor (see gradcam_plus_plus)
    second, third = grads ** 2, grads ** 3
    global_sum = tf.reduce_sum(feats, axis=(1, 2), keepdims=True)
    denominator = 2.0 * second + third * global_sum
    alphas = second / (denominator + tf.cast(second == 0.0, second.dtype))
    norm = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
    alphas = alphas / (norm + tf.cast(norm == 0.0, norm.dtype))
    weights = tf.reduce_sum(tf.nn.relu(grads) * alphas, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * feats, axis=-1))


def _activation_layer_types():
    names = ("ReLU", "LeakyReLU", "Activation", "ELU", "PReLU")
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


def _passthrough_types():
    """Layers that are the identity at inference (allowed between GAP and Dense for CAM)."""
    names = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
             "ActivityRegularization", "Identity", "Flatten")
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


def _rank(call) -> int:
    return len(call.outputs[0].shape) if call.outputs else 0


def _is_same(a, b) -> bool:
    return a is b


class Explainer:
    """Explanations for one Keras image classifier (single input ``(N, H, W, C)``,
    single output ``(N, n_classes)``).

    The model is never changed: the linear-head model and its guided / rectified
    variants are rebuilt once each (lazily) from views of its layers and share its
    weight variables. Gradient steps are ``tf.function``s with a fixed input
    signature per image shape, so repeated calls do not retrace.

    batch_size: images per compiled step: input images, SmoothGrad's noisy copies,
    Score-CAM's masked images. The default 8 keeps host memory low on CPU (each
    image of a VGG16 backward pass holds ~45 MB of activations: 32 at once add
    1.4 GB; 8 stayed within 3% of loading VGG16 and predicting); raise it on a GPU.
    class_names: optional list of this model's class names, so ``classes`` may be
    given by name (otherwise names are ImageNet names).
    """

    def __init__(self, model, batch_size: int = 8, class_names=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"Explainer needs a keras.Model, got {type(model).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = int(batch_size)
        self.class_names = list(class_names) if class_names is not None else None
        self._graphs: dict = {}
        self._models: dict = {}
        self._functions: dict = {}
        self._n_layers = len(model.layers)
        if modifiers._model_inputs(model) is not None:
            self._check_model()

    # ------------------------------------------------------------------ model views
    @property
    def model_linear(self):
        """The model with its output activation replaced by linear (logits out);
        shares the original's weights. Built once."""
        return self._graph("vanilla").model

    @property
    def input_shape(self) -> tuple:
        """``(H, W, C)`` of one image (entries may be None)."""
        shape = modifiers.model_input_shape(self.model)
        if shape is None:
            raise ValueError(f"model {self.model.name!r} has no defined input yet; pass images first")
        return shape

    @property
    def n_classes(self) -> int:
        return int(self.model.outputs[0].shape[-1])

    def _check_model(self):
        inputs = modifiers._model_inputs(self.model)
        if len(inputs) != 1 or len(self.model.outputs) != 1:
            raise ValueError(
                f"model {self.model.name!r} has {len(inputs)} inputs and {len(self.model.outputs)} "
                "outputs; the Explainer handles single-input, single-output image classifiers"
            )
        if len(inputs[0].shape) != 4:
            raise ValueError(
                f"model {self.model.name!r} takes inputs of shape {tuple(inputs[0].shape)}; the Explainer "
                "needs image inputs (batch, height, width, channels)"
            )
        if len(self.model.outputs[0].shape) != 2:
            raise ValueError(
                f"model {self.model.name!r} outputs shape {tuple(self.model.outputs[0].shape)}; "
                "the Explainer needs class scores of shape (batch, n_classes)"
            )

    def _graph(self, rule):
        """Linear-head rebuild for a gradient rule; "plain" is the unchanged model."""
        if rule not in self._graphs:
            if rule == "plain":
                self._graphs[rule] = modifiers.rebuild(self.model, suffix="plain")
            else:
                self._graphs[rule] = modifiers.rebuild(
                    self.model, relu_rule=None if rule == "vanilla" else rule, linear_head=True,
                    suffix="linear" if rule == "vanilla" else f"{rule}_linear")
        return self._graphs[rule]

    # ------------------------------------------------------------------ inputs
    def _prepare(self, images) -> np.ndarray:
        """Images as a float32 batch (N, H, W, C) that fits the model, or a clear error."""
        if tf.is_tensor(images):
            images = images.numpy()
        try:
            x = np.asarray(images, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"images must be a numeric array (N, H, W, C) or (H, W, C): {exc}") from None
        if x.size == 0:
            raise ValueError(f"empty image batch (shape {x.shape}): pass at least one image")
        if modifiers._model_inputs(self.model) is None:  # a Sequential never called: build it
            modifiers.ensure_built(self.model, x.shape[1:] if x.ndim == 4 else x.shape)
            self._check_model()
        expected = self.input_shape

        def fits(shape, want):
            return len(shape) == len(want) and all(w is None or s == w for s, w in zip(shape, want, strict=True))

        if fits(x.shape, expected):
            x = x[None]
        elif x.ndim == 4 and fits(x.shape[1:], expected):
            pass
        elif expected[-1] == 1 and fits(x.shape, expected[:-1]):
            x = x[None, ..., None]
        elif expected[-1] == 1 and x.ndim == 3 and fits(x.shape[1:], expected[:-1]):
            x = x[..., None]
        else:
            want = "(" + ", ".join("any" if d is None else str(d) for d in expected) + ")"
            gray = " or grayscale (H, W) / (N, H, W)" if expected[-1] == 1 else ""
            raise ValueError(
                f"images of shape {x.shape} do not fit model {self.model.name!r}, which takes images of "
                f"shape {want}: pass one image (H, W, C) or a batch (N, H, W, C){gray}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("images contain NaN or infinite values")
        return x

    def _class_id(self, name: str) -> int:
        if self.class_names is not None:
            lowered = [str(c).lower() for c in self.class_names]
            if name.lower() in lowered:
                return lowered.index(name.lower())
            close = difflib.get_close_matches(name, [str(c) for c in self.class_names], n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(f"unknown class name {name!r}{hint} Valid names: {self.class_names}")
        if self.n_classes != 1000:
            raise ValueError(
                f"class given by name ({name!r}) but model {self.model.name!r} has {self.n_classes} "
                "classes, not the 1000 ImageNet ones: pass Explainer(model, class_names=[...]) "
                "or integer class indices"
            )
        from labhelpers.data import imagenet_class_id  # lazily: explain itself loads no data

        return int(imagenet_class_id(name))

    def _classes(self, x: np.ndarray, classes, predicted_in_step: bool = False) -> np.ndarray:
        """One class index per image. None: the predicted class, or -1 when the compiled
        step picks it itself from the logits it computes anyway (no extra forward pass)."""
        n, n_classes = len(x), self.n_classes
        if classes is None:
            if predicted_in_step:
                return np.full(n, -1, dtype=np.int32)
            return self._predict_logits(x).argmax(axis=-1).astype(np.int32)
        if isinstance(classes, (str, int, np.integer)):
            classes = [classes] * n
        elif tf.is_tensor(classes) or isinstance(classes, np.ndarray):
            classes = np.asarray(classes).reshape(-1).tolist()
        elif hasattr(classes, "__iter__") and not isinstance(classes, (set, frozenset, dict, bytes)):
            classes = list(classes)
        else:  # 3.0, a set (no order), a dict: not a class and not a list of them
            raise TypeError(f"classes={classes!r} ({type(classes).__name__}): want None (the predicted class), "
                            "an integer index or a class name for every image, or a list with one per image")
        if len(classes) != n:
            raise ValueError(f"got {len(classes)} classes for {n} images: give one class per image, "
                             "a single class for all, or None for the predicted class")
        resolved = []
        for c in classes:
            if isinstance(c, str):
                c = self._class_id(c)
            elif isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
                raise TypeError(f"class {c!r} is neither an integer index nor a class name")
            if not 0 <= int(c) < n_classes:
                raise ValueError(
                    f"class index {int(c)} is out of range: model {self.model.name!r} has {n_classes} "
                    f"classes, valid indices are 0..{n_classes - 1}"
                )
            resolved.append(int(c))
        return np.asarray(resolved, dtype=np.int32)

    def resolve_classes(self, images, classes=None) -> np.ndarray:
        """The class index each image is explained for (None: the predicted class)."""
        return self._classes(self._prepare(images), classes)

    @staticmethod
    def _check_rule(rule):
        if rule not in GRADIENT_RULES:
            raise ValueError(f"unknown rule {rule!r}; valid rules: {list(GRADIENT_RULES)}")

    # ------------------------------------------------------------------ layers
    def _find_call(self, spec, graph, need_4d: bool):
        """The call (in `graph`) of the layer that `spec` names; clear errors."""
        calls = [c for c in graph.calls if not isinstance(c.layer, keras.Model)] + \
                [c for c in graph.calls if isinstance(c.layer, keras.Model)]
        conv_names = [c.layer.name for c in calls if isinstance(c.layer, CONV_TYPES) and _rank(c) == 4]
        if spec is None:
            return self._default_call(graph, conv_names)
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            n = len(self.model.layers)
            if not -n <= int(spec) < n:
                raise IndexError(f"layer index {spec} out of range: model {self.model.name!r} has {n} "
                                 f"layers (indices 0..{n - 1})")
            spec = self.model.layers[int(spec)]
        if isinstance(spec, str):
            matches = [c for c in calls if c.layer.name == spec]
            if not matches:
                names = [c.layer.name for c in calls]
                close = difflib.get_close_matches(spec, names, n=3)
                hint = f" Did you mean {close}?" if close else ""
                valid = conv_names if need_4d else names
                kind = "convolutional layers" if need_4d else "layers"
                raise ValueError(f"model {self.model.name!r} has no layer named {spec!r}.{hint} "
                                 f"Valid {kind}: {valid}")
        else:
            matches = [c for c in calls if c.layer is spec or c.op is spec]
            if not matches:
                raise ValueError(f"layer {getattr(spec, 'name', spec)!r} is not part of model "
                                 f"{self.model.name!r}; convolutional layers: {conv_names}")
        call = matches[-1]
        if need_4d and _rank(call) != 4:
            raise ValueError(
                f"layer {call.layer.name!r} outputs shape {tuple(call.outputs[0].shape)}; this method needs "
                f"a 4-D (batch, h, w, channels) feature map. Convolutional layers: {conv_names}"
            )
        return call

    def _last_conv_call(self, graph):
        convs = [c for c in graph.calls if isinstance(c.layer, CONV_TYPES) and _rank(c) == 4]
        if not convs:
            raise ValueError(f"model {self.model.name!r} has no convolutional layer with a 4-D output; "
                             "pass layer= explicitly")
        return convs[-1]

    def _default_call(self, graph, conv_names):
        chosen = current = self._last_conv_call(graph)
        follow = (keras.layers.BatchNormalization,) + _activation_layer_types()
        while True:  # the activation right after the conv (through BatchNorm) if there is one
            out = current.outputs[0]
            consumers = [c for c in graph.calls if any(_is_same(t, out) for t in c.inputs)]
            if len(consumers) != 1 or not isinstance(consumers[0].layer, follow) or _rank(consumers[0]) != 4:
                return chosen
            current = consumers[0]
            if isinstance(current.layer, _activation_layer_types()):
                chosen = current

    def default_layer(self) -> str:
        """Name of the layer Grad-CAM & co. use when ``layer=None``."""
        return self._find_call(None, self._graph("vanilla"), True).layer.name

    def last_conv_layer(self) -> str:
        """Name of the last convolutional layer (nested models searched too)."""
        return self._last_conv_call(self._graph("vanilla")).layer.name

    # ------------------------------------------------------------------ compiled steps
    def _function(self, key, make):
        if key not in self._functions:
            self._functions[key] = make()
        return self._functions[key]

    def _signature(self, shape):
        return [tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int32)]

    def _predict_logits(self, x: np.ndarray) -> np.ndarray:
        model = self.model_linear
        fn = self._function(("logits", x.shape[1:]), lambda: tf.function(
            lambda images: tf.cast(model(images, training=False), tf.float32),
            input_signature=self._signature(x.shape[1:])[:1]))
        return np.concatenate([fn(x[i:i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)])

    def predict_logits(self, images) -> np.ndarray:
        """Pre-softmax scores (N, n_classes) from ``model_linear``."""
        return self._predict_logits(self._prepare(images))

    def _chunks(self, n: int, size: int | None = None):
        size = size or self.batch_size
        return (slice(i, min(i + size, n)) for i in range(0, n, size))

    def _saliency_function(self, rule, shape, mode):
        """Compiled input-gradient step. mode: "raw" (N,H,W,C), "abs" |grad| (N,H,W,C)
        or "map" (the normalised saliency map (N,H,W), tf-keras-vis's convention)."""
        model = self._graph(rule).model

        def make():
            def step(images, classes):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(images)
                    score = _score(model(images, training=False), classes)
                grads = tf.cast(tape.gradient(score, images), tf.float32)
                if mode == "raw":
                    return grads
                if mode == "abs":
                    return tf.abs(grads)
                return _normalize(tf.reduce_max(tf.abs(grads), axis=-1))
            return tf.function(step, input_signature=self._signature(shape))

        return self._function(("input_grad", rule, shape, mode), make)

    def _input_gradients(self, rule, x, classes, mode="raw") -> np.ndarray:
        fn = self._saliency_function(rule, x.shape[1:], mode)
        return np.concatenate([fn(x[s], classes[s]).numpy() for s in self._chunks(len(x))])

    def _layer_model(self, rule, call_index, outputs="features+logits"):
        key = (rule, call_index, outputs)
        if key not in self._models:
            graph = self._graph(rule)
            feats = graph.calls[call_index].outputs[0]
            outs = [feats, graph.output] if outputs == "features+logits" else [feats]
            self._models[key] = keras.Model(graph.input, outs, name=f"{self.model.name}_{rule}_{call_index}")
        return self._models[key]

    def _gradient_cam(self, kind, images, classes, layer, rule, normalize, upsample) -> np.ndarray:
        """Grad-CAM / Grad-CAM++ / LayerCAM: forward, backward to the layer, the map, its
        resizing and normalisation, all in one compiled step per image shape."""
        self._check_rule(rule)
        x = self._prepare(images)
        cls = self._classes(x, classes, predicted_in_step=True)
        call = self._find_call(layer, self._graph("vanilla"), need_4d=True)
        index = self._graph("vanilla").calls.index(call)
        model = self._layer_model(rule, index)
        name, size = call.layer.name, x.shape[1:3]

        def make():
            def step(images, classes):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(images)
                    feats, logits = model(images, training=False)
                    score = _score(logits, classes)
                grads = tape.gradient(score, feats)
                if grads is None:
                    raise ValueError(f"layer {name!r} is not connected to the model's output")
                cam = _cam_from_gradients(kind, tf.cast(feats, tf.float32), tf.cast(grads, tf.float32))
                if upsample:
                    cam = _resize(cam, size)
                return _normalize(cam) if normalize else cam
            return tf.function(step, input_signature=self._signature(x.shape[1:]))

        fn = self._function((kind, rule, index, x.shape[1:], bool(normalize), bool(upsample)), make)
        return np.concatenate([fn(x[s], cls[s]).numpy() for s in self._chunks(len(x))])

    def _finish(self, cam, x, normalize, upsample):
        cam = tf.constant(np.asarray(cam, dtype=np.float32))
        if upsample:
            cam = _resize(cam, x.shape[1:3])
        return (_normalize(cam) if normalize else cam).numpy()

    # ------------------------------------------------------------------ methods
    def feature_maps(self, layers, images):
        """Activations of the given layers (names, layer objects or indices) via one
        multi-output model. One image (H, W, C) -> arrays without the batch axis.
        One layer (not in a list) -> one array, else a list."""
        single_image = self._is_single_image(images)
        x = self._prepare(images)
        single_layer = not isinstance(layers, (list, tuple))
        specs = [layers] if single_layer else list(layers)
        if not specs:
            raise ValueError("no layers given: pass a layer name, a layer or a list of them")
        graph = self._graph("plain")
        indices = tuple(graph.calls.index(self._find_call(s, graph, need_4d=False)) for s in specs)
        key = ("features", indices)
        if key not in self._models:
            self._models[key] = keras.Model(graph.input, [graph.calls[i].outputs[0] for i in indices],
                                            name=f"{self.model.name}_feature_maps")
        model = self._models[key]
        fn = self._function(("features", indices, x.shape[1:]), lambda: tf.function(
            lambda images: [tf.cast(t, tf.float32) for t in tf.nest.flatten(model(images, training=False))],
            input_signature=self._signature(x.shape[1:])[:1]))
        parts = [fn(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        maps = [np.concatenate([p[j].numpy() for p in parts]) for j in range(len(indices))]
        if single_image:
            maps = [m[0] for m in maps]
        return maps[0] if single_layer else maps

    def _is_single_image(self, images) -> bool:
        shape = tuple(np.shape(images))
        try:
            expected = self.input_shape
        except ValueError:
            return len(shape) == 3
        return len(shape) == len(expected) or (expected[-1] == 1 and len(shape) == 2)

    def saliency(self, images, classes=None, rule="vanilla", smooth_samples=0, smooth_noise=0.2,
                 normalize=True, seed=None) -> np.ndarray:
        """Gradient of the class logit w.r.t. the input pixels.

        rule: "vanilla", "guided" (Springenberg) or "rectified" (deconvnet); see
        :mod:`labhelpers.modifiers`.
        smooth_samples > 0: SmoothGrad, averaging over noisy copies with
        sigma = smooth_noise * (max - min) of each image; the noisy copies go through
        the compiled step ``batch_size`` at a time. The noise is drawn exactly as
        tf-keras-vis draws it (same order, same NumPy legacy generator): from NumPy's
        global RNG when seed=None (``np.random.seed(k)`` before either call gives the
        same maps), else from ``np.random.RandomState(seed)``.
        normalize=True: |gradient| (averaged over samples), max over channels,
        per-image min-max -> (N, H, W) in [0, 1]. normalize=False: the raw signed
        gradients (N, H, W, C) (their mean over samples for SmoothGrad).
        """
        self._check_rule(rule)
        x = self._prepare(images)
        smooth_samples = int(smooth_samples)
        if smooth_samples < 0:
            raise ValueError(f"smooth_samples must be >= 0, got {smooth_samples}")
        if smooth_samples == 0:
            cls = self._classes(x, classes, predicted_in_step=True)
            return self._input_gradients(rule, x, cls, mode="map" if normalize else "raw")
        # SmoothGrad: all noisy copies must explain the same class, the clean image's
        cls = self._classes(x, classes)
        n = len(x)
        rng = np.random if seed is None else np.random.RandomState(seed)
        axes = tuple(range(1, x.ndim))
        sigma = smooth_noise * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))
        fn = self._saliency_function(rule, x.shape[1:], "abs" if normalize else "raw")
        total = np.zeros_like(x)
        # row j of the (sample, image) grid is image j % n: tf-keras-vis's drawing order
        for rows in self._chunks(smooth_samples * n):
            images_of_rows = np.arange(rows.start, rows.stop) % n
            noise = rng.normal(0.0, sigma[images_of_rows], (len(images_of_rows), *x.shape[1:]))
            noisy = (x[images_of_rows] + noise).astype(np.float32)
            np.add.at(total, images_of_rows, fn(noisy, cls[images_of_rows]).numpy())
        grads = total / smooth_samples
        if not normalize:
            return grads
        return normalize_maps(grads.max(axis=-1))

    def gradcam(self, images, classes=None, layer=None, rule="vanilla", normalize=True,
                upsample=True) -> np.ndarray:
        """Grad-CAM (Selvaraju et al.): ReLU(sum_k alpha_k A_k), alpha_k the spatial
        mean of d logit / d A_k, A the layer's feature maps.

        rule="guided"/"rectified" applies those backward rules on the path from the
        logit to the layer. upsample=True (default, like tf-keras-vis): maps resized to
        the input (N, H, W); upsample=False: at the layer's resolution (N, h, w), e.g.
        14 x 14 for VGG16's block5_conv3. normalize=False: the raw ReLU'd map."""
        return self._gradient_cam("gradcam", images, classes, layer, rule, normalize, upsample)

    def gradcam_plus_plus(self, images, classes=None, layer=None, rule="vanilla", normalize=True,
                          upsample=True) -> np.ndarray:
        """Grad-CAM++ (Chattopadhyay et al.), as tf-keras-vis computes it with
        exp(score) derivatives. The exp(score) factor is left out: it cancels in the
        alphas and only scales each map by a positive constant (removed by the
        normalisation), and it overflows for logits above ~88."""
        return self._gradient_cam("gradcam++", images, classes, layer, rule, normalize, upsample)

    def layercam(self, images, classes=None, layer=None, rule="vanilla", normalize=True,
                 upsample=True) -> np.ndarray:
        """LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(d logit / d A_k) * A_k), per position."""
        return self._gradient_cam("layercam", images, classes, layer, rule, normalize, upsample)

    def scorecam(self, images, classes=None, layer=None, max_n=None, normalize=True,
                 upsample=True) -> np.ndarray:
        """Score-CAM (Wang et al. 2020): each channel of the layer, resized to the
        input and min-max scaled, masks the image; its weight is the softmax
        probability of the class for the masked image (softmax of model_linear's
        logits). Gradient-free: one forward pass per channel, ``batch_size`` masked
        images per compiled step. max_n: Faster Score-CAM, only the max_n channels
        with the largest spatial std (chosen per image; tf-keras-vis takes the union
        over the batch, which is the same for one image); None: every channel."""
        if max_n is not None and (isinstance(max_n, (bool, np.bool_)) or not isinstance(max_n, (int, np.integer))
                                  or max_n < 1):
            raise ValueError(f"max_n must be None (every channel) or a positive number of channels, got {max_n!r}")
        x = self._prepare(images)
        graph = self._graph("vanilla")
        call = self._find_call(layer, graph, need_4d=True)
        index = graph.calls.index(call)
        feature_model = self._layer_model("vanilla", index)
        features = self._function(("score_features", index, x.shape[1:]), lambda: tf.function(
            lambda images: [tf.cast(t, tf.float32) for t in feature_model(images, training=False)],
            input_signature=self._signature(x.shape[1:])[:1]))
        parts = [features(x[s]) for s in self._chunks(len(x))]
        feats = np.concatenate([p[0].numpy() for p in parts])  # (N, h, w, K)
        logits = np.concatenate([p[1].numpy() for p in parts])
        cls = self._classes(x, classes, predicted_in_step=True)
        cls = np.where(cls < 0, logits.argmax(axis=-1), cls).astype(np.int32)
        channels = feats.shape[-1]
        if max_n is not None and int(max_n) > channels:
            raise ValueError(f"max_n must be between 1 and {channels} (the channels of layer "
                             f"{call.layer.name!r}), got {max_n}")
        model, size = self.model_linear, x.shape[1:3]

        def make():
            def step(image, maps, c):
                masks = _normalize(_resize(maps, size))  # (k, H, W), each channel min-max scaled
                logits = model(image[None] * masks[..., None], training=False)
                return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)[:, c]
            return tf.function(step, input_signature=[
                tf.TensorSpec(x.shape[1:], tf.float32), tf.TensorSpec((None, *feats.shape[1:3]), tf.float32),
                tf.TensorSpec((), tf.int32)])

        score = self._function(("scorecam", index, x.shape[1:]), make)
        cams = []
        for image, a, c in zip(x, feats, cls, strict=True):
            if max_n is not None and int(max_n) < channels:
                top = tf.math.top_k(tf.math.reduce_std(a, axis=(0, 1)), int(max_n)).indices.numpy()
                a = a[..., top]
            maps = np.ascontiguousarray(np.transpose(a, (2, 0, 1)))  # (k, h, w)
            weights = np.concatenate([score(image, maps[s], c).numpy() for s in self._chunks(len(maps))])
            cams.append(np.maximum(a @ weights.astype(np.float32), 0.0))
        return self._finish(np.stack(cams), x, normalize, upsample)

    def class_activation_map(self, images, classes=None, normalize=True, upsample=False):
        """CAM (Zhou et al. 2016) for a model ending in GlobalAveragePooling2D -> Dense:
        cam_c = sum_k W[k, c] A_k with A the features entering the pooling.
        Returns (maps (N, h, w) at the feature resolution unless upsample, classes)."""
        x = self._prepare(images)
        cls = self._classes(x, classes)
        graph = self._graph("vanilla")
        gap_call, dense = self._cam_structure(graph)
        key = ("cam", id(gap_call))
        if key not in self._models:
            self._models[key] = keras.Model(graph.input, gap_call.inputs[0], name=f"{self.model.name}_cam")
        model = self._models[key]
        fn = self._function(("cam", x.shape[1:]), lambda: tf.function(
            lambda images: tf.cast(model(images, training=False), tf.float32),
            input_signature=self._signature(x.shape[1:])[:1]))
        feats = np.concatenate([fn(x[i:i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)])
        kernel = np.asarray(dense.kernel.numpy(), dtype=np.float32)
        cam = np.einsum("nhwk,nk->nhw", feats, kernel[:, cls].T)
        return self._finish(cam, x, normalize, upsample), cls

    def _cam_structure(self, graph):
        """(GAP call, Dense layer) of a GAP -> Dense head, or a clear error."""
        gaps = [c for c in graph.calls if isinstance(c.layer, keras.layers.GlobalAveragePooling2D)]
        advice = ("CAM does not apply to model {!r}: {}. CAM needs the features to go through "
                  "GlobalAveragePooling2D straight into the output Dense layer; use gradcam() instead, "
                  "which works for any CNN (and equals CAM on such models).")
        if not gaps:
            raise ValueError(advice.format(self.model.name, "it has no GlobalAveragePooling2D layer"))
        gap = gaps[-1]
        if getattr(gap.layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(advice.format(self.model.name, "its pooling is channels_first"))
        if not any(isinstance(c.layer, CONV_TYPES) for c in _ancestors(graph, gap)):
            raise ValueError(advice.format(
                self.model.name, f"no convolutional layer comes before its GlobalAveragePooling2D "
                f"{gap.layer.name!r}, so there are no feature maps to weight"))
        current = gap
        while True:
            out = current.outputs[0]
            consumers = [c for c in graph.calls if any(_is_same(t, out) for t in c.inputs)]
            if len(consumers) != 1:
                raise ValueError(advice.format(self.model.name,
                                               f"layer {current.layer.name!r} feeds {len(consumers)} layers"))
            current = consumers[0]
            if isinstance(current.layer, keras.layers.Dense):
                break
            if not isinstance(current.layer, _passthrough_types()):
                raise ValueError(advice.format(
                    self.model.name, f"GlobalAveragePooling2D is followed by {current.layer.name!r} "
                    f"({type(current.layer).__name__}), not by the output Dense layer"))
        dense_call = current
        while not _is_same(current.outputs[0], graph.output):  # only activations may follow
            out = current.outputs[0]
            consumers = [c for c in graph.calls if any(_is_same(t, out) for t in c.inputs)]
            ok = len(consumers) == 1 and isinstance(
                consumers[0].layer, (keras.layers.Activation, keras.layers.Softmax, keras.layers.Identity))
            if not ok:
                raise ValueError(advice.format(
                    self.model.name, f"Dense layer {dense_call.layer.name!r} is not the output layer"))
            current = consumers[0]
        return gap, dense_call.layer


def _ancestors(graph, call) -> list:
    """Every call whose output reaches ``call``'s inputs (through any number of layers)."""
    found, frontier = [], [call]
    while frontier:
        inputs = frontier.pop().inputs
        for other in graph.calls:
            if other not in found and any(_is_same(o, t) for o in other.outputs for t in inputs):
                found.append(other)
                frontier.append(other)
    return found


# ---------------------------------------------------------------------- functional API
_EXPLAINERS: OrderedDict = OrderedDict()
_MAX_CACHED = 2  # each cached Explainer keeps its model (and weights) alive


def _explainer_for(model) -> Explainer:
    """A cached Explainer per model (so the linear head and traced steps are reused)."""
    key = id(model)
    ex = _EXPLAINERS.get(key)
    if ex is None or ex.model is not model or ex._n_layers != len(model.layers):
        ex = Explainer(model)
        _EXPLAINERS[key] = ex
        while len(_EXPLAINERS) > _MAX_CACHED:
            _EXPLAINERS.popitem(last=False)
    _EXPLAINERS.move_to_end(key)
    return ex


def feature_maps(model, layers, image):
    """Activations of ``layers`` (a name, layer object or index, or a list of them)
    for one image (H, W, C) -> arrays (h, w, k), or a batch -> (N, h, w, k).
    Returns one array for one layer, a list for a list."""
    return _explainer_for(model).feature_maps(layers, image)


def last_conv_layer_name(model) -> str:
    """The last convolutional layer's name: what tf-keras-vis calls the penultimate layer.

    tf-keras-vis 0.8.7 looks for it with ``isinstance(layer, keras.src...BaseConv)``, a
    Keras 3 class, so under legacy tf-keras its Gradcam, Gradcam++, Layercam and Scorecam
    fail ("Unable to determine penultimate `Conv` layer"), even given a name, unless
    the search is switched off. Name the layer and skip the search::

        Gradcam(model, ...)(score, x, penultimate_layer=last_conv_layer_name(model),
                            seek_penultimate_conv_layer=False)

    Under Keras 3 that is the layer tf-keras-vis finds by itself.
    """
    return _explainer_for(model).last_conv_layer()


def class_activation_map(model, images, class_index=None, normalize=True):
    """CAM from the GAP -> Dense weights: ``cam = features @ W[:, c]`` for the predicted
    class (or ``class_index``: an int, one per image, or names), per-image min-max.
    Returns (maps (N, h, w) at the feature resolution, classes (N,))."""
    return _explainer_for(model).class_activation_map(images, class_index, normalize=normalize)


def gradcam(model, images, class_index=None, layer=None, upsample=True, normalize=True, rule="vanilla"):
    """Grad-CAM for a Sequential or Functional model (a thin wrapper over
    :meth:`Explainer.gradcam`, so the same code and the same cached compiled step).

    class_index: None (the predicted class), an int, one per image, or names.
    layer: name, layer object or index; default: the last conv (or its activation).
    upsample=True (default, like tf-keras-vis): maps (N, H, W) resized to the input,
    ready to overlay; upsample=False: the layer's own grid (N, h, w), e.g. the raw
    7 x 7 heatmap to show with ``matshow`` or to compare with
    :func:`class_activation_map` (which is at the feature resolution).
    normalize=True: per-image min-max to [0, 1]; False: the raw ReLU(sum_k alpha_k A_k).
    """
    return _explainer_for(model).gradcam(images, class_index, layer=layer, rule=rule,
                                         normalize=normalize, upsample=upsample)
