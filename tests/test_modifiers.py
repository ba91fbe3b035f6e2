"""Backward rules against hand-derived gradients, and tf-keras-vis 0.8.7's known
modifier failures next to our fixes (each test shows the upstream failure first)."""

import numpy as np
import pytest

from labhelpers.kerasapi import LEGACY, keras  # tf-keras when TF_USE_LEGACY_KERAS=1

tf = pytest.importorskip("tensorflow")

from tf_keras_vis.saliency import Saliency  # noqa: E402
from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation as UpstreamGuided  # noqa: E402
from tf_keras_vis.utils.model_modifiers import ModelModifier  # noqa: E402
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear as UpstreamLinear  # noqa: E402
from tf_keras_vis.utils.scores import CategoricalScore  # noqa: E402

from labhelpers.modifiers import (  # noqa: E402
    GuidedBackpropagation,
    RectifiedBackpropagation,
    ReplaceToLinear,
    rebuild,
)

# ---------------------------------------------------------------- a net with known gradients
# x (1x1 image, 2 channels) -> 1x1 conv W1 (no bias) -> nonlinearity -> Dense W2 -> softmax.
# x = [1, 2] gives pre-activations z = x @ W1 = [2, 1, -3.5]; the class-0 logit's upstream
# gradient at the hidden units is W2[:, 0] = [1.5, -2, 3]: unit 0 (+,+), unit 1 (z>0, dy<0),
# unit 2 (z<0, dy>0), so the three rules disagree.
X = np.array([[[[1.0, 2.0]]]], dtype=np.float32)
W1 = np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -2.0]], dtype=np.float32)
W2 = np.array([[1.5, -1.0], [-2.0, 0.5], [3.0, 0.25]], dtype=np.float32)
# d logit_0 / dx = W1 @ d, with d the gradient reaching z:
#   ReLU      vanilla   d = [1.5, -2, 0]      -> [3.5, -1.25]
#             guided    d = [1.5, 0, 0]       -> [1.5, 0.75]
#             rectified d = [1.5, 0, 3]       -> [3.0, -5.25]
#   LeakyReLU(0.2): vanilla d = [1.5, -2, 0.6] -> [3.8, -2.45]
#             guided    d = [1.5, 0, 0.2*3]   -> [1.8, -0.45]
#             rectified d = [1.5, 0, 3]       -> [3.0, -5.25]
RELU_EXPECTED = {"vanilla": [3.5, -1.25], "guided": [1.5, 0.75], "rectified": [3.0, -5.25]}
LEAKY_EXPECTED = {"vanilla": [3.8, -2.45], "guided": [1.8, -0.45], "rectified": [3.0, -5.25]}
STYLES = ["fused", "relu_layer", "activation_layer", "leaky_relu"]


def hand_net(style: str, sequential: bool = False):
    conv = keras.layers.Conv2D(3, 1, use_bias=False, activation="relu" if style == "fused" else None,
                               name="conv")
    act = {
        "fused": None,
        "relu_layer": keras.layers.ReLU(name="act"),
        "activation_layer": keras.layers.Activation("relu", name="act"),
        # the slope positionally: Keras 3 calls it negative_slope, tf-keras alpha
        "leaky_relu": keras.layers.LeakyReLU(0.2, name="act"),
    }[style]
    layers = [conv] + ([act] if act is not None else []) + [
        keras.layers.Flatten(), keras.layers.Dense(2, use_bias=False, activation="softmax", name="out")]
    if sequential:
        model = keras.Sequential([keras.Input((1, 1, 2))] + layers)
    else:
        inp = keras.Input((1, 1, 2))
        x = inp
        for layer in layers:
            x = layer(x)
        model = keras.Model(inp, x)
    conv.set_weights([W1.reshape(1, 1, 2, 3)])
    model.get_layer("out").set_weights([W2])
    return model


def input_gradient(model, x, class_index):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = model(x)[:, class_index]
    return tape.gradient(score, x).numpy()


MODIFIERS = {"vanilla": ReplaceToLinear, "guided": GuidedBackpropagation, "rectified": RectifiedBackpropagation}


