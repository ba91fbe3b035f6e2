"""Input-gradient methods: saliency with the three backward rules, and SmoothGrad.

Conventions of tf-keras-vis 0.8.7 (so results agree with it): the gradient of the class logit
(``model_linear``) w.r.t. the pixels; |gradient|, max over channels, per-image min-max.
"""

from __future__ import annotations

import numpy as np

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
        return ctx.batched(step, x, classes)


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

    The noise is drawn exactly as tf-keras-vis draws it (same order, same NumPy legacy generator):
    from NumPy's global RNG when seed=None (``np.random.seed(k)`` before either call gives the same
    maps), else from ``np.random.RandomState(seed)``. ``normalize=False``: the mean raw gradients."""

    name, label = "smoothgrad", "SmoothGrad"
    options = {"normalize": True, "smooth_samples": 8, "smooth_noise": 0.2, "seed": None, "rule": "vanilla"}
    titled_by = ("smooth_samples", "rule")
    predicted_in_step = False

    def __init__(self, **options):
        super().__init__(**options)
        if int(self.smooth_samples) < 1:
            raise ValueError(f"smooth_samples must be >= 1, got {self.smooth_samples}")

    def compute(self, ctx, x, classes):
        check_rule(self.settings["rule"])
        n, samples = len(x), int(self.smooth_samples)
        rng = np.random if self.seed is None else np.random.RandomState(self.seed)
        axes = tuple(range(1, x.ndim))
        sigma = self.smooth_noise * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))
        step = ctx.input_gradient_step(self.settings["rule"], x.shape[1:], "abs" if self.normalize else "raw")
        total = np.zeros_like(x)
        for rows in ctx.chunks(samples * n):  # row j of the (sample, image) grid is image j % n
            images_of_rows = np.arange(rows.start, rows.stop) % n
            noise = rng.normal(0.0, sigma[images_of_rows], (len(images_of_rows), *x.shape[1:]))
            noisy = (x[images_of_rows] + noise).astype(np.float32)
            np.add.at(total, images_of_rows, step(noisy, classes[images_of_rows]).numpy())
        grads = total / samples
        return normalize_maps(grads.max(axis=-1)) if self.normalize else grads
