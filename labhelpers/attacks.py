"""Attacks on the network and on its explanation, and how to measure them.

    adv = fgsm(model, images, labels, eps=0.05)                     # adv.adversarial, adv.accuracy
    adv = pgd(model, images, labels, eps=0.05, steps=40)            # random start, best iterate kept
    curve = robustness_curve(model, images, labels, [0, 0.02, 0.05], attack="pgd")
    surrogate = SoftplusSurrogate(beta=20)(model)                   # ReLU -> softplus, shared weights
    man = manipulate_explanation(model, images, corner_mask((28, 28), "top-left"), method="gradcam")
    stab = max_sensitivity(method, model, images, radius=0.02)      # Yeh et al. 2019

FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) under an L-infinity budget ``eps``,
untargeted (``target=None``: push away from ``labels``) or targeted (``target``: one class for all
images or one per image), with a margin loss on the logits (Carlini & Wagner: the best other logit
minus the class logit) or cross-entropy. Every iterate is projected onto the eps-ball around the
image and clipped to the valid input range ``clip``. PGD keeps, per image, the iterate with the
highest loss (so a success met on the way is never lost). Images are used as given (apply the
model's preprocessing first); ``eps`` and ``clip`` are in those units.

Explanation manipulation (Ghorbani et al. 2019; Dombrowski et al. 2019): a perturbation inside the
eps-ball that keeps the predicted class (and its probability within ``prob_tolerance``) while the
explanation (saliency, SmoothGrad or Grad-CAM) is pulled toward a target map. A ReLU network's
input gradient is piecewise constant, so the gradient *of the explanation* is zero almost
everywhere: the explanation is differentiated on :class:`SoftplusSurrogate` (every ReLU-like
nonlinearity replaced by softplus with a large ``beta``), and measured on the real model.

The caller's model is never changed: the logits come from the Explainer's linear-head rebuild and
the surrogate is another rebuild from views of the same layers (:mod:`labhelpers.modifiers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from . import modifiers
from .attribution import _explainer
from .explain import _normalize, _resize
from .kerasapi import keras
from .metrics import bootstrap_ci
from .similarity import spearman_rows, ssim_rows

LOSSES = ("margin", "ce")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


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
    x = ex._prepare(images)
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

        @tf.function(input_signature=[spec, spec, vec_i, vec_i, tf.TensorSpec((), tf.bool),
                                      scalar, scalar, bound, bound])
        def step(x, x0, labels, target, targeted, eps, size, lo, hi):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                logits = tf.cast(model(x, training=False), tf.float32)
                value = attack_loss(logits, labels, target, targeted, loss)
            grad = tape.gradient(value, x)
            x_next = x + size * tf.sign(grad)
            x_next = tf.clip_by_value(tf.clip_by_value(x_next, x0 - eps, x0 + eps), lo, hi)
            return x_next, value, logits

        return step

    return ex._function(("attack_step", loss, shape), make)


def pgd(model, images, labels, eps: float, steps: int = 40, step_size: float | None = None,
        random_start: bool = True, target=None, loss: str = "margin", clip=(0.0, 1.0),
        restarts: int = 1, seed: int = 0, batch_size: int = 256, _kind: str = "pgd") -> AttackResult:
    """Projected gradient descent (Madry et al.) under an L-inf budget ``eps``.

    clip: the valid input range (low, high), numbers or arrays broadcasting to one image.
    step_size: default ``2.5 * eps / steps`` (Madry et al.); random_start: start from a uniform
    point of the eps-ball; restarts: independent runs, the strongest kept per image. The iterate
    with the highest loss (that of ``loss``) is kept per image. Returns an :class:`AttackResult`.
    """
    import time

    start = time.perf_counter()
    ex = _explainer(model)
    x, y = _as_batch(ex, images, labels)
    t = _targets(target, len(x))
    lo, hi = _bounds(clip, x.shape[1:])
    eps, steps = float(eps), int(steps)
    size = float(step_size) if step_size is not None else 2.5 * eps / max(steps, 1)
    step = _step_function(ex, x.shape[1:], loss)
    rng = np.random.default_rng(seed)
    targeted = tf.constant(t is not None)
    best = x.copy()
    for sl in ex._chunks(len(x), batch_size):
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
    clean = ex._predict_logits(x).argmax(-1)
    adv_pred = ex._predict_logits(best).argmax(-1)
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


# ---------------------------------------------------------------------------- softplus surrogate
def smooth_activation(fn, beta: float):
    """A smooth stand-in for a ReLU-like ``fn``: softplus_beta(z) = softplus(beta z) / beta for
    ReLU, ``a z + (1 - a) softplus_beta(z)`` for a leaky ReLU of slope ``a``, and
    ``softplus_beta(z) - softplus_beta(z - 6)`` for ReLU6. Converges to ``fn`` as beta grows."""
    owner = getattr(fn, "__self__", None)
    slope = float(getattr(owner, "negative_slope", getattr(owner, "alpha", 0.0)) or 0.0)
    name = getattr(fn, "__name__", "")
    if name == "leaky_relu" and owner is None:
        slope = 0.2  # keras.activations.leaky_relu's default
    cap = getattr(owner, "max_value", None)
    if name == "relu6" or fn is tf.nn.relu6:
        cap = 6.0
    beta = float(beta)

    def sp(z):
        return tf.nn.softplus(beta * z) / beta

    def activation(z):
        y = sp(z) if cap is None else sp(z) - sp(z - float(cap))
        return slope * z + (1.0 - slope) * y if slope else y

    activation.__name__ = f"softplus{beta:g}_{name or 'relu'}"
    return activation


class _SmoothLayer(keras.layers.Layer):
    """Stand-in for a ``ReLU`` / ``LeakyReLU`` layer: its smooth surrogate."""

    def __init__(self, fn, name):
        super().__init__(name=name, trainable=False)
        object.__setattr__(self, "_fn", fn)  # not tracked

    def call(self, inputs):
        return self._fn(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


class _SoftplusBuilder(modifiers._Builder):
    def __init__(self, beta, linear_head):
        super().__init__(None, linear_head)
        self.beta = beta

    def _make_stand_in(self, op, is_output):
        activation = getattr(op, "activation", None)
        if is_output and self.linear_head:
            return super()._make_stand_in(op, is_output)
        if isinstance(op, modifiers._relu_layer_types()):
            self.replaced.append(op.name)
            return _SmoothLayer(smooth_activation(op.call, self.beta), name=self.unique_name(op.name))
        if modifiers.is_relu_like(activation):
            if not (isinstance(op, modifiers.FUSED_TYPES) or isinstance(op, keras.layers.Activation)):
                raise NotImplementedError(f"layer {op.name!r} ({type(op).__name__}) has a ReLU inside a call "
                                          "this module does not know; cannot make it smooth")
            self.replaced.append(op.name)
            return modifiers._view(op, self.unique_name(op.name),
                                   activation=smooth_activation(activation, self.beta))
        return super()._make_stand_in(op, is_output)


def softplus_rebuild(model, beta: float = 20.0, linear_head: bool = True) -> modifiers.RebuiltGraph:
    """:func:`labhelpers.modifiers.rebuild` with every ReLU-like nonlinearity made smooth."""
    modifiers.ensure_built(model)
    inputs = modifiers._model_inputs(model)
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r}: single-input, single-output classifiers only")
    template = inputs[0]
    new_input = keras.Input(shape=tuple(template.shape[1:]), dtype=template.dtype, name=f"{model.name}_input")
    builder = _SoftplusBuilder(float(beta), linear_head)
    input_layer = getattr(template, "_keras_history", (None,))[0]
    if input_layer is not None:
        builder.calls.append(modifiers.LayerCall(input_layer, new_input._keras_history[0], [], [new_input]))
    output = builder.walk(model, [new_input], is_output=True)[0]
    new_model = keras.Model(new_input, output, name=f"{model.name}_softplus")
    return modifiers.RebuiltGraph(new_model, new_input, output, builder.calls, builder.replaced)


class SoftplusSurrogate(modifiers._Modifier):
    """ReLU -> softplus with a large ``beta`` (Dombrowski et al. 2019): a smooth copy of the
    model whose explanations have useful second derivatives. Returns a new model sharing the
    weights (the caller's is never changed); ``linear_head=True`` also makes the output logits."""

    def __init__(self, beta: float = 20.0, linear_head: bool = False):
        self.beta, self.linear_head = float(beta), bool(linear_head)

    def __call__(self, model):
        return softplus_rebuild(model, self.beta, self.linear_head).model

    def __repr__(self):
        return f"SoftplusSurrogate(beta={self.beta:g}, linear_head={self.linear_head})"


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
    return ex.default_layer() if layer is None else ex._find_call(layer, ex._graph("vanilla"), True).layer.name


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
            return _normalize(_resize(cam, x.shape[1:3])), logits
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
        return _normalize(total), model(x, training=False) if method != "saliency" else logits
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
    ex = _explainer(model)
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
    ex = _explainer(model)
    x = ex._prepare(images)
    n, shape = len(x), x.shape[1:]
    classes = ex._classes(x, None)
    mask = np.asarray(target)
    goal = np.broadcast_to(mask.astype(np.float32), (n, *shape[:2])).copy()
    lo, hi = (tf.constant(b) for b in _bounds(clip, shape))
    size = float(step_size) if step_size is not None else 2.5 * eps / max(steps, 1)
    key = ("manipulation", method, map_loss, float(beta), layer, int(smooth_samples), shape)
    layer_name = _layer_name(ex, layer) if method == "gradcam" else None

    def make():
        graph = softplus_rebuild(model, beta, linear_head=True)
        explain = _smooth_explanation(graph, method, layer_name, smooth_samples, smooth_noise)

        @tf.function
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
        return step

    step = ex._function(key + (float(eps), size, float(kappa), float(class_weight),
                              hash(lo.numpy().tobytes() + hi.numpy().tobytes())), make)
    probs0 = tf.nn.softmax(ex._predict_logits(x)).numpy()
    p0 = probs0[np.arange(n), classes]
    rng = np.random.default_rng(seed)
    sigma = smooth_noise * (x.max(axis=(1, 2, 3), keepdims=True) - x.min(axis=(1, 2, 3), keepdims=True))
    best, best_loss = x.copy(), np.full(n, np.inf)
    current, x0, cls, goal_t = tf.constant(x), tf.constant(x), tf.constant(classes), tf.constant(goal)
    for _ in range(int(steps) + 1):
        k = smooth_samples if method == "smoothgrad" else 1
        noise = tf.constant((rng.standard_normal((k, *x.shape)) * sigma).astype(np.float32))
        nxt, map_loss = step(current, x0, cls, goal_t, noise)
        probs = tf.nn.softmax(ex._predict_logits(current.numpy())).numpy()
        ok = (probs.argmax(-1) == classes) & (np.abs(probs[np.arange(n), classes] - p0) <= prob_tolerance)
        better = ok & (map_loss.numpy() < best_loss)
        best_loss = np.where(better, map_loss.numpy(), best_loss)
        best[better] = current.numpy()[better]
        current = nxt
    probs1 = tf.nn.softmax(ex._predict_logits(best)).numpy()
    before = real_maps(model, x, classes, method, layer, seed=seed)
    after = real_maps(model, best, classes, method, layer, seed=seed)
    region = mask if mask.dtype == bool else mask >= 0.5
    return ManipulationResult(method, float(eps), x, best, classes, probs1.argmax(-1), p0,
                              probs1[np.arange(n), classes], before, after, goal, region,
                              time.perf_counter() - start)


# ---------------------------------------------------------------------------- stability
@dataclass
class StabilityResult:
    """Max-sensitivity (Yeh et al. 2019) of one method: per image, the largest RMS change of the
    map over ``n_samples`` uniform perturbations in the L-inf ball of ``radius`` (``values``), and
    the mean RMS change (``average``, Xplique's AverageStability)."""

    method: str
    radius: float
    n_samples: int
    values: np.ndarray
    average: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    def ci(self, n_boot: int = 1000, ci: float = 0.95, seed: int = 0):
        return bootstrap_ci(self.values, n_boot=n_boot, ci=ci, seed=seed)


def max_sensitivity(method, model, images, classes=None, radius: float = 0.02, n_samples: int = 8,
                    clip=(0.0, 1.0), seed: int = 0, name: str = "") -> StabilityResult:
    """Stability of ``method`` (``f(model, images, classes) -> (N, H, W)`` maps, as from
    :func:`labhelpers.metrics.explanation_methods`) under small uniform noise; the class of each image
    stays that of the clean image. 0 for an explanation that does not change; lower is more stable."""
    ex = _explainer(model)
    x = ex._prepare(images)
    classes = ex._classes(x, classes)
    base = np.asarray(method(model, x, classes), dtype=np.float64)
    rng = np.random.default_rng(seed)
    changes = []
    for _ in range(int(n_samples)):
        noisy = x + rng.uniform(-radius, radius, x.shape).astype(np.float32)
        if clip is not None:
            noisy = np.clip(noisy, clip[0], clip[1])
        maps = np.asarray(method(model, noisy, classes), dtype=np.float64)
        changes.append(np.sqrt(((maps - base) ** 2).reshape(len(x), -1).mean(axis=1)))
    changes = np.stack(changes, axis=1)
    return StabilityResult(name or getattr(method, "__name__", "method"), float(radius), int(n_samples),
                           changes.max(axis=1), changes.mean(axis=1))


__all__ = ["fgsm", "pgd", "robustness_curve", "attack_loss", "AttackResult", "RobustnessResult",
           "SoftplusSurrogate", "softplus_rebuild", "smooth_activation", "corner_mask", "region_mass",
           "manipulate_explanation", "ManipulationResult", "real_maps", "max_sensitivity", "StabilityResult"]
