"""The one home of an explanation map's scaling and resizing (NumPy only, no TensorFlow).

    normalize_maps(maps)          per-image min-max to [0, 1] (tf-keras-vis's ``normalize``)
    resize_maps(maps, (H, W))     bilinear with aligned corners (tf-keras-vis's ``zoom(order=1)``)

The compiled steps of :mod:`labhelpers.explain` compute the same two formulas in the graph
(``explain.graph.normalize`` / ``explain.graph.resize``); a test holds the two homes equal.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # keras.backend.epsilon(), as tf-keras-vis's normalize() uses


def normalize_maps(maps) -> np.ndarray:
    """Per-image min-max: ``(x - min) / (max - min + 1e-7)`` over every axis but the first."""
    maps = np.asarray(maps, dtype=np.float32)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    high = maps.max(axis=axes, keepdims=True)
    return ((maps - low) / (high - low + EPSILON)).astype(np.float32)


def _axis_weights(n_in: int, n_out: int):
    """Source indices and weights of 1-D linear interpolation with aligned corners."""
    if n_out == 1 or n_in == 1:
        pos = np.zeros(n_out)
    else:
        pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    low = np.minimum(np.floor(pos).astype(int), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (pos - low).astype(np.float32)


def resize_maps(maps, size) -> np.ndarray:
    """(N, h, w) maps -> (N, H, W): bilinear with aligned corners (the corners of the grid stay
    the corners), which is what tf-keras-vis's ``scipy.ndimage.zoom(order=1)`` computes."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, h, w), got shape {maps.shape}")
    height, width = int(size[0]), int(size[1])
    if maps.shape[1:] == (height, width):
        return maps
    r0, r1, rw = _axis_weights(maps.shape[1], height)
    c0, c1, cw = _axis_weights(maps.shape[2], width)
    rows = maps[:, r0] * (1 - rw)[None, :, None] + maps[:, r1] * rw[None, :, None]
    return (rows[:, :, c0] * (1 - cw) + rows[:, :, c1] * cw).astype(np.float32)


__all__ = ["EPSILON", "normalize_maps", "resize_maps"]
