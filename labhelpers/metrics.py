"""Measure explanations instead of judging them by eye.

* Faithfulness: ``deletion_auc`` and ``insertion_auc`` (RISE, Petsiuk et al. 2018)
  remove or insert pixels in order of decreasing attribution and integrate the class
  probability over the fraction of pixels changed.
* Sanity: ``randomization_check`` (Adebayo et al. 2018) re-initialises the model's
  layers from the output backwards, on a copy, and measures how much each method's
  maps change (Spearman rank correlation, SSIM).
* Localisation: ``pointing_game`` (Zhang et al. 2016): does the map's maximum fall
  inside an object mask?
* Baselines every method should beat: ``random_map`` and ``edge_map``; and
  ``bootstrap_ci`` for the tables.

Maps are ``(N, H, W)`` arrays in any range; images are ``(N, H, W, C)`` arrays as
the model takes them. TensorFlow is only used through the model calls; data loading
is never imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .similarity import spearman_rows, ssim_rows  # noqa: F401  (re-exported: lab 04 and 06 use metrics.*)

MapMethod = Callable[[object, np.ndarray, np.ndarray], np.ndarray]
BASELINES = ("zero", "blur", "mean")


# ----------------------------------------------------------------------------- checks
def _as_images(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(
            f"images must be a batch (N, H, W, C) as the model takes it; got shape {images.shape}"
            + (" (add the channel axis: images[..., None])" if images.ndim == 3 else "")
        )
    return images


def _as_maps(maps, images: np.ndarray | None = None, name: str = "maps") -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if maps.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W); got {maps.shape}")
    if images is not None and maps.shape != images.shape[:3]:
        raise ValueError(
            f"{name} have shape {maps.shape} but the images are {images.shape}: "
            f"one (H, W) map per image is needed, i.e. {images.shape[:3]}"
        )
    if not np.all(np.isfinite(maps)):
        bad = np.unique(np.nonzero(~np.isfinite(maps))[0])
        raise ValueError(f"{name} contain NaN or infinite values (images {bad[:10].tolist()})")
    return maps


def _as_classes(classes, n: int) -> np.ndarray:
    classes = np.asarray(classes)
    if classes.ndim == 0:
        classes = np.full(n, int(classes))
    if classes.shape != (n,) or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"classes must be one integer or {n} integers (one per image); got {classes!r}")
    return classes.astype(np.int64)


# ------------------------------------------------------------------ small building blocks
def area_under_curve(fractions, curve) -> np.ndarray:
    """Trapezoid-rule area of ``curve`` (..., K) over ``fractions`` (K,) in [0, 1]."""
    fractions = np.asarray(fractions, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    if fractions.ndim != 1 or curve.shape[-1] != fractions.shape[0]:
        raise ValueError(f"curve {curve.shape} does not match fractions {fractions.shape}")
    return np.trapezoid(curve, fractions, axis=-1)


def bootstrap_ci(values, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap confidence interval.

    Returns ``(mean, low, high)``; resamples the values with replacement ``n_boot``
    times (vectorised) and takes the ``(1-ci)/2`` and ``(1+ci)/2`` quantiles of the means.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.all(np.isfinite(values)):
        raise ValueError("bootstrap_ci got NaN or infinite values; drop them first and say so")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1); got {ci}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(int(n_boot), values.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return float(values.mean()), float(low), float(high)


def random_map(shape, seed: int = 0) -> np.ndarray:
    """Uniform noise maps in [0, 1) of ``shape`` (N, H, W): the chance baseline."""
    return np.random.default_rng(seed).random(tuple(shape))


def _grey(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        if images.shape[-1] == 3:  # ITU-R 601 luma, as skimage.color.rgb2gray
            return images @ np.array([0.299, 0.587, 0.114])
        return images.mean(axis=-1)
    if images.ndim == 3:
        return images
    raise ValueError(f"images must be (N, H, W) or (N, H, W, C); got {images.shape}")


def edge_map(images) -> np.ndarray:
    """Sobel gradient magnitude of the grey input, each map scaled to max 1.

    The "explanation" an edge detector gives, knowing nothing of the model: a method
    whose maps resemble it (and survive model randomisation) explains the image, not
    the network.
    """
    from scipy import ndimage

    grey = _grey(images)
    gy = ndimage.sobel(grey, axis=1, mode="nearest")
    gx = ndimage.sobel(grey, axis=2, mode="nearest")
    magnitude = np.hypot(gx, gy)
    peak = magnitude.reshape(len(magnitude), -1).max(axis=1)
    return magnitude / np.where(peak > 0, peak, 1.0)[:, None, None]


# ------------------------------------------------------------------ deletion / insertion
@dataclass
class PerturbationResult:
    """Curves of a deletion or insertion run.

    ``fractions`` (steps+1,): fraction of pixels removed (deletion) or inserted
    (insertion), from 0 to 1. ``curves`` (N, steps+1): probability of each image's
    class at each fraction. ``areas`` (N,): trapezoid area under each curve over
    [0, 1]. Deletion: lower is better (the map found what matters); insertion:
    higher is better.
    """

    kind: str
    baseline: str
    fractions: np.ndarray
    curves: np.ndarray
    areas: np.ndarray
    classes: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.areas.mean())

    def ci(self, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
        """``(mean, low, high)`` of the areas (bootstrap)."""
        return bootstrap_ci(self.areas, n_boot=n_boot, ci=ci, seed=seed)


def _baseline_images(images: np.ndarray, baseline, blur_sigma: float | None) -> np.ndarray:
    if isinstance(baseline, str):
        if baseline == "zero":
            return np.zeros_like(images)
        if baseline == "mean":  # each image's own per-channel mean
            return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).astype(images.dtype)
        if baseline == "blur":
            from scipy import ndimage

            sigma = blur_sigma if blur_sigma is not None else max(1.0, max(images.shape[1:3]) / 14)
            return ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="nearest").astype(images.dtype)
        raise ValueError(f"unknown baseline {baseline!r}; use one of {BASELINES} or an array like the images")
    base = np.asarray(baseline, dtype=images.dtype)
    try:
        return np.broadcast_to(base, images.shape)
    except ValueError:
        raise ValueError(f"baseline array of shape {base.shape} does not broadcast to the images {images.shape}") from None


def _forward(model, batch: np.ndarray) -> np.ndarray:
    """One forward pass: a Keras model's compiled predict, or any callable."""
    if hasattr(model, "predict_on_batch"):
        out = model.predict_on_batch(batch)
    else:
        out = model(batch)
    return np.asarray(out)


