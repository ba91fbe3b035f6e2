"""Baselines every explanation method should beat: a random map and an edge map."""

from __future__ import annotations

import numpy as np


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