@pytest.mark.parametrize("style", STYLES)
def test_rules_equal_hand_derived_gradients(style):
    model = hand_net(style)
    expected = LEAKY_EXPECTED if style == "leaky_relu" else RELU_EXPECTED
    grads = {}
    for rule, modifier in MODIFIERS.items():
        modified = modifier()(model)
        if rule != "vanilla":  # the score is the logit: the linear head goes on top
            modified = ReplaceToLinear()(modified)
        grads[rule] = input_gradient(modified, X, 0).reshape(2)
        np.testing.assert_allclose(grads[rule], expected[rule], rtol=1e-6, atol=1e-6, err_msg=rule)
    assert not np.allclose(grads["guided"], grads["vanilla"])
    assert not np.allclose(grads["rectified"], grads["vanilla"])
    assert not np.allclose(grads["guided"], grads["rectified"])


@pytest.mark.parametrize("slope", [0.0, 0.3])
def test_two_hidden_layers_match_numpy_reference(slope):
    rng = np.random.default_rng(3)
    w1, w2 = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    head = rng.normal(size=(4 * 4 * 4, 3)).astype(np.float32)
    act = (lambda n: keras.layers.LeakyReLU(slope, name=n)) if slope else \
        (lambda n: keras.layers.ReLU(name=n))
    inp = keras.Input((4, 4, 3))
    a = keras.layers.Conv2D(5, 1, use_bias=False, name="c1")(inp)
    a = act("a1")(a)
    b = keras.layers.Conv2D(4, 1, use_bias=False, activation=None, name="c2")(a)
    b = act("a2")(b)
    out = keras.layers.Dense(3, use_bias=False, activation="softmax", name="head")(keras.layers.Flatten()(b))
    model = keras.Model(inp, out)
    model.get_layer("c1").set_weights([w1.reshape(1, 1, 3, 5)])
    model.get_layer("c2").set_weights([w2.reshape(1, 1, 5, 4)])
    model.get_layer("head").set_weights([head])
    x = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    head_c = head[:, 1].reshape(16, 4)
    for rule, modifier in MODIFIERS.items():
        m = ReplaceToLinear()(modifier()(model)) if rule != "vanilla" else modifier()(model)
        got = input_gradient(m, x, 1)
        # NumPy backprop with the rule; the head's gradient is a (position, channel) matrix
        h = x.reshape(16, 3)
        z1 = h @ w1
        h1 = np.where(z1 > 0, z1, slope * z1)
        z2 = h1 @ w2
        d = head_c.copy()
        for z, w in ((z2, w2), (z1, w1)):
            local = np.where(z > 0, 1.0, slope)
            d = {"vanilla": local * d, "guided": local * np.maximum(d, 0), "rectified": np.maximum(d, 0)}[rule]
            d = d @ w.T
        want = d.reshape(x.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=rule)


# ---------------------------------------------------------------- ReLU6 (EfficientNet-Lite)
# x = [1, 2] -> z = x @ W6 = [2, 7, -3.5, 1]: inside (0, 6), saturated (> 6), negative, inside;
# the class-0 logit's upstream gradients dy = W6_OUT[:, 0] = [1.5, 3, 3, -2].
# ReLU6'(z) = [0 < z < 6] = [1, 0, 0, 1]:
#   vanilla   d = [1.5, 0, 0, -2]  (dy where 0 < z < 6)           -> W6 @ d = [3.5, -1.25]
#   guided    d = [1.5, 0, 0, 0]   (where 0 < z < 6 and dy > 0)   -> [1.5, 0.75]
#   rectified d = [1.5, 3, 3, 0]   (max(dy, 0), whatever z)       -> [12.0, 0.75]
# (a plain ReLU would pass the saturated unit: vanilla [12.5, 4.75])
W6 = np.array([[1.0, 3.0, 0.5, -1.0], [0.5, 2.0, -2.0, 1.0]], dtype=np.float32)
W6_OUT = np.array([[1.5, 0.0], [3.0, 1.0], [3.0, -1.0], [-2.0, 0.5]], dtype=np.float32)
RELU6_EXPECTED = {"vanilla": [3.5, -1.25], "guided": [1.5, 0.75], "rectified": [12.0, 0.75]}
RELU6_STYLES = ["fused_relu6", "activation_relu6", "relu_layer_max6"]


def relu6_net(style: str):
    act = {
        "fused_relu6": None,  # Conv2D(activation="relu6")
        "activation_relu6": keras.layers.Activation("relu6", name="act"),  # as build_efficientnet_lite0
        "relu_layer_max6": keras.layers.ReLU(6.0, name="act"),  # ReLU(max_value=6)
    }[style]
    inp = keras.Input((1, 1, 2))
    x = keras.layers.Conv2D(4, 1, use_bias=False, activation="relu6" if act is None else None, name="conv")(inp)
    if act is not None:
        x = act(x)
    x = keras.layers.Dense(2, use_bias=False, activation="softmax", name="out")(keras.layers.Flatten()(x))
    model = keras.Model(inp, x)
    model.get_layer("conv").set_weights([W6.reshape(1, 1, 2, 4)])
    model.get_layer("out").set_weights([W6_OUT])
    return model


