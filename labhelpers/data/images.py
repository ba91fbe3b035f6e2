"""Photos for the labs: the real photos bundled with scikit-image (each with its ImageNet class) and
the student's own image files, as RGB uint8 arrays. Re-exported by ``labhelpers.data``.

No TensorFlow here; scikit-image is imported only when needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import config
from .imagenet import imagenet_class_name

# ---------------------------------------------------------------------------------------------
# Photos: scikit-image samples and the student's own files


@dataclass(frozen=True)
class SampleImage:
    """A real photo with the ImageNet class it shows."""

    name: str
    image: np.ndarray  # RGB uint8 (H, W, 3)
    class_id: int
    class_name: str
    source: str
    alternatives: tuple[int, ...] = ()  # other ImageNet classes that fit the photo as well
    note: str = ""

    def __repr__(self) -> str:
        return f"SampleImage({self.name!r}, {self.image.shape}, {self.class_id} {self.class_name!r})"


# skimage.data function -> (ImageNet id, other fitting ids, note). Chosen by looking at the photos.
SAMPLE_PHOTOS = {
    "chelsea": (281, (282, 285), "a striped tabby cat's face; tiger_cat and Egyptian_cat fit as well"),
    "coffee": (967, (968, 504), "an espresso in a cup on a saucer; ImageNet's 'espresso' class is exactly "
                                "such photos (cup and coffee_mug also fit)"),
    "rocket": (657, (744, 812), "a Falcon 9 on its launch pad at dusk; 'missile' is the closest class "
                                "(there is no 'rocket'; space_shuttle would be wrong, no orbiter)"),
    "astronaut": (812, (518,), "ImageNet has no class for people: the label names the small space "
                               "shuttle model at the top right, a test of whether a map finds it"),
    "camera": (872, (759,), "grayscale photo (copied to 3 channels): a cameraman with a tripod-mounted camera"),
}


def sample_images(names: Iterable[str] | None = None, size: tuple[int, int] | None = None) -> list[SampleImage]:
    """Real photos bundled with scikit-image, each with an ImageNet class (see SAMPLE_PHOTOS).

    ``names`` picks some of them (default: all, in SAMPLE_PHOTOS order); ``size=(height, width)``
    resizes (bilinear, like ``load_images``); None keeps the originals.
    """
    if isinstance(names, str):  # sample_images("coffee") means one photo, not six letters
        names = [names]
    if names is not None and not isinstance(names, str):
        names = list(names)
        if len(names) == 2 and all(isinstance(n, (int, np.integer)) for n in names):
            raise TypeError(f"sample_images({tuple(names)}): the first argument is the photo names; "
                            f"pass the size by keyword, sample_images(size={tuple(names)})")
    import skimage
    import skimage.data

    wanted = list(SAMPLE_PHOTOS) if names is None else list(names)
    unknown = [n for n in wanted if n not in SAMPLE_PHOTOS]
    if unknown:
        raise KeyError(f"no sample photo named {unknown}; available: {list(SAMPLE_PHOTOS)}")
    records = []
    for name in wanted:
        class_id, alternatives, note = SAMPLE_PHOTOS[name]
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if size is not None:
            image = resize_image(image, size)
        records.append(SampleImage(name, image, class_id, imagenet_class_name(class_id),
                                   f"scikit-image {skimage.__version__}: skimage.data.{name}",
                                   alternatives, note))
    config.record_provenance(kind="data", summary=(
        f"{len(records)} photos bundled with scikit-image {skimage.__version__}: "
        + ", ".join(f"{r.name} -> {r.class_id} {r.class_name}" for r in records)))
    return records


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A photo (RGB uint8) resized to ``size=(height, width)``, bilinear (PIL), no crop."""
    from PIL import Image

    height, width = _check_size(size)
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def _check_size(size) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), e.g. (224, 224); got {size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise ValueError(f"size {size!r} is too large: at most {MAX_IMAGE_SIDE} pixels a side (one "
                         f"{MAX_IMAGE_SIDE} x {MAX_IMAGE_SIDE} RGB image is {MAX_IMAGE_SIDE ** 2 * 3 / 2 ** 20:.0f} MB); "
                         "the labs' models take (224, 224) (VGG16) or (299, 299) (Xception)")
    return height, width


MAX_IMAGE_SIDE = 4096  # pixels: size=(100000, 100000) would ask for 30 GB per image


ACCEPTED_IMAGES = "image files PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _image_files_in(folder: Path) -> list[Path]:
    """A folder's image files (by extension, case-insensitive), sorted by name; other files are ignored."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        others = sorted(p.name for p in folder.iterdir())[:5]
        raise ValueError(f"{folder}: no image files in this folder (looked for {', '.join(IMAGE_SUFFIXES)}; "
                         f"found {others or 'nothing'})")
    return files


def _to_rgb8(image) -> np.ndarray:
    """Any PIL image -> RGB uint8: grayscale is copied to 3 channels, transparency is composited on
    white, 16/32-bit integer and float images are rescaled to 0..255."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):  # 16-bit grayscale PNG / TIFF
            top = 65535.0
        elif image.mode == "F":  # float: 0..1 or 0..255
            top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        else:  # 32-bit int: older Pillows open 16-bit PNGs as "I"
            top = 65535.0 if values.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def load_images(paths, size: tuple[int, int] | None = (224, 224)) -> np.ndarray:
    """Your own image files as one RGB uint8 array (N, height, width, 3).

    Grayscale, RGBA (composited on white), palette, 16-bit and JPEG files all work; JPEG EXIF
    rotation is applied. ``size=(height, width)`` resizes (bilinear, no crop, like
    ``keras.utils.load_img(target_size=...)``); ``size=None`` keeps them as they are (then all files
    must have the same size). ``paths``: one path, a list of paths, or one folder (its files with an
    image extension, sorted by name).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(paths, (str, os.PathLike)):
        single = Path(paths)
        paths = _image_files_in(single) if single.is_dir() else [single]
    if paths is None or isinstance(paths, (bytes, int, float)) or not hasattr(paths, "__iter__"):
        raise TypeError(f"load_images wants a file, a list of files or a folder, got {type(paths).__name__} "
                        f"{paths!r}; e.g. load_images('photos/') or load_images(['a.jpg', 'b.png'])")
    try:
        paths = [Path(p) for p in paths]
    except TypeError:
        raise TypeError(f"load_images: every item of the list must be a path (str or pathlib.Path), got "
                        f"{[type(p).__name__ for p in paths]}") from None
    if not paths:
        raise ValueError(f"no image files given; pass a file, a list of files or a folder of {ACCEPTED_IMAGES}")
    if size is not None:
        size = _check_size(size)
    images = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file; expected one of {ACCEPTED_IMAGES}")
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder inside a list of files; pass the folder on its "
                                    "own (load_images(folder) reads its image files) or list its files")
        try:
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb = _to_rgb8(image)
        except UnidentifiedImageError:
            raise ValueError(f"{path}: not an image file; accepted: {ACCEPTED_IMAGES}") from None
        except OSError as exc:
            raise ValueError(f"{path}: cannot read this image ({exc}); accepted: {ACCEPTED_IMAGES}") from None
        images.append(resize_image(rgb, size) if size is not None else rgb)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"the images have different sizes {sorted(shapes)}; pass size=(height, width)")
    config.record_provenance(kind="data", summary=f"{len(paths)} user image(s): "
                             + ", ".join(p.name for p in paths))
    return np.stack(images)
