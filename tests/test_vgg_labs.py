"""The VGG16 labs' helpers (labhelpers.labs.vgg_lab, lh.vgg_lab): the two-submodel Grad-CAM of lab 03 against
the Explainer and against hand-derived ground truth, the labs' photos, and clear errors for
bad input. Tiny models, except one VGG16 with random weights (no download)."""

from pathlib import Path

import nbformat
import numpy as np
import pytest

from labhelpers.kerasapi import keras  # tf-keras when TF_USE_LEGACY_KERAS=1

tf = pytest.importorskip("tensorflow")

from labhelpers import config, models, vgg_lab  # noqa: E402
from labhelpers.explain import Explainer  # noqa: E402
from labhelpers.models import PretrainedInfo, pretrained  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
VGG_LABS = ["03_vgg16_feature_maps_gradcam.ipynb", "04_vgg16_saliency_guided_rectified.ipynb",
            "05_gradcam_gradcampp_smoothgrad.ipynb"]


def conv_net(seed=0):
    """conv(relu) -> conv(relu) -> maxpool -> flatten -> dense(relu) -> dense(softmax):
    VGG16's shape in miniature (a Flatten + Dense head, so Grad-CAM is not CAM)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(6, activation="relu", name="fc")(x)
    out = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="mini_vgg")


@pytest.fixture(scope="module")
def model():
    return conv_net()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).uniform(-1, 1, size=(3, 10, 10, 3)).astype(np.float32)


# ---------------------------------------------------------------- the two halves
def test_halves_compose_to_the_model_and_share_its_weights(images):
    model = conv_net(seed=1)
    nodes = [len(layer._inbound_nodes) for layer in model.layers]
    features_model, classifier = vgg_lab.split_at_layer(model, "conv2")
    assert features_model.output.shape[1:] == (6, 6, 5)
    assert [layer.name for layer in classifier.layers][1:] == ["pool", "flatten", "fc", "predictions"]
    np.testing.assert_allclose(classifier(features_model(images)).numpy(), model(images).numpy(), atol=1e-6)
    # the caller's layers got no new graph nodes, and the halves use its very weights
    assert [len(layer._inbound_nodes) for layer in model.layers] == nodes
    kernel = model.get_layer("fc").kernel
    kernel.assign(kernel.numpy() * 2.0)
    np.testing.assert_allclose(classifier(features_model(images)).numpy(), model(images).numpy(), atol=1e-6)


def test_linear_head_gives_logits(model, images):
    _, probs_half = vgg_lab.split_at_layer(model, "conv2")
    features_model, logits_half = vgg_lab.split_at_layer(model, "conv2", linear_head=True)
    feats = features_model(images)
    np.testing.assert_allclose(tf.nn.softmax(logits_half(feats)).numpy(), probs_half(feats).numpy(), atol=1e-6)
    assert model.get_layer("predictions").activation is keras.activations.softmax  # unchanged


def test_sequential_models_can_be_split(images):
    keras.utils.set_random_seed(2)
    seq = keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Conv2D(3, 3, activation="relu", name="c"),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="out")])
    features_model, classifier = vgg_lab.split_at_layer(seq, "c")
    np.testing.assert_allclose(classifier(features_model(images)).numpy(), seq(images).numpy(), atol=1e-6)


# ---------------------------------------------------------------- Grad-CAM by hand
@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_gradcam_by_hand_equals_the_explainer(model, images, layer):
    features_model, classifier = vgg_lab.split_at_layer(model, layer, linear_head=True)
    classes = [0, 2, 1]
    by_hand, chosen = vgg_lab.gradcam_by_hand(features_model, classifier, images, classes, normalize=False)
    explainer = Explainer(model).gradcam(images, classes, layer=layer, normalize=False, upsample=False)
    assert list(chosen) == classes
    assert by_hand.max() > 0  # a real map, not two zero arrays
    np.testing.assert_allclose(by_hand, explainer, rtol=1e-4, atol=1e-6)
    # normalised: divided by its maximum (the Explainer's min-max gives the same when min is 0)
    normed, _ = vgg_lab.gradcam_by_hand(features_model, classifier, images, classes)
    np.testing.assert_allclose(normed.max(axis=(1, 2))[by_hand.max(axis=(1, 2)) > 0], 1.0, rtol=1e-6)


def test_gradcam_by_hand_is_cam_on_a_gap_dense_head(images):
    """conv -> GAP -> Dense (linear): d z_c / d A_k(i, j) = W[k, c] / (h w) everywhere, so
    Grad-CAM = ReLU(sum_k W[k, c] A_k) / (h w): CAM, computed here with NumPy."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((10, 10, 3))
    a = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    out = keras.layers.Dense(3, name="dense")(keras.layers.GlobalAveragePooling2D()(a))
    gap_net = keras.Model(inp, out)
    features_model, classifier = vgg_lab.split_at_layer(gap_net, "conv")
    feats = features_model(images).numpy()  # (3, 8, 8, 4)
    kernel = gap_net.get_layer("dense").kernel.numpy()  # (4, 3)
    classes = np.array([2, 0, 1])
    expected = np.maximum(np.einsum("nhwk,kn->nhw", feats, kernel[:, classes]), 0.0) / 64.0
    got, _ = vgg_lab.gradcam_by_hand(features_model, classifier, images, classes, normalize=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_gradient_after_softmax_follows_the_chain_rule(model, images):
    """d p_c / d A = p_c (d z_c / d A - sum_j p_j d z_j / d A): the softmax gradient mixes in
    every other class's gradient, which is why the lab's exercise asks to compare both."""
    fm, logits_half = vgg_lab.split_at_layer(model, "conv2", linear_head=True)
    fm2, probs_half = vgg_lab.split_at_layer(model, "conv2")
    per_class = [vgg_lab.score_gradients(fm, logits_half, images, c)[1] for c in range(3)]  # (N,h,w,K) each
    _, grads_p, probs, _ = vgg_lab.score_gradients(fm2, probs_half, images, 1)
    mixed = sum(probs[:, j, None, None, None] * per_class[j] for j in range(3))
    expected = probs[:, 1, None, None, None] * (per_class[1] - mixed)
    np.testing.assert_allclose(grads_p, expected, rtol=1e-4, atol=1e-8)


def test_predicted_class_by_default(model, images):
    fm, head = vgg_lab.split_at_layer(model, "conv2")
    _, _, scores, chosen = vgg_lab.score_gradients(fm, head, images)
    np.testing.assert_array_equal(chosen, scores.argmax(axis=-1))


def test_real_vgg16_offline_then_gradcam_by_hand_equals_the_explainer(tmp_path, monkeypatch):
    """The one test that builds the real VGG16 (138M parameters, 1-8 s): offline and without weights, the smoke
    profile's loader gives seeded random weights, says so loudly and writes nothing; on that network block5_conv3
    gives a 14 x 14 map, and Grad-CAM by hand equals the Explainer's."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("LABS_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(pretrained, "_network_available", lambda *a, **k: False)
    vgg, info = models.load_vgg16(profile="smoke", seed=0)
    assert info.fallback and "RANDOM VGG16 WEIGHTS" in info.banner
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in info.banner
    assert vgg.input_shape == (None, 224, 224, 3) and vgg.output_shape == (None, 1000)
    assert vgg.get_layer("block5_conv3").output.shape == (None, 14, 14, 512)
    assert not (tmp_path / "keras" / "models").exists()  # nothing downloaded, nothing half-written
    assert config.weights_dir() is None

    image = np.random.default_rng(0).uniform(-120, 130, size=(1, 224, 224, 3)).astype(np.float32)
    fm, head = vgg_lab.split_at_layer(vgg, "block5_conv3", linear_head=True)
    by_hand, _ = vgg_lab.gradcam_by_hand(fm, head, image, 7, normalize=False)
    explainer = Explainer(vgg).gradcam(image, 7, layer="block5_conv3", normalize=False, upsample=False)
    assert by_hand.shape == (1, 14, 14)
    np.testing.assert_allclose(by_hand, explainer, rtol=1e-3, atol=1e-6 * float(np.abs(explainer).max()))
    assert vgg_lab.feature_layer_indices(vgg) == list(vgg_lab.VGG16_FEATURE_LAYER_INDICES)


def test_feature_layers_and_a_split_of_efficientnet_lite0():
    """The labs' model-agnostic pieces on Lite0's architecture (random weights, nothing loaded):
    one feature-map layer per resolution, and a cut at top_activation whose head is GAP + dense."""
    from labhelpers.models.efficientnet import build_efficientnet_lite0

    keras.utils.set_random_seed(0)
    lite = build_efficientnet_lite0()
    names = [lite.layers[i].name for i in vgg_lab.feature_layer_indices(lite)]
    assert names == ["block2a_expand_activation", "block3a_expand_activation", "block4a_expand_activation",
                     "block6a_expand_activation", "top_activation"]
    image = np.random.default_rng(0).uniform(-1, 1, size=(1, 224, 224, 3)).astype(np.float32)
    fm, head = vgg_lab.split_at_layer(lite, "top_activation")
    assert fm.output.shape[1:] == (7, 7, 1280)
    assert [layer.name for layer in head.layers[1:]] == ["avg_pool", "predictions"]
    np.testing.assert_allclose(head(fm(image)).numpy(), lite(image).numpy(), atol=1e-5)


def test_cat_box_mask_maps_the_box_through_the_resize():
    box = vgg_lab.cat_box()
    assert (box["width"], box["height"]) == (451, 300) and 0 <= box["x0"] < box["x1"] <= 451
    mask = vgg_lab.cat_box_mask((300, 451))  # no resize: the box itself
    assert mask.sum() == (box["x1"] - box["x0"]) * (box["y1"] - box["y0"])
    assert mask[box["y0"], box["x0"]] and not mask[box["y0"] - 1, box["x0"]] and not mask[box["y1"], box["x1"]]
    small = vgg_lab.cat_box_mask((224, 224))
    rows, cols = np.nonzero(small)
    assert small.shape == (224, 224) and rows.min() == int(box["y0"] * 224 / 300)
    assert cols.max() == int(np.ceil(box["x1"] * 224 / 451)) - 1


# ---------------------------------------------------------------- bad input, clear errors
def test_unknown_layer_lists_conv_layers_and_close_names(model):
    with pytest.raises(ValueError, match=r"no layer named 'conv3'.*\['conv1', 'conv2'\]") as err:
        vgg_lab.split_at_layer(model, "conv3")
    assert "mini_vgg" in str(err.value)
    with pytest.raises(ValueError, match=r"'fc' outputs shape.*not feature maps.*\['conv1', 'conv2'\]"):
        vgg_lab.split_at_layer(model, "fc")
    with pytest.raises(ValueError, match="output layer"):
        vgg_lab.split_at_layer(keras.Model(model.input, model.get_layer("conv2").output), "conv2")
    with pytest.raises(TypeError, match="keras.Model"):
        vgg_lab.split_at_layer(lambda x: x, "conv2")


def test_a_skip_connection_across_the_cut_is_refused():
    inp = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(2, 1, name="a")(inp)
    b = keras.layers.Conv2D(2, 1, name="b")(a)
    out = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Add()([a, b])))
    with pytest.raises(ValueError, match="skip connection crosses the cut"):
        vgg_lab.split_at_layer(keras.Model(inp, out, name="skip"), "b")


def test_bad_classes_and_empty_batches(model, images):
    fm, head = vgg_lab.split_at_layer(model, "conv2")
    with pytest.raises(ValueError, match=r"class index \[5\] out of range.*3 classes"):
        vgg_lab.gradcam_by_hand(fm, head, images, 5)
    with pytest.raises(ValueError, match="empty image batch"):
        vgg_lab.gradcam_by_hand(fm, head, images[:0])


def write_png(path, color, size=(30, 40)):
    from PIL import Image

    Image.fromarray(np.full((*size, 3), color, dtype=np.uint8)).save(path)
    return path


def test_lab_images_from_a_folder_with_class_names(tmp_path):
    write_png(tmp_path / "b.png", (0, 0, 255))
    write_png(tmp_path / "a.png", (255, 0, 0))
    (tmp_path / "notes.txt").write_text("not a photo, skipped by its suffix")
    photos = vgg_lab.lab_images(image_dir=str(tmp_path), class_names="goose")
    assert photos.names == ["a", "b"] and photos.images.shape == (2, 224, 224, 3)
    assert photos.class_ids == [99, 99]  # ImageNet 'goose', resolved by name
    assert tuple(photos.images[0, 0, 0]) == (255, 0, 0)
    one = vgg_lab.lab_images(image_path=str(tmp_path / "b.png"), class_names=["tabby cat"])
    assert one.names == ["b"] and one.class_ids == [281]


def test_lab_images_default_to_the_bundled_photos():
    photos = vgg_lab.lab_images(names=["chelsea", "coffee"])
    assert photos.names == ["chelsea", "coffee"] and photos.class_ids == [281, 967]
    assert photos.images.dtype == np.uint8 and photos.images.shape == (2, 224, 224, 3)
    assert "tabby" in str(photos)


def test_lab_images_errors(tmp_path):
    write_png(tmp_path / "a.png", (1, 2, 3))
    with pytest.raises(KeyError, match="did you mean.*goose"):
        vgg_lab.lab_images(image_dir=str(tmp_path), class_names="goos")
    with pytest.raises(ValueError, match="2 class names for 1 images"):
        vgg_lab.lab_images(image_dir=str(tmp_path), class_names="goose, tabby")
    fake = tmp_path / "fake" / "bird.jpg"
    fake.parent.mkdir()
    fake.write_text("this is text, not a JPEG")
    with pytest.raises(ValueError, match=r"bird\.jpg: not an image file"):
        vgg_lab.lab_images(image_path=str(fake))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no photos here")
    with pytest.raises(ValueError, match=r"image_dir: .*no image files.*readme\.md"):
        vgg_lab.lab_images(image_dir=str(empty))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vgg_lab.lab_images(image_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no sample photos named"):
        vgg_lab.lab_images(names=[])
    with pytest.raises(KeyError, match="no sample photo named"):
        vgg_lab.lab_images(names=["goose"])


def test_crops_and_side_by_side():
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, :20] = (255, 0, 0)  # left half red, right half green
    image[:, 20:] = (0, 255, 0)
    left, right, mirrored = vgg_lab.crops(image, [(0, 0, 1, 0.5), (0, 0.5, 1, 0.5), (0, 0, 1, 0.5, True)],
                                          size=(8, 8))
    assert (left == (255, 0, 0)).all() and (right == (0, 255, 0)).all() and (mirrored == (255, 0, 0)).all()
    with pytest.raises(ValueError, match="not inside the image"):
        vgg_lab.crops(image, [(0.5, 0, 0.8, 1)])
    blue = np.full((50, 30, 3), (0, 0, 255), dtype=np.uint8)
    both = vgg_lab.side_by_side(image, blue, size=(16, 16))
    assert both.shape == (16, 16, 3)
    assert (both[:, 8:] == (0, 0, 255)).all()  # the right photo fills the right half
    centre = image[:, 15:25]  # the centre crop of the left photo straddles red and green
    assert both[:, :4, 0].mean() > 200 and both[:, 4:8, 1].mean() > 200 and centre.shape[1] == 10


def test_vgg16_preprocess_does_not_touch_its_input():
    x = np.full((1, 2, 2, 3), [10.0, 20.0, 30.0], dtype=np.float32)
    out = vgg_lab.vgg16_preprocess(x)
    assert x[0, 0, 0].tolist() == [10.0, 20.0, 30.0]
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-5)


def test_weights_note_is_loud_for_random_weights():
    random = PretrainedInfo("VGG16", "random-fallback", None, fallback=True, banner="!!")
    real = PretrainedInfo("VGG16", "keras-cache", "/x.h5")
    assert "RANDOM VGG16 WEIGHTS" in vgg_lab.weights_note(random) and "UNTRAINED" in vgg_lab.weights_note(random)
    assert "ImageNet weights (keras-cache)" in vgg_lab.weights_note(real)
    lite = PretrainedInfo("EfficientNet-Lite0", "cache", "/x.h5", stand_in_for="VGG16")
    assert vgg_lab.weights_note(lite) == ("EfficientNet-Lite0 with ImageNet weights (cache), "
                                          "standing in for the lab's VGG16.")


def test_timing_table():
    value, seconds = vgg_lab.timed(sum, [1, 2, 3])
    assert value == 6 and seconds >= 0
    table = vgg_lab.timing_table([("Grad-CAM", 1.234, "first call traces"), ("Score-CAM", 10)])
    assert "Grad-CAM" in table and "1.23" in table and "10.00" in table


# ---------------------------------------------------------------- the labs keep their promises
@pytest.mark.parametrize("name", VGG_LABS)
def test_vgg_labs_say_what_random_weights_mean_and_save_a_key_figure(name):
    path = NOTEBOOKS / name
    if not path.exists():
        pytest.skip(f"{name} not written yet")
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "info.banner" in code and code.count("weights_note(") >= 2  # at the top and near figures
    assert "lh.load_imagenet_cnn(" in code and "lh.load_vgg16(" not in code  # a real model offline
    assert '"block5_conv3"' not in code  # layer names come from the model
    assert 'lab.output_path("key_figure.png")' in code
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "random weights" in markdown.lower()  # the conclusions say what holds under them