def _class_probabilities(model, batch, classes, apply_softmax: bool) -> np.ndarray:
    out = _forward(model, batch).astype(np.float64)
    if out.ndim != 2:
        raise ValueError(f"the model must output (batch, classes) scores; it gave shape {out.shape}")
    if classes.max() >= out.shape[1]:
        raise ValueError(f"class {int(classes.max())} asked for, but the model has {out.shape[1]} outputs")
    if apply_softmax:
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    elif out.min() < -1e-6 or out.max() > 1 + 1e-6:
        raise ValueError(
            f"the model's outputs are not probabilities (range {out.min():.3g} .. {out.max():.3g}); "
            "pass apply_softmax=True for a model that outputs logits"
        )
    return out[np.arange(len(out)), classes]


def _perturbation_curves(kind, model, images, maps, classes, steps, baseline, batch_size, blur_sigma,
                         apply_softmax) -> PerturbationResult:
    images = _as_images(images)
    maps = _as_maps(maps, images)
    n, h, w, _ = images.shape
    classes = _as_classes(classes, n)
    steps, batch_size = int(steps), int(batch_size)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive; got steps={steps}, batch_size={batch_size}")
    n_pixels = h * w
    base = _baseline_images(images, baseline, blur_sigma)

    # rank[i, p]: position of pixel p in image i's order of decreasing attribution; a
    # stable sort breaks ties by raster position, so equal maps give equal orders.
    order = np.argsort(-maps.reshape(n, n_pixels), axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(n_pixels)
    counts = np.round(np.linspace(0, n_pixels, steps + 1)).astype(np.int64)  # pixels changed per step
    fractions = counts / n_pixels

    # Every (image, step) pair is one perturbed image; build them batch by batch as
    # one tensor operation and score each batch with a single forward pass.
    total = n * (steps + 1)
    scores = np.empty(total)
    flat_images, flat_base = images.reshape(n, n_pixels, -1), base.reshape(n, n_pixels, -1)
    for start in range(0, total, batch_size):
        pair = np.arange(start, min(start + batch_size, total))
        img, step = pair // (steps + 1), pair % (steps + 1)
        changed = (rank[img] < counts[step][:, None])[..., None]  # (B, P, 1)
        if kind == "deletion":
            batch = np.where(changed, flat_base[img], flat_images[img])
        else:
            batch = np.where(changed, flat_images[img], flat_base[img])
        scores[pair] = _class_probabilities(model, batch.reshape(len(pair), *images.shape[1:]),
                                            classes[img], apply_softmax)
    curves = scores.reshape(n, steps + 1)
    return PerturbationResult(kind=kind, baseline=str(baseline) if isinstance(baseline, str) else "array",
                              fractions=fractions, curves=curves, areas=area_under_curve(fractions, curves),
                              classes=classes)


def deletion_auc(model, images, maps, classes, steps: int = 50, baseline="zero", batch_size: int = 256,
                 blur_sigma: float | None = None, apply_softmax: bool = False) -> PerturbationResult:
    """Deletion metric: set pixels to the baseline in order of decreasing attribution.

    ``steps`` equal slices of the pixels are removed one after another (all channels
    of a pixel together); the class probability is recorded after each, from the
    intact image (fraction 0) to the full baseline (fraction 1). A faithful map makes
    the probability fall fast: a LOW area is good.

    baseline: ``"zero"`` (black), ``"blur"`` (Gaussian blur of the image,
    ``blur_sigma`` px, default max(1, size/14)), ``"mean"`` (the image's per-channel
    mean) or an array that broadcasts to the images.
    The model must output probabilities (B, K), or logits with ``apply_softmax=True``.
    Costs ``ceil(N * (steps + 1) / batch_size)`` forward passes.
    """
    return _perturbation_curves("deletion", model, images, maps, classes, steps, baseline, batch_size,
                                blur_sigma, apply_softmax)


def insertion_auc(model, images, maps, classes, steps: int = 50, baseline="blur", batch_size: int = 256,
                  blur_sigma: float | None = None, apply_softmax: bool = False) -> PerturbationResult:
    """Insertion metric: start from the baseline image and put pixels back in order of
    decreasing attribution. A faithful map makes the probability rise fast: a HIGH
    area is good. Arguments as in :func:`deletion_auc` (RISE inserts into a blurred
    image, hence the ``"blur"`` default)."""
    return _perturbation_curves("insertion", model, images, maps, classes, steps, baseline, batch_size,
                                blur_sigma, apply_softmax)


def faithfulness_table(model, images, classes, maps_by_method: Mapping[str, np.ndarray], steps: int = 50,
                       deletion_baseline="zero", insertion_baseline="blur", batch_size: int = 256,
                       n_boot: int = 1000, ci: float = 0.95, seed: int = 0, apply_softmax: bool = False):
    """Deletion and insertion AUC of several methods' maps on the same images.

    Returns ``(rows, results)``: ``rows`` a list of dicts (method, deletion mean /
    low / high, insertion mean / low / high; bootstrap intervals) ready to print,
    ``results[method] = (deletion PerturbationResult, insertion PerturbationResult)``.
    """
    rows, results = [], {}
    for name, maps in maps_by_method.items():
        deletion = deletion_auc(model, images, maps, classes, steps=steps, baseline=deletion_baseline,
                                batch_size=batch_size, apply_softmax=apply_softmax)
        insertion = insertion_auc(model, images, maps, classes, steps=steps, baseline=insertion_baseline,
                                  batch_size=batch_size, apply_softmax=apply_softmax)
        results[name] = (deletion, insertion)
        d, i = deletion.ci(n_boot, ci, seed), insertion.ci(n_boot, ci, seed)
        rows.append({"method": name, "deletion": d[0], "deletion_low": d[1], "deletion_high": d[2],
                     "insertion": i[0], "insertion_low": i[1], "insertion_high": i[2]})
    return rows, results


# ------------------------------------------------------------------ pointing game
def pointing_game(maps, masks, tolerance: float = 0.0, ties: str = "all") -> np.ndarray:
    """Per-image hit (bool, shape (N,)): does the map's maximum fall in the mask?

    ``tolerance`` (pixels): a maximum within this Euclidean distance of a mask pixel
    also counts (Zhang et al. use 15 px on ImageNet-sized images). A map can have
    several equal maxima (e.g. an upsampled coarse Grad-CAM): with ``ties="all"``
    (default) every one must hit, so a flat map cannot score by luck; ``"any"``
    asks one to; ``"first"`` takes the first in raster order. ``hits.mean()`` is
    the pointing-game accuracy.
    """
    from scipy import ndimage

    maps = _as_maps(maps)
    masks = np.asarray(masks)
    if masks.shape != maps.shape:
        raise ValueError(f"masks have shape {masks.shape}; one (H, W) mask per map is needed: {maps.shape}")
    masks = masks.astype(bool)
    empty = np.nonzero(~masks.reshape(len(masks), -1).any(axis=1))[0]
    if empty.size:
        raise ValueError(f"masks of images {empty[:10].tolist()} are empty: nothing to point at")
    if ties not in ("all", "any", "first"):
        raise ValueError(f"ties must be 'all', 'any' or 'first'; got {ties!r}")
    # distance of every pixel to the nearest mask pixel (0 inside the mask)
    distance = np.stack([ndimage.distance_transform_edt(~m) for m in masks])
    inside = distance <= float(tolerance)
    flat_maps = maps.reshape(len(maps), -1)
    flat_inside = inside.reshape(len(maps), -1)
    if ties == "first":
        return flat_inside[np.arange(len(maps)), flat_maps.argmax(axis=1)]
    is_max = flat_maps == flat_maps.max(axis=1, keepdims=True)
    if ties == "all":
        return np.all(flat_inside | ~is_max, axis=1)
    return np.any(flat_inside & is_max, axis=1)


# ------------------------------------------------------------------ randomisation check
@dataclass
class RandomizationResult:
    """What ``randomization_check`` measured.

    ``stages``: ``"original"`` then the layer names in the order they were
    randomised (output first). ``spearman_abs``, ``spearman``, ``ssim``: for each
    method, an array (stages, N) comparing the maps at that stage with the maps of
    the intact model (absolute-value and signed Spearman, SSIM). ``maps``: for each
    method, (stages, k, H, W) maps of the first k images, for figures.
    """

    methods: list[str]
    stages: list[str]
    mode: str
    spearman_abs: dict[str, np.ndarray] = field(default_factory=dict)
    spearman: dict[str, np.ndarray] = field(default_factory=dict)
    ssim: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    images: np.ndarray | None = None

    def mean(self, metric: str = "spearman_abs") -> dict[str, np.ndarray]:
        """Per method, the metric averaged over images at each stage, shape (stages,)."""
        table = getattr(self, metric)
        return {m: table[m].mean(axis=1) for m in self.methods}

    def final(self, metric: str = "spearman_abs") -> dict[str, float]:
        """Per method, the mean metric once every chosen layer is randomised."""
        return {m: float(v[-1]) for m, v in self.mean(metric).items()}

    def verdicts(self, threshold: float = 0.5, metric: str = "spearman_abs", stage: int = -1,
                 ci: float = 0.95, n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
        """Pass / fail per method, from the numbers.

        At ``stage`` (default: everything randomised) a method *passes* when the
        bootstrap interval of its mean ``metric`` lies wholly below ``threshold`` (its
        maps lost most of their resemblance to the trained model's), *fails* when it
        lies wholly above, and is *undecided* when it straddles the threshold (more
        images would tell). Returns ``{method: {"verdict", "mean", "low", "high"}}``.
        """
        table = getattr(self, metric)
        out = {}
        for m in self.methods:
            mean, low, high = bootstrap_ci(table[m][stage], n_boot=n_boot, ci=ci, seed=seed)
            verdict = "passes" if high < threshold else "fails" if low > threshold else "undecided"
            out[m] = {"verdict": verdict, "mean": mean, "low": low, "high": high}
        return out

    def to_rows(self) -> list[dict]:
        rows = []
        for m in self.methods:
            for s, stage in enumerate(self.stages):
                rows.append({"method": m, "stage": s, "randomised_down_to": stage,
                             "spearman_abs": float(self.spearman_abs[m][s].mean()),
                             "spearman": float(self.spearman[m][s].mean()),
                             "ssim": float(self.ssim[m][s].mean())})
        return rows


def layers_with_weights(model) -> list[str]:
    """Names of the model's layers that hold weights, input to output."""
    return [layer.name for layer in model.layers if layer.weights]


def layer_groups(model) -> dict[str, list[str]]:
    """The model's weighted layers grouped by block, input to output: ``{label: [names]}``.

    A layer named ``block<n>...`` belongs to block ``block<n>`` (VGG16's block5_conv1..3;
    EfficientNet-Lite0's stage block6 = block6a..block6d with their convolutions and batch
    norms); any other layer is grouped by its name up to the first underscore (``stem``,
    ``top``) or alone (``fc1``, ``predictions``). Pass it as ``randomization_check(...,
    layers=...)`` to randomise a deep network block by block instead of layer by layer.
    """
    import re

    groups: dict[str, list[str]] = {}
    for name in layers_with_weights(model):
        match = re.match(r"(block\d+)", name)
        label = match.group(1) if match else name.split("_")[0]
        groups.setdefault(label, []).append(name)
    return groups


def _fresh_values(layer, variable, rng: np.random.Generator) -> np.ndarray:
    """New values for one variable from the layer's own initialiser (new seed each time)."""
    from .kerasapi import keras  # Keras 3, or tf_keras in legacy mode

    name = variable.name.split("/")[-1].split(":")[0]
    init = getattr(layer, f"{name}_initializer", None)
    if init is None:  # a layer without a named initialiser: Glorot for kernels, zeros otherwise
        init = keras.initializers.GlorotUniform() if len(variable.shape) >= 2 else keras.initializers.Zeros()
    config = init.get_config()
    if "seed" in config:
        config["seed"] = int(rng.integers(0, 2**31 - 1))
        init = init.__class__.from_config(config)
    return np.asarray(init(tuple(variable.shape), dtype=variable.dtype))


def randomization_check(model, images, classes, methods: Mapping[str, MapMethod] | None = None,
                        layers: Sequence[str] | None = None, mode: str = "cascading", seed: int = 0,
                        keep_maps: int = 4) -> RandomizationResult:
    """Model-parameter randomisation test (Adebayo et al., 2018).

    On a COPY of ``model`` (``clone_model`` + ``set_weights``; the caller's model is
    never touched), re-initialise the weighted layers one at a time from the output
    backwards with their own initialisers. ``mode="cascading"`` keeps the earlier
    randomisations (the top k layers are random at stage k); ``"independent"``
    randomises only one layer per stage. After each stage every method's maps are
    recomputed and compared with the intact model's maps, image by image.

    ``methods`` maps a name to ``f(model, images, classes) -> (N, H, W)`` maps
    (default: :func:`explanation_methods`). ``layers`` restricts the check to some
    weighted layers (default: all), or is a mapping ``{label: [names]}`` whose groups are
    randomised together, one stage each (:func:`layer_groups`). A method that passes changes its maps as the
    weights go (correlation falls towards 0); one that fails keeps them.
    """
    from .kerasapi import keras  # Keras 3, or tf_keras in legacy mode

    images = _as_images(images)
    classes = _as_classes(classes, len(images))
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent'; got {mode!r}")
    methods = dict(methods) if methods is not None else explanation_methods()
    if not methods:
        raise ValueError("no methods to check")
    weighted = layers_with_weights(model)
    if layers is None:
        groups = {name: [name] for name in weighted}
    elif isinstance(layers, Mapping):
        groups = {str(label): [names] if isinstance(names, str) else list(names) for label, names in layers.items()}
    else:
        groups = {name: [name] for name in weighted if name in set(layers)}
        groups.update({name: [name] for name in layers if name not in weighted})  # reported below
    unknown = [name for names in groups.values() for name in names if name not in weighted]
    if unknown:
        raise ValueError(f"layers {unknown} are not weighted layers of model {model.name!r}; "
                         f"weighted layers: {weighted}")
    if not groups or not all(groups.values()):
        raise ValueError("no layers to randomise (an empty group or an empty list)")
    cascade = list(reversed(groups))  # from the output backwards

    try:
        copy = keras.models.clone_model(model)
    except Exception as exc:  # subclassed models cannot be cloned from their config
        raise ValueError(f"cannot copy model {model.name!r} with keras.models.clone_model ({exc}); "
                         "build it as a Sequential or functional model") from exc
    original_weights = model.get_weights()
    copy.set_weights(original_weights)
    rng = np.random.default_rng(seed)

    def maps_of(name, net):
        return _as_maps(methods[name](net, images, classes), images, name=f"maps of method {name!r}")

    reference = {name: maps_of(name, model) for name in methods}
    result = RandomizationResult(methods=list(methods), stages=["original", *cascade], mode=mode,
                                 images=images[:keep_maps].copy())
    per_stage = {name: [] for name in methods}
    for layer_name in [None, *cascade]:
        if layer_name is not None:
            if mode == "independent":
                copy.set_weights(original_weights)
            for name in groups[layer_name]:
                layer = copy.get_layer(name)
                layer.set_weights([_fresh_values(layer, v, rng) for v in layer.weights])
        for name in methods:
            per_stage[name].append(maps_of(name, copy))
    for name in methods:
        stack = np.stack(per_stage[name])  # (stages, N, H, W)
        ref = reference[name]
        result.spearman_abs[name] = np.stack([spearman_rows(np.abs(ref), np.abs(m)) for m in stack])
        result.spearman[name] = np.stack([spearman_rows(ref, m) for m in stack])
        result.ssim[name] = np.stack([ssim_rows(np.abs(ref), np.abs(m)) for m in stack])
        result.maps[name] = stack[:, :keep_maps].astype(np.float32)
    return result


# ------------------------------------------------------------------ the methods, from the registry
def explanation_methods(smooth_samples: int = 8, smooth_noise: float = 0.2, gradcam_layer: str | None = None,
                        include: Sequence[str] | None = None, seed: int = 0) -> dict[str, MapMethod]:
    """The course's explanation methods as ``f(model, images, classes) -> (N, H, W)`` callables in
    [0, 1], straight from the registry (:func:`labhelpers.explain.method_names`): every method
    registered with ``in_tables`` (default), or those named in ``include``. One set of settings is
    offered to all, each takes those it has: SmoothGrad ``smooth_samples`` noisy copies with noise
    seeded by ``seed`` (so a map is a function of the model alone); the CAMs' layer ``gradcam_layer``
    (default: the last convolution). Methods share the model's cached context, whose rebuilt views
    share the model's weight variables, so they see weights that ``set_weights`` changed."""
    from .explain import METHODS, method_names

    names = method_names(tables=True) if include is None else list(include)
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; available: {method_names()}")
    common = {"smooth_samples": smooth_samples, "smooth_noise": smooth_noise, "seed": seed, "layer": gradcam_layer}
    return {name: METHODS[name].configured(**common) for name in names}


def __getattr__(name):
    if name == "METHOD_NAMES":  # the methods of lab 06's tables, in their order (kept for old notebooks)
        from .explain import method_names

        return tuple(method_names(tables=True))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BASELINES", "PerturbationResult", "RandomizationResult", "area_under_curve", "bootstrap_ci",
    "deletion_auc", "edge_map", "explanation_methods", "faithfulness_table", "insertion_auc",
    "layer_groups", "layers_with_weights", "METHOD_NAMES", "pointing_game", "random_map", "randomization_check", "spearman_rows", "ssim_rows",
]
