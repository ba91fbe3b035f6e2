"""Grids and heatmap overlays for the labs (matplotlib and OpenCV; no TensorFlow).

Every function returns the matplotlib ``Figure`` (or, for ``overlay_heatmap``, an
RGB ``uint8`` array) and never calls ``plt.show()``: in Jupyter the inline backend
shows the figure at the end of the cell, and headless runs (``MPLBACKEND=Agg``,
papermill, tests) simply get the object back.
"""

from __future__ import annotations

import math

import cv2
import matplotlib.pyplot as plt
import numpy as np

from .maps import normalize_maps

__all__ = ["image_grid", "filter_grid", "feature_map_grid", "method_grid", "overlay_heatmap", "show_heatmap_overlays"]


# ----------------------------------------------------------------------------- helpers
def _as_batch(images, what: str = "images") -> np.ndarray:
    """A batch of 2-D (grey) or RGB images: (N, H, W), (N, H, W, 1) or (N, H, W, 3)."""
    if isinstance(images, (list, tuple)):
        shapes = {np.shape(im) for im in images}
        if len(shapes) > 1:
            raise ValueError(f"{what} must all have the same shape, got {sorted(shapes)}")
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] in (3, 4)):
        if len(arr) == 0:
            raise ValueError(f"{what} is empty: nothing to draw")
        return arr
    raise ValueError(f"{what} must have shape (N, H, W), (N, H, W, 1) or (N, H, W, 3), got {arr.shape}")


def _grid(n: int, ncols: int, cell_size: float, title: str | None, squeeze_rows: bool = True):
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    ncols = min(ncols, n) if squeeze_rows else ncols
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_size * ncols, cell_size * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig, axes.flat


def _display_range(image: np.ndarray):
    """vmin/vmax for a grey image: uint8 -> 0..255, floats in [0, 1] -> 0..1, else auto."""
    if image.dtype == np.uint8:
        return 0, 255
    lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
    if 0.0 <= lo and hi <= 1.0:
        return 0.0, 1.0
    return None, None


# ----------------------------------------------------------------------------- grids
def image_grid(images, titles=None, ncols: int = 5, cmap: str = "binary", cell_size: float = 2.0,
               title: str | None = None):
    """Images in a grid, each with an optional title (e.g. the class name).

    ``cmap`` applies to grey images; the default ``"binary"`` draws dark digits and
    garments on white, as the Fashion-MNIST lab did. Returns the Figure.
    """
    batch = _as_batch(images)
    if titles is not None:
        titles = list(titles)
        if len(titles) != len(batch):
            raise ValueError(f"got {len(titles)} titles for {len(batch)} images")
    fig, axes = _grid(len(batch), ncols, cell_size, title)
    for i, (ax, image) in enumerate(zip(axes, batch, strict=False)):
        ax.axis("on")
        if image.ndim == 2:
            vmin, vmax = _display_range(image)
            ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
        else:
            ax.imshow(image)
        if titles is not None:
            ax.set_xlabel(str(titles[i]))
    fig.tight_layout()
    return fig


