"""What does a unit want? Activation maximization and dataset examples.

    result = activation_maximization(model, units=[0, 1, 2], layer="conv2", objective="channel")
    result.images                                # (3, H, W, C) in value_range
    top = dataset_examples(model, x_test, units=[0, 1, 2], layer="conv2", k=9)
    top.indices, top.scores, top.images          # (3, 9), (3, 9), (3, 9, H, W, C)

Objectives (one per optimised image; several units go through the network as one batch):

* ``"channel"``: the spatial mean of one channel of ``layer`` (Olah et al.'s "channel");
* ``"neuron"``: one position of one channel (default: the centre of the map);
* ``"logit"``: a class's pre-softmax score (the model with its output activation replaced by
  linear, the Explainer's ``model_linear``), CS231n's class visualization.

Regularisers compose (a tuple of the dataclasses below): ``Jitter`` and ``RandomScale``
transform the image before each step (robustness: the unit must like it shifted and scaled);
``Blur`` makes the image a blurred copy of its parameters (smoothness); ``L2`` and
``TotalVariation`` are penalties subtracted from the objective. ``parameterization="fourier"``
optimises a decorrelated, 1/f-scaled spectrum (and decorrelated colours for RGB) squashed by a
sigmoid (Olah et al. 2017, "Feature Visualization", Distill), instead of clipped pixels.

The optimiser is Adam, written out inside one compiled ``tf.function`` that runs a chunk of
steps; random draws are stateless (seeded by ``(seed, step)``), so a run is reproducible.
``preprocess`` (e.g. ``info.preprocess``) must be affine per pixel (scaling, mean subtraction,
a channel swap): it is measured once on basis images and applied inside the graph. The caller's
model is never changed: sub-models are built from the Explainer's rebuilt graph.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .explain import Explainer
from .explain.graph import compiled
from .kerasapi import keras

OBJECTIVES = ("channel", "neuron", "logit")
PARAMETERIZATIONS = ("pixel", "fourier")

# Lucid's square root of the colour correlation of ImageNet (SVD), columns normalised by the largest
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_MIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


# ----------------------------------------------------------------------------- regularisers
@dataclass(frozen=True)
class Jitter:
    """Shift the image by up to ``pixels`` in each direction (wrapping around) before each step."""
    pixels: int = 2


@dataclass(frozen=True)
class RandomScale:
    """Rescale the image by a factor drawn from ``scales`` (then crop or pad back) before each step."""
    scales: tuple = (0.95, 0.975, 1.0, 1.025, 1.05)


@dataclass(frozen=True)
class Blur:
    """The image is a Gaussian blur (``sigma`` px) of its parameters: high frequencies cannot grow."""
    sigma: float = 0.5


@dataclass(frozen=True)
class L2:
    """Penalty ``weight * mean((u - 0.5)^2)`` on the image ``u`` in unit range [0, 1]."""
    weight: float = 0.05


@dataclass(frozen=True)
class TotalVariation:
    """Penalty ``weight * mean(|u[y+1]-u[y]| + |u[x+1]-u[x]|)`` on the unit-range image."""
    weight: float = 0.05


REGULARIZER_TYPES = (Jitter, RandomScale, Blur, L2, TotalVariation)


def default_regularizers(size: int = 28) -> tuple:
    """A standard set for an image of side ``size``: jitter ~size/14 px, small random scale,
    a light blur, small L2 and total-variation penalties."""
    return (Jitter(max(1, round(size / 14))), RandomScale(), Blur(0.5), L2(0.02), TotalVariation(0.05))


@dataclass
class FeatureVisResult:
    """What ``activation_maximization`` found: ``images`` (N, H, W, C) in ``value_range``,
    ``activations`` (N,) the objective of each clean image (no jitter, no penalty), ``history``
    (chunks, N) the objective after each chunk of steps, ``seconds`` the optimisation time."""

    images: np.ndarray
    activations: np.ndarray
    units: list
    layer: str | None
    objective: str
    history: np.ndarray
    seconds: float


# ----------------------------------------------------------------------------- helpers
def _gaussian_kernel(sigma: float, channels: int) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    grid = np.arange(-radius, radius + 1, dtype=np.float64)
    k1 = np.exp(-grid**2 / (2 * sigma**2))
    k1 /= k1.sum()
    return np.tile(np.outer(k1, k1)[:, :, None, None], (1, 1, channels, 1)).astype(np.float32)


def affine_preprocess(preprocess, channels: int):
    """``(matrix (C, C), bias (C,))`` with ``preprocess(x) == x @ matrix + bias`` per pixel, measured
    on basis images; a ValueError if ``preprocess`` is not affine per pixel."""
    if preprocess is None:
        return np.eye(channels, dtype=np.float32), np.zeros(channels, np.float32)
    basis = np.concatenate([np.zeros((1, channels)), np.eye(channels)]).astype(np.float32)
    out = np.asarray(preprocess(basis.reshape(1 + channels, 1, 1, channels).copy()), np.float64)
    out = out.reshape(1 + channels, channels)
    bias, matrix = out[0], out[1:] - out[0]
    probe = np.random.default_rng(0).uniform(0, 255, (2, 3, 3, channels)).astype(np.float32)
    expected = probe.astype(np.float64) @ matrix + bias
    if not np.allclose(np.asarray(preprocess(probe.copy()), np.float64), expected, rtol=1e-4, atol=1e-3):
        raise ValueError("preprocess is not affine per pixel (x @ M + b); pass images already in the model's "
                         "input space with value_range instead")
    return matrix.astype(np.float32), bias.astype(np.float32)


def _rfft_scale(h: int, w: int, decay: float = 1.0) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx**2 + fy**2)
    return (1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay * np.sqrt(h * w)).astype(np.float32)


class FeatureVisualizer:
    """Activation maximization and unit activations for one Keras model (never changed).
    Compiled steps are cached per (layer, objective, shape, settings)."""

    def __init__(self, model, preprocess=None, value_range=(0.0, 1.0)):
        self.explainer = Explainer(model)
        self.model = model
        self.value_range = (float(value_range[0]), float(value_range[1]))
        if not self.value_range[1] > self.value_range[0]:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        self.shape = tuple(int(d) for d in self.explainer.input_shape)
        self.matrix, self.bias = affine_preprocess(preprocess, self.shape[-1])
        self._models: dict = {}
        self._steps: dict = {}

    # ------------------------------------------------------------------ targets
    def target_model(self, layer, objective: str):
        """(model from the input to the target, layer name or None) for an objective."""
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
        if objective == "logit":
            return self.explainer.model_linear, None
        graph = self.explainer.graph()
        call = self.explainer.find_call(layer, need_4d=objective in ("channel", "neuron"), graph=graph)
        name = call.layer.name
        if name not in self._models:
            self._models[name] = keras.Model(graph.input, call.outputs[0], name=f"{self.model.name}_{name}_fv")
        return self._models[name], name

    def _weights(self, model, objective, units) -> np.ndarray:
        """One weight tensor per unit, the shape of the target's output: objective = sum(act * w)."""
        out_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
        weights = np.zeros((len(units), *out_shape), np.float32)
        n_channels = out_shape[-1]
        for i, unit in enumerate(units):
            if objective == "neuron":
                unit = tuple(int(u) for u in np.atleast_1d(unit))
                if len(unit) == 1:
                    unit = (out_shape[0] // 2, out_shape[1] // 2, unit[0])
                if len(unit) != 3 or not all(0 <= u < s for u, s in zip(unit, out_shape, strict=True)):
                    raise ValueError(f"neuron {unit} is outside the layer's output {out_shape} "
                                     "(give a channel, or (row, column, channel))")
                weights[(i, *unit)] = 1.0
                continue
            if isinstance(unit, str) and objective == "logit":
                unit = int(self.explainer.classes(np.zeros((1, *self.shape), np.float32), unit)[0])
            if isinstance(unit, (bool, np.bool_)) or not isinstance(unit, (int, np.integer)):
                raise TypeError(f"unit {unit!r} must be an integer index")
            if not 0 <= int(unit) < n_channels:
                raise ValueError(f"unit {int(unit)} out of range: the target has {n_channels} "
                                 f"{'classes' if objective == 'logit' else 'channels'}")
            weights[i, ..., int(unit)] = 1.0 / (np.prod(out_shape[:-1]) if objective == "channel" else 1.0)
        return weights

    # ------------------------------------------------------------------ graph pieces
    def _to_input(self, u):
        """Unit-range image (N, H, W, C) -> the model's input (value range, then preprocess)."""
        low, high = self.value_range
        x = low + (high - low) * u
        return tf.tensordot(x, tf.constant(self.matrix), axes=[[3], [0]]) + tf.constant(self.bias)

    def _image(self, param, parameterization, blur):
        h, w, c = self.shape
        if parameterization == "fourier":
            scale = tf.constant(_rfft_scale(h, w))
            spectrum = tf.complex(param[..., 0], param[..., 1]) * tf.cast(scale, tf.complex64)  # (N, C, h, w')
            image = tf.transpose(tf.signal.irfft2d(spectrum, fft_length=[h, w]), (0, 2, 3, 1)) / 4.0
            if c == 3:
                image = tf.tensordot(image, tf.constant(COLOR_MIX.T), axes=[[3], [0]])
            image = tf.sigmoid(image)
        else:
            image = param
        if blur is not None:
            kernel = tf.constant(_gaussian_kernel(blur.sigma, c))
            pad = kernel.shape[0] // 2
            padded = tf.pad(image, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
        return image

    def _augment(self, image, regs, seed):
        h, w = self.shape[:2]
        for i, reg in enumerate(regs):
            s = tf.stack([seed[0], seed[1] * 16 + i])
            if isinstance(reg, Jitter) and reg.pixels > 0:
                shift = tf.random.stateless_uniform([2], s, -reg.pixels, reg.pixels + 1, dtype=tf.int32)
                image = tf.roll(image, shift, axis=[1, 2])
            elif isinstance(reg, RandomScale):
                scales = tf.constant(np.asarray(reg.scales, np.float32))
                pick = tf.random.stateless_uniform([], s, 0, len(reg.scales), dtype=tf.int32)
                size = tf.cast(tf.round(tf.constant([h, w], tf.float32) * scales[pick]), tf.int32)
                image = tf.image.resize_with_crop_or_pad(tf.image.resize(image, size), h, w)
                image = tf.ensure_shape(image, [None, *self.shape])
        return image

    def _step_function(self, model, parameterization, regs):
        key = (id(model), parameterization, regs)
        if key in self._steps:
            return self._steps[key]
        blur = next((r for r in regs if isinstance(r, Blur)), None)
        penalties = [r for r in regs if isinstance(r, (L2, TotalVariation))]
        augments = [r for r in regs if isinstance(r, (Jitter, RandomScale))]

        def objective(param, weights, seed, augment):
            image = self._image(param, parameterization, blur)
            shown = self._augment(image, augments, seed) if augment else image
            act = tf.cast(model(self._to_input(shown), training=False), tf.float32)
            value = tf.reduce_sum(act * weights, axis=list(range(1, len(act.shape))))
            penalty = tf.zeros_like(value)
            for reg in penalties if augment else []:
                if isinstance(reg, L2):
                    penalty += reg.weight * tf.reduce_mean((image - 0.5) ** 2, axis=[1, 2, 3])
                else:
                    dy = tf.reduce_mean(tf.abs(image[:, 1:] - image[:, :-1]), axis=[1, 2, 3])
                    dx = tf.reduce_mean(tf.abs(image[:, :, 1:] - image[:, :, :-1]), axis=[1, 2, 3])
                    penalty += reg.weight * (dy + dx)
            return value, value - penalty, image

        def run(param, m, v, weights, start, n_steps, lr, seed):
            def adam_step(t, param, m, v):
                with tf.GradientTape() as tape:
                    tape.watch(param)
                    _, total, _ = objective(param, weights, tf.stack([seed, t]), True)
                    total = tf.reduce_sum(total)
                grad = tape.gradient(total, param)
                m = 0.9 * m + 0.1 * grad
                v = 0.999 * v + 0.001 * grad**2
                step = tf.cast(t + 1, tf.float32)
                update = lr * (m / (1 - 0.9**step)) / (tf.sqrt(v / (1 - 0.999**step)) + 1e-8)
                param = param + update  # ascent
                if parameterization == "pixel":
                    param = tf.clip_by_value(param, 0.0, 1.0)
                return t + 1, param, m, v

            _, param, m, v = tf.while_loop(lambda t, *_: t < start + n_steps, adam_step, (start, param, m, v))
            value, _, image = objective(param, weights, tf.stack([seed, start]), False)
            return param, m, v, value, image

        h, w, c = self.shape
        param_shape = (None, c, h, w // 2 + 1, 2) if parameterization == "fourier" else (None, h, w, c)
        spec = tf.TensorSpec(param_shape, tf.float32)
        scalar = tf.TensorSpec((), tf.int32)
        step = compiled(run, input_signature=[
            spec, spec, spec, tf.TensorSpec((None, *model.outputs[0].shape[1:]), tf.float32), scalar, scalar,
            tf.TensorSpec((), tf.float32), scalar])
        self._steps[key] = step
        return step

    # ------------------------------------------------------------------ public
    def maximize(self, units, layer=None, objective="channel", steps=256, learning_rate=0.05,
                 regularizers=None, parameterization="pixel", seed=0, batch_size=16, chunk=32,
                 progress=False, init=None) -> FeatureVisResult:
        """Optimise one image per unit (see :func:`activation_maximization`)."""
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r}; choose one of {PARAMETERIZATIONS}")
        units = list(units) if isinstance(units, (list, tuple, np.ndarray, range)) else [units]
        if not units:
            raise ValueError("no units given")
        regs = tuple(default_regularizers(self.shape[0]) if regularizers is None else regularizers)
        for reg in regs:
            if not isinstance(reg, REGULARIZER_TYPES):
                raise TypeError(f"unknown regulariser {reg!r}; use {[t.__name__ for t in REGULARIZER_TYPES]}")
        steps, batch_size, chunk = int(steps), int(batch_size), max(1, int(chunk))
        if steps < 1 or batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
        model, name = self.target_model(layer, objective)
        weights = self._weights(model, objective, units)
        run = self._step_function(model, parameterization, regs)
        h, w, c = self.shape
        rng = np.random.default_rng(seed)
        if parameterization == "fourier":
            params = rng.normal(0, 0.01, (len(units), c, h, w // 2 + 1, 2)).astype(np.float32)
        elif init is not None:
            low, high = self.value_range
            params = np.clip((np.broadcast_to(init, (len(units), h, w, c)) - low) / (high - low), 0, 1)
            params = params.astype(np.float32)
        else:
            params = (0.5 + rng.uniform(-0.05, 0.05, (len(units), h, w, c))).astype(np.float32)
        images, values, history = [], [], []
        started = time.perf_counter()
        bar = _Progress(steps * ((len(units) + batch_size - 1) // batch_size), progress)
        for b in range(0, len(units), batch_size):
            param = tf.constant(params[b:b + batch_size])
            m, v = tf.zeros_like(param), tf.zeros_like(param)
            wb = tf.constant(weights[b:b + batch_size])
            chunk_history = []
            for start in range(0, steps, chunk):
                n = min(chunk, steps - start)
                param, m, v, value, image = run(param, m, v, wb, tf.constant(start), tf.constant(n),
                                                tf.constant(float(learning_rate)), tf.constant(int(seed)))
                chunk_history.append(value.numpy())
                bar.update(n)
            images.append(image.numpy())
            values.append(value.numpy())
            history.append(np.stack(chunk_history))
        bar.close()
        low, high = self.value_range
        return FeatureVisResult(images=(low + (high - low) * np.concatenate(images)).astype(np.float32),
                                activations=np.concatenate(values), units=units, layer=name,
                                objective=objective, history=np.concatenate(history, axis=1),
                                seconds=time.perf_counter() - started)

    def activations(self, images, units, layer=None, objective="channel", batch_size=256) -> np.ndarray:
        """The objective of each unit for each image, (N, units): images in ``value_range``
        (preprocessed inside, as during optimisation)."""
        units = list(units) if isinstance(units, (list, tuple, np.ndarray, range)) else [units]
        model, _ = self.target_model(layer, objective)
        weights = self._weights(model, objective, units)  # (U, ...)
        key = ("act", id(model))
        if key not in self._steps:
            def fn(x, w):
                act = tf.cast(model(self._to_input(x), training=False), tf.float32)
                flat = tf.reshape(act, [tf.shape(act)[0], -1])
                return tf.matmul(flat, tf.reshape(w, [tf.shape(w)[0], -1]), transpose_b=True)
            self._steps[key] = compiled(fn, input_signature=[
                tf.TensorSpec((None, *self.shape), tf.float32),
                tf.TensorSpec((None, *model.outputs[0].shape[1:]), tf.float32)])
        low, high = self.value_range
        x = self.explainer.prepare(images)
        out = [self._steps[key](tf.constant((x[i:i + batch_size] - low) / (high - low)), tf.constant(weights))
               for i in range(0, len(x), int(batch_size))]
        return np.concatenate([o.numpy() for o in out])


class _Progress:
    """A tqdm bar on stdout (never stderr), or nothing."""

    def __init__(self, total, enabled):
        self.bar = None
        if enabled:
            from tqdm import tqdm  # plain text: tqdm.auto would want ipywidgets in a notebook

            self.bar = tqdm(total=total, file=sys.stdout, desc="activation maximization", unit="step",
                            leave=False, mininterval=1.0)

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


_VISUALIZERS: dict = {}


def _visualizer(model, preprocess=None, value_range=(0.0, 1.0)) -> FeatureVisualizer:
    key = (id(model), id(preprocess), tuple(float(v) for v in value_range))
    vis = _VISUALIZERS.get(key)
    if vis is None or vis.model is not model:
        if len(_VISUALIZERS) >= 4:
            _VISUALIZERS.pop(next(iter(_VISUALIZERS)))
        vis = _VISUALIZERS[key] = FeatureVisualizer(model, preprocess=preprocess, value_range=value_range)
    return vis


def activation_maximization(model, units, layer=None, objective="channel", steps=256, learning_rate=0.05,
                            regularizers=None, parameterization="pixel", value_range=(0.0, 1.0),
                            preprocess=None, seed=0, batch_size=16, progress=False) -> FeatureVisResult:
    """Images that maximise units of ``model`` by gradient ascent in input space.

    units: a unit or a list (channels for "channel", (row, col, channel) or a channel for "neuron",
    classes - indices or names - for "logit"); each gets its own image, ``batch_size`` images per
    compiled step. layer: name, layer or index (not for "logit"). regularizers: a tuple of
    ``Jitter``, ``RandomScale``, ``Blur``, ``L2``, ``TotalVariation`` (None: ``default_regularizers``;
    ``()``: none). value_range: the images' range before ``preprocess`` (e.g. (0, 255) with
    ``info.preprocess``). progress: a tqdm bar on stdout. Returns a :class:`FeatureVisResult`.
    """
    vis = _visualizer(model, preprocess, value_range)
    return vis.maximize(units, layer=layer, objective=objective, steps=steps, learning_rate=learning_rate,
                        regularizers=regularizers, parameterization=parameterization, seed=seed,
                        batch_size=batch_size, progress=progress)


def unit_activations(model, images, units, layer=None, objective="channel", value_range=(0.0, 1.0),
                     preprocess=None, batch_size=256) -> np.ndarray:
    """Objective of each unit for each image, shape (N, units) (same definition as the optimiser's)."""
    return _visualizer(model, preprocess, value_range).activations(images, units, layer, objective, batch_size)


@dataclass
class DatasetExamples:
    """Top-k of a dataset per unit: ``indices`` (units, k) into the stream, ``scores`` (units, k),
    best first; ``images`` (units, k, H, W, C) the examples themselves."""

    units: list
    indices: np.ndarray
    scores: np.ndarray
    images: np.ndarray
    n_seen: int


def dataset_examples(model, images, units, layer=None, k=9, objective="channel", batch_size=256,
                     value_range=(0.0, 1.0), preprocess=None) -> DatasetExamples:
    """The ``k`` inputs that most activate each unit, streamed: ``images`` is an array (read
    ``batch_size`` at a time) or an iterable of batches; only the running top-k (scores, indices,
    images) is kept, so memory is bounded by ``units * k`` images plus one batch."""
    units = list(units) if isinstance(units, (list, tuple, np.ndarray, range)) else [units]
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    vis = _visualizer(model, preprocess, value_range)
    if hasattr(images, "shape") and hasattr(images, "__getitem__"):
        batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    else:
        batches = iter(images)
    best_scores = np.full((len(units), 0), -np.inf, np.float32)
    best_index = np.zeros((len(units), 0), np.int64)
    best_images = None
    seen = 0
    for batch in batches:
        x = vis.explainer.prepare(batch)
        scores = vis.activations(x, units, layer, objective, batch_size=len(x)).T  # (U, B)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_index = np.concatenate([best_index, np.broadcast_to(seen + np.arange(len(x)), scores.shape)], axis=1)
        # stable order: score descending, then index ascending (ties as a brute-force sort)
        order = np.lexsort((all_index, -all_scores), axis=1)[:, :k]
        rows = np.arange(len(units))[:, None]
        pool = x if best_images is None else np.concatenate([best_images.reshape(-1, *x.shape[1:]), x])
        offset = 0 if best_images is None else best_images.shape[1]
        pick = np.where(order < offset, rows * offset + order, len(units) * offset + (order - offset))
        best_images = pool[pick.reshape(-1)].reshape(len(units), -1, *x.shape[1:])
        best_scores, best_index = all_scores[rows, order], all_index[rows, order]
        seen += len(x)
    if seen == 0:
        raise ValueError("no images given")
    return DatasetExamples(units=units, indices=best_index, scores=best_scores, images=best_images, n_seen=seen)


__all__ = [
    "Blur", "DatasetExamples", "FeatureVisResult", "FeatureVisualizer", "Jitter", "L2", "OBJECTIVES",
    "RandomScale", "TotalVariation", "activation_maximization", "affine_preprocess", "dataset_examples",
    "default_regularizers", "unit_activations",
]
