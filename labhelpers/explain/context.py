"""The one per-model cache: rebuilt graphs, sub-models and compiled steps, and the checks
every method shares (images that fit the model, classes, layers).

A :class:`ModelContext` never changes its model: the linear-head model and its guided /
rectified variants are rebuilt once each (lazily, :func:`labhelpers.modifiers.rebuild`) from
views of its layers and share its weight variables. Compiled steps are kept by key, each a
``tf.function`` with a fixed input signature per image shape (batch axis free), so repeated
calls never retrace. :func:`context_for` keeps one context per model for the whole package
(the functional helpers, metrics, attribution, attacks): one cache, not one per module.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict

import numpy as np
import tensorflow as tf

from .. import modifiers
from ..kerasapi import keras
from . import graph as g

GRADIENT_BYTES = 320 * 2 ** 20  # float32 activations one input-gradient step may keep for its backward pass


class ModelContext:
    """What the methods need from one Keras image classifier (single input ``(N, H, W, C)``,
    single output ``(N, n_classes)``).

    batch_size: images per compiled step: input images, SmoothGrad's noisy copies, Score-CAM's
    masked images. The default 8 keeps host memory low on CPU; raise it on a GPU. Steps that take
    the gradient down to the pixels (saliency, SmoothGrad) keep every layer's activations for the
    backward pass, so they take at most :meth:`gradient_rows` images: fewer than ``batch_size``
    when that many images' activations would exceed ``GRADIENT_BYTES`` (320 MiB; VGG16 at 224 x 224
    has ~58 MiB of layer outputs per image, so 5 at a time; EfficientNet-Lite0 ~76 MiB, so 4), which
    bounds the memory of the work whatever ``batch_size`` is.
    class_names: optional list of this model's class names, so ``classes`` may be given by name
    (otherwise names are ImageNet names).
    """

    def __init__(self, model, batch_size: int = 8, class_names=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"{type(self).__name__} needs a keras.Model, got {type(model).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = int(batch_size)
        self.class_names = list(class_names) if class_names is not None else None
        self._graphs: dict = {}
        self._models: dict = {}
        self._functions: dict = {}
        self._n_layers = len(model.layers)
        self._gradient_rows = None
        if modifiers._model_inputs(model) is not None:
            self._check_model()

    # ------------------------------------------------------------------ model views
    @property
    def model_linear(self):
        """The model with its output activation replaced by linear (logits out); shares the
        original's weights. Built once."""
        return self.graph("vanilla").model

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
                "outputs; the Explainer handles single-input, single-output image classifiers")
        if len(inputs[0].shape) != 4:
            raise ValueError(f"model {self.model.name!r} takes inputs of shape {tuple(inputs[0].shape)}; the "
                             "Explainer needs image inputs (batch, height, width, channels)")
        if len(self.model.outputs[0].shape) != 2:
            raise ValueError(f"model {self.model.name!r} outputs shape {tuple(self.model.outputs[0].shape)}; "
                             "the Explainer needs class scores of shape (batch, n_classes)")

    def graph(self, rule: str = "vanilla", head: str = "linear"):
        """The model rebuilt once per (rule, head): head="linear" swaps the output activation for
        linear (what every method scores); head="model" keeps the model as it is (feature maps)."""
        if head not in ("linear", "model"):
            raise ValueError(f"head must be 'linear' or 'model', got {head!r}")
        g.check_rule(rule)
        key = (rule, head)
        if key not in self._graphs:
            relu_rule = None if rule == "vanilla" else rule
            suffix = ("linear" if rule == "vanilla" else f"{rule}_linear") if head == "linear" else f"{rule}_model"
            self._graphs[key] = modifiers.rebuild(self.model, relu_rule=relu_rule, linear_head=head == "linear",
                                                  suffix=suffix)
        return self._graphs[key]

    # ------------------------------------------------------------------ inputs
    def prepare(self, images) -> np.ndarray:
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
            raise ValueError(f"images of shape {x.shape} do not fit model {self.model.name!r}, which takes images "
                             f"of shape {want}: pass one image (H, W, C) or a batch (N, H, W, C){gray}")
        if not np.all(np.isfinite(x)):
            raise ValueError("images contain NaN or infinite values")
        return x

    def is_single_image(self, images) -> bool:
        shape = tuple(np.shape(images))
        try:
            expected = self.input_shape
        except ValueError:
            return len(shape) == 3
        return len(shape) == len(expected) or (expected[-1] == 1 and len(shape) == 2)

    def _class_id(self, name: str) -> int:
        if self.class_names is not None:
            lowered = [str(c).lower() for c in self.class_names]
            if name.lower() in lowered:
                return lowered.index(name.lower())
            close = difflib.get_close_matches(name, [str(c) for c in self.class_names], n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(f"unknown class name {name!r}{hint} Valid names: {self.class_names}")
        if self.n_classes != 1000:
            raise ValueError(f"class given by name ({name!r}) but model {self.model.name!r} has {self.n_classes} "
                             "classes, not the 1000 ImageNet ones: pass Explainer(model, class_names=[...]) "
                             "or integer class indices")
        from labhelpers.data import imagenet_class_id  # lazily: explain itself loads no data

        return int(imagenet_class_id(name))

    def classes(self, x: np.ndarray, classes, predicted_in_step: bool = False) -> np.ndarray:
        """One class index per image. None: the predicted class, or ``graph.PREDICTED`` (-1) when
        the compiled step picks it itself from the logits it computes anyway (no extra forward pass)."""
        n, n_classes = len(x), self.n_classes
        if classes is None:
            if predicted_in_step:
                return np.full(n, g.PREDICTED, dtype=np.int32)
            return self.predict_logits(x).argmax(axis=-1).astype(np.int32)
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
                raise ValueError(f"class index {int(c)} is out of range: model {self.model.name!r} has {n_classes} "
                                 f"classes, valid indices are 0..{n_classes - 1}")
            resolved.append(int(c))
        return np.asarray(resolved, dtype=np.int32)

    def resolve_classes(self, images, classes=None) -> np.ndarray:
        """The class index each image is explained for (None: the predicted class)."""
        return self.classes(self.prepare(images), classes)

    # ------------------------------------------------------------------ layers
    def find_call(self, spec, need_4d: bool = True, graph=None):
        """The call of the layer ``spec`` names in ``graph`` (default: the linear-head rebuild)."""
        return g.find_call(self.model, graph or self.graph(), spec, need_4d)

    def layer_index(self, spec, need_4d: bool = True) -> int:
        """Position of the named layer's call in every rebuild of the model (the same in all)."""
        graph = self.graph()
        return graph.calls.index(self.find_call(spec, need_4d, graph))

    def default_layer(self) -> str:
        """Name of the layer Grad-CAM & co. use when ``layer=None``."""
        return self.find_call(None).layer.name

    def last_conv_layer(self) -> str:
        """Name of the last convolutional layer (nested models searched too)."""
        return g.last_conv_call(self.graph(), self.model.name).layer.name

    # ------------------------------------------------------------------ compiled steps
    def function(self, key, make):
        """The compiled step kept under ``key``, made by ``make()`` on first use."""
        if key not in self._functions:
            self._functions[key] = make()
        return self._functions[key]

    def tracing_count(self) -> int:
        """Traces made so far by every compiled step of this context (a second call of the same
        shape must not add any)."""
        return sum(f.experimental_get_tracing_count() for f in self._functions.values()
                   if hasattr(f, "experimental_get_tracing_count"))

    def sub_model(self, key, make):
        """A Keras model over one of the rebuilt graphs, kept under ``key``."""
        if key not in self._models:
            self._models[key] = make()
        return self._models[key]

    @staticmethod
    def signature(shape):
        return [tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int32)]

    def activation_bytes(self) -> int:
        """float32 bytes of every layer's output for one image (the input included); layers whose
        output size is unknown (a free spatial size) are left out."""
        total = 0
        for call in self.graph().calls:
            if isinstance(call.layer, keras.Model):
                continue  # a nested model's output is its last layer's, counted there
            for out in call.outputs:
                dims = tuple(out.shape[1:])
                if dims and all(d is not None for d in dims):
                    total += 4 * int(np.prod(dims))
        return total

    def gradient_rows(self, most: int | None = None) -> int:
        """Images per input-gradient step: ``most`` (default ``batch_size``), or fewer so that their
        activations stay within ``GRADIENT_BYTES``."""
        if self._gradient_rows is None:  # images whose activations fit the budget
            self._gradient_rows = max(1, GRADIENT_BYTES // max(self.activation_bytes(), 1))
        return max(1, min(int(most or self.batch_size), self._gradient_rows))

    def chunks(self, n: int, size: int | None = None):
        size = size or self.batch_size
        return (slice(i, min(i + size, n)) for i in range(0, n, size))

    def batched(self, fn, *arrays, size: int | None = None) -> np.ndarray:
        """``fn`` over ``size`` (default ``batch_size``) rows at a time, results concatenated."""
        return np.concatenate([fn(*(a[s] for a in arrays)).numpy() for s in self.chunks(len(arrays[0]), size)])

    def predict_logits(self, images) -> np.ndarray:
        """Pre-softmax scores (N, n_classes) from ``model_linear``."""
        x = self.prepare(images)
        model = self.model_linear
        fn = self.function(("logits", x.shape[1:]), lambda: g.compiled(
            lambda images: tf.cast(model(images, training=False), tf.float32),
            input_signature=self.signature(x.shape[1:])[:1]))
        return self.batched(fn, x)

    def input_gradient_step(self, rule, shape, mode):
        """Compiled input-gradient step. mode: "raw" (N,H,W,C), "abs" |grad| (N,H,W,C) or "map" (the
        normalised saliency map (N,H,W), tf-keras-vis's convention)."""
        model = self.graph(rule).model

        def make():
            def step(images, classes):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(images)
                    logit = g.score(model(images, training=False), classes)
                grads = tf.cast(tape.gradient(logit, images), tf.float32)
                if mode == "raw":
                    return grads
                if mode == "abs":
                    return tf.abs(grads)
                return g.normalize(tf.reduce_max(tf.abs(grads), axis=-1))
            return g.compiled(step, input_signature=self.signature(shape))

        return self.function(("input_grad", rule, shape, mode), make)

    def smoothgrad_step(self, rule, shape, mode):
        """Compiled SmoothGrad step over rows [start, stop) of the (sample, image) grid (row j: image
        j % N, copy j // N): each row's noise drawn in-graph from its own stateless seed (seed[0], j),
        times the image's sigma; the gradients ("abs": |grad|, "raw") summed per image -> (N, H, W, C)."""
        model = self.graph(rule).model

        def make():
            def step(images, classes, sigmas, seed, start, stop):
                n = tf.shape(images)[0]
                rows = tf.range(start, stop)
                which = rows % n
                row_seeds = tf.stack([tf.fill(tf.shape(rows), seed[0]), tf.cast(rows, tf.int64)], axis=1)
                noise = tf.map_fn(lambda s: tf.random.stateless_normal(tf.shape(images)[1:], s), row_seeds,
                                  fn_output_signature=tf.float32)
                noisy = tf.gather(images, which) + noise * tf.reshape(tf.gather(sigmas, which), [-1, 1, 1, 1])
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(noisy)
                    logit = g.score(model(noisy, training=False), tf.gather(classes, which))
                grads = tf.cast(tape.gradient(logit, noisy), tf.float32)
                grads = tf.abs(grads) if mode == "abs" else grads
                return tf.math.unsorted_segment_sum(grads, which, n)
            return g.compiled(step, input_signature=[
                tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((None,), tf.float32), tf.TensorSpec((2,), tf.int64),
                tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32)])

        return self.function(("smoothgrad", rule, shape, mode), make)

    def layer_model(self, rule, call_index, outputs="features+logits"):
        """(features of the call at ``call_index``, logits) of the rule's linear-head rebuild."""
        def make():
            graph = self.graph(rule)
            feats = graph.calls[call_index].outputs[0]
            outs = [feats, graph.output] if outputs == "features+logits" else [feats]
            return keras.Model(graph.input, outs, name=f"{self.model.name}_{rule}_{call_index}")
        return self.sub_model((rule, call_index, outputs), make)

    def finish(self, cam, size, normalize: bool, upsample: bool) -> np.ndarray:
        """Resize (N, h, w) maps to ``size`` and min-max them, as the compiled steps do."""
        cam = tf.constant(np.asarray(cam, dtype=np.float32))
        if upsample:
            cam = g.resize(cam, size)
        return (g.normalize(cam) if normalize else cam).numpy()


# ---------------------------------------------------------------------- one cache for the package
_CONTEXTS: OrderedDict = OrderedDict()
_MAX_CACHED = 4  # each cached context keeps its model (and weights) alive


_FACTORY: list = [ModelContext]  # explain.explainer puts Explainer here, so the cache holds Explainers


def context_for(model):
    """The cached context (an :class:`~labhelpers.explain.Explainer`) of ``model``, or ``model``
    itself when it already is one. One cache for the package, so a model's rebuilt graphs and
    compiled steps are made once whichever helper asks (methods, metrics, attribution, attacks)."""
    if isinstance(model, ModelContext):
        return model
    key = id(model)
    ctx = _CONTEXTS.get(key)
    if ctx is None or ctx.model is not model or ctx._n_layers != len(model.layers):
        ctx = _CONTEXTS[key] = _FACTORY[0](model)
        while len(_CONTEXTS) > _MAX_CACHED:
            _CONTEXTS.popitem(last=False)
    _CONTEXTS.move_to_end(key)
    return ctx
