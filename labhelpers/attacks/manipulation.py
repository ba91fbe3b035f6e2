"""Explanation manipulation (Ghorbani et al. 2019; Dombrowski et al. 2019): keep the class, pull the
map (saliency, SmoothGrad, Grad-CAM, differentiated on the softplus surrogate) toward a target region;
``corner_mask`` and ``region_mass`` describe that region."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..explain import context_for
from ..explain.graph import compiled, normalize, resize
from ..kerasapi import keras
from ..metrics.similarity import spearman_rows, ssim_rows
from .adversarial import _bounds, _margin
from .surrogate import softplus_rebuild

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


# ---------------------------------------------------------------------------- manipulation
def corner_mask(shape, corner: str = "top-left", fraction: float = 0.5) -> np.ndarray:
    """Boolean (H, W) mask of a corner square whose side is ``fraction`` of the image's."""
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
    h, w = int(shape[0]), int(shape[1])
    rh, rw = max(1, round(h * fraction)), max(1, round(w * fraction))
    mask = np.zeros((h, w), dtype=bool)
    rows = slice(0, rh) if corner.startswith("top") else slice(h - rh, h)
    cols = slice(0, rw) if corner.endswith("left") else slice(w - rw, w)
    mask[rows, cols] = True
    return mask


def region_mass(maps, mask) -> np.ndarray:
    """Share of each map's (non-negative) mass inside ``mask`` (H, W) or (N, H, W); 0 for an empty map."""
    maps = np.clip(np.asarray(maps, dtype=np.float64), 0, None)
    total = maps.reshape(len(maps), -1).sum(axis=1)
    inside = (maps * np.broadcast_to(mask, maps.shape)).reshape(len(maps), -1).sum(axis=1)
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def _layer_name(ex, layer):
    return ex.default_layer() if layer is None else ex.find_call(layer).layer.name


def _smooth_explanation(graph, method, layer_name, smooth_samples, smooth_noise):
    """f(x, classes, noise_seed) -> (maps (N,H,W) in [0,1], logits) on the softplus graph, differentiable in x."""
    if method == "gradcam":
        call = [c for c in graph.calls if c.layer.name == layer_name][-1]
        two = keras.Model(graph.input, [call.outputs[0], graph.output])

        def fn(x, classes, noise):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)  # so the path x -> feats -> logits is recorded
                feats, logits = two(x, training=False)
                score = tf.gather(logits, classes, axis=1, batch_dims=1)
            grads = tape.gradient(score, feats)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(feats * weights, axis=-1))
            return normalize(resize(cam, x.shape[1:3])), logits
        return fn
    model = graph.model

    def fn(x, classes, noise):
        copies = [x] if method == "saliency" else [x + noise[i] for i in range(smooth_samples)]
        total, logits = 0.0, None
        for xi in copies:
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(xi)
                out = model(xi, training=False)
                score = tf.gather(out, classes, axis=1, batch_dims=1)
            total += tf.reduce_max(tf.abs(tape.gradient(score, xi)), axis=-1)
            logits = out if logits is None else logits
        return normalize(total), model(x, training=False) if method != "saliency" else logits
    return fn


@dataclass
class ManipulationResult:
    """An explanation manipulation. ``maps_before`` / ``maps_after`` are the *real* model's maps
    (the Explainer's), ``target`` the (H, W) or (N, H, W) target map, ``mask`` the target region;
    ``prob_before`` / ``prob_after`` the kept class's probability."""

    method: str
    eps: float
    images: np.ndarray
    adversarial: np.ndarray
    classes: np.ndarray
    adv_pred: np.ndarray
    prob_before: np.ndarray
    prob_after: np.ndarray
    maps_before: np.ndarray
    maps_after: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    seconds: float = 0.0

    @property
    def kept(self) -> np.ndarray:
        return self.adv_pred == self.classes

    @property
    def kept_fraction(self) -> float:
        return float(self.kept.mean())

    @property
    def mass_before(self) -> np.ndarray:
        return region_mass(self.maps_before, self.mask)

    @property
    def mass_after(self) -> np.ndarray:
        return region_mass(self.maps_after, self.mask)

    @property
    def spearman(self) -> np.ndarray:
        return spearman_rows(self.maps_before, self.maps_after)

    @property
    def ssim(self) -> np.ndarray:
        return ssim_rows(self.maps_before, self.maps_after)

    def summary(self) -> str:
        return (f"{self.method}: eps {self.eps:g}, {self.kept_fraction:.0%} of predictions kept, mass in target "
                f"{self.mass_before.mean():.3f} -> {self.mass_after.mean():.3f}, Spearman "
                f"{self.spearman.mean():.3f}, SSIM {self.ssim.mean():.3f}, {self.seconds:.1f} s")


def real_maps(model, images, classes, method, layer=None, smooth_samples=16, smooth_noise=0.1, seed=0):
    """The real model's map: "saliency", "smoothgrad" (seeded) or "gradcam", via the Explainer."""
    ex = context_for(model)
    if method == "gradcam":
        return ex.gradcam(images, classes, layer=layer)
    samples = smooth_samples if method == "smoothgrad" else 0
    return ex.saliency(images, classes, smooth_samples=samples, smooth_noise=smooth_noise,
                       seed=seed if samples else None)


