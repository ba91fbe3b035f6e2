"""Perturbation and path attributions: occlusion sensitivity and integrated gradients.

    occ = occlusion(model, images, classes=None, patch=4, stride=2)   # occ.maps (N, H, W)
    ig = integrated_gradients(model, images, steps=64)                  # ig.attributions (N, H, W, C)
    ig.completeness_error                                               # (N,) relative

Both explain the class's pre-softmax score (the logit from the Explainer's ``model_linear``, as
every method of the course does) unless ``score="probability"``; ``classes`` as in the Explainer
(None: the predicted class). Images are used as given (apply the model's preprocessing first);
a baseline is a number, an array broadcasting to one image, or one per image. Every forward or
backward pass goes through one compiled step with a free batch axis, ``batch_size`` images at a
time; ``batch_size=1`` is the one-patch / one-point-per-call variant the benchmark compares.
The caller's model is never changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..maps import normalize_maps
from .base import Method
from .context import ModelContext, context_for
from .graph import compiled
from .graph import score as class_score


def _baseline(x: np.ndarray, baseline) -> np.ndarray:
    base = np.asarray(baseline, dtype=np.float32)
    try:
        return np.broadcast_to(base, x.shape).astype(np.float32)
    except ValueError:
        raise ValueError(f"baseline of shape {base.shape} does not broadcast to the images {x.shape}") from None


def _score_function(ex: ModelContext, shape, score: str):
    """Compiled (images, classes) -> score of each image's class (logit or probability)."""
    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")
    model = ex.model_linear

    def make():
        def fn(images, classes):
            logits = tf.cast(model(images, training=False), tf.float32)
            if score == "probability":
                logits = tf.nn.softmax(logits, axis=-1)
            return class_score(logits, classes)
        return compiled(fn, input_signature=ex.signature(shape))

    return ex.function(("attribution_score", score, shape), make)


@dataclass
class OcclusionResult:
    """``maps`` (N, H, W): per pixel, the mean drop of the class score over the patches that
    cover it (positive: hiding it lowers the score). ``drops`` (N, rows, cols): the drop for each
    patch position (top-left corners ``ys`` x ``xs``). ``scores`` (N,): the intact images' scores."""

    maps: np.ndarray
    drops: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    seconds: float


def _positions(size: int, patch: int, stride: int) -> np.ndarray:
    last = size - patch
    pos = list(range(0, last + 1, stride))
    if pos[-1] != last:  # the last patch touches the border, so every pixel is covered
        pos.append(last)
    return np.asarray(pos)


