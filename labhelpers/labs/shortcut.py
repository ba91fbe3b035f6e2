"""The "tank detector" made real: a dataset with a planted shortcut.

Two classes that are hard to tell apart; in the training set almost every image of
one class carries a small bright marker that the other class never has. A network
trained on it can reach high accuracy by looking at the marker alone, and an
explanation method worth its name should point at the marker.

No data loading here: the functions take the arrays a loader returned, so the same
code builds the dataset for the lab and for the tests. Keras is imported only by
``build_shortcut_cnn``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.dataset import as_float_images

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def marker_mask(image_shape=(28, 28), size: int = 3, corner: str = "top-left", margin: int = 0) -> np.ndarray:
    """(H, W) bool mask of a ``size`` x ``size`` square ``margin`` pixels in from a corner."""
    h, w = int(image_shape[0]), int(image_shape[1])
    if corner not in CORNERS:
        raise ValueError(f"unknown corner {corner!r}; use one of {CORNERS}")
    if size < 1 or margin < 0 or size + margin > min(h, w):
        raise ValueError(f"a {size}x{size} marker {margin} px from the edge does not fit a {h}x{w} image")
    rows = slice(margin, margin + size) if corner.startswith("top") else slice(h - margin - size, h - margin)
    cols = slice(margin, margin + size) if corner.endswith("left") else slice(w - margin - size, w - margin)
    mask = np.zeros((h, w), bool)
    mask[rows, cols] = True
    return mask


def stamp_marker(images, mask, value: float = 1.0) -> np.ndarray:
    """A copy of ``images`` (N, H, W[, C]) with the marker pixels set to ``value`` (all
    channels). The input is not modified."""
    images = np.array(images, copy=True)
    mask = np.asarray(mask, bool)
    if mask.shape != images.shape[1:3]:
        raise ValueError(f"marker mask {mask.shape} does not match the images' (H, W) {images.shape[1:3]}")
    images[:, mask] = value
    return images


def garment_mask(images, threshold: float = 0.1, exclude=None) -> np.ndarray:
    """(N, H, W) bool: the object's pixels (brighter than ``threshold`` on Fashion-MNIST's
    black background), minus the ``exclude`` mask (e.g. the marker)."""
    grey = as_float_images(images).mean(axis=-1)
    mask = grey > threshold
    if exclude is not None:
        mask &= ~np.asarray(exclude, bool)
    return mask


@dataclass
class ShortcutDataset:
    """Binary task built from two classes; label 1 is ``classes[1]``.

    ``x_train`` carries the marker on the images flagged in ``train_marked`` (a
    ``fraction`` of the marked class, none of the other); ``x_train_clean`` holds the
    same images without it. ``x_test_marked`` stamps every test image of the marked
    class (the shortcut's promise kept), ``x_test_clean`` none (the real world).
    """

    classes: tuple[int, int]
    marked_label: int
    fraction: float
    mask: np.ndarray
    x_train: np.ndarray
    x_train_clean: np.ndarray
    y_train: np.ndarray
    train_marked: np.ndarray
    x_test_marked: np.ndarray
    x_test_clean: np.ndarray
    y_test: np.ndarray

    @property
    def test_marked(self) -> np.ndarray:
        """Which test images carry the marker in ``x_test_marked``."""
        return self.y_test == self.marked_label

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> ShortcutDataset:
        """A random (seeded) subset of each split, e.g. the profile's sample counts;
        None keeps a split whole. Markers stay where they were."""
        rng = np.random.default_rng(seed)

        def pick(n, total):
            return np.arange(total) if n is None or n >= total else np.sort(rng.choice(total, int(n), replace=False))

        tr, te = pick(n_train, len(self.y_train)), pick(n_test, len(self.y_test))
        return ShortcutDataset(classes=self.classes, marked_label=self.marked_label, fraction=self.fraction,
                               mask=self.mask, x_train=self.x_train[tr], x_train_clean=self.x_train_clean[tr],
                               y_train=self.y_train[tr], train_marked=self.train_marked[tr],
                               x_test_marked=self.x_test_marked[te], x_test_clean=self.x_test_clean[te],
                               y_test=self.y_test[te])

    def describe(self) -> str:
        marked = self.y_train == self.marked_label
        return (f"classes {self.classes} -> labels (0, 1); marker on {int(self.train_marked.sum())} of "
                f"{int(marked.sum())} training images of label {self.marked_label} "
                f"({self.train_marked[marked].mean():.0%}) and on none of label {1 - self.marked_label}; "
                f"{len(self.y_train)} training, {len(self.y_test)} test images")


def _two_classes(x, y, classes, split):
    x, y = as_float_images(x), np.asarray(y).ravel()
    if len(x) != len(y):
        raise ValueError(f"{split}: {len(x)} images but {len(y)} labels")
    keep = np.isin(y, classes)
    for c in classes:
        if not np.any(y == c):
            raise ValueError(f"{split} set has no image of class {c}; labels present: {np.unique(y).tolist()}")
    return x[keep], (y[keep] == classes[1]).astype(np.int64)


def build_shortcut_dataset(x_train, y_train, x_test, y_test, classes=(0, 6), marked_class: int = 6,
                           fraction: float = 0.95, seed: int = 0, mask=None) -> ShortcutDataset:
    """Keep two classes, relabel them 0/1, and plant the marker (see :class:`ShortcutDataset`).

    Exactly ``round(fraction * n)`` of the marked class's ``n`` training images are
    stamped, chosen with ``seed``; ``mask`` defaults to a 3x3 top-left marker.
    """
    classes = (int(classes[0]), int(classes[1]))
    if classes[0] == classes[1] or marked_class not in classes:
        raise ValueError(f"need two different classes and a marked class among them; got classes={classes}, "
                         f"marked_class={marked_class}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1]; got {fraction}")
    x_tr, y_tr = _two_classes(x_train, y_train, classes, "training")
    x_te, y_te = _two_classes(x_test, y_test, classes, "test")
    mask = marker_mask(x_tr.shape[1:3]) if mask is None else np.asarray(mask, bool)
    marked_label = classes.index(marked_class)

    candidates = np.flatnonzero(y_tr == marked_label)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(candidates, size=int(round(fraction * len(candidates))), replace=False)
    train_marked = np.zeros(len(y_tr), bool)
    train_marked[chosen] = True
    x_marked = x_tr.copy()
    x_marked[train_marked] = stamp_marker(x_tr[train_marked], mask)
    x_test_marked = x_te.copy()
    x_test_marked[y_te == marked_label] = stamp_marker(x_te[y_te == marked_label], mask)
    return ShortcutDataset(classes=classes, marked_label=marked_label, fraction=float(fraction), mask=mask,
                           x_train=x_marked, x_train_clean=x_tr, y_train=y_tr, train_marked=train_marked,
                           x_test_marked=x_test_marked, x_test_clean=x_te, y_test=y_te)


def build_shortcut_cnn(input_shape=(28, 28, 1), n_classes: int = 2):
    """The shortcut lab's small network, compiled (Adam, sparse cross-entropy).

    conv1 (16) -> pool1 -> conv2 (32) -> pool2 -> conv3 (64) -> gap -> predictions
    (softmax); 3x3 ReLU convolutions with 'same' padding. conv3, the layer Grad-CAM
    uses by default, has 7x7 maps: each cell stands for a 4x4 block of pixels, so a
    Grad-CAM there can place a 3x3 marker to within one cell (about 4 px), not exactly.
    """
    from ..kerasapi import keras

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="shortcut_cnn")
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
