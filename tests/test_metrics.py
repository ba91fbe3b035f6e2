"""Metrics against answers derived by hand: a model that only looks at one region,
known curves, hand-made maps and masks, and a model-independent "method"."""

import math

import numpy as np
import pytest
import tensorflow as tf

from labhelpers import metrics
from labhelpers.kerasapi import keras  # tf-keras when TF_USE_LEGACY_KERAS=1
from labhelpers.metrics import perturbation

SIZE = 8
REGION = (slice(2, 6), slice(3, 7))  # 16 of the 64 pixels; not at the raster start
N_REGION = 16
OFFSET = 8.0  # logit of class 1: sum over the region - OFFSET


def region_mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[REGION] = True
    return mask


def region_model() -> keras.Model:
    """p(class 1) = sigmoid(sum of the region's pixels - 8), p(class 0) = 1 - that:
    softmax over logits (0, z). Nothing outside the region matters."""
    model = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax", name="scores")])
    kernel = np.zeros((SIZE * SIZE, 2), np.float32)
    kernel[:, 1] = region_mask().ravel()
    model.get_layer("scores").set_weights([kernel, np.array([0.0, -OFFSET], np.float32)])
    return model


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


class CountingModel:
    """Any callable model works; this one counts forward passes."""

    def __init__(self, model):
        self.model, self.calls, self.sizes = model, 0, []

    def __call__(self, batch):
        self.calls += 1
        self.sizes.append(len(batch))
        return self.model.predict_on_batch(batch)


@pytest.fixture(scope="module")
def model():
    return region_model()


def ones(n):
    return np.ones((n, SIZE, SIZE, 1), np.float32)


# ------------------------------------------------------------------ deletion / insertion
def test_deletion_of_the_region_first_follows_the_hand_computed_curve(model):
    region_first = np.where(region_mask(), 1.0, 0.0)[None]
    result = metrics.deletion_auc(model, ones(1), region_first, 1, steps=SIZE * SIZE)
    removed = np.arange(SIZE * SIZE + 1)  # one pixel per step, the region's 16 first
    expected = sigmoid(np.maximum(N_REGION - removed, 0) - OFFSET)
    np.testing.assert_allclose(result.fractions, removed / 64)
    np.testing.assert_allclose(result.curves[0], expected, atol=1e-6)
    np.testing.assert_allclose(result.areas[0], np.trapezoid(expected, removed / 64), atol=1e-6)
    assert result.areas[0] < 0.13  # the minimum any order can reach: the curve drops at once


def test_deletion_region_map_is_minimal_and_random_map_is_near_chance(model):
    n = 24
    images = ones(n)
    region = np.repeat(np.where(region_mask(), 1.0, 0.0)[None], n, axis=0)
    region = region + 0.01 * metrics.random_map(region.shape, seed=1)  # ranking within the region is free
    good = metrics.deletion_auc(model, images, region, 1, steps=32)
    worst = metrics.deletion_auc(model, images, -region, 1, steps=32)  # region removed last
    chance = metrics.deletion_auc(model, images, metrics.random_map((n, SIZE, SIZE), seed=0), 1, steps=32)
    # sigmoid(16 (1 - f) - 8) integrates to 0.5 when the region leaves at the average rate
    assert good.areas.max() < 0.14
    assert worst.areas.min() > 0.86
    assert 0.4 < chance.mean < 0.6
    assert good.areas.max() < chance.areas.min()


def test_insertion_is_the_mirror_image(model):
    n = 24
    images = ones(n)
    region = np.repeat(np.where(region_mask(), 1.0, 0.0)[None], n, axis=0)
    good = metrics.insertion_auc(model, images, region, 1, steps=32, baseline="zero")
    chance = metrics.insertion_auc(model, images, metrics.random_map((n, SIZE, SIZE), seed=0), 1,
                                   steps=32, baseline="zero")
    deletion = metrics.deletion_auc(model, images, region, 1, steps=32)
    assert good.areas.min() > 0.86
    assert 0.4 < chance.mean < 0.6
    np.testing.assert_allclose(good.areas, 1 - deletion.areas, atol=1e-6)  # p(1) + p(0) = 1 symmetry


