"""Small building blocks of the metrics: input checks, the area under a curve, bootstrap CIs."""

from __future__ import annotations

import numpy as np


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