def filter_grid(kernels, n: int | None = None, ncols: int = 8, channel: int = 0, cmap: str = "gray",
                cell_size: float = 1.2, title: str | None = None):
    """First-layer convolution filters, one cell each.

    ``kernels`` is a Conv2D kernel ``(kh, kw, in_channels, filters)``, e.g. (3, 3, 1, 32)
    from ``model.get_layer("conv1").get_weights()[0]``. The whole kernel is min-max
    normalised to [0, 1] first (one scale for all filters, so they can be compared):
    dark = negative weights, light = positive. RGB kernels (3 input channels) are
    drawn in colour; other channel counts show ``channel``. ``n`` limits the count.
    """
    k = np.asarray(kernels, dtype=np.float64)
    if k.ndim != 4:
        raise ValueError(f"kernels must be a Conv2D kernel (kh, kw, in_channels, filters), got shape {k.shape}; "
                         "pass layer.get_weights()[0], not the bias")
    total = k.shape[-1]
    n = total if n is None else int(n)
    if not 1 <= n <= total:
        raise ValueError(f"n must be between 1 and the number of filters ({total}), got {n}")
    lo, hi = k.min(), k.max()
    k = (k - lo) / (hi - lo) if hi > lo else np.zeros_like(k)
    rgb = k.shape[2] == 3
    if not rgb and not 0 <= channel < k.shape[2]:
        raise ValueError(f"channel {channel} does not exist: the kernel has {k.shape[2]} input channels")
    fig, axes = _grid(n, ncols, cell_size, title or f"first {n} of {total} filters (min-max normalised)")
    for i, ax in zip(range(n), axes, strict=False):
        ax.axis("on")
        if rgb:
            ax.imshow(k[:, :, :, i])
        else:
            ax.imshow(k[:, :, channel, i], cmap=cmap, vmin=0.0, vmax=1.0)
        ax.set_xlabel(str(i), fontsize=8)
    fig.tight_layout()
    return fig


def feature_map_grid(activations, ncols: int = 8, max_maps: int = 64, title: str | None = None,
                     cmap: str = "viridis", cell_size: float = 1.3):
    """The channels of one layer's activations for one image, one cell each.

    ``activations``: (H, W, C) or a batch of one (1, H, W, C). Each map has its own
    colour scale (what matters is where a channel fires, not how strongly compared
    with the others). At most ``max_maps`` channels are drawn.

    The cells are tiles of one image (:func:`map_mosaic`), not one axes each: 64 axes cost
    about a second to make (lab 03 drew five such grids), one image a few milliseconds.
    """
    a = np.asarray(activations)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"feature_map_grid draws one image's maps; got a batch of {a.shape[0]} "
                             f"(shape {a.shape}): pass activations[i]")
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"activations must have shape (H, W, C) or (1, H, W, C), got {a.shape}; "
                         "a Dense layer's output has no spatial maps")
    n = min(a.shape[-1], int(max_maps))
    if n < 1:
        raise ValueError(f"max_maps must be at least 1, got {max_maps}")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, ax = plt.subplots(figsize=(cell_size * ncols, cell_size * nrows + (0.4 if title else 0)))
    colours = plt.get_cmap(cmap).with_extremes(bad="white")  # the gaps between the tiles
    ax.imshow(map_mosaic(np.moveaxis(a[:, :, :n], -1, 0), ncols), cmap=colours, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def map_mosaic(maps, ncols: int) -> np.ma.MaskedArray:
    """Maps (N, H, W) as one image of ``ncols`` tiles a row, each min-max scaled to [0, 1] on its own
    (:func:`normalize_maps`; a constant map is 0, as matplotlib draws it), tile i at rows ``r * (H + gap)``,
    columns ``c * (W + gap)`` (r, c = divmod(i, ncols)); the gaps (a tenth of a tile, at least 1 px) and the
    unused tiles are masked."""
    tiles = normalize_maps(maps)
    n, h, w = tiles.shape
    gap = max(1, round(0.1 * max(h, w)))
    nrows = math.ceil(n / ncols)
    out = np.zeros((nrows * (h + gap) - gap, ncols * (w + gap) - gap), np.float32)  # masked cells hold 0:
    mask = np.ones(out.shape, bool)  # matplotlib's colour lookup overflows on masked_all's 1e20 fill
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
        mask[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = False
    return np.ma.array(out, mask=mask)


# ----------------------------------------------------------------------------- overlays
def _to_uint8_rgb(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got shape {img.shape}")
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        if not np.all(np.isfinite(img)):
            raise ValueError("image contains NaN or infinite values")
        if img.min() >= 0.0 and img.max() <= 1.0:  # floats in [0, 1]: the usual x / 255
            img = img * 255.0
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img)


def _size_wh(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if np.isscalar(size):
        return int(size), int(size)
    w, h = size
    return int(w), int(h)


_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "bilinear": cv2.INTER_LINEAR,
                  "cubic": cv2.INTER_CUBIC, "bicubic": cv2.INTER_CUBIC}


def overlay_heatmap(image, heatmap, alpha: float = 0.4, colormap: str = "jet", size=None,
                    intensity: float | None = None, interpolation: str = "linear") -> np.ndarray:
    """Colour a heatmap with OpenCV and lay it over an image; returns RGB ``uint8``.

    * ``image``: grey (H, W) / (H, W, 1) or RGB (H, W, 3); ``uint8``, or floats in
      [0, 1] (scaled by 255) or [0, 255].
    * ``heatmap``: (h, w), any resolution; values in [0, 1] are used as they are,
      anything else is min-max normalised first. Resized to the image with
      ``interpolation`` ("linear", "nearest", "cubic").
    * ``size``: resize the result (int or (width, height)), e.g. 540 as the lab did.
    * blending: by default ``(1 - alpha) * image + alpha * colours``
      (``cv2.addWeighted``). With ``intensity`` it is the labs' additive
      ``image + intensity * colours`` (saturating at 255): the Fashion-MNIST lab's
      0.7 and the Grad-CAM lab's 0.4 are ``intensity=0.7`` / ``intensity=0.4``.
    """
    rgb = _to_uint8_rgb(image)
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim == 3 and heat.shape[-1] == 1:
        heat = heat[..., 0]
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be one 2-D map (h, w), got shape {heat.shape}")
    if not np.all(np.isfinite(heat)):
        raise ValueError("heatmap contains NaN or infinite values")
    if heat.min() < 0.0 or heat.max() > 1.0:
        heat = normalize_maps(heat[None])[0].astype(np.float64)
    if interpolation not in _INTERPOLATION:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}, got {interpolation!r}")
    cmap_id = getattr(cv2, f"COLORMAP_{str(colormap).upper()}", None)
    if cmap_id is None:
        raise ValueError(f"unknown OpenCV colormap {colormap!r}; e.g. 'jet', 'inferno', 'viridis', 'turbo'")
    target = _size_wh(size)
    if target is not None:
        rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_CUBIC)
    h, w = rgb.shape[:2]
    heat8 = np.uint8(np.rint(255.0 * heat))
    heat8 = cv2.resize(heat8, (w, h), interpolation=_INTERPOLATION[interpolation])
    colours = cv2.cvtColor(cv2.applyColorMap(heat8, cmap_id), cv2.COLOR_BGR2RGB)
    if intensity is not None:
        return cv2.addWeighted(rgb, 1.0, colours, float(intensity), 0.0)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return cv2.addWeighted(rgb, 1.0 - float(alpha), colours, float(alpha), 0.0)