@pytest.mark.parametrize("baseline", ["zero", "blur", "mean"])
def test_curve_ends_are_the_image_and_the_baseline(baseline):
    rng = np.random.default_rng(0)
    images = rng.random((3, SIZE, SIZE, 1)).astype(np.float32) * 0.5
    net = region_model()
    maps = metrics.random_map((3, SIZE, SIZE), seed=2)
    deletion = metrics.deletion_auc(net, images, maps, [1, 0, 1], steps=4, baseline=baseline)
    insertion = metrics.insertion_auc(net, images, maps, [1, 0, 1], steps=4, baseline=baseline)
    base = perturbation._baseline_images(images, baseline, None)
    p_image = net.predict_on_batch(images)[np.arange(3), [1, 0, 1]]
    p_base = net.predict_on_batch(base)[np.arange(3), [1, 0, 1]]
    np.testing.assert_allclose(deletion.curves[:, 0], p_image, atol=1e-6)
    np.testing.assert_allclose(deletion.curves[:, -1], p_base, atol=1e-6)
    np.testing.assert_allclose(insertion.curves[:, 0], p_base, atol=1e-6)
    np.testing.assert_allclose(insertion.curves[:, -1], p_image, atol=1e-6)


def test_ties_are_broken_in_raster_order():
    # A flat map removes pixels row by row; the region (rows 2-5) is gone after 6 rows.
    result = metrics.deletion_auc(region_model(), ones(1), np.zeros((1, SIZE, SIZE)), 1, steps=SIZE)
    region_left = [16, 16, 16, 12, 8, 4, 0, 0, 0]  # region pixels still present after k rows
    np.testing.assert_allclose(result.curves[0], sigmoid(np.array(region_left) - OFFSET), atol=1e-6)


@pytest.mark.parametrize("n, steps, batch_size", [(10, 8, 32), (7, 50, 64), (3, 4, 1000)])
def test_forward_passes_are_batched(model, n, steps, batch_size):
    counting = CountingModel(model)
    metrics.deletion_auc(counting, ones(n), metrics.random_map((n, SIZE, SIZE)), 1, steps=steps,
                         batch_size=batch_size)
    assert counting.calls == math.ceil(n * (steps + 1) / batch_size)
    assert max(counting.sizes) <= batch_size


def test_logit_models_need_apply_softmax():
    logits = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    logits.layers[-1].set_weights(region_model().layers[-1].get_weights())
    with pytest.raises(ValueError, match="apply_softmax=True"):
        metrics.deletion_auc(logits, ones(2), np.zeros((2, SIZE, SIZE)), 1, steps=4)
    soft = metrics.deletion_auc(logits, ones(2), np.zeros((2, SIZE, SIZE)), 1, steps=4, apply_softmax=True)
    ref = metrics.deletion_auc(region_model(), ones(2), np.zeros((2, SIZE, SIZE)), 1, steps=4)
    np.testing.assert_allclose(soft.curves, ref.curves, atol=1e-6)


def test_bad_inputs_name_what_is_wrong(model):
    with pytest.raises(ValueError, match=r"\(N, H, W, C\).*images\[\.\.\., None\]"):
        metrics.deletion_auc(model, np.ones((2, SIZE, SIZE)), np.zeros((2, SIZE, SIZE)), 1)
    with pytest.raises(ValueError, match="one \\(H, W\\) map per image"):
        metrics.deletion_auc(model, ones(2), np.zeros((3, SIZE, SIZE)), 1)
    with pytest.raises(ValueError, match="NaN"):
        metrics.deletion_auc(model, ones(1), np.full((1, SIZE, SIZE), np.nan), 1)
    with pytest.raises(ValueError, match="class 5 .* 2 outputs"):
        metrics.deletion_auc(model, ones(1), np.zeros((1, SIZE, SIZE)), 5)
    with pytest.raises(ValueError, match="unknown baseline 'grey'"):
        metrics.insertion_auc(model, ones(1), np.zeros((1, SIZE, SIZE)), 1, baseline="grey")


