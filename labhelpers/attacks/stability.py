"""Max-sensitivity (Yeh et al. 2019): how much a method's map changes under small uniform noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..explain import context_for
from ..metrics import bootstrap_ci


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
    ex = context_for(model)
    x = ex.prepare(images)
    classes = ex.classes(x, classes)
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
