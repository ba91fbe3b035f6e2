"""Faithfulness: deletion and insertion curves (RISE, Petsiuk et al. 2018), their AUCs and a table
of them per method, with bootstrap confidence intervals on the result objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .stats import _as_classes, _as_images, _as_maps, area_under_curve, bootstrap_ci

BASELINES = ("zero", "blur", "mean")


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