# ------------------------------------------------------------------ small building blocks
def test_area_of_known_curves():
    f = np.linspace(0, 1, 11)
    assert metrics.area_under_curve(f, 1 - f) == pytest.approx(0.5)
    assert metrics.area_under_curve(f, np.ones_like(f)) == pytest.approx(1.0)
    assert metrics.area_under_curve(f, f**2) == pytest.approx(1 / 3, abs=0.002)


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.5, 0.1, 20), rng.normal(0.5, 0.1, 2000)
    mean, low, high = metrics.bootstrap_ci(small)
    assert low < mean < high and mean == pytest.approx(small.mean())
    _, low2, high2 = metrics.bootstrap_ci(large)
    assert (high2 - low2) < (high - low) / 5  # ~ 1/sqrt(100) as wide
    assert metrics.bootstrap_ci(small, seed=3) == metrics.bootstrap_ci(small, seed=3)
    assert metrics.bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7, 0.7))


def test_random_map_is_seeded_uniform_noise():
    a, b = metrics.random_map((2, 5, 5), seed=1), metrics.random_map((2, 5, 5), seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 5, 5) and 0 <= a.min() and a.max() < 1
    assert not np.array_equal(a, metrics.random_map((2, 5, 5), seed=2))


def test_edge_map_of_a_square_is_high_on_its_border_and_low_inside():
    image = np.zeros((1, 20, 20, 3))
    image[0, 5:15, 5:15] = 1.0
    edges = metrics.edge_map(image)[0]
    assert edges.max() == pytest.approx(1.0)
    assert edges[7:13, 7:13].max() == 0  # flat inside
    assert edges[:3].max() == 0  # flat outside
    assert edges[5:15, 4:6].min() > 0.5 and edges[4:6, 5:15].min() > 0.5  # the left and top borders
    np.testing.assert_allclose(metrics.edge_map(image[..., :1]), metrics.edge_map(image))


# ------------------------------------------------------------------ pointing game
def test_pointing_game_hit_miss_and_tolerance():
    maps = np.zeros((3, 10, 10))
    masks = np.zeros((3, 10, 10), bool)
    masks[:, 2:4, 2:4] = True
    maps[0, 3, 3] = 1.0  # inside: hit
    maps[1, 8, 8] = 1.0  # far away: miss
    maps[2, 3, 6] = 1.0  # 3 px right of the mask's edge (column 3)
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks), [True, False, False])
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks, tolerance=2), [True, False, False])
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks, tolerance=3), [True, False, True])
    assert metrics.pointing_game(maps, masks, tolerance=8).all()  # (8,8) is sqrt(25+25) ~ 7.1 px away


def test_pointing_game_ties():
    flat = np.zeros((1, 6, 6))
    mask = np.zeros((1, 6, 6), bool)
    mask[0, 0, 0] = True  # where argmax of a flat map lands
    assert not metrics.pointing_game(flat, mask)[0]  # a flat map does not score by luck
    assert metrics.pointing_game(flat, mask, ties="first")[0]
    assert metrics.pointing_game(flat, mask, ties="any")[0]
    with pytest.raises(ValueError, match="empty"):
        metrics.pointing_game(flat, np.zeros((1, 6, 6), bool))


# ------------------------------------------------------------------ randomisation check
def gradient_maps(model, images, classes):
    """|d score / d input|, summed over channels: the vanilla gradient, written out here
    so the check is tested independently of labhelpers.explain."""
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        scores = tf.gather(model(x, training=False), classes, axis=1, batch_dims=1)
    return np.abs(tape.gradient(scores, x).numpy()).sum(axis=-1)


def edges_only(model, images, classes):
    return metrics.edge_map(images)


@pytest.fixture(scope="module")
def small_cnn():
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv1"),
        keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="conv2"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])