def manipulate_explanation(model, images, target, method: str = "gradcam", eps: float = 0.1, steps: int = 100,
                           step_size: float | None = None, beta: float = 20.0, prob_tolerance: float = 0.1,
                           class_weight: float = 1.0, kappa: float = 0.5, layer=None, clip=(0.0, 1.0),
                           smooth_samples: int = 8, smooth_noise: float = 0.1, map_loss: str = "mse",
                           seed: int = 0) -> ManipulationResult:
    """Pull ``method``'s map ("saliency", "smoothgrad" or "gradcam") toward ``target`` inside the eps-ball.

    target: an (H, W) or (N, H, W) map in [0, 1], or a boolean region (e.g. :func:`corner_mask`).
    Loss (minimised by signed steps, projected and clipped like PGD): the mean squared difference of
    the surrogate's normalised map and the target (``map_loss="mse"``; ``"mass"``: minus the share of the
    map's mass on the target, weighted by it), plus ``class_weight`` times a hinge that keeps the
    class logit ``kappa`` above the others. An iterate is accepted only if the *real* model still
    predicts the class and its probability moved by at most ``prob_tolerance``; the accepted iterate
    with the lowest map loss is returned (the clean image if none).
    """
    import time

    if map_loss not in ("mse", "mass"):
        raise ValueError(f"map_loss must be 'mse' or 'mass', got {map_loss!r}")
    if method not in ("saliency", "smoothgrad", "gradcam"):
        raise ValueError(f"method must be 'saliency', 'smoothgrad' or 'gradcam', got {method!r}")
    start = time.perf_counter()
    ex = context_for(model)
    x = ex.prepare(images)
    n, shape = len(x), x.shape[1:]
    classes = ex.classes(x, None)
    mask = np.asarray(target)
    goal = np.broadcast_to(mask.astype(np.float32), (n, *shape[:2])).copy()
    lo, hi = (tf.constant(b) for b in _bounds(clip, shape))
    size = float(step_size) if step_size is not None else 2.5 * eps / max(steps, 1)
    key = ("manipulation", method, map_loss, float(beta), layer, int(smooth_samples), shape)
    layer_name = _layer_name(ex, layer) if method == "gradcam" else None

    def make():
        graph = softplus_rebuild(model, beta, linear_head=True)
        explain = _smooth_explanation(graph, method, layer_name, smooth_samples, smooth_noise)

        def step(xc, x0, cls, goal_maps, noise):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(xc)
                maps, logits = explain(xc, cls, noise)
                if map_loss == "mass":
                    share = tf.reduce_sum(maps * goal_maps, axis=(1, 2)) / (tf.reduce_sum(maps, axis=(1, 2)) + 1e-6)
                    loss = -share
                else:
                    loss = tf.reduce_mean(tf.square(maps - goal_maps), axis=(1, 2))
                hinge = tf.nn.relu(kappa + _margin(tf.cast(logits, tf.float32), cls))
                total = loss + class_weight * hinge
            grad = tape.gradient(total, xc)
            nxt = tf.clip_by_value(tf.clip_by_value(xc - size * tf.sign(grad), x0 - eps, x0 + eps), lo, hi)
            return nxt, loss
        return compiled(step, input_signature=None)  # one trace per batch and noise shape

    step = ex.function(key + (float(eps), size, float(kappa), float(class_weight),
                              hash(lo.numpy().tobytes() + hi.numpy().tobytes())), make)
    probs0 = tf.nn.softmax(ex.predict_logits(x)).numpy()
    p0 = probs0[np.arange(n), classes]
    rng = np.random.default_rng(seed)
    sigma = smooth_noise * (x.max(axis=(1, 2, 3), keepdims=True) - x.min(axis=(1, 2, 3), keepdims=True))
    best, best_loss = x.copy(), np.full(n, np.inf)
    current, x0, cls, goal_t = tf.constant(x), tf.constant(x), tf.constant(classes), tf.constant(goal)
    for _ in range(int(steps) + 1):
        k = smooth_samples if method == "smoothgrad" else 1
        noise = tf.constant((rng.standard_normal((k, *x.shape)) * sigma).astype(np.float32))
        nxt, map_loss = step(current, x0, cls, goal_t, noise)
        probs = tf.nn.softmax(ex.predict_logits(current.numpy())).numpy()
        ok = (probs.argmax(-1) == classes) & (np.abs(probs[np.arange(n), classes] - p0) <= prob_tolerance)
        better = ok & (map_loss.numpy() < best_loss)
        best_loss = np.where(better, map_loss.numpy(), best_loss)
        best[better] = current.numpy()[better]
        current = nxt
    probs1 = tf.nn.softmax(ex.predict_logits(best)).numpy()
    before = real_maps(model, x, classes, method, layer, seed=seed)
    after = real_maps(model, best, classes, method, layer, seed=seed)
    region = mask if mask.dtype == bool else mask >= 0.5
    return ManipulationResult(method, float(eps), x, best, classes, probs1.argmax(-1), p0,
                              probs1[np.arange(n), classes], before, after, goal, region,
                              time.perf_counter() - start)
