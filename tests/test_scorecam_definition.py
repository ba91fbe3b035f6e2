"""Score-CAM: which definition the course follows, pinned against tf-keras-vis 0.8.7 (issue 18).

Both weight channel k of the layer by the softmax probability of the class for the image masked by
A_k (resized to the input with bilinear interpolation, min-max scaled), sum the weighted maps, ReLU,
resize, min-max. They differ only in Faster Score-CAM's channel choice (``max_n``): the course keeps,
for each image, the max_n channels of that image's largest spatial std; tf-keras-vis keeps, for
every image of the batch, the union of all the images' top max_N channels. So tf-keras-vis's map of
an image depends on which other images share its batch, and a batch of 4 runs up to 4 x max_N masked
passes per image; the course's map of an image is the same alone or in any batch, and equals
tf-keras-vis's for a batch of one. Without max_n (every channel) the two agree for any batch.
"""

import numpy as np
import pytest

from labhelpers.explain import Explainer
from labhelpers.kerasapi import keras

tf_keras_vis = pytest.importorskip("tf_keras_vis")
from tf_keras_vis.scorecam import Scorecam  # noqa: E402
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear  # noqa: E402
from tf_keras_vis.utils.scores import CategoricalScore  # noqa: E402

CLASSES = [0, 3, 4]
MAX_N = 2


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(2)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(5, activation="softmax")(x), name="score_cnn")


@pytest.fixture(scope="module")
def images():
    x = np.random.default_rng(4).uniform(0, 1, size=(3, 12, 12, 3)).astype(np.float32)
    x[1] *= np.array([1.0, 0.1, 0.1], np.float32)  # three unlike images, so each picks its own channels
    x[2] = 1.0 - x[2] ** 3
    return x


def theirs(model, images, classes, max_n):
    return Scorecam(model, model_modifier=ReplaceToLinear())(
        CategoricalScore(classes), images, penultimate_layer="conv2", seek_penultimate_conv_layer=False, max_N=max_n)


def test_channel_choice_is_the_one_difference(model, images):
    ex = Explainer(model)
    ours = ex.scorecam(images, CLASSES, layer="conv2", max_n=MAX_N)
    alone = np.stack([ex.scorecam(images[i:i + 1], CLASSES[i], layer="conv2", max_n=MAX_N)[0] for i in range(3)])
    upstream_alone = np.stack([theirs(model, images[i:i + 1], [CLASSES[i]], MAX_N)[0] for i in range(3)])
    upstream_batch = theirs(model, images, CLASSES, MAX_N)
    # the course: an image's map does not depend on its batch, and equals tf-keras-vis's for a batch of one
    np.testing.assert_allclose(ours, alone, atol=1e-6)
    np.testing.assert_allclose(ours, upstream_alone, atol=1e-5)
    # tf-keras-vis: the batch pools the channels, so its maps change with the batch
    feats = keras.Model(model.input, model.get_layer("conv2").output)(images).numpy()
    top = [set(np.argsort(-feats[i].std(axis=(0, 1)))[:MAX_N]) for i in range(3)]
    assert len(set().union(*top)) > MAX_N, "fixture: the images must pick different channels"
    assert np.abs(upstream_batch - upstream_alone).max() > 1e-2
    # with every channel there is nothing to choose, and the two agree on the batch
    np.testing.assert_allclose(ex.scorecam(images, CLASSES, layer="conv2"), theirs(model, images, CLASSES, None),
                               atol=1e-5)