def test_randomization_check_cascade(small_cnn):
    rng = np.random.default_rng(0)
    images = rng.random((16, 12, 12, 1)).astype(np.float32)
    classes = np.zeros(16, int)
    before = [w.copy() for w in small_cnn.get_weights()]
    result = metrics.randomization_check(small_cnn, images, classes,
                                         methods={"gradient": gradient_maps, "edges": edges_only}, seed=0)
    assert result.stages == ["original", "out", "conv2", "conv1"]
    means = result.mean("spearman_abs")
    assert np.all(result.spearman_abs["gradient"][0] == 1.0)  # nothing randomised: same maps exactly
    assert means["gradient"][-1] < 0.3  # all weights random: the gradient forgets the original
    np.testing.assert_array_equal(means["edges"], 1.0)  # a model-independent map never changes
    np.testing.assert_allclose(result.ssim["edges"], 1.0)
    assert result.maps["gradient"].shape == (4, 4, 12, 12)
    for a, b in zip(before, small_cnn.get_weights(), strict=True):  # the caller's model is untouched
        np.testing.assert_array_equal(a, b)
    verdicts = result.verdicts(threshold=0.5)
    assert verdicts["gradient"]["verdict"] == "passes" and verdicts["edges"]["verdict"] == "fails"
    assert verdicts["edges"]["low"] == verdicts["edges"]["high"] == 1.0
    assert result.verdicts(threshold=means["gradient"][-1])["gradient"]["verdict"] == "undecided"
    rows = result.to_rows()
    assert len(rows) == 8 and rows[0] == {"method": "gradient", "stage": 0, "randomised_down_to": "original",
                                          "spearman_abs": 1.0, "spearman": 1.0, "ssim": pytest.approx(1.0)}


def test_randomization_check_independent_and_layer_choice(small_cnn):
    images = np.random.default_rng(1).random((6, 12, 12, 1)).astype(np.float32)
    result = metrics.randomization_check(small_cnn, images, 0, methods={"gradient": gradient_maps},
                                         layers=["conv1", "out"], mode="independent")
    assert result.stages == ["original", "out", "conv1"]
    assert result.spearman_abs["gradient"][0].min() == 1.0
    with pytest.raises(ValueError, match=r"\['dense'\] are not weighted layers.*\['conv1', 'conv2', 'out'\]"):
        metrics.randomization_check(small_cnn, images, 0, methods={"g": gradient_maps}, layers=["dense"])


def test_randomization_check_by_groups(small_cnn):
    """layers={label: [names]}: each group is randomised together, one stage each (deep networks
    block by block); metrics.layer_groups groups block<n>... names by block."""
    images = np.random.default_rng(4).random((6, 12, 12, 1)).astype(np.float32)
    result = metrics.randomization_check(small_cnn, images, 0, methods={"gradient": gradient_maps},
                                         layers={"head": ["out"], "convs": ["conv1", "conv2"]})
    assert result.stages == ["original", "convs", "head"]  # from the output backwards: the mapping's reverse
    cascade = metrics.randomization_check(small_cnn, images, 0, methods={"gradient": gradient_maps}, seed=0)
    assert result.mean()["gradient"][-1] < 0.3 and cascade.mean()["gradient"][-1] < 0.3
    with pytest.raises(ValueError, match=r"\['nope'\] are not weighted layers"):
        metrics.randomization_check(small_cnn, images, 0, methods={"g": gradient_maps}, layers={"x": ["nope"]})
    net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="block1_conv1"),
                            keras.layers.BatchNormalization(name="block1a_bn"), keras.layers.Conv2D(2, 3, name="top_conv"),
                            keras.layers.Flatten(), keras.layers.Dense(2, name="predictions")])
    assert metrics.layer_groups(net) == {"block1": ["block1_conv1", "block1a_bn"], "top": ["top_conv"],
                                         "predictions": ["predictions"]}