def relu6_backward(z, dy, rule):
    """The rules for y = min(max(z, 0), 6), by hand: f'(z) = [0 < z < 6]."""
    local = ((z > 0) & (z < 6)).astype(np.float32)
    return {"vanilla": local * dy, "guided": local * np.maximum(dy, 0), "rectified": np.maximum(dy, 0)}[rule]


@pytest.mark.parametrize("style", RELU6_STYLES)
def test_relu6_rules_equal_hand_derived_gradients(style):
    model = relu6_net(style)
    z = X.reshape(1, 2) @ W6
    np.testing.assert_allclose(z[0], [2.0, 7.0, -3.5, 1.0])
    for rule, modifier in MODIFIERS.items():
        modified = modifier()(model)
        if rule != "vanilla":
            modified = ReplaceToLinear()(modified)
        np.testing.assert_allclose(modified(X).numpy(), ReplaceToLinear()(model)(X).numpy(), rtol=1e-6)
        got = input_gradient(modified, X, 0).reshape(2)
        want = W6 @ relu6_backward(z[0], W6_OUT[:, 0], rule)
        np.testing.assert_allclose(want, RELU6_EXPECTED[rule], rtol=1e-6, err_msg=rule)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"{style} {rule}")


@pytest.mark.parametrize("style", ["activation_relu6", "relu_layer_max6"])
def test_relu6_two_hidden_layers_match_numpy_reference(style):
    """Many units on both sides of 0 and of 6, through a 1x1 conv, a depthwise conv (k=1) and a
    residual add, as in an MBConv block."""
    rng = np.random.default_rng(6)
    w1 = rng.normal(scale=3.0, size=(3, 5)).astype(np.float32)
    dw = rng.normal(scale=2.0, size=(5,)).astype(np.float32)
    head = rng.normal(size=(4 * 4 * 5, 3)).astype(np.float32)
    act = (lambda n: keras.layers.Activation("relu6", name=n)) if style == "activation_relu6" else \
        (lambda n: keras.layers.ReLU(6.0, name=n))
    inp = keras.Input((4, 4, 3))
    a = act("a1")(keras.layers.Conv2D(5, 1, use_bias=False, name="c1")(inp))
    b = act("a2")(keras.layers.DepthwiseConv2D(1, use_bias=False, name="dw")(a))
    c = keras.layers.Add(name="add")([a, b])
    out = keras.layers.Dense(3, use_bias=False, activation="softmax", name="head")(keras.layers.Flatten()(c))
    model = keras.Model(inp, out)
    model.get_layer("c1").set_weights([w1.reshape(1, 1, 3, 5)])
    model.get_layer("dw").set_weights([dw.reshape(1, 1, 5, 1)])
    model.get_layer("head").set_weights([head])
    x = rng.normal(scale=2.0, size=(1, 4, 4, 3)).astype(np.float32)
    z1 = x.reshape(16, 3) @ w1
    h1 = np.clip(z1, 0, 6)
    z2 = h1 * dw
    assert (z1 > 6).any() and (z1 < 0).any() and (z2 > 6).any() and (z2 < 0).any()
    dc = head[:, 1].reshape(16, 5)  # d logit_1 / d c, c = h1 + relu6(z2)
    for rule, modifier in MODIFIERS.items():
        m = ReplaceToLinear()(modifier()(model)) if rule != "vanilla" else modifier()(model)
        got = input_gradient(m, x, 1)
        dh1 = dc + relu6_backward(z2, dc, rule) * dw  # the skip path + the depthwise path
        want = (relu6_backward(z1, dh1, rule) @ w1.T).reshape(x.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{style} {rule}")


# ---------------------------------------------------------------- upstream failures, fixed
def _conv_net():
    """Conv2D with a bias and a fused ReLU (strided), a depthwise conv without bias, a 1x1 conv, a Dense head."""
    inp = keras.Input((9, 9, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="c2")(x)
    out = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


@pytest.mark.parametrize("rule", ["vanilla", "guided"])
def test_a_compiled_input_gradient_traces_no_kernel_gradient_and_training_still_gets_them(rule):
    """In a trace, a rebuilt graph's convolutions give the gradient to the pixels without building the
    kernels' (TensorFlow's convolution gradient builds both): the same numbers as the same graph run eagerly
    (TensorFlow's own gradients). A tape that watches the variables it reads (training) still gets every
    kernel's gradient, equal to the caller's model's under the vanilla rule."""
    model = _conv_net()
    rebuilt = rebuild(model, relu_rule=rule).model
    images = tf.constant(np.random.default_rng(3).normal(size=(2, 9, 9, 3)).astype(np.float32))

    def pixel_gradient(x):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            score = tf.reduce_sum(rebuilt(x)[:, 0])
        return tape.gradient(score, x)

    step = tf.function(pixel_gradient, autograph=False)
    ops = {op.type for op in step.get_concrete_function(tf.TensorSpec((None, 9, 9, 3))).graph.get_operations()}
    assert {"Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropInput"} <= ops
    if not LEGACY:  # tf-keras keeps TensorFlow's own gradients
        assert not ops & {"Conv2DBackpropFilter", "DepthwiseConv2dNativeBackpropFilter"}, ops
    np.testing.assert_allclose(step(images).numpy(), pixel_gradient(images).numpy(), rtol=1e-5, atol=1e-6)

    def kernel_gradients(net):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(net(images)[:, 0] ** 2)
        return tape.gradient(loss, net.trainable_variables)

    got = tf.function(kernel_gradients, autograph=False)(rebuilt)
    assert len(got) == len(model.trainable_variables) and all(g is not None for g in got)
    if rule == "vanilla":
        for g, w in zip(got, kernel_gradients(model), strict=True):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


def test_replace_to_linear_on_sequential():
    model = hand_net("fused", sequential=True)
    if not LEGACY:  # tf-keras-vis 0.8.7 under Keras 3 (under tf-keras its ReplaceToLinear works)
        with pytest.raises(AttributeError, match="output_names"):
            UpstreamLinear()(model)
    linear = ReplaceToLinear()(model)
    logits = linear(X).numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), model(X).numpy(), rtol=1e-6)
    # logits of the hand net: h = relu([2, 1, -3.5]) = [2, 1, 0]; h @ W2
    np.testing.assert_allclose(logits[0], [2 * 1.5 - 2.0, -2.0 + 0.5], rtol=1e-6)


