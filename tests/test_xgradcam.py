"""XGrad-CAM (Fu et al. 2020), the method added through the registry: its own ground truth.
Everything else it must do (range, caller's model, retracing, Sequential == Functional, errors)
is the contract of tests/test_method_contract.py, which picks it up by itself."""

import numpy as np
import pytest

from labhelpers.kerasapi import keras

tf = pytest.importorskip("tensorflow")

from labhelpers.explain import Explainer, XGradCAM, normalize_maps  # noqa: E402


def test_equals_gradcam_and_cam_on_a_gap_dense_head():
    # dS/dA_k,ij = W[k, c] / (h w) at every position, so sum_ij A_ij / sum A * dS/dA = W[k, c] / (h w)
    keras.utils.set_random_seed(1)
    inp = keras.Input((10, 10, 3))
    feats = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(feats))
    net = keras.Model(inp, out)
    x = np.random.default_rng(0).uniform(0, 1, (4, 10, 10, 3)).astype(np.float32)
    ex = Explainer(net)
    xgrad = XGradCAM(upsample=False)(ex, x, [0, 1, 2, 0])
    np.testing.assert_allclose(xgrad, ex.gradcam(x, [0, 1, 2, 0], upsample=False), atol=1e-5)
    cam = np.maximum(ex.class_activation_map(x, [0, 1, 2, 0], normalize=False)[0], 0)  # Grad-CAM = ReLU(CAM)
    np.testing.assert_allclose(xgrad, normalize_maps(cam), atol=1e-4)  # float32 sums in another order


def test_matches_the_formula_by_hand_where_it_differs_from_gradcam():
    # a Flatten -> Dense head: the gradient varies over positions, so the two weightings differ
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 1))
    feats = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(2)(keras.layers.Flatten()(feats))
    net = keras.Model(inp, out)
    x = np.random.default_rng(1).uniform(0, 1, (3, 8, 8, 1)).astype(np.float32)
    sub = keras.Model(inp, [feats, out])
    with tf.GradientTape() as tape:
        a, logits = sub(x)
        score = tf.gather(logits, [1, 0, 1], axis=1, batch_dims=1)
    a, grads = a.numpy(), tape.gradient(score, a).numpy()
    weights = (grads * a).sum(axis=(1, 2)) / (a.sum(axis=(1, 2)) + 1e-7)  # (N, K)
    cam = np.maximum(np.einsum("nhwk,nk->nhw", a, weights), 0)
    want = (cam - cam.min(axis=(1, 2), keepdims=True)) / (np.ptp(cam, axis=(1, 2), keepdims=True) + 1e-7)
    got = XGradCAM(upsample=False)(net, x, [1, 0, 1])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - Explainer(net).gradcam(x, [1, 0, 1], upsample=False)).max() > 0.05