def test_randomization_check_restores_the_weights_when_a_method_fails(small_cnn):
    """The check randomises the model in place; its trained weights come back bit for bit even when a
    method raises in the middle of the cascade."""
    images = np.random.default_rng(5).random((4, 12, 12, 1)).astype(np.float32)
    before = [w.copy() for w in small_cnn.get_weights()]
    calls = []

    def fails_at_the_second_stage(model, x, classes):
        calls.append(1)
        if len(calls) == 3:  # reference, original, then the first randomised stage
            assert not np.array_equal(model.get_layer("out").get_weights()[0], before[-2])  # randomised now
            raise RuntimeError("a method broke")
        return gradient_maps(model, x, classes)

    with pytest.raises(RuntimeError, match="a method broke"):
        metrics.randomization_check(small_cnn, images, 0, methods={"g": fails_at_the_second_stage})
    for a, b in zip(before, small_cnn.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_randomization_check_reuses_the_models_compiled_steps(small_cnn):
    """In place, the methods find the model's context and its traced steps: no step traces again."""
    from labhelpers.explain import context_for

    images = np.random.default_rng(6).random((4, 12, 12, 1)).astype(np.float32)
    methods = metrics.explanation_methods(include=["vanilla", "gradcam"])
    for method in methods.values():
        method(small_cnn, images, np.zeros(4, int))
    traces, seen = context_for(small_cnn).tracing_count(), set()

    def recording(method):
        return lambda model, x, classes: seen.add(id(model)) or method(model, x, classes)

    result = metrics.randomization_check(small_cnn, images, 0,
                                         methods={name: recording(m) for name, m in methods.items()})
    assert seen == {id(small_cnn)}  # not a copy (a copy is a new model: every step traced again)
    assert context_for(small_cnn).tracing_count() == traces
    assert result.mean()["vanilla"][-1] < 0.5


def test_spearman_and_ssim_rows():
    a = np.arange(16.0).reshape(1, 4, 4)
    assert metrics.spearman_rows(a, a)[0] == 1.0
    assert metrics.spearman_rows(a, -a)[0] == pytest.approx(-1.0)
    assert metrics.spearman_rows(a, a**3)[0] == 1.0  # ranks only
    assert metrics.spearman_rows(a, np.zeros_like(a))[0] == 0.0  # a constant map keeps no order
    assert metrics.spearman_rows(np.zeros_like(a), np.zeros_like(a))[0] == 1.0  # but equals another
    assert metrics.ssim_rows(a, 5 * a + 2)[0] == pytest.approx(1.0)  # scaled to [0, 1] first


def test_rank_rows_are_scipys_average_ranks_and_spearman_is_scipys():
    """Ties share their mean rank (ReLU maps are full of zeros); the correlation is scipy's spearmanr."""
    from scipy.stats import rankdata, spearmanr

    from labhelpers.metrics.similarity import rank_rows

    rng = np.random.default_rng(7)
    a = np.round(rng.normal(size=(6, 9, 9)), 1) * (rng.random((6, 9, 9)) > 0.4)  # many ties, many zeros
    b = np.maximum(a + rng.normal(scale=0.5, size=a.shape), 0)
    np.testing.assert_array_equal(rank_rows(a), rankdata(a.reshape(6, -1), axis=1))
    expected = [spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(metrics.spearman_rows(a, b), expected, atol=1e-12)


def test_default_methods_on_the_explainer(small_cnn):
    """The Explainer-backed methods: vanilla is the normalised |gradient| of the logit
    (the softmax removed), every method reproduces itself exactly on the untouched copy."""
    from labhelpers.explain import normalize_maps

    images = np.random.default_rng(2).random((5, 12, 12, 1)).astype(np.float32)
    classes = np.array([0, 1, 2, 0, 1])
    methods = metrics.explanation_methods(smooth_samples=2)
    assert list(methods) == list(metrics.METHOD_NAMES)
    logits = keras.Sequential([keras.Input((12, 12, 1)), *small_cnn.layers[:-1],
                               keras.layers.Dense(3, name="logits")])
    logits.get_layer("logits").set_weights(small_cnn.get_layer("out").get_weights())
    np.testing.assert_allclose(methods["vanilla"](small_cnn, images, classes),
                               normalize_maps(gradient_maps(logits, images, classes)), atol=1e-5)
    result = metrics.randomization_check(small_cnn, images, classes, methods=methods, layers=["out"])
    for name in methods:
        assert result.spearman_abs[name][0].min() == 1.0, name
    with pytest.raises(ValueError, match="unknown methods \\['lime'\\]"):
        metrics.explanation_methods(include=["vanilla", "lime"])
