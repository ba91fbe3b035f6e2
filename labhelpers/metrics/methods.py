"""The methods the metrics score: every method of the explain registry, as ``f(model, images, classes)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

MapMethod = Callable[[object, np.ndarray, np.ndarray], np.ndarray]


def explanation_methods(smooth_samples: int = 8, smooth_noise: float = 0.2, gradcam_layer: str | None = None,
                        include: Sequence[str] | None = None, seed: int = 0) -> dict[str, MapMethod]:
    """The course's explanation methods as ``f(model, images, classes) -> (N, H, W)`` callables in
    [0, 1], straight from the registry (:func:`labhelpers.explain.method_names`): every method
    registered with ``in_tables`` (default), or those named in ``include``. One set of settings is
    offered to all, each takes those it has: SmoothGrad ``smooth_samples`` noisy copies with noise
    seeded by ``seed`` (so a map is a function of the model alone); the CAMs' layer ``gradcam_layer``
    (default: the last convolution). Methods share the model's cached context, whose rebuilt views
    share the model's weight variables, so they see weights that ``set_weights`` changed."""
    from ..explain import METHODS, method_names

    names = method_names(tables=True) if include is None else list(include)
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; available: {method_names()}")
    common = {"smooth_samples": smooth_samples, "smooth_noise": smooth_noise, "seed": seed, "layer": gradcam_layer}
    return {name: METHODS[name].configured(**common) for name in names}