@pytest.mark.parametrize("style", ["relu_layer", "leaky_relu"])
def test_guided_reaches_relu_and_leaky_relu_layers(style):
    model = hand_net(style)
    score = CategoricalScore(0)
    options = dict(keepdims=True, gradient_modifier=None, normalize_map=False)
    vanilla = Saliency(model, model_modifier=[UpstreamLinear()])(score, X, **options)
    upstream = Saliency(model, model_modifier=[UpstreamLinear(), UpstreamGuided()])(score, X, **options)
    np.testing.assert_array_equal(upstream, vanilla)  # upstream: silently no guided rule at all
    ours = Saliency(model, model_modifier=[ReplaceToLinear(), GuidedBackpropagation()])(score, X, **options)
    expected = (LEAKY_EXPECTED if style == "leaky_relu" else RELU_EXPECTED)["guided"]
    np.testing.assert_allclose(np.asarray(ours).reshape(2), expected, rtol=1e-6)
    assert not np.allclose(ours, vanilla)


def test_clone_false_does_not_mutate_the_callers_model():
    upstream_model = hand_net("fused")
    before = upstream_model.predict(X, verbose=0)  # traces and caches predict()
    Saliency(upstream_model, model_modifier=UpstreamLinear(), clone=False)
    assert upstream_model.get_layer("out").activation is keras.activations.linear  # mutated
    assert np.allclose(upstream_model.predict(X, verbose=0), before)  # cached trace: still softmax
    assert not np.allclose(upstream_model(X).numpy(), before)  # but a direct call gives logits

    model = hand_net("fused")
    before = model.predict(X, verbose=0)
    activations = {layer.name: getattr(layer, "activation", None) for layer in model.layers}
    saliency = Saliency(model, model_modifier=[ReplaceToLinear(), RectifiedBackpropagation()], clone=False)
    grads = saliency(CategoricalScore(0), X, keepdims=True, gradient_modifier=None, normalize_map=False)
    np.testing.assert_allclose(np.asarray(grads).reshape(2), RELU_EXPECTED["rectified"], rtol=1e-6)
    assert {layer.name: getattr(layer, "activation", None) for layer in model.layers} == activations
    np.testing.assert_array_equal(model.predict(X, verbose=0), before)
    np.testing.assert_allclose(model(X).numpy(), before, rtol=1e-6)


