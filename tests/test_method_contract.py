"""One contract for every registered explanation method (Xplique's ``test_common``): a method
added to the registry is checked here without a line of test code of its own.

For each method: maps of shape (N, H, W) in [0, 1]; the caller's model untouched; a second call of
the same shape makes no new compiled step and no new trace; a Sequential and a Functional model
with the same weights give the same maps; an unknown layer (methods that take one) and an
out-of-range class give errors that name them.
"""

import numpy as np
import pytest

from labhelpers.kerasapi import keras

tf = pytest.importorskip("tensorflow")

from labhelpers import metrics  # noqa: E402
from labhelpers.explain import METHODS, Explainer, context_for, get_method, method_names  # noqa: E402

SIZE, N_CLASSES = 14, 4
# small settings so the whole contract runs in seconds; every other option keeps its default
FAST = {"smooth_samples": 3, "seed": 0, "ig_steps": 4, "max_n": 2}


def small_cnn(sequential: bool):
    """conv(relu) -> pool -> conv(relu) -> GAP -> Dense(softmax), fixed random weights."""
    keras.utils.set_random_seed(7)
    layers = [keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
              keras.layers.MaxPooling2D(name="pool"),
              keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv2"),
              keras.layers.GlobalAveragePooling2D(name="gap"),
              keras.layers.Dense(N_CLASSES, activation="softmax", name="probs")]
    if sequential:
        return keras.Sequential([keras.Input((SIZE, SIZE, 3))] + layers, name="contract_seq")
    x = inp = keras.Input((SIZE, SIZE, 3))
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x, name="contract_func")


@pytest.fixture(scope="module")
def models():
    functional, sequential = small_cnn(False), small_cnn(True)
    sequential.set_weights(functional.get_weights())
    return functional, sequential


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)


def configured(name):
    return METHODS[name].configured(**FAST)


ALL = method_names()


def test_the_registry_holds_the_course_methods():
    assert {"vanilla", "guided", "rectified", "smoothgrad", "gradcam", "gradcam++", "xgradcam", "layercam",
            "guided gradcam", "scorecam", "cam", "occlusion", "integrated gradients"} <= set(ALL)
    # lab 06's tables take every method registered for them, and nothing else
    assert list(metrics.explanation_methods(smooth_samples=2)) == method_names(tables=True)
    assert "xgradcam" in metrics.explanation_methods()
    with pytest.raises(ValueError, match=r"unknown explanation method 'lime'.*registered methods"):
        get_method("lime")
    with pytest.raises(TypeError, match=r"Grad-CAM takes the options .*not \['steps'\]"):
        get_method("gradcam", steps=3)


@pytest.mark.parametrize("name", ALL)
def test_maps_are_images_in_the_unit_range(name, models, images):
    maps = configured(name)(models[0], images, [0, 2])
    assert maps.shape == (2, SIZE, SIZE) if name != "cam" else maps.shape[0] == 2
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert maps.max() > 0.5, f"{name}: every map is flat"


@pytest.mark.parametrize("name", ALL)
def test_the_callers_model_is_left_alone(name, images):
    net = small_cnn(False)
    before = net.predict(images, verbose=0)
    weights = [w.copy() for w in net.get_weights()]
    activations = [getattr(layer, "activation", None) for layer in net.layers]
    configured(name)(Explainer(net), images, None)
    assert [getattr(layer, "activation", None) for layer in net.layers] == activations
    for a, b in zip(net.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net.predict(images, verbose=0), before)


@pytest.mark.parametrize("name", ALL)
def test_a_second_call_does_not_retrace(name, models, images):
    ctx = Explainer(models[0])
    method = configured(name)
    method(ctx, images, [1, 3])
    steps, traces = len(ctx._functions), ctx.tracing_count()
    assert steps >= 1, f"{name} compiled nothing"
    method(ctx, images[::-1].copy(), [2, 0])  # other pixels, other classes, same shape
    method(ctx, images[:1], 1)  # another batch size
    assert (len(ctx._functions), ctx.tracing_count()) == (steps, traces), f"{name} retraced"


@pytest.mark.parametrize("name", ALL)
def test_sequential_equals_functional(name, models, images):
    functional, sequential = models
    np.testing.assert_allclose(configured(name)(sequential, images, [0, 1]),
                               configured(name)(functional, images, [0, 1]), atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_bad_layer_and_class_are_named(name, models, images):
    method = METHODS[name]
    if "layer" in method.options:
        with pytest.raises(ValueError, match=r"no layer named 'conv9'.*conv1.*conv2"):
            method.configured(**FAST, layer="conv9")(models[0], images, None)
    with pytest.raises(ValueError, match=rf"class index 7 is out of range.*{N_CLASSES} classes.*0\.\.3"):
        configured(name)(models[0], images, 7)


def test_one_cache_of_contexts_for_the_package(models):
    # methods, metrics, attribution and the functional helpers share one context per model
    from labhelpers.explain import gradcam

    ctx = context_for(models[0])
    assert isinstance(ctx, Explainer) and context_for(models[0]) is ctx
    gradcam(models[0], np.zeros((1, SIZE, SIZE, 3), np.float32), 0)  # the functional helper: no new context
    metrics.explanation_methods(include=["occlusion"])["occlusion"](models[0], np.zeros((1, SIZE, SIZE, 3)), [0])
    assert context_for(models[0]) is ctx and ctx._functions


def test_titles_name_the_options_that_change_the_method():
    assert get_method("gradcam", layer="conv2").title == "Grad-CAM"
    assert get_method("gradcam", rule="guided").title == "Grad-CAM (rule=guided)"
    assert get_method("smoothgrad", smooth_samples=20).title == "SmoothGrad (smooth_samples=20)"
    assert get_method("scorecam", max_n=8).title == "Score-CAM (max_n=8)"
