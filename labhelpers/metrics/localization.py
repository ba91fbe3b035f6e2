"""Localisation: the pointing game (Zhang et al. 2016)."""

from __future__ import annotations

import numpy as np

from .stats import _as_maps


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
