"""How alike two sets of explanation maps are, pair by pair: ``spearman_rows`` (rank correlation) and
``ssim_rows`` (structural similarity after scaling each map to [0, 1], as Adebayo et al. 2018).

The randomisation check (``labhelpers.metrics``) compares trained and randomised maps with them; any
comparison of maps before and after a change (an attack on an explanation, say) should too. NumPy and
SciPy / scikit-image only.
"""

from __future__ import annotations

import numpy as np


def rank_rows(maps) -> np.ndarray:
    """Average ranks (1..n, ties share their mean rank: scipy's ``rankdata``) of each map's pixels,
    shape (N, pixels). Computed once, a map's ranks serve every comparison with it
    (:func:`spearman_of_ranks`)."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    ranks = np.empty(flat.shape, np.float64)
    n = flat.shape[1]
    for row, values in enumerate(flat):
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # where a run of ties begins
        ends = np.r_[starts[1:], n]
        mean_rank = (starts + ends + 1) / 2.0  # ranks start .. end - 1, counted from 1
        ranks[row, order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman_of_ranks(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Pearson correlation of rank rows (:func:`rank_rows`): the Spearman correlation of the maps."""
    da, db = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    norm = np.sqrt((da**2).sum(axis=1) * (db**2).sum(axis=1))
    rho = np.divide((da * db).sum(axis=1), norm, out=np.zeros(len(ra)), where=norm > 0)
    rho = np.clip(rho, -1.0, 1.0)
    rho[np.all(ra == rb, axis=1)] = 1.0  # exact for identical rankings (two constant maps too)
    return rho


def spearman_rows(a, b) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (rows of ``a`` and ``b``).

    Identical rankings give exactly 1 (two constant maps included). A constant map
    against a varying one has no ranking to share: reported as 0.
    """
    return spearman_of_ranks(rank_rows(a), rank_rows(b))


def _unit_range(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    span = np.where(high > low, high - low, 1.0)
    return (maps - low[:, None, None]) / span[:, None, None]


def ssim_rows(a, b) -> np.ndarray:
    """SSIM of each pair of maps, both scaled to [0, 1] first (as Adebayo et al.)."""
    from skimage.metrics import structural_similarity

    a, b = _unit_range(np.asarray(a, dtype=np.float64)), _unit_range(np.asarray(b, dtype=np.float64))
    win = min(7, min(a.shape[1:]) - (1 - min(a.shape[1:]) % 2))  # largest odd window <= 7 that fits
    if win < 3:
        raise ValueError(f"maps of size {a.shape[1:]} are too small for SSIM (need at least 3x3)")
    return np.array([structural_similarity(x, y, data_range=1.0, win_size=win) for x, y in zip(a, b, strict=True)])
