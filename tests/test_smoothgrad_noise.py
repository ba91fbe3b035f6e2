"""SmoothGrad's two noise sources (issue 18): in-graph stateless noise (the default) and
tf-keras-vis's host-side NumPy noise (``noise="numpy"``, kept for the parity tests in
test_explain.py)."""

import numpy as np
import pytest
import tensorflow as tf

from labhelpers.explain import Explainer, get_method
from labhelpers.kerasapi import keras
from labhelpers.maps import normalize_maps

CLASSES = [0, 3, 4]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(5, activation="softmax")(x), name="smooth_cnn")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 1, size=(3, 12, 12, 3)).astype(np.float32)


def test_in_graph_noise_is_the_documented_draw(model, images):
    """Copy k of image i: image + sigma_i * stateless_normal(shape, seed=(seed, k * N + i))."""
    ex = Explainer(model)
    samples, seed, n = 3, 11, len(images)
    sigma = 0.2 * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
    step = ex.input_gradient_step("vanilla", images.shape[1:], "raw")
    total = np.zeros_like(images)
    for row in range(samples * n):
        i = row % n
        noise = tf.random.stateless_normal(images.shape[1:], tf.constant([seed, row], tf.int64)).numpy()
        noisy = (images[i] + sigma[i] * noise)[None].astype(np.float32)
        total[i] += step(noisy, np.array([CLASSES[i]], np.int32)).numpy()[0]
    want = total / samples
    got = ex.saliency(images, CLASSES, smooth_samples=samples, seed=seed, normalize=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    maps = ex.saliency(images, CLASSES, smooth_samples=samples, seed=seed)
    assert maps.shape == (3, 12, 12)
    np.testing.assert_allclose(maps, normalize_maps(_mean_abs(ex, images, samples, seed).max(axis=-1)), atol=1e-6)


def _mean_abs(ex, images, samples, seed):
    n = len(images)
    sigma = 0.2 * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
    step = ex.input_gradient_step("vanilla", images.shape[1:], "abs")
    total = np.zeros_like(images)
    for row in range(samples * n):
        noise = tf.random.stateless_normal(images.shape[1:], tf.constant([seed, row], tf.int64)).numpy()
        noisy = (images[row % n] + sigma[row % n] * noise)[None].astype(np.float32)
        total[row % n] += step(noisy, np.array([CLASSES[row % n]], np.int32)).numpy()[0]
    return total / samples


def test_in_graph_noise_reruns_bit_identical_and_ignores_batch_size(model, images):
    ex = Explainer(model)
    first = ex.saliency(images, CLASSES, smooth_samples=5, seed=3)
    np.testing.assert_array_equal(ex.saliency(images, CLASSES, smooth_samples=5, seed=3), first)
    assert not np.allclose(ex.saliency(images, CLASSES, smooth_samples=5, seed=4), first)
    # other chunks of the (sample, image) grid: the same noise per copy, sums in another order
    np.testing.assert_allclose(Explainer(model, batch_size=2).saliency(images, CLASSES, smooth_samples=5, seed=3),
                               first, atol=1e-6)
    np.random.seed(5)  # seed=None: the seed comes from NumPy's global RNG
    again = ex.saliency(images, CLASSES, smooth_samples=5)
    np.random.seed(5)
    np.testing.assert_array_equal(ex.saliency(images, CLASSES, smooth_samples=5), again)
    before = ex.tracing_count()
    ex.saliency(images[::-1].copy(), CLASSES, smooth_samples=7, seed=9)  # new inputs, samples, seed: no retrace
    ex.saliency(images[:2], CLASSES[:2], smooth_samples=2, seed=1)
    assert ex.tracing_count() == before


def test_noise_option(model, images):
    ex = Explainer(model)
    # without noise both sources give the plain gradient
    plain = ex.saliency(images, CLASSES, normalize=False)
    for noise in ("graph", "numpy"):
        np.testing.assert_allclose(ex.saliency(images, CLASSES, smooth_samples=2, smooth_noise=0.0, normalize=False,
                                               noise=noise), plain, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="noise must be one of"):
        get_method("smoothgrad", noise="torch")
    assert get_method("smoothgrad").noise == "graph"


def test_gradient_rows_bound_the_input_gradient_steps(model, images, monkeypatch):
    from labhelpers.explain import context

    ex = Explainer(model)
    assert ex.gradient_rows() == ex.batch_size  # a small CNN's activations fit many images
    want = ex.saliency(images, CLASSES, smooth_samples=3, seed=1)
    monkeypatch.setattr(context, "GRADIENT_BYTES", 1)
    one = Explainer(model)
    assert one.gradient_rows() == 1 and one.gradient_rows(most=64) == 1 and ex.gradient_rows(most=64) == 64
    np.testing.assert_allclose(one.saliency(images, CLASSES, smooth_samples=3, seed=1), want, atol=1e-6)
    np.testing.assert_allclose(one.saliency(images, CLASSES), ex.saliency(images, CLASSES), atol=1e-6)
