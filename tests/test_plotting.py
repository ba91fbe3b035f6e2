"""Plotting: figure layout, value ranges, OpenCV overlays; and no TensorFlow at all."""

import io
import subprocess
import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labhelpers import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _drawn_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_plotting_imports_no_tensorflow():
    code = ("import sys, labhelpers.plotting, labhelpers; labhelpers.image_grid; "
            "bad = [m for m in ('tensorflow', 'keras', 'tf_keras_vis') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"labhelpers.plotting imported {done.stdout.strip()} {done.stderr[-500:]}"


def test_image_grid_lays_out_images_with_titles():
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    fig = plotting.image_grid(images, titles=[f"c{i}" for i in range(7)], ncols=5)
    axes = _drawn_axes(fig)
    assert len(axes) == 7 and len(fig.axes) == 10  # 2 rows of 5, the last 3 empty
    assert [ax.get_xlabel() for ax in axes] == [f"c{i}" for i in range(7)]
    np.testing.assert_array_equal(axes[3].images[0].get_array(), images[3])
    assert axes[0].images[0].get_clim() == (0, 255)


def test_image_grid_accepts_channel_axis_and_rgb():
    fig = plotting.image_grid(np.zeros((3, 8, 8, 1), np.float32))
    assert len(_drawn_axes(fig)) == 3
    fig = plotting.image_grid(np.zeros((2, 8, 8, 3), np.uint8), ncols=1)
    assert len(fig.axes) == 2 and fig.axes[0].images[0].get_array().shape == (8, 8, 3)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((28, 28)), r"\(N, H, W\)"),
    (np.zeros((2, 8, 8, 2)), r"got \(2, 8, 8, 2\)"),
    (np.zeros((0, 8, 8)), "empty"),
])
def test_image_grid_rejects_bad_shapes(bad, message):
    with pytest.raises(ValueError, match=message):
        plotting.image_grid(bad)


def test_image_grid_rejects_wrong_title_count():
    with pytest.raises(ValueError, match="2 titles for 3 images"):
        plotting.image_grid(np.zeros((3, 4, 4)), titles=["a", "b"])


def test_filter_grid_normalises_all_filters_to_one_scale():
    kernels = np.arange(3 * 3 * 1 * 32, dtype=np.float32).reshape(3, 3, 1, 32) - 100.0
    fig = plotting.filter_grid(kernels, n=15, ncols=8)
    axes = _drawn_axes(fig)
    assert len(axes) == 15
    shown = np.stack([ax.images[0].get_array() for ax in axes])
    assert shown.shape == (15, 3, 3)
    # one global min-max: filter 0 holds the global minimum, values rise by 32 per pixel
    expected = (kernels[:, :, 0, :15] - kernels.min()) / (kernels.max() - kernels.min())
    np.testing.assert_allclose(shown, np.moveaxis(expected, -1, 0), rtol=1e-6)
    assert shown.min() == 0.0 and shown.max() < 1.0  # the maximum is filter 31, not drawn
    assert len(_drawn_axes(plotting.filter_grid(kernels))) == 32


def test_filter_grid_draws_rgb_kernels_in_colour():
    kernels = np.random.default_rng(1).normal(size=(3, 3, 3, 4))
    fig = plotting.filter_grid(kernels)
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (3, 3, 3) and 0.0 <= shown.min() and shown.max() <= 1.0


def test_filter_grid_bad_input():
    with pytest.raises(ValueError, match="not the bias"):
        plotting.filter_grid(np.zeros(32))
    with pytest.raises(ValueError, match="between 1 and the number of filters \\(32\\)"):
        plotting.filter_grid(np.zeros((3, 3, 1, 32)), n=33)


