"""The shortcut dataset: where the marker goes, who gets it, and that a network really
takes the shortcut when the images themselves carry no class information."""

import numpy as np
import pytest
import tensorflow as tf

from labhelpers import metrics, shortcut
from labhelpers.kerasapi import keras  # tf-keras when TF_USE_LEGACY_KERAS=1


def test_marker_mask_corners():
    mask = shortcut.marker_mask((28, 28))
    assert mask.sum() == 9 and mask[:3, :3].all()  # 3x3 in the top-left corner
    assert shortcut.marker_mask((28, 28), margin=1)[1:4, 1:4].all()
    br = shortcut.marker_mask((10, 12), size=2, corner="bottom-right", margin=0)
    assert br.sum() == 4 and br[8:, 10:].all()
    assert shortcut.marker_mask((10, 10), corner="top-right", margin=1)[1:4, 6:9].all()
    with pytest.raises(ValueError, match="unknown corner 'middle'"):
        shortcut.marker_mask(corner="middle")
    with pytest.raises(ValueError, match="does not fit"):
        shortcut.marker_mask((4, 4), size=4, margin=1)


def test_stamp_marker_copies_and_only_touches_the_mask():
    images = np.full((2, 6, 6, 1), 0.2, np.float32)
    mask = shortcut.marker_mask((6, 6), size=2)
    stamped = shortcut.stamp_marker(images, mask)
    assert np.all(images == 0.2)  # the input is untouched
    assert np.all(stamped[:, mask] == 1.0) and np.all(stamped[:, ~mask] == 0.2)
    with pytest.raises(ValueError, match=r"\(5, 5\) does not match.*\(6, 6\)"):
        shortcut.stamp_marker(images, np.ones((5, 5), bool))


def test_garment_mask_excludes_the_marker():
    image = np.zeros((1, 8, 8))
    image[0, 3:7, 3:7] = 0.8
    marker = shortcut.marker_mask((8, 8), size=2)
    stamped = shortcut.stamp_marker(image, marker)
    mask = shortcut.garment_mask(stamped, exclude=marker)
    np.testing.assert_array_equal(mask[0], image[0] > 0)


def labelled_noise(n_per_class, classes=(0, 6, 3), seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(classes), n_per_class)
    x = (rng.random((len(y), 12, 12)) * 0.5 * 255).astype(np.uint8)  # uint8, no channel: as a loader gives
    return x, y


def test_build_dataset_marks_a_fraction_of_one_class_only():
    x, y = labelled_noise(40)
    xt, yt = labelled_noise(10, seed=1)
    data = shortcut.build_shortcut_dataset(x, y, xt, yt, classes=(0, 6), marked_class=6, fraction=0.95)
    assert data.x_train.shape == (80, 12, 12, 1) and data.x_train.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(data.y_train), [40, 40])  # class 3 dropped, 6 -> label 1
    assert data.marked_label == 1
    assert data.train_marked.sum() == 38 and not data.train_marked[data.y_train == 0].any()
    has_marker = np.all(data.x_train[:, data.mask] == 1.0, axis=(1, 2))
    np.testing.assert_array_equal(has_marker, data.train_marked)
    unmarked = ~data.train_marked
    np.testing.assert_array_equal(data.x_train[unmarked], data.x_train_clean[unmarked])
    assert np.all(data.x_train_clean[:, data.mask] <= 0.5)
    test_has_marker = np.all(data.x_test_marked[:, data.mask] == 1.0, axis=(1, 2))
    np.testing.assert_array_equal(test_has_marker, data.test_marked)
    assert data.test_marked.sum() == 10 and not np.any(data.x_test_clean[:, data.mask] == 1.0)
    again = shortcut.build_shortcut_dataset(x, y, xt, yt, classes=(0, 6), marked_class=6, fraction=0.95)
    np.testing.assert_array_equal(again.train_marked, data.train_marked)  # seeded
    assert "38 of 40" in data.describe()
    small = data.subset(20, 5, seed=1)
    assert len(small.y_train) == 20 and small.x_train_clean.shape == (20, 12, 12, 1) and len(small.y_test) == 5
    np.testing.assert_array_equal(np.all(small.x_train[:, data.mask] == 1.0, axis=(1, 2)), small.train_marked)
    assert data.subset().y_train.shape == data.y_train.shape


def test_build_dataset_errors():
    x, y = labelled_noise(5)
    with pytest.raises(ValueError, match="no image of class 9"):
        shortcut.build_shortcut_dataset(x, y, x, y, classes=(0, 9), marked_class=9)
    with pytest.raises(ValueError, match="marked class among them"):
        shortcut.build_shortcut_dataset(x, y, x, y, classes=(0, 6), marked_class=3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        shortcut.as_float_images(np.full((1, 4, 4), 3.0))


def test_a_network_takes_the_shortcut_when_nothing_else_separates_the_classes():
    """Noise images carry no class information, so clean accuracy must sit at chance,
    while the marker lets the network score on marked images; its gradient points at it."""
    x, y = labelled_noise(600, classes=(0, 6))
    xt, yt = labelled_noise(100, classes=(0, 6), seed=1)
    data = shortcut.build_shortcut_dataset(x, y, xt, yt, classes=(0, 6), marked_class=6, fraction=0.95)
    keras.utils.set_random_seed(0)
    # A linear softmax model: convex, so it converges the same way on every seed, and its
    # input gradient is its weight difference, which the marker pixels must dominate.
    model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(data.x_train, data.y_train, epochs=10, batch_size=64, verbose=0)

    def accuracy(images):
        return float((model.predict_on_batch(images).argmax(axis=1) == data.y_test).mean())

    assert accuracy(data.x_test_marked) > 0.9
    assert 0.35 < accuracy(data.x_test_clean) < 0.65

    marked = data.x_test_marked[data.test_marked]
    x_in = tf.convert_to_tensor(marked)
    with tf.GradientTape() as tape:
        tape.watch(x_in)
        score = model(x_in)[:, 1]
    saliency = np.abs(tape.gradient(score, x_in).numpy())[..., 0]
    masks = np.repeat(data.mask[None], len(marked), axis=0)
    assert metrics.pointing_game(saliency, masks).mean() > 0.9


def test_shortcut_cnn_keeps_full_resolution_at_conv1():
    model = shortcut.build_shortcut_cnn()
    assert model.output.shape[-1] == 2
    assert model.get_layer("conv1").output.shape[1:3] == (28, 28)
    assert model.get_layer("conv3").output.shape[1:3] == (7, 7)
