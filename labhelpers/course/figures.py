"""A lab's key figure on the index: which saved figure stands for the lab, and its thumbnail.

A lab picks its figure by saving ``key_figure.png`` into its output folder; else the first
figure it saved counts, else the last inline figure of the executed notebook. No TensorFlow;
PIL and nbformat load on first use.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

KEY_FIGURE_STEM = "key_figure"  # a lab picks its index figure by saving key_figure.png
THUMBNAIL_NAME = "thumbnail.png"  # written by the runner into <stem>_files/ (a name labs should not use)
THUMBNAIL_SIZE = (320, 220)  # at most, in pixels (aspect ratio kept)
# The files of a lab's output folder that count as figures a report can show (a browser shows them all;
# PIL shrinks all but SVG). Not labhelpers.data.images' suffixes: those are the photos a lab can read.
FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg")


@dataclass(frozen=True)
class KeyFigure:
    """What the index shows for a lab (paths relative to the report folder; None: nothing)."""

    key_figure: str | None = None  # the full-size figure file, when the lab saved one
    key_figure_from: str | None = None  # "key_figure.png", "first saved image" or "last inline figure"
    thumbnail: str | None = None


def key_figure_source(folder: Path) -> tuple[Path, str] | None:
    """The figure that stands for a lab on the index, among the files it saved in ``folder``:
    ``key_figure.png`` (or another key_figure.* image) when there is one, else the first image it
    saved (oldest modification time, then name). None when it saved no image."""
    if not folder.is_dir():
        return None
    images = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FIGURE_SUFFIXES
              and p != folder / THUMBNAIL_NAME]
    keyed = [p for p in images if p.parent == folder and p.stem == KEY_FIGURE_STEM]
    if keyed:
        return min(keyed, key=lambda p: (p.suffix.lower() != ".png", p.name)), f"{KEY_FIGURE_STEM}.png"
    if images:
        return min(images, key=lambda p: (p.stat().st_mtime_ns, str(p))), "first saved image"
    return None


def last_inline_png(executed: Path) -> bytes | None:
    """The last PNG output embedded in a notebook (an inline matplotlib figure), decoded."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    last = None
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            last = output.get("data", {}).get("image/png", last)
    return base64.b64decode(last) if last else None


def write_thumbnail(image, target: Path, size: tuple[int, int] = THUMBNAIL_SIZE) -> None:
    """A small PNG of ``image`` (a path or a file object), aspect ratio kept."""
    from PIL import Image, ImageOps

    with Image.open(image) as opened:
        picture = ImageOps.exif_transpose(opened)
        picture = picture.convert("RGBA" if picture.mode in ("RGBA", "LA", "P", "PA") else "RGB")
        picture.thumbnail(size)
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target, format="PNG", optimize=True)


def add_key_figure(figures: Path, executed: Path, stem: str) -> KeyFigure:
    """Pick the key figure and write ``<stem>_files/thumbnail.png``. A picture that cannot be shrunk
    costs the thumbnail (a note on the console), never the report."""
    found = key_figure_source(figures)
    key_figure = key_figure_from = None
    try:
        if found is not None:
            path, key_figure_from = found
            key_figure = f"{figures.name}/{path.relative_to(figures).as_posix()}"
            if path.suffix.lower() == ".svg":  # a browser scales SVG itself; PIL cannot read it
                return KeyFigure(key_figure, key_figure_from, thumbnail=key_figure)
            write_thumbnail(path, figures / THUMBNAIL_NAME)
            return KeyFigure(key_figure, key_figure_from, thumbnail=f"{figures.name}/{THUMBNAIL_NAME}")
        png = last_inline_png(executed)
        if png is not None:
            write_thumbnail(io.BytesIO(png), figures / THUMBNAIL_NAME)
            return KeyFigure(None, "last inline figure", thumbnail=f"{figures.name}/{THUMBNAIL_NAME}")
    except Exception as exc:
        print(f"note    {stem}: no thumbnail for the index ({type(exc).__name__}: {exc})", flush=True)
    return KeyFigure(key_figure, key_figure_from)