def show_heatmap_overlays(images, heatmaps, titles=None, ncols: int = 5, cmap: str = "inferno",
                          image_alpha: float = 0.4, heatmap_alpha: float = 0.6, interpolation: str = "nearest",
                          colorbar: bool = True, cell_size: float = 2.6, title: str | None = None):
    """Heatmaps over images with matplotlib, the CAM lab's look: the grey image at
    ``image_alpha`` 0.4 under the map in ``cmap`` (inferno) at ``heatmap_alpha`` 0.6,
    one colour bar per panel.

    A heatmap coarser than its image (a 3x3 CAM over a 28x28 digit) is stretched over
    the image's extent and drawn with ``interpolation`` ("nearest": honest blocks, each
    the value the network computed for that region).
    """
    batch = _as_batch(images)
    heats = np.asarray(heatmaps, dtype=np.float64)
    if heats.ndim == 4 and heats.shape[-1] == 1:
        heats = heats[..., 0]
    if heats.ndim != 3:
        raise ValueError(f"heatmaps must have shape (N, h, w), got {heats.shape}")
    if len(heats) != len(batch):
        raise ValueError(f"got {len(heats)} heatmaps for {len(batch)} images")
    if titles is not None:
        titles = list(titles)
        if len(titles) != len(batch):
            raise ValueError(f"got {len(titles)} titles for {len(batch)} images")
    fig, axes = _grid(len(batch), ncols, cell_size, title)
    for i, ax in enumerate(list(axes)[: len(batch)]):
        image = batch[i]
        h, w = image.shape[:2]
        extent = (-0.5, w - 0.5, h - 0.5, -0.5)  # the map covers exactly the image's pixels
        if image.ndim == 2:
            vmin, vmax = _display_range(image)
            ax.imshow(image, cmap="gray", alpha=image_alpha, vmin=vmin, vmax=vmax, extent=extent)
        else:
            ax.imshow(image, alpha=image_alpha, extent=extent)
        shown = ax.imshow(heats[i], cmap=cmap, alpha=heatmap_alpha, interpolation=interpolation, extent=extent)
        if colorbar:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    fig.tight_layout()
    return fig


