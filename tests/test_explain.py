"""The Explainer against ground truth (hand gradients, CAM == Grad-CAM on GAP nets),
against tf-keras-vis on the same inputs, and its promises: no mutation, shared
weights, clear errors."""

import numpy as np
import pytest

from labhelpers.kerasapi import LEGACY, keras  # tf-keras when TF_USE_LEGACY_KERAS=1

tf = pytest.importorskip("tensorflow")

from tf_keras_vis.gradcam import Gradcam  # noqa: E402
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus  # noqa: E402
from tf_keras_vis.layercam import Layercam  # noqa: E402
from tf_keras_vis.saliency import Saliency  # noqa: E402
from tf_keras_vis.scorecam import Scorecam  # noqa: E402
from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation as UpstreamGuided  # noqa: E402
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear as UpstreamLinear  # noqa: E402
from tf_keras_vis.utils.scores import CategoricalScore  # noqa: E402

import labhelpers as lh  # noqa: E402
from labhelpers.explain import (  # noqa: E402
    Explainer,
    class_activation_map,
    feature_maps,
    gradcam,
    last_conv_layer_name,
    normalize_maps,
)
from labhelpers.modifiers import ReplaceToLinear  # noqa: E402


def small_cnn(sequential=False, n_classes=5, seed=0, size=12):
    """conv(relu) -> pool -> conv(relu) -> GAP -> Dense(softmax), random weights."""
    keras.utils.set_random_seed(seed)
    layers = [
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Conv2D(6, 3, activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(n_classes, activation="softmax", name="probs"),
    ]
    if sequential:
        return keras.Sequential([keras.Input((size, size, 3))] + layers, name="seq_cnn")
    inp = keras.Input((size, size, 3))
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x, name="func_cnn")


@pytest.fixture(scope="module")
def model():
    return small_cnn()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 1, size=(3, 12, 12, 3)).astype(np.float32)


CLASSES = [0, 3, 4]


# ---------------------------------------------------------------- ground truth
def test_saliency_rules_equal_hand_gradients():
    # x (1x1x2) -> 1x1 conv -> ReLU layer -> Dense; hand derivation in test_modifiers.py
    inp = keras.Input((1, 1, 2))
    z = keras.layers.Conv2D(3, 1, use_bias=False, name="conv")(inp)
    h = keras.layers.ReLU()(z)
    out = keras.layers.Dense(2, use_bias=False, activation="softmax")(keras.layers.Flatten()(h))
    net = keras.Model(inp, out)
    net.get_layer("conv").set_weights([np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -2.0]]).reshape(1, 1, 2, 3)])
    net.layers[-1].set_weights([np.array([[1.5, -1.0], [-2.0, 0.5], [3.0, 0.25]])])
    ex = Explainer(net)
    x = np.array([1.0, 2.0], np.float32).reshape(1, 1, 2)  # one image, no batch axis
    expected = {"vanilla": [3.5, -1.25], "guided": [1.5, 0.75], "rectified": [3.0, -5.25]}
    for rule, want in expected.items():
        got = ex.saliency(x, 0, rule=rule, normalize=False)
        assert got.shape == (1, 1, 1, 2)
        np.testing.assert_allclose(got.reshape(2), want, rtol=1e-6, err_msg=rule)