def test_feature_map_grid_shapes_and_limits():
    acts = np.random.default_rng(2).random((1, 11, 11, 64)).astype(np.float32)
    fig = plotting.feature_map_grid(acts, ncols=8, title="layer 2")
    assert fig._suptitle.get_text() == "layer 2"
    (image,) = _drawn_axes(fig)[0].images  # one mosaic: 8 x 8 tiles of 11 x 11, 1 px gaps
    mosaic = image.get_array()
    assert mosaic.shape == (8 * 12 - 1, 8 * 12 - 1) and image.get_clim() == (0.0, 1.0)
    r, c = divmod(13, 8)  # channel 13, min-max scaled on its own, as imshow would autoscale it
    tile = acts[0, :, :, 13]
    np.testing.assert_allclose(mosaic[r * 12:r * 12 + 11, c * 12:c * 12 + 11], (tile - tile.min()) / np.ptp(tile),
                               rtol=1e-6)
    assert mosaic.mask[11].all() and mosaic.mask[:, 11].all() and not mosaic.mask[:11, :11].any()
    ten_fig = plotting.feature_map_grid(acts, max_maps=10)
    ten = ten_fig.axes[0].images[0].get_array()  # 2 rows of 8, 6 unused
    assert ten.shape == (2 * 12 - 1, 8 * 12 - 1) and (~ten.mask).sum() == 10 * 11 * 11
    with warnings.catch_warnings():  # drawing the masked gaps warns of nothing (nbval fails a warning cell)
        warnings.simplefilter("error")
        ten_fig.savefig(io.BytesIO(), format="png")
    assert plotting.map_mosaic(np.full((1, 4, 4), 3.0), 1).max() == 0.0  # a constant map: the low colour
    with pytest.raises(ValueError, match="batch of 2"):
        plotting.feature_map_grid(np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="Dense layer"):
        plotting.feature_map_grid(np.zeros((1, 64)))


def test_overlay_puts_the_hot_colour_where_the_heatmap_is_high():
    image = np.full((28, 28), 0.5, dtype=np.float32)  # float grey image in [0, 1]
    heat = np.zeros((7, 7), np.float32)
    heat[0:2, 5:7] = 1.0  # hot in the top-right corner only
    out = plotting.overlay_heatmap(image, heat, alpha=0.5, interpolation="nearest")
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    hot, cold = out[2, 25], out[25, 2]
    # JET: 1.0 -> dark red (RGB ~ (128, 0, 0)), 0.0 -> dark blue (~ (0, 0, 128))
    assert hot[0] > hot[2] + 50, f"high heat should be red, got {hot}"
    assert cold[2] > cold[0] + 50, f"low heat should be blue, got {cold}"
    # addWeighted: 0.5 * grey 128 + 0.5 * jet(255) red channel 128 = 128
    np.testing.assert_allclose(hot.astype(int), [128, 64, 64], atol=2)


def test_overlay_intensity_is_the_labs_additive_blend_and_size_resizes():
    image = np.full((10, 10, 3), 100, np.uint8)
    heat = np.zeros((10, 10))
    out = plotting.overlay_heatmap(image, heat, intensity=0.7, size=540)
    assert out.shape == (540, 540, 3) and out.dtype == np.uint8
    # jet(0) is RGB (0, 0, 128): image + 0.7 * colours
    np.testing.assert_allclose(out[270, 270].astype(int), [100, 100, 100 + round(0.7 * 128)], atol=1)
    out = plotting.overlay_heatmap(image, np.ones((10, 10)), intensity=2.0, size=(30, 20))
    assert out.shape == (20, 30, 3) and out.max() == 255  # saturates, never wraps around


def test_overlay_normalises_unscaled_heatmaps_and_accepts_uint8_grey():
    image = np.zeros((4, 4), np.uint8)
    raw = np.array([[-3.0, 5.0], [1.0, 1.0]])  # a raw CAM: not in [0, 1]
    a = plotting.overlay_heatmap(image, raw, alpha=1.0, interpolation="nearest")
    b = plotting.overlay_heatmap(image, (raw + 3) / 8, alpha=1.0, interpolation="nearest")
    np.testing.assert_array_equal(a, b)
    assert tuple(a[0, 3]) == tuple(plotting.overlay_heatmap(image, np.ones((1, 1)), alpha=1.0)[0, 0])