def occlusion(model, images, classes=None, patch=4, stride=None, baseline=0.0, batch_size: int = 64,
              score: str = "logit") -> OcclusionResult:
    """Occlusion sensitivity (Zeiler & Fergus 2014): replace a ``patch`` x ``patch`` square (all
    channels) by ``baseline``, slide it by ``stride`` (default: ``patch``, no overlap), and record
    how much the class score drops. The patched copies of all the images go through the compiled step
    ``batch_size`` at a time, image after image: ``ceil(n * rows * cols / batch_size)`` forward passes."""
    ex = context_for(model)
    x = ex.prepare(images)
    cls = ex.classes(x, classes)
    n, h, w, _ = x.shape
    ph, pw = (patch, patch) if np.isscalar(patch) else tuple(patch)
    sh, sw = (ph, pw) if stride is None else ((stride, stride) if np.isscalar(stride) else tuple(stride))
    if not (0 < ph <= h and 0 < pw <= w and sh > 0 and sw > 0):
        raise ValueError(f"patch {(ph, pw)} and stride {(sh, sw)} must be positive and fit the image {(h, w)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ys, xs = _positions(h, ph, sh), _positions(w, pw, sw)
    base = _baseline(x, baseline)
    fn = _score_function(ex, x.shape[1:], score)
    started = time.perf_counter()
    scores = fn(x, cls).numpy()
    corners = [(y, xx) for y in ys for xx in xs]
    rows = [(i, k) for i in range(n) for k in range(len(corners))]  # every patched copy, image after image
    drops = np.empty((n, len(corners)), np.float32)
    for s in range(0, len(rows), int(batch_size)):  # full batches across images: fewer, fuller calls
        part = rows[s:s + int(batch_size)]
        images_of = np.array([i for i, _ in part])
        batch = x[images_of].copy()
        for j, (i, k) in enumerate(part):
            y, xx = corners[k]
            batch[j, y:y + ph, xx:xx + pw] = base[i, y:y + ph, xx:xx + pw]
        drops[images_of, [k for _, k in part]] = scores[images_of] - fn(batch, cls[images_of]).numpy()
    total = np.zeros((n, h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for k, (y, xx) in enumerate(corners):
        total[:, y:y + ph, xx:xx + pw] += drops[:, k, None, None]
        count[y:y + ph, xx:xx + pw] += 1
    return OcclusionResult(maps=(total / count).astype(np.float32), drops=drops.reshape(n, len(ys), len(xs)),
                           scores=scores, classes=cls, ys=ys, xs=xs, seconds=time.perf_counter() - started)


@dataclass
class IntegratedGradientsResult:
    """``attributions`` (N, H, W, C): (x - x') times the path-averaged gradient. ``maps`` (N, H, W):
    their sum over channels (signed). ``scores`` / ``baseline_scores`` (N,): f(x), f(x').
    ``completeness_error`` (N,): |sum(attributions) - (f(x) - f(x'))| / |f(x) - f(x')|, which a
    Riemann sum with enough steps drives to 0 (Sundararajan et al.'s completeness axiom)."""

    attributions: np.ndarray
    maps: np.ndarray
    scores: np.ndarray
    baseline_scores: np.ndarray
    completeness_error: np.ndarray
    classes: np.ndarray
    steps: int
    seconds: float


def integrated_gradients(model, images, classes=None, baseline=0.0, steps: int = 64, method: str = "midpoint",
                         batch_size: int = 64) -> IntegratedGradientsResult:
    """Integrated gradients (Sundararajan et al. 2017) of the class logit along the straight path
    from ``baseline`` to each image. method: "midpoint" (``steps`` points at (k + 1/2) / steps,
    so ``steps`` gradients per image) or "trapezoid" (``steps + 1`` points, both ends included;
    at an all-zero input a ReLU network's gradient is often 0, which costs the trapezoid rule
    1 / (2 steps) of completeness). All points of all images go
    through the compiled gradient step ``batch_size`` at a time, or fewer where the model's
    activations for that many would pass ``GRADIENT_BYTES`` (``ModelContext.gradient_rows``:
    VGG16 5 at a time, a small CNN all 64)."""
    ex = context_for(model)
    x = ex.prepare(images)
    cls = ex.classes(x, classes)
    steps, batch_size = int(steps), int(batch_size)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    if method == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
        weights = np.full(steps + 1, 1.0 / steps, np.float32)
        weights[[0, -1]] /= 2
    elif method == "midpoint":
        alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)
        weights = np.full(steps, 1.0 / steps, np.float32)
    else:
        raise ValueError(f"method must be 'trapezoid' or 'midpoint', got {method!r}")
    base = _baseline(x, baseline)
    grad_fn = ex.input_gradient_step("vanilla", x.shape[1:], "raw")
    batch_size = ex.gradient_rows(most=batch_size)
    score_fn = _score_function(ex, x.shape[1:], "logit")
    started = time.perf_counter()
    n, k = len(x), len(alphas)
    avg = np.zeros(x.shape, np.float64)
    for s in range(0, n * k, batch_size):  # (image, point) pairs, batch_size at a time
        pair = np.arange(s, min(s + batch_size, n * k))
        img, point = pair // k, pair % k
        a = alphas[point][:, None, None, None]
        path = base[img] + a * (x[img] - base[img])
        grads = grad_fn(path.astype(np.float32), cls[img]).numpy()
        np.add.at(avg, img, grads * weights[point][:, None, None, None])
    attributions = ((x - base) * avg).astype(np.float32)
    scores, base_scores = score_fn(x, cls).numpy(), score_fn(base, cls).numpy()
    seconds = time.perf_counter() - started
    gap = scores.astype(np.float64) - base_scores
    total = attributions.reshape(n, -1).sum(axis=1, dtype=np.float64)
    error = np.abs(total - gap) / np.maximum(np.abs(gap), 1e-12)
    return IntegratedGradientsResult(attributions=attributions, maps=attributions.sum(axis=-1), scores=scores,
                                     baseline_scores=base_scores, completeness_error=error, classes=cls,
                                     steps=steps, seconds=seconds)


class Occlusion(Method):
    """Occlusion sensitivity in [0, 1] (per-image min-max of the signed map, so positive evidence
    ranks first): a patch of ``patch`` px (default: a seventh of the image side, at least 2), stride
    half of it."""

    name, label = "occlusion", "Occlusion"
    options = {"patch": None, "baseline": 0.0}

    def compute(self, ctx, x, classes):
        patch = self.patch or max(2, round(x.shape[1] / 7))
        # small images, fuller batches: 48 Fashion images, 169 copies each, 0.72 s at 256 rows vs 0.89 s at 64
        rows = 256 if x.shape[1] * x.shape[2] <= 64 * 64 else 64
        return normalize_maps(occlusion(ctx, x, classes, patch=patch, stride=max(1, patch // 2),
                                        baseline=self.baseline, batch_size=rows).maps)


class IntegratedGradients(Method):
    """Integrated gradients in [0, 1] (per-image min-max of the signed channel sum), ``ig_steps`` points."""

    name, label = "integrated gradients", "Integrated gradients"
    options = {"ig_steps": 32, "baseline": 0.0}

    def compute(self, ctx, x, classes):
        return normalize_maps(integrated_gradients(ctx, x, classes, baseline=self.baseline, steps=self.ig_steps).maps)


__all__ = ["IntegratedGradients", "IntegratedGradientsResult", "Occlusion", "OcclusionResult",
           "integrated_gradients", "occlusion"]
