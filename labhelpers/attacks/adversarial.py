"""FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) under an L-infinity budget, and
``robustness_curve``: accuracy against eps. See :mod:`labhelpers.attacks` for the conventions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from ..explain import context_for
from ..explain.graph import compiled
from ..kerasapi import keras
from ..metrics import bootstrap_ci

LOSSES = ("margin", "ce")


# ---------------------------------------------------------------------------- losses
def _margin(logits, classes):
    """Best other logit minus the class logit, (N,)."""
    k = tf.shape(logits)[-1]
    one_hot = tf.one_hot(classes, k, dtype=logits.dtype)
    own = tf.reduce_sum(logits * one_hot, axis=-1)
    other = tf.reduce_max(logits - 1e9 * one_hot, axis=-1)
    return other - own


def attack_loss(logits, labels, target, targeted, loss: str):
    """Per-image loss the attack *maximises*: untargeted moves away from ``labels``, targeted
    moves toward ``target``. margin: best other logit minus the class logit (positive once
    misclassified / once the target wins); ce: the cross-entropy (minus it when targeted)."""
    logits = tf.cast(logits, tf.float32)
    if loss == "margin":
        return tf.where(targeted, -_margin(logits, target), _margin(logits, labels))
    ce = keras.losses.sparse_categorical_crossentropy
    return tf.where(targeted, -ce(target, logits, from_logits=True), ce(labels, logits, from_logits=True))


# ---------------------------------------------------------------------------- results
@dataclass
class AttackResult:
    """One attack on a batch. ``adversarial`` (N, H, W, C); ``labels`` the true classes;
    ``clean_pred`` / ``adv_pred`` the predicted classes before and after; ``target`` the
    target classes (targeted) or None; ``linf`` (N,) the perturbation's L-inf norm."""

    kind: str
    eps: float
    adversarial: np.ndarray
    labels: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    target: np.ndarray | None
    linf: np.ndarray
    seconds: float = 0.0

    @property
    def correct(self) -> np.ndarray:
        return self.adv_pred == self.labels

    @property
    def accuracy(self) -> float:
        """Accuracy under attack (on all images)."""
        return float(self.correct.mean())

    @property
    def clean_accuracy(self) -> float:
        return float((self.clean_pred == self.labels).mean())

    @property
    def success(self) -> np.ndarray:
        """Per image: targeted, the target class is predicted; untargeted, an image that was
        correctly classified no longer is (images already wrong count as not attacked: False)."""
        if self.target is not None:
            return self.adv_pred == self.target
        return (self.clean_pred == self.labels) & (self.adv_pred != self.labels)

    @property
    def success_rate(self) -> float:
        """Targeted: over all images; untargeted: over the images classified correctly before."""
        if self.target is not None:
            return float(self.success.mean())
        attacked = self.clean_pred == self.labels
        return float(self.success[attacked].mean()) if attacked.any() else 0.0

    def ci(self, n_boot: int = 1000, ci: float = 0.95, seed: int = 0):
        """``(mean, low, high)`` of the accuracy under attack (bootstrap)."""
        return bootstrap_ci(self.correct.astype(float), n_boot=n_boot, ci=ci, seed=seed)


@dataclass
class RobustnessResult:
    """Accuracy and success rate per eps, one :class:`AttackResult` per eps in ``results``."""

    kind: str
    eps: np.ndarray
    results: list = field(repr=False)

    @property
    def accuracy(self) -> np.ndarray:
        return np.array([r.accuracy for r in self.results])

    @property
    def success_rate(self) -> np.ndarray:
        return np.array([r.success_rate for r in self.results])

    def table(self) -> str:
        rows = [f"{'eps':>6}  {'accuracy':>8}  {'success':>7}"]
        rows += [f"{e:6.3f}  {r.accuracy:8.3f}  {r.success_rate:7.3f}"
                 for e, r in zip(self.eps, self.results, strict=True)]
        return "\n".join(rows)


# ---------------------------------------------------------------------------- FGSM / PGD
def _as_batch(ex, images, labels):
    x = ex.prepare(images)
    y = np.asarray(labels, dtype=np.int32).reshape(-1)
    if len(y) == 1 and len(x) > 1:
        y = np.full(len(x), y[0], dtype=np.int32)
    if len(y) != len(x):
        raise ValueError(f"got {len(y)} labels for {len(x)} images")
    return x, y


def _targets(target, n):
    if target is None:
        return None
    t = np.asarray(target, dtype=np.int32).reshape(-1)
    return np.full(n, t[0], dtype=np.int32) if len(t) == 1 else t


def _bounds(clip, shape):
    """``clip`` = (low, high), each a number or an array broadcasting to one image (the valid range
    after a per-channel preprocessing, say); None: unbounded."""
    if clip is None:
        return np.full(shape, -np.inf, np.float32), np.full(shape, np.inf, np.float32)
    return tuple(np.broadcast_to(np.asarray(c, dtype=np.float32), shape).copy() for c in clip)