@pytest.mark.parametrize("image, heat, message", [
    (np.zeros((4, 4, 2)), np.zeros((2, 2)), "image must be"),
    (np.zeros((4, 4)), np.zeros((2, 2, 3)), "one 2-D map"),
    (np.zeros((4, 4)), np.full((2, 2), np.nan), "NaN"),
])
def test_overlay_bad_input(image, heat, message):
    with pytest.raises(ValueError, match=message):
        plotting.overlay_heatmap(image, heat)
    with pytest.raises(ValueError, match="unknown OpenCV colormap"):
        plotting.overlay_heatmap(np.zeros((4, 4)), np.zeros((2, 2)), colormap="nope")


def test_show_heatmap_overlays_cam_look():
    images = np.random.default_rng(3).random((4, 28, 28))
    cams = np.random.default_rng(4).random((4, 3, 3))
    fig = plotting.show_heatmap_overlays(images, cams, titles=list("abcd"), ncols=2)
    panels = _drawn_axes(fig)
    assert len(panels) == 4 and len(fig.axes) == 8  # 4 panels + 4 colour bars
    grey, heat = panels[0].images
    assert grey.get_alpha() == 0.4 and heat.get_alpha() == 0.6
    assert heat.get_cmap().name == "inferno" and heat.get_interpolation() == "nearest"
    assert heat.get_extent() == grey.get_extent() == [-0.5, 27.5, 27.5, -0.5]  # 3x3 stretched over 28x28
    np.testing.assert_array_equal(heat.get_array(), cams[0])
    assert [ax.get_title() for ax in panels] == list("abcd")
    fig = plotting.show_heatmap_overlays(images[:2], cams[:2], colorbar=False)
    assert len(fig.axes) == 2


def test_show_heatmap_overlays_bad_input():
    with pytest.raises(ValueError, match="3 heatmaps for 4 images"):
        plotting.show_heatmap_overlays(np.zeros((4, 8, 8)), np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        plotting.show_heatmap_overlays(np.zeros((4, 8, 8)), np.zeros((2, 2)))


def test_method_grid_rows_are_images_and_columns_methods():
    images = np.random.default_rng(5).random((3, 12, 12, 1)).astype(np.float32)
    maps = {"Grad-CAM": np.random.default_rng(6).random((3, 12, 12)), "SmoothGrad (8 samples)": np.zeros((3, 12, 12))}
    maps["Grad-CAM"][1, 4, 7] = 2.0  # the maximum of row 1
    fig = plotting.method_grid(images, maps, row_titles=["a", "b", "c"], mark_maximum=True, title="t")
    axes = np.array(fig.axes).reshape(3, 3)
    assert [ax.get_title() for ax in axes[0]] == ["image", "Grad-CAM", "SmoothGrad\n(8 samples)"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["a", "b", "c"]
    image, heat = axes[1, 1].images  # overlay: the grey image under the map
    assert image.get_cmap().name == "gray" and heat.get_cmap().name == "jet" and heat.get_alpha() == 0.5
    np.testing.assert_array_equal(heat.get_array(), maps["Grad-CAM"][1].astype(np.float32))
    (marker,) = axes[1, 1].lines
    assert tuple(marker.get_xydata()[0]) == (7, 4)  # x = column, y = row of the maximum
    alone = plotting.method_grid(images, maps, rows=2, overlay=False, cmap="inferno")
    assert len(alone.axes) == 6 and len(alone.axes[1].images) == 1  # two rows; the map alone
    assert fig._suptitle.get_text() == "t"


def test_method_grid_bad_input():
    with pytest.raises(ValueError, match="maps_by_method is empty"):
        plotting.method_grid(np.zeros((2, 8, 8)), {})
    with pytest.raises(ValueError, match=r"'saliency' must be \(N, H, W\).*for 2 images"):
        plotting.method_grid(np.zeros((2, 8, 8)), {"saliency": np.zeros((1, 8, 8))})