def method_grid(images, maps_by_method, row_titles=None, rows: int | None = None, overlay: bool = True,
                cmap: str = "jet", heatmap_alpha: float = 0.5, image_alpha: float = 1.0, mark_maximum: bool = False,
                cell_size=(1.9, 2.0), title: str | None = None, title_color: str = "black"):
    """The methods x images grid of labs 05-07: one row per image, the image first, then one column
    per method (``maps_by_method``: name -> (N, H, W) maps in [0, 1], e.g. from
    ``metrics.explanation_methods()``).

    overlay=True: each map in ``cmap`` at ``heatmap_alpha`` over its image at ``image_alpha``;
    False: the map alone. mark_maximum: a cyan + on each map's maximum (where the pointing game
    looks). Grey images (N, H, W) / (N, H, W, 1) are drawn in grey, bright = high; RGB as they are.
    """
    batch = _as_batch(images)
    if not maps_by_method:
        raise ValueError("maps_by_method is empty: give at least one method's maps")
    maps = {str(name): np.asarray(m, dtype=np.float32) for name, m in maps_by_method.items()}
    n = len(batch) if rows is None else min(int(rows), len(batch))
    for name, m in maps.items():
        if m.ndim != 3 or len(m) < n:
            raise ValueError(f"maps of method {name!r} must be (N, H, W) with one map per image shown, got "
                             f"{m.shape} for {n} images")
    if row_titles is not None and len(list(row_titles)) < n:
        raise ValueError(f"got {len(list(row_titles))} row titles for {n} rows")
    width, height = (cell_size, cell_size) if np.isscalar(cell_size) else cell_size
    fig, axes = plt.subplots(n, len(maps) + 1, figsize=(width * (len(maps) + 1), height * n), squeeze=False)
    for r in range(n):
        image = batch[r]
        grey = image.ndim == 2
        vmin, vmax = _display_range(image) if grey else (None, None)
        show = {"cmap": "gray", "vmin": vmin, "vmax": vmax} if grey else {}
        axes[r, 0].imshow(image, **show)
        if row_titles is not None:
            axes[r, 0].set_ylabel(str(list(row_titles)[r]), fontsize=7)
        for c, m in enumerate(maps.values(), start=1):
            ax = axes[r, c]
            if overlay:
                ax.imshow(image, alpha=image_alpha, **show)
                ax.imshow(m[r], cmap=cmap, alpha=heatmap_alpha, vmin=0, vmax=1)
            else:
                ax.imshow(m[r], cmap=cmap, vmin=0, vmax=1)
            if mark_maximum:
                y, x = np.unravel_index(np.argmax(m[r]), m[r].shape)
                ax.plot(x, y, "c+", markersize=10, mew=2)
    for c, name in enumerate(["image", *maps]):
        axes[0, c].set_title(name.replace(" (", "\n("), fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9, color=title_color)
    fig.tight_layout()
    return fig
