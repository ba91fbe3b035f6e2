"""New inputs never retrace (issue 18: "5 out of the last 5 calls ... triggered tf.function
retracing"): every compiled step has a fixed signature per image shape with a free batch axis, so
new images, new batch sizes, new classes and new seeds reuse the one trace of each step."""

import logging

import numpy as np
import pytest

from labhelpers.explain import Explainer, get_method, method_names
from labhelpers.kerasapi import keras

tf = pytest.importorskip("tensorflow")
FAST = {"smooth_samples": 3, "ig_steps": 4, "max_n": 2}


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(5)
    x = inp = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="retrace_cnn")


@pytest.mark.parametrize("name", method_names())
def test_new_inputs_never_retrace(model, name, caplog):
    ex = Explainer(model)
    method = get_method(name, **{k: v for k, v in FAST.items() if k in get_method(name).options})
    rng = np.random.default_rng(0)
    method(ex, rng.uniform(0, 1, (2, 10, 10, 3)).astype(np.float32), [0, 1])
    traces = ex.tracing_count()
    with caplog.at_level(logging.WARNING):
        for n in (1, 3, 5, 2, 6, 4):  # new values, new batch sizes, new classes
            kwargs = {"seed": n} if "seed" in method.options else {}
            again = type(method)(**{**method.settings, **kwargs})
            again(ex, rng.uniform(0, 1, (n, 10, 10, 3)).astype(np.float32), rng.integers(0, 3, n))
    assert ex.tracing_count() == traces
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_many_models_in_a_row_print_no_retracing_advice(model, caplog):
    # TensorFlow counts traces per source function across all steps made from it: six contexts, one trace
    # each, used to print "5 out of the last 5 calls ... triggered tf.function retracing" (seen under xdist)
    x = np.random.default_rng(1).uniform(0, 1, (2, 10, 10, 3)).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        for _ in range(6):
            Explainer(model).gradcam(x, [0, 1])
            Explainer(model).saliency(x, [0, 1])
    assert not [r.getMessage()[:200] for r in caplog.records if "retracing" in r.getMessage()]


def test_steps_run_without_grappler_and_leave_the_process_as_it_was():
    """A compiled step is called with Grappler's rewrites off (bench/bench_grappler.py: they only cost first
    calls time here); the process's own call options are back after the call, also when the step raises."""
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context as tf_context

    from labhelpers.explain.graph import compiled

    def rewrites_off():
        serialized = tf_context.context().function_call_options.config_proto_serialized
        return config_pb2.ConfigProto.FromString(serialized or b"").graph_options.rewrite_options.disable_meta_optimizer

    seen = []

    def fn(x):
        seen.append(rewrites_off())  # runs while the step traces, inside its call
        tf.debugging.assert_positive(x)
        return x * 2.0

    step = compiled(fn, [tf.TensorSpec((None,), tf.float32)])
    before = tf_context.context().function_call_options
    assert float(step(tf.constant([1.0, 2.0]))[1]) == 4.0 and seen == [True]
    assert tf_context.context().function_call_options is before and not rewrites_off()
    with pytest.raises(tf.errors.InvalidArgumentError):
        step(tf.constant([-1.0]))
    assert tf_context.context().function_call_options is before
    assert step.experimental_get_tracing_count() == 1  # the tf.function's own API still answers


def test_attack_manipulation_and_feature_visualisation_steps_are_compiled_steps(model):
    """PGD, the explanation manipulation and feature visualisation compile their steps as the methods do
    (explain.graph.compiled: one trace per shape, Grappler's rewrites off, the test above)."""
    from labhelpers import attacks, featurevis
    from labhelpers.explain import context_for
    from labhelpers.explain.graph import _WithoutGrappler

    x = np.random.default_rng(0).random((2, 10, 10, 3), dtype=np.float32)
    attacks.pgd(model, x, [0, 1], 0.05, steps=2, seed=0)
    attacks.manipulate_explanation(model, x, np.ones((10, 10), bool), method="saliency", steps=1)
    vis = featurevis.FeatureVisualizer(model)
    vis.maximize([0], objective="logit", steps=2, regularizers=())
    vis.activations(x, [0], objective="logit")
    steps = {str(key[0]): f for key, f in context_for(model)._functions.items()
             if key[0] in ("attack_step", "manipulation")}
    assert sorted(steps) == ["attack_step", "manipulation"] and len(vis._steps) == 2
    assert all(isinstance(f, _WithoutGrappler) for f in [*steps.values(), *vis._steps.values()])