@pytest.mark.parametrize("n_classes", [4, 7])
def test_gradcam_equals_cam_on_gap_dense_nets(n_classes):
    net = small_cnn(n_classes=n_classes, seed=n_classes, size=10)
    x = np.random.default_rng(n_classes).uniform(0, 1, size=(4, 10, 10, 3)).astype(np.float32)
    ex = Explainer(net)
    for classes in (None, list(range(4)), n_classes - 1):
        cam, used = ex.class_activation_map(x, classes, normalize=False)
        grad = ex.gradcam(x, classes, normalize=False, upsample=False)
        h, w = cam.shape[1:]
        # alpha_k = W[k, c] / (h * w), so Grad-CAM = ReLU(CAM) / (h * w)
        np.testing.assert_allclose(grad, np.maximum(cam, 0) / (h * w), rtol=1e-5, atol=1e-7)
        assert (cam < 0).any() or classes is None  # the ReLU matters on random weights
    # the CAM itself: features entering GAP times the Dense column
    feats = keras.Model(net.inputs, net.get_layer("conv2").output)(x).numpy()
    kernel = net.get_layer("probs").kernel.numpy()
    cam, used = class_activation_map(net, x, normalize=False)
    np.testing.assert_array_equal(used, net.predict(x, verbose=0).argmax(-1))
    np.testing.assert_allclose(cam, np.einsum("nhwk,nk->nhw", feats, kernel[:, used].T), rtol=1e-5, atol=1e-6)
    normalized, _ = class_activation_map(net, x)
    assert normalized.shape == cam.shape and normalized.min() == 0 and np.allclose(normalized.max(), 1, atol=1e-5)


# ---------------------------------------------------------------- agreement with tf-keras-vis
def test_saliency_matches_tf_keras_vis(model, images):
    ex = Explainer(model)
    upstream = Saliency(model, model_modifier=UpstreamLinear())
    np.testing.assert_allclose(ex.saliency(images, CLASSES), upstream(CategoricalScore(CLASSES), images),
                               atol=1e-6)
    np.random.seed(7)
    theirs = upstream(CategoricalScore(CLASSES), images, smooth_samples=4, smooth_noise=0.3)
    ours = ex.saliency(images, CLASSES, smooth_samples=4, smooth_noise=0.3, seed=7, noise="numpy")  # same noise
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # guided backprop on fused ReLUs: upstream's modifier works there
    guided = Saliency(model, model_modifier=[UpstreamLinear(), UpstreamGuided()])
    np.testing.assert_allclose(ex.saliency(images, CLASSES, rule="guided"),
                               guided(CategoricalScore(CLASSES), images), atol=1e-6)


@pytest.mark.parametrize("ours, theirs", [("gradcam", Gradcam), ("gradcam_plus_plus", GradcamPlusPlus),
                                          ("layercam", Layercam)])
