"""Input-gradient methods: saliency with the three backward rules, and SmoothGrad.

Conventions of tf-keras-vis 0.8.7 (so results agree with it): the gradient of the class logit
(``model_linear``) w.r.t. the pixels; |gradient|, max over channels, per-image min-max.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..maps import normalize_maps
from .base import Method
from .graph import check_rule


class Saliency(Method):
    """Vanilla saliency (Simonyan et al. 2014). ``normalize=False``: the raw signed gradients
    (N, H, W, C). One compiled step per image shape and rule."""

    name, label = "vanilla", "Saliency"
    rule = "vanilla"
    options = {"normalize": True}
    predicted_in_step = True

    def compute(self, ctx, x, classes):
        check_rule(self.rule)
        step = ctx.input_gradient_step(self.rule, x.shape[1:], "map" if self.normalize else "raw")
        return ctx.batched(step, x, classes, size=ctx.gradient_rows())


class GuidedSaliency(Saliency):
    """Guided backpropagation (Springenberg et al. 2015): only positive gradients pass a ReLU
    whose input was positive (:class:`labhelpers.modifiers.GuidedBackpropagation`)."""

    name, label, rule = "guided", "Guided backprop", "guided"


class RectifiedSaliency(Saliency):
    """Deconvnet / rectified gradient (Zeiler & Fergus 2014): only positive gradients pass a ReLU."""

    name, label, rule = "rectified", "Deconvnet", "rectified"


class SmoothGrad(Saliency):
    """SmoothGrad (Smilkov et al. 2017): the mean |gradient| over ``smooth_samples`` noisy copies,
    sigma = ``smooth_noise`` * (max - min) of each image; every copy explains the clean image's class.
    ``normalize=False``: the mean raw gradients.

    noise="graph" (the default): the noise is drawn inside the compiled step, seeded and stateless
    (``tf.random.stateless_normal``, float32). Copy k of image i gets its own seed (``seed``, k * N + i),
    so a map depends on ``seed`` alone, not on ``batch_size``, and reruns are bit-identical; the |gradients|
    are summed per image inside the step too. seed=None draws the seed from NumPy's global RNG, so
    ``np.random.seed`` / ``lh.set_seed`` before the call make it repeatable.
    noise="numpy": the noise drawn on the host exactly as tf-keras-vis 0.8.7 draws it (same order, NumPy's
    legacy generator in float64; NumPy's global RNG when seed=None, else ``np.random.RandomState(seed)``),
    so ``np.random.seed(k)`` before either call gives tf-keras-vis's maps (the parity test uses it); slower
    (issue 18 measured 0.48 s of float64 draws and 0.17 s of host-side sums per SmoothGrad(20) call on VGG16)."""

    name, label = "smoothgrad", "SmoothGrad"
    options = {"normalize": True, "smooth_samples": 8, "smooth_noise": 0.2, "seed": None, "rule": "vanilla",
               "noise": "graph"}
    predicted_in_step = False
    titled_by = ("smooth_samples", "rule")
    NOISE = ("graph", "numpy")

    def __init__(self, **options):
        super().__init__(**options)
        if int(self.smooth_samples) < 1:
            raise ValueError(f"smooth_samples must be >= 1, got {self.smooth_samples}")
        if self.noise not in self.NOISE:
            raise ValueError(f"noise must be one of {list(self.NOISE)}, got {self.noise!r}")

    def compute(self, ctx, x, classes):
        check_rule(self.settings["rule"])
        axes = tuple(range(1, x.ndim))
        sigma = self.smooth_noise * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))
        grads = (self._numpy_noise if self.noise == "numpy" else self._graph_noise)(ctx, x, classes, sigma)
        return normalize_maps(grads.max(axis=-1)) if self.normalize else grads

    def _graph_noise(self, ctx, x, classes, sigma):
        n, samples = len(x), int(self.smooth_samples)
        seed = int(np.random.randint(0, 2 ** 31 - 1) if self.seed is None else self.seed)
        step = ctx.smoothgrad_step(self.settings["rule"], x.shape[1:], "abs" if self.normalize else "raw")
        images, labels = tf.constant(x), tf.constant(classes)
        sigmas, seeds = tf.constant(sigma.reshape(n).astype(np.float32)), tf.constant([seed, 0], tf.int64)
        total = None
        for rows in ctx.chunks(samples * n, ctx.gradient_rows()):  # row j of the grid is image j % n
            part = step(images, labels, sigmas, seeds, tf.constant(rows.start, tf.int32),
                        tf.constant(rows.stop, tf.int32))
            total = part if total is None else total + part
        return total.numpy() / samples

    def _numpy_noise(self, ctx, x, classes, sigma):
        n, samples = len(x), int(self.smooth_samples)
        rng = np.random if self.seed is None else np.random.RandomState(self.seed)
        step = ctx.input_gradient_step(self.settings["rule"], x.shape[1:], "abs" if self.normalize else "raw")
        total = np.zeros_like(x)
        for rows in ctx.chunks(samples * n, ctx.gradient_rows()):
            images_of_rows = np.arange(rows.start, rows.stop) % n
            noise = rng.normal(0.0, sigma[images_of_rows], (len(images_of_rows), *x.shape[1:]))
            noisy = (x[images_of_rows] + noise).astype(np.float32)
            np.add.at(total, images_of_rows, step(noisy, classes[images_of_rows]).numpy())
        return total / samples