def _step_function(ex, shape, loss: str):
    """Compiled (x, x0, labels, target, targeted, eps, step, lo, hi) -> (x_next, loss(x), logits(x))."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    model = ex.model_linear

    def make():
        spec = tf.TensorSpec((None, *shape), tf.float32)
        vec_i, scalar = tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.float32)

        bound = tf.TensorSpec(shape, tf.float32)  # the valid range, per pixel and channel

        def step(x, x0, labels, target, targeted, eps, size, lo, hi):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                logits = tf.cast(model(x, training=False), tf.float32)
                value = attack_loss(logits, labels, target, targeted, loss)
            grad = tape.gradient(value, x)
            x_next = x + size * tf.sign(grad)
            x_next = tf.clip_by_value(tf.clip_by_value(x_next, x0 - eps, x0 + eps), lo, hi)
            return x_next, value, logits

        return compiled(step, input_signature=[spec, spec, vec_i, vec_i, tf.TensorSpec((), tf.bool),
                                               scalar, scalar, bound, bound])

    return ex.function(("attack_step", loss, shape), make)


def pgd(model, images, labels, eps: float, steps: int = 40, step_size: float | None = None,
        random_start: bool = True, target=None, loss: str = "margin", clip=(0.0, 1.0),
        restarts: int = 1, seed: int = 0, batch_size: int = 256, _kind: str = "pgd") -> AttackResult:
    """Projected gradient descent (Madry et al.) under an L-inf budget ``eps``.

    clip: the valid input range (low, high), numbers or arrays broadcasting to one image.
    step_size: default ``2.5 * eps / steps`` (Madry et al.); ``eps = 0`` takes no step; random_start: start from a uniform
    point of the eps-ball; restarts: independent runs, the strongest kept per image. The iterate
    with the highest loss (that of ``loss``) is kept per image. Returns an :class:`AttackResult`.
    """
    import time

    start = time.perf_counter()
    ex = context_for(model)
    x, y = _as_batch(ex, images, labels)
    t = _targets(target, len(x))
    lo, hi = _bounds(clip, x.shape[1:])
    eps, steps = float(eps), int(steps)
    steps = steps if eps > 0 else 0  # a budget of 0 leaves every image as it is: score it, take no step
    size = float(step_size) if step_size is not None else 2.5 * eps / max(steps, 1)
    step = _step_function(ex, x.shape[1:], loss)
    rng = np.random.default_rng(seed)
    targeted = tf.constant(t is not None)
    best = x.copy()
    for sl in ex.chunks(len(x), batch_size):
        x0 = tf.constant(x[sl])
        yy = tf.constant(y[sl])
        tt = tf.constant(t[sl] if t is not None else y[sl])
        best_value = np.full(len(x[sl]), -np.inf, dtype=np.float32)
        args = (tf.constant(eps), tf.constant(size), tf.constant(lo), tf.constant(hi))
        for _ in range(max(int(restarts), 1)):
            current = x[sl]
            if random_start and eps > 0:
                current = np.clip(current + rng.uniform(-eps, eps, current.shape).astype(np.float32), lo, hi)
                current = current.astype(np.float32)
            current = tf.constant(current)
            for _ in range(steps + 1):  # the last pass only scores the final iterate
                nxt, value, _ = step(current, x0, yy, tt, targeted, *args)
                value = value.numpy()
                better = value > best_value
                best_value = np.where(better, value, best_value)
                best[sl][better] = current.numpy()[better]
                current = nxt
    clean = ex.predict_logits(x).argmax(-1)
    adv_pred = ex.predict_logits(best).argmax(-1)
    linf = np.abs(best - x).reshape(len(x), -1).max(axis=1)
    return AttackResult(_kind, eps, best, y, clean, adv_pred, t, linf, time.perf_counter() - start)


def fgsm(model, images, labels, eps: float, target=None, loss: str = "ce", clip=(0.0, 1.0),
         batch_size: int = 256) -> AttackResult:
    """Fast gradient sign method (Goodfellow et al.): one step ``x + eps * sign(grad)``
    (toward the target when targeted), clipped to ``clip``. Cross-entropy by default, as in the paper."""
    return pgd(model, images, labels, eps, steps=1, step_size=eps, random_start=False, target=target,
               loss=loss, clip=clip, batch_size=batch_size, _kind="fgsm")


def robustness_curve(model, images, labels, eps_values, attack: str = "pgd", **kwargs) -> RobustnessResult:
    """Accuracy under attack and success rate for each eps (``attack``: "fgsm" or "pgd")."""
    fn = {"fgsm": fgsm, "pgd": pgd}.get(attack)
    if fn is None:
        raise ValueError(f"attack must be 'fgsm' or 'pgd', got {attack!r}")
    results = [fn(model, images, labels, float(e), **kwargs) for e in eps_values]
    return RobustnessResult(attack, np.asarray(eps_values, dtype=float), results)