def test_cams_match_tf_keras_vis(model, images, ours, theirs):
    ex = Explainer(model)
    mine = getattr(ex, ours)(images, CLASSES)
    upstream = theirs(model, model_modifier=UpstreamLinear())(CategoricalScore(CLASSES), images,
                                                            **named_layer(model))
    assert mine.shape == (3, 12, 12) and mine.dtype == np.float32
    np.testing.assert_allclose(mine, upstream, atol=1e-4)
    for a, b in zip(mine, upstream, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9999


def test_guided_gradcam_and_scorecam_match_tf_keras_vis(model, images):
    ex = Explainer(model)
    upstream = Gradcam(model, model_modifier=[UpstreamLinear(), UpstreamGuided()])
    layer = named_layer(model)
    np.testing.assert_allclose(ex.gradcam(images, CLASSES, rule="guided"),
                               upstream(CategoricalScore(CLASSES), images, **layer), atol=1e-5)
    score = Scorecam(model, model_modifier=UpstreamLinear())
    np.testing.assert_allclose(ex.scorecam(images, CLASSES),
                               score(CategoricalScore(CLASSES), images, **layer), atol=1e-5)
    # Faster Score-CAM picks channels per image; tf-keras-vis pools them over the batch, so compare one
    np.testing.assert_allclose(ex.scorecam(images[:1], CLASSES[0], max_n=3),
                               score(CategoricalScore(CLASSES[0]), images[:1], max_N=3, **layer),
                               atol=1e-5)


def named_layer(model) -> dict:
    """tf-keras-vis's CAM arguments that name the layer (its own search fails under tf-keras)."""
    return {"penultimate_layer": last_conv_layer_name(model), "seek_penultimate_conv_layer": False}


def test_tf_keras_vis_penultimate_layer_is_the_last_conv(model, images):
    """Under tf-keras, tf-keras-vis 0.8.7's Gradcam cannot find the penultimate layer, even by
    name (ValueError); naming it and skipping its search routes around that. Under Keras 3,
    where its search works, it finds the same layer."""
    assert last_conv_layer_name(model) == "conv2"
    gradcam_of = Gradcam(model, model_modifier=UpstreamLinear())
    named = gradcam_of(CategoricalScore(CLASSES), images, **named_layer(model))
    if LEGACY:
        for layer in (None, "conv2"):
            with pytest.raises(ValueError, match="penultimate"):
                gradcam_of(CategoricalScore(CLASSES), images, penultimate_layer=layer)
    else:
        np.testing.assert_array_equal(gradcam_of(CategoricalScore(CLASSES), images), named)
    np.testing.assert_allclose(Explainer(model).gradcam(images, CLASSES, layer="conv2"), named, atol=1e-4)


def test_gradcam_on_sequential_equals_functional(images):
    func, seq = small_cnn(), small_cnn(sequential=True)
    seq.set_weights(func.get_weights())
    np.testing.assert_allclose(gradcam(seq, images, CLASSES), gradcam(func, images, CLASSES), atol=1e-6)
    # tf-keras-vis can use our ReplaceToLinear on a Sequential (its own raises there)
    upstream = Gradcam(seq, model_modifier=ReplaceToLinear(), clone=False)(
        CategoricalScore(CLASSES), images, **named_layer(seq))
    np.testing.assert_allclose(gradcam(seq, images, CLASSES), upstream, atol=1e-5)


def test_sequential_never_called_is_built(images):
    net = keras.Sequential([keras.layers.Conv2D(3, 3, activation="relu", name="c"),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    maps = gradcam(net, images)
    assert maps.shape == (3, 12, 12)
    assert net.inputs[0].shape[1:] == (12, 12, 3)


def test_nested_base_model_is_reachable():
    base = keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="inner")],
                            name="base")
    outer = keras.Sequential([keras.Input((10, 10, 3)), base, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(2).uniform(size=(2, 10, 10, 3)).astype(np.float32)
    ex = Explainer(outer)
    assert ex.default_layer() == "inner"
    cam, _ = ex.class_activation_map(x, 1, normalize=False)
    grad = ex.gradcam(x, 1, normalize=False, upsample=False)
    np.testing.assert_allclose(grad, np.maximum(cam, 0) / 64, rtol=1e-5, atol=1e-7)


def test_default_layer_is_the_activation_after_the_last_conv():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten()(x)
    net = keras.Model(inp, keras.layers.Dense(2)(x))
    assert Explainer(net).default_layer() == "relu"
    assert Explainer(small_cnn()).default_layer() == "conv2"


def test_feature_maps_match_submodels(model, images):
    sub = keras.Model(model.inputs, [model.get_layer("conv1").output, model.get_layer("conv2").output])
    want1, want2 = (t.numpy() for t in sub(images))
    got = feature_maps(model, ["conv1", model.get_layer("conv2")], images)
    np.testing.assert_allclose(got[0], want1, rtol=1e-6)
    np.testing.assert_allclose(got[1], want2, rtol=1e-6)
    one = feature_maps(model, 1, images[0])  # an index, one image: no batch axis, one array
    assert one.shape == (12, 12, 4)
    np.testing.assert_allclose(one, want1[0], rtol=1e-6)
    np.testing.assert_array_equal(feature_maps(model, 0, images), images)  # Functional: layers[0] is the input
    assert lh.feature_maps is feature_maps and lh.Explainer is Explainer


def test_outputs_are_normalized_maps(model, images):
    ex = Explainer(model)
    for maps in (ex.saliency(images, CLASSES, rule="rectified", smooth_samples=2, seed=0),
                 ex.gradcam(images, CLASSES, rule="rectified"), ex.layercam(images),
                 ex.scorecam(images, max_n=2)):
        assert maps.shape == (3, 12, 12)
        assert np.allclose(maps.min(axis=(1, 2)), 0) and np.all(maps.max(axis=(1, 2)) <= 1)
    raw = ex.saliency(images, CLASSES, smooth_samples=2, normalize=False, seed=0)
    assert raw.shape == images.shape


# ---------------------------------------------------------------- promises: no mutation, shared weights
def test_explainer_never_mutates_the_model_and_shares_weights(images):
    net = small_cnn()
    before = net.predict(images, verbose=0)
    weights = [w.copy() for w in net.get_weights()]
    activations = {layer.name: getattr(layer, "activation", None) for layer in net.layers}
    nodes = {layer.name: (len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in net.layers}
    ex = Explainer(net)
    for rule in ("vanilla", "guided", "rectified"):
        ex.saliency(images, CLASSES, rule=rule)
        ex.gradcam(images, CLASSES, rule=rule)
    ex.gradcam_plus_plus(images)
    ex.scorecam(images, max_n=2)
    ex.class_activation_map(images)
    ex.feature_maps(["conv1"], images)
    assert {layer.name: getattr(layer, "activation", None) for layer in net.layers} == activations
    assert {layer.name: (len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in net.layers} == nodes
    for a, b in zip(net.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net.predict(images, verbose=0), before)
    np.testing.assert_allclose(net(images).numpy(), before, rtol=1e-6)

    variants = [g.model for g in ex._graphs.values()]
    assert len(variants) == 4  # plain, linear, guided-linear, rectified-linear: built once each
    original = {id(v) for v in net.weights}
    distinct = {}
    for m in [net, *variants]:
        assert {id(v) for v in m.weights} == original
        distinct.update({id(v): v for v in m.weights})
    nbytes = sum(int(np.prod(v.shape)) * 4 for v in distinct.values())
    assert nbytes == sum(w.nbytes for w in net.get_weights())
    assert ex.model_linear is ex.model_linear  # one linear head, reused
    np.testing.assert_allclose(tf.nn.softmax(ex.model_linear(images)).numpy(), before, rtol=1e-5)


def test_compiled_steps_are_reused(model, images):
    ex = Explainer(model, batch_size=2)
    ex.gradcam(images, CLASSES)
    ex.gradcam(images[:1], 2)
    ex.gradcam(images[1:], [1, 2])
    assert len(ex._functions) == 1  # one compiled step for this shape, whatever the batch and classes
    for step in ex._functions.values():
        assert step.experimental_get_tracing_count() == 1


# ---------------------------------------------------------------- bad input, clear errors
def test_unknown_layer_lists_the_conv_layers(model, images):
    with pytest.raises(ValueError, match=r"no layer named 'conv3'.*conv1.*conv2"):
        gradcam(model, images, layer="conv3")
    with pytest.raises(ValueError, match=r"'probs'.*4-D.*\['conv1', 'conv2'\]"):
        gradcam(model, images, layer="probs")
    with pytest.raises(IndexError, match="out of range"):
        feature_maps(model, 42, images)


def test_class_errors(model, images):
    ex = Explainer(model)
    with pytest.raises(ValueError, match=r"class index 5 is out of range.*0\.\.4"):
        ex.gradcam(images, 5)
    with pytest.raises(ValueError, match="out of range"):
        ex.saliency(images, [0, -1, 2])
    with pytest.raises(ValueError, match="3 images"):
        ex.gradcam(images, [0, 1])
    with pytest.raises(ValueError, match="not the 1000 ImageNet"):
        ex.gradcam(images, "tabby")
    named = Explainer(model, class_names=["cat", "dog", "bird", "fish", "frog"])
    np.testing.assert_array_equal(named.resolve_classes(images, ["dog", "Frog", 0]), [1, 4, 0])
    with pytest.raises(ValueError, match=r"'dgo'.*dog"):
        named.gradcam(images, "dgo")


def test_imagenet_names_resolve_through_data():
    data = pytest.importorskip("labhelpers.data")
    net = small_cnn(n_classes=1000, size=8)
    ex = Explainer(net)
    x = np.zeros((1, 8, 8, 3), np.float32)
    assert ex.resolve_classes(x, "goldfish")[0] == data.imagenet_class_id("goldfish")
    with pytest.raises(Exception, match="goldfsh") as info:
        ex.gradcam(x, "goldfsh")
    assert "goldfish" in str(info.value)  # data's error suggests the close name


def test_image_errors(model):
    ex = Explainer(model)
    with pytest.raises(ValueError, match="empty"):
        ex.saliency(np.zeros((0, 12, 12, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        gradcam(model, [])
    with pytest.raises(ValueError, match=r"\(12, 12, 3\).*\(H, W, C\).*\(N, H, W, C\)"):
        ex.gradcam(np.zeros((12, 12), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        ex.gradcam(np.zeros((2, 10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="unknown rule"):
        ex.saliency(np.zeros((12, 12, 3), np.float32), 0, rule="deconv")
    with pytest.raises(ValueError, match="max_n"):
        ex.scorecam(np.zeros((12, 12, 3), np.float32), 0, max_n=99)
    for bad in (0, -3, 2.5, True):  # 0 and negatives used to mean "every channel", silently
        with pytest.raises(ValueError, match=r"max_n must be None \(every channel\) or a positive number"):
            ex.scorecam(np.zeros((12, 12, 3), np.float32), 0, max_n=bad)
    for bad in (3.0, {1, 2}):
        with pytest.raises(TypeError, match=r"classes=.*want None \(the predicted class\), an integer"):
            ex.gradcam(np.zeros((12, 12, 3), np.float32), bad)


def test_grayscale_images_without_channel_axis():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu")(inp)
    net = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    x = np.random.default_rng(0).uniform(size=(2, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(gradcam(net, x, 1), gradcam(net, x[..., None], 1))
    assert gradcam(net, x[0], 1).shape == (1, 8, 8)


def test_cam_refuses_models_without_gap_dense_head(images):
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(2, 3, activation="relu")(inp)
    flat = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError, match="CAM does not apply.*no GlobalAveragePooling2D.*gradcam"):
        class_activation_map(flat, images)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, activation="relu")(inp))
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(x)
    deep = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(hidden))
    with pytest.raises(ValueError, match="CAM does not apply.*'hidden' is not the output layer"):
        class_activation_map(deep, images)
    # GAP straight on the input, or on a Dense applied per pixel: no feature maps to weight
    no_conv = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inp)))
    per_pixel = keras.layers.GlobalAveragePooling2D()(keras.layers.Dense(4, activation="relu")(inp))
    dense_first = keras.Model(inp, keras.layers.Dense(3)(per_pixel))
    for model in (no_conv, dense_first):
        with pytest.raises(ValueError, match="CAM does not apply.*no convolutional layer comes before.*gradcam"):
            class_activation_map(model, images)
    # dropout between GAP and the output Dense is fine
    x = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inp)))
    ok = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    maps, classes = class_activation_map(ok, images)
    assert maps.shape == (3, 10, 10) and classes.shape == (3,)


# ---------------------------------------------------------------- more ground truth and promises
def test_saliency_rules_match_numpy_backprop_through_two_relus():
    # conv1x1(relu) -> conv1x1 -> Activation("relu") -> Dense: every rule against NumPy backprop,
    # and the normalised map against |gradient| -> max over channels -> per-image min-max
    rng = np.random.default_rng(5)
    w1, w2 = rng.normal(size=(3, 6)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    head = rng.normal(size=(5 * 5 * 4, 3)).astype(np.float32)
    inp = keras.Input((5, 5, 3))
    a = keras.layers.Conv2D(6, 1, use_bias=False, activation="relu", name="c1")(inp)
    b = keras.layers.Activation("relu", name="a2")(keras.layers.Conv2D(4, 1, use_bias=False, name="c2")(a))
    out = keras.layers.Dense(3, use_bias=False, activation="softmax", name="head")(keras.layers.Flatten()(b))
    net = keras.Model(inp, out)
    net.get_layer("c1").set_weights([w1.reshape(1, 1, 3, 6)])
    net.get_layer("c2").set_weights([w2.reshape(1, 1, 6, 4)])
    net.get_layer("head").set_weights([head])
    x = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)
    classes = [2, 0]
    ex = Explainer(net)
    maps = {}
    for rule in ("vanilla", "guided", "rectified"):
        got = ex.saliency(x, classes, rule=rule, normalize=False)
        for i, c in enumerate(classes):
            z1 = x[i].reshape(25, 3) @ w1
            z2 = np.maximum(z1, 0) @ w2
            d = head[:, c].reshape(25, 4)  # d logit / d (second ReLU's output), per position
            for z, w in ((z2, w2), (z1, w1)):
                d = {"vanilla": (z > 0) * d, "guided": (z > 0) * np.maximum(d, 0),
                     "rectified": np.maximum(d, 0)}[rule] @ w.T
            np.testing.assert_allclose(got[i], d.reshape(5, 5, 3), rtol=1e-4, atol=1e-5, err_msg=rule)
        maps[rule] = ex.saliency(x, classes, rule=rule)
        np.testing.assert_allclose(maps[rule], normalize_maps(np.abs(got).max(axis=-1)), atol=1e-6)
    assert not np.allclose(maps["guided"], maps["vanilla"])
    assert not np.allclose(maps["rectified"], maps["guided"])


def test_smoothgrad_chunks_keep_tf_keras_vis_noise_order(model, images):
    ex = Explainer(model, batch_size=2)  # 5 samples x 3 images = 15 noisy rows, in chunks of 2
    np.random.seed(3)
    want = Saliency(model, UpstreamLinear())(CategoricalScore(CLASSES), images, smooth_samples=5)
    np.testing.assert_allclose(ex.saliency(images, CLASSES, smooth_samples=5, seed=3, noise="numpy"), want, atol=1e-6)
    np.random.seed(3)  # seed=None draws from NumPy's global RNG, like tf-keras-vis
    np.testing.assert_allclose(ex.saliency(images, CLASSES, smooth_samples=5, noise="numpy"), want, atol=1e-6)
    # without noise, SmoothGrad's mean gradient is the plain gradient
    np.testing.assert_allclose(ex.saliency(images, CLASSES, smooth_samples=3, smooth_noise=0.0, normalize=False),
                               ex.saliency(images, CLASSES, normalize=False), rtol=1e-5, atol=1e-7)


def test_raw_gradcam_matches_tf_keras_vis_unexpanded(model, images):
    upstream = Gradcam(model, model_modifier=UpstreamLinear())
    raw = upstream(CategoricalScore(CLASSES), images, expand_cam=False, normalize_cam=False,
                   **named_layer(model))
    ours = Explainer(model).gradcam(images, CLASSES, normalize=False, upsample=False)
    assert ours.shape == (3, 4, 4)  # conv2's resolution
    np.testing.assert_allclose(ours, raw, rtol=1e-4, atol=1e-7)


def test_predicted_class_when_classes_is_none(model, images):
    ex = Explainer(model)
    predicted = model.predict(images, verbose=0).argmax(axis=-1)
    np.testing.assert_array_equal(ex.resolve_classes(images), predicted)
    for method in (ex.saliency, ex.gradcam, ex.gradcam_plus_plus, ex.scorecam):
        np.testing.assert_allclose(method(images), method(images, predicted), atol=1e-6, err_msg=method.__name__)


def test_views_see_later_weight_changes(images):
    net = small_cnn(seed=4)
    ex = Explainer(net)
    before = ex.saliency(images, 1, normalize=False)
    kernel = net.get_layer("probs").kernel
    kernel.assign(-kernel)  # the logit changes sign, so does its gradient
    np.testing.assert_allclose(ex.saliency(images, 1, normalize=False), -before, rtol=1e-5, atol=1e-7)


def _import_explain_afresh(queue) -> None:
    """In a forked child: forget every labhelpers module, import the explain package again, and put the
    labhelpers modules that loaded (or the traceback) on ``queue``."""
    import sys
    import traceback

    try:
        for name in [m for m in sys.modules if m == "labhelpers" or m.startswith("labhelpers.")]:
            del sys.modules[name]
        import labhelpers.explain as fresh

        assert fresh.method_names()
        queue.put(("ok", str(sorted(m for m in sys.modules if m.startswith("labhelpers")))))
    except BaseException:
        queue.put(("error", traceback.format_exc()))


@pytest.mark.mode_independent
def test_explain_loads_no_data():
    # importing the explain package (every method registered) loads neither the datasets nor the models
    import multiprocessing
    import subprocess
    import sys

    if sys.platform == "linux":
        # A fork of this process that has forgotten every labhelpers module imports the package as a fresh
        # interpreter would (only labhelpers' own imports decide which labhelpers modules load), but with
        # TensorFlow already imported: ~0.1 s instead of ~9 s for a new interpreter's TensorFlow.
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_import_explain_afresh, args=(queue,))
        child.start()
        try:
            status, loaded = queue.get(timeout=120)
        finally:
            child.join(30)
            if child.is_alive():
                child.kill()
        assert status == "ok" and child.exitcode == 0, loaded
    else:  # no fork next to TensorFlow's threads: a fresh interpreter
        code = ("import sys, labhelpers.explain as e; assert e.method_names(); "
                "print(sorted(m for m in sys.modules if m.startswith('labhelpers')))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        loaded = out.stdout.strip()
    assert "labhelpers.data" not in loaded and "labhelpers.models" not in loaded, loaded
    assert "labhelpers.explain.cams" in loaded and "labhelpers.modifiers" in loaded


@pytest.mark.mode_independent
def test_the_numpy_and_in_graph_map_formulas_agree():
    # labhelpers.maps (NumPy: plots, metrics) and explain.graph (inside the compiled steps) are one idea, two forms
    from scipy.ndimage import zoom

    from labhelpers import maps
    from labhelpers.explain import graph

    raw = np.random.default_rng(0).normal(size=(3, 7, 5)).astype(np.float32)
    np.testing.assert_allclose(maps.normalize_maps(raw), graph.normalize(tf.constant(raw)).numpy(), atol=1e-6)
    big = maps.resize_maps(raw, (28, 20))
    np.testing.assert_allclose(big, graph.resize(tf.constant(raw), (28, 20)).numpy(), atol=1e-5)
    np.testing.assert_allclose(big, np.stack([zoom(m, (28 / 7, 20 / 5), order=1) for m in raw]), atol=1e-5)
    assert maps.resize_maps(raw, (7, 5)) is raw  # already that size: returned as it is
    assert np.all(np.ptp(maps.resize_maps(raw[:, :1, :1], (4, 4)), axis=(1, 2)) == 0)  # one cell: a flat map


def test_guided_gradcam_takes_one_step_when_no_swapped_rule_follows_the_layer(images):
    """Guided Grad-CAM = min-max(guided saliency x Grad-CAM). When only GAP and the output Dense follow the
    layer, the guided rebuild's dS/dA is the vanilla one, so one compiled step (one trace) computes both
    factors; a hidden ReLU after the layer (as VGG16's fc1/fc2) changes dS/dA under the guided rule, so
    there the two methods run apart. Same maps either way, for given and for predicted classes."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(keras.layers.GlobalAveragePooling2D()(x))
    relu_head = keras.Model(inp, keras.layers.Dense(5, activation="softmax")(x))
    for model, steps in ((small_cnn(), 1), (relu_head, 2)):
        ex = Explainer(model)
        guided = ex.graph("guided")
        assert guided.rule_after(guided.calls[ex.layer_index(None)]) == (steps == 2)
        got = ex.explain("guided gradcam", images, CLASSES)
        assert ex.tracing_count() == steps
        expected = normalize_maps(ex.saliency(images, CLASSES, rule="guided") * ex.gradcam(images, CLASSES))
        np.testing.assert_allclose(got, expected, atol=1e-5)
        predicted = ex.predict_logits(images).argmax(axis=-1)
        np.testing.assert_allclose(Explainer(model).explain("guided gradcam", images),
                                   ex.explain("guided gradcam", images, predicted), atol=1e-6)
