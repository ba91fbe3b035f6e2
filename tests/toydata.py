"""Synthetic images shared by test modules (not a test module itself: pytest collects only test_*.py)."""

import numpy as np


def bars(n, seed):
    """16x16 images: a horizontal (class 0) or a vertical bar (class 1) on uniform noise in [0, 0.3]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, (n, 16, 16, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i, (label, pos) in enumerate(zip(y, rng.integers(2, 14, n), strict=True)):
        if label == 0:
            x[i, pos - 1:pos + 1, 2:14] = 1.0
        else:
            x[i, 2:14, pos - 1:pos + 1] = 1.0
    return x, y
