"""Feature visualization and attribution against ground truth one can derive by hand:
a linear unit on a bounded input is maximised by sign(w); an optimised image beats every test
image; occlusion of a masked-sum model recovers the mask; integrated gradients are complete;
dataset examples equal a brute-force top-k."""

import numpy as np
import pytest

from labhelpers.kerasapi import keras

tf = pytest.importorskip("tensorflow")

from toydata import bars  # noqa: E402  (shared synthetic bars, tests/toydata.py)

import labhelpers as lh  # noqa: E402
from labhelpers import attribution, featurevis  # noqa: E402


def linear_model(weights, softmax=True):
    """Flatten -> Dense without bias: logit_k = sum(x * w_k); softmax head (the logit is its input)."""
    h, w, c, k = weights.shape
    inp = keras.Input((h, w, c))
    dense = keras.layers.Dense(k, use_bias=False, activation="softmax" if softmax else None, name="lin")
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)), name="linear")
    dense.set_weights([weights.reshape(-1, k)])
    return model


@pytest.fixture(scope="module")
def small_cnn():
    """A small real CNN (conv-BN-ReLU, pool, conv-ReLU, GAP, softmax) trained 60 steps on bars."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(12, 3, name="conv2")(x)  # its channels are optimised before the ReLU
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="probs")(x), name="bars_cnn")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    x_train, y_train = bars(960, seed=1)
    model.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0)
    return model


def test_linear_unit_optimum_is_sign_of_weights():
    w = np.random.default_rng(0).normal(size=(6, 6, 2, 3)).astype(np.float32)
    model = linear_model(w)
    before = [v.numpy().copy() for v in model.weights]
    result = lh.activation_maximization(model, [0, 1, 2], objective="logit", steps=60, regularizers=(),
                                        value_range=(-1, 1), learning_rate=0.1)
    expected = np.sign(np.moveaxis(w, -1, 0))
    np.testing.assert_array_equal(result.images, expected)
    np.testing.assert_allclose(result.activations, np.abs(w).reshape(-1, 3).sum(axis=0), rtol=1e-5)
    # a single run finds the same optimum as the batch; the caller's model is unchanged
    single = lh.activation_maximization(model, 2, objective="logit", steps=60, regularizers=(),
                                        value_range=(-1, 1), learning_rate=0.1)
    np.testing.assert_array_equal(single.images[0], expected[2])
    assert model.layers[-1].activation.__name__ == "softmax"
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights, strict=True))


def test_neuron_and_channel_of_a_linear_conv():
    """A 1x1 conv is linear per position: its channel mean is maximised by sign(w) everywhere,
    a neuron by sign(w) at its own position (other pixels have zero gradient and stay put)."""
    w = np.array([1.0, -2.0, 0.5], np.float32)
    inp = keras.Input((5, 5, 3))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="c")
    model = keras.Model(inp, keras.layers.Flatten()(conv(inp)))
    conv.set_weights([w.reshape(1, 1, 3, 1)])
    channel = lh.activation_maximization(model, 0, layer="c", objective="channel", steps=40, regularizers=(),
                                         value_range=(-1, 1), learning_rate=0.1)
    np.testing.assert_array_equal(channel.images[0], np.broadcast_to(np.sign(w), (5, 5, 3)))
    neuron = lh.activation_maximization(model, [(1, 3, 0)], layer="c", objective="neuron", steps=40,
                                        regularizers=(), value_range=(-1, 1), learning_rate=0.1)
    np.testing.assert_array_equal(neuron.images[0, 1, 3], np.sign(w))
    assert neuron.activations[0] == pytest.approx(np.abs(w).sum())


def test_optimised_images_beat_every_test_image(small_cnn):
    x_test, _ = bars(300, seed=2)
    units = list(range(12))
    result = lh.activation_maximization(small_cnn, units, layer="conv2", steps=96, seed=0)
    dataset = lh.unit_activations(small_cnn, x_test, units, layer="conv2")
    assert result.images.shape == (12, 16, 16, 1) and 0 <= result.images.min() <= result.images.max() <= 1
    clean = lh.unit_activations(small_cnn, result.images, units, layer="conv2")
    np.testing.assert_allclose(np.diag(clean), result.activations, rtol=1e-4, atol=1e-5)
    assert np.all(result.activations > dataset.max(axis=0)), (result.activations, dataset.max(axis=0))
    # class logits too, in the decorrelated Fourier parameterisation (seeded: reproducible)
    logits = lh.activation_maximization(small_cnn, [0, 1], objective="logit", steps=128,
                                        parameterization="fourier", seed=3)
    again = lh.activation_maximization(small_cnn, [0, 1], objective="logit", steps=128,
                                       parameterization="fourier", seed=3)
    np.testing.assert_array_equal(logits.images, again.images)
    test_logits = lh.unit_activations(small_cnn, x_test, [0, 1], objective="logit")
    assert np.all(logits.activations > test_logits.max(axis=0))


def test_progress_bar_writes_to_stdout_only(small_cnn, capsys):
    featurevis.FeatureVisualizer(small_cnn).maximize([0], layer="conv1", steps=4, chunk=2, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and "activation maximization" in captured.out


def test_dataset_examples_equal_brute_force_top_k(small_cnn):
    x, _ = bars(203, seed=4)
    units = [0, 5, 11]
    brute = lh.unit_activations(small_cnn, x, units, layer="conv2")  # (203, 3)
    order = np.lexsort((np.broadcast_to(np.arange(203)[:, None], brute.shape), -brute), axis=0)[:7].T
    top = lh.dataset_examples(small_cnn, x, units, layer="conv2", k=7, batch_size=32)  # 32 does not divide 203
    np.testing.assert_array_equal(top.indices, order)
    np.testing.assert_allclose(top.scores, np.take_along_axis(brute.T, order, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(top.images, x[order])
    streamed = lh.dataset_examples(small_cnn, (x[i:i + 50] for i in range(0, 203, 50)), units, layer="conv2", k=7)
    np.testing.assert_array_equal(streamed.indices, order)
    assert streamed.n_seen == 203


def test_occlusion_recovers_a_masked_sum():
    rng = np.random.default_rng(0)
    mask = (rng.random((10, 9)) > 0.5).astype(np.float32)
    weights = np.zeros((10, 9, 1, 2), np.float32)
    weights[..., 0, 0], weights[..., 0, 1] = mask, -mask
    model = linear_model(weights)
    x = rng.uniform(0.5, 2.0, (3, 10, 9, 1)).astype(np.float32)
    sign = np.array([1, -1, 1], np.float32)[:, None, None]  # class 1's weights are -mask
    # 90 copies per image, 16 per call: calls hold the end of one image and the start of the next
    result = lh.occlusion(model, x, classes=[0, 1, 0], patch=1, batch_size=16)
    np.testing.assert_allclose(result.maps, sign * mask * x[..., 0], rtol=1e-5, atol=1e-5)  # exactly the mask
    np.testing.assert_allclose(result.scores, (sign * x[..., 0] * mask).sum(axis=(1, 2)), rtol=1e-5)
    # 3x3 patches, stride 2: each patch's drop is the masked sum under it; one patch per call agrees
    ones = np.ones((1, 10, 9, 1), np.float32)
    big = lh.occlusion(model, ones, classes=0, patch=3, stride=2, batch_size=64)
    expected = np.array([[mask[y:y + 3, c:c + 3].sum() for c in big.xs] for y in big.ys])
    np.testing.assert_allclose(big.drops[0], expected, rtol=1e-5)
    assert list(big.ys) == [0, 2, 4, 6, 7] and list(big.xs) == [0, 2, 4, 6]
    one = lh.occlusion(model, ones, classes=0, patch=3, stride=2, batch_size=1)
    np.testing.assert_allclose(one.maps, big.maps, rtol=1e-6)


def test_integrated_gradients_completeness_on_a_trained_cnn(small_cnn):
    x, _ = bars(4, seed=5)
    coarse = lh.integrated_gradients(small_cnn, x, steps=4)
    fine = lh.integrated_gradients(small_cnn, x, steps=256, batch_size=128)
    assert fine.attributions.shape == x.shape and fine.maps.shape == x.shape[:3]
    assert np.all(fine.completeness_error < 0.01), fine.completeness_error
    assert fine.completeness_error.mean() < coarse.completeness_error.mean()
    # one point per call gives the same attributions as the batched path
    single = lh.integrated_gradients(small_cnn, x[:1], steps=16, batch_size=1)
    batched = lh.integrated_gradients(small_cnn, x[:1], steps=16, batch_size=16)
    np.testing.assert_allclose(single.attributions, batched.attributions, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_of_a_linear_model_are_exact():
    w = np.random.default_rng(3).normal(size=(4, 4, 1, 2)).astype(np.float32)
    x = np.random.default_rng(4).uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    result = lh.integrated_gradients(linear_model(w), x, classes=[0, 1], baseline=0.25, steps=3)
    np.testing.assert_allclose(result.attributions[0], (x[0] - 0.25) * w[..., 0], rtol=1e-5, atol=1e-6)
    assert np.all(result.completeness_error < 1e-4)


def test_affine_preprocess_and_clear_errors():
    matrix, bias = featurevis.affine_preprocess(lambda x: (x[..., ::-1] - 100.0) / 2.0, 3)
    np.testing.assert_allclose(matrix, np.eye(3)[::-1] / 2.0)
    np.testing.assert_allclose(bias, [-50.0] * 3)
    with pytest.raises(ValueError, match="not affine"):
        featurevis.affine_preprocess(lambda x: np.sqrt(np.abs(x)), 3)
    model = linear_model(np.ones((3, 3, 1, 2), np.float32))
    with pytest.raises(ValueError, match="unknown objective"):
        lh.activation_maximization(model, 0, objective="pixel")
    with pytest.raises(ValueError, match="out of range"):
        lh.activation_maximization(model, 5, objective="logit", steps=1)
    with pytest.raises(TypeError, match="regulariser"):
        lh.activation_maximization(model, 0, objective="logit", steps=1, regularizers=("blur",))
    with pytest.raises(ValueError, match="broadcast"):
        attribution.integrated_gradients(model, np.ones((1, 3, 3, 1)), baseline=np.zeros((2, 2)))


def test_attribution_methods_join_lab_06s_tables(small_cnn):
    from labhelpers import metrics

    methods = metrics.explanation_methods(include=["occlusion", "integrated gradients"])
    x, _ = bars(3, seed=6)
    for name, method in methods.items():
        maps = method(small_cnn, x, np.array([0, 1, 0]))
        assert maps.shape == (3, 16, 16) and maps.min() >= 0 and maps.max() <= 1, name
    occ = attribution.occlusion(small_cnn, x, [0, 1, 0], patch=2, stride=1)
    np.testing.assert_allclose(methods["occlusion"](small_cnn, x, np.array([0, 1, 0])),
                               lh.explain.normalize_maps(occ.maps), atol=1e-6)