# ---------------------------------------------------------------- sharing, not copying
def _distinct_variable_bytes(*models):
    seen = {}
    for m in models:
        for v in m.weights:
            seen[id(v)] = v
    return sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in seen.values())


def _graph_state(model):
    return {layer.name: (len(layer._inbound_nodes), len(layer._outbound_nodes),
                         getattr(layer, "activation", None)) for layer in model.layers}


def test_modified_models_share_weights_and_leave_the_original_alone():
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.LeakyReLU(name="lrelu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax", name="out")(x)
    model = keras.Model(inp, out)
    images = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype(np.float32)
    before_predict = model.predict(images, verbose=0)
    state = _graph_state(model)
    modified = [m()(model) for m in (ReplaceToLinear, GuidedBackpropagation, RectifiedBackpropagation)]
    original_ids = {id(v) for v in model.weights}
    for m in modified:
        assert m is not model
        assert {id(v) for v in m.weights} == original_ids  # the very same variable objects
    assert _distinct_variable_bytes(model, *modified) == _distinct_variable_bytes(model)
    assert _graph_state(model) == state
    np.testing.assert_array_equal(model.predict(images, verbose=0), before_predict)
    # guided / rectified change only the backward pass
    for m in modified[1:]:
        np.testing.assert_allclose(m(images).numpy(), model(images).numpy(), rtol=1e-6)
    # weights are shared: training the original shows up in the modified model
    model.get_layer("out").kernel.assign(model.get_layer("out").kernel * 2.0)
    np.testing.assert_allclose(tf.nn.softmax(modified[0](images)).numpy(), model(images).numpy(), rtol=1e-5)


def test_nested_models_are_flattened_and_rules_reach_inside():
    base = keras.Sequential([keras.Input((1, 1, 2)), keras.layers.Conv2D(3, 1, use_bias=False, name="conv"),
                             keras.layers.ReLU(name="act")], name="base")
    outer = keras.Sequential([keras.Input((1, 1, 2)), base, keras.layers.Flatten(),
                              keras.layers.Dense(2, use_bias=False, activation="softmax", name="out")])
    base.get_layer("conv").set_weights([W1.reshape(1, 1, 2, 3)])
    outer.get_layer("out").set_weights([W2])
    graph = rebuild(outer, relu_rule="guided", linear_head=True)
    assert "act" in graph.replaced and "out" in graph.replaced
    assert {c.layer.name for c in graph.calls} >= {"conv", "act", "base", "out"}
    np.testing.assert_allclose(input_gradient(graph.model, X, 0).reshape(2), RELU_EXPECTED["guided"], rtol=1e-6)


def test_duplicate_names_across_nesting_are_made_unique():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")], name="inner")
    inp = keras.Input((4,))
    out = keras.layers.Dense(2, name="dense", activation="softmax")(inner(inp))
    model = keras.Model(inp, out)
    linear = ReplaceToLinear()(model)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(tf.nn.softmax(linear(x)).numpy(), model(x).numpy(), rtol=1e-6)


def test_modifiers_are_tf_keras_vis_model_modifiers():
    for m in (ReplaceToLinear(), GuidedBackpropagation(), RectifiedBackpropagation()):
        assert isinstance(m, ModelModifier)


def test_subclassed_model_is_refused_clearly():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2, activation="relu")

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.ones((1, 3), np.float32))
    with pytest.raises((NotImplementedError, ValueError), match="Functional|Sequential|input"):
        GuidedBackpropagation()(net)


@pytest.mark.parametrize("head", ["activation", "softmax_layer"])
def test_replace_to_linear_on_a_separate_softmax_layer(head):
    inp = keras.Input((1, 1, 2))
    x = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inp))
    x = keras.layers.Activation("softmax", name="probs")(x) if head == "activation" else \
        keras.layers.Softmax(name="probs")(x)
    model = keras.Model(inp, x)
    linear = ReplaceToLinear()(model)
    logits = keras.Model(model.inputs, model.get_layer("logits").output)(X).numpy()
    np.testing.assert_allclose(linear(X).numpy(), logits, rtol=1e-6)
    assert type(model.get_layer("probs")).__name__ in ("Activation", "Softmax")  # the original is untouched


def test_the_keras_alias_is_the_one_tf_keras_vis_uses():
    """tf-keras-vis works through ``tf.keras``; labhelpers' alias must be the same Keras."""
    assert tf.keras.Model is keras.Model
    assert keras.__version__.startswith("2." if LEGACY else "3.")
