"""ImageNet class names, offline: Keras's ``imagenet_class_index.json`` shipped with the package, names
and synonyms to class ids with suggestions for a near miss, and ``decode_predictions``. Re-exported by
``labhelpers.data``. No TensorFlow here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from functools import lru_cache

import numpy as np

from .. import config
from .sources import _skip

# ---------------------------------------------------------------------------------------------
# ImageNet class names, offline

CLASS_INDEX_FILE = "imagenet_class_index.json"  # Keras's file, byte for byte (see data/README.md)
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"  # what keras.applications checks its download against
SYNONYMS_FILE = "imagenet_synonyms.json"


class UnknownClassName(KeyError):
    """An ImageNet class name that matches no class (or more than one)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


@lru_cache(maxsize=1)
def _class_index() -> tuple[tuple[str, str], ...]:
    """((wnid, keras_name), ...) for ids 0..999: the shipped file, else Keras's own cached copy."""

    places = [config.project_data_dir() / CLASS_INDEX_FILE,
              config.keras_home() / "models" / CLASS_INDEX_FILE]
    tried = []
    for path in places:
        if not path.is_file():
            tried.append(f"{path}: no such file")
            continue
        data = path.read_bytes()
        if hashlib.md5(data).hexdigest() != CLASS_INDEX_MD5:
            tried.append(_skip(path, f"MD5 differs from Keras's {CLASS_INDEX_MD5}"))
            continue
        index = json.loads(data)
        return tuple((index[str(i)][0], index[str(i)][1]) for i in range(1000))
    raise FileNotFoundError("ImageNet class names not found: " + "; ".join(tried)
                            + ". Regenerate with scripts/make_imagenet_class_index.py (see data/README.md).")


@lru_cache(maxsize=1)
def _synonyms() -> tuple[tuple[str, ...], ...]:
    path = config.project_data_dir() / SYNONYMS_FILE
    if not path.is_file():  # then only Keras's short names and wnids are accepted
        return tuple((name.replace("_", " "),) for _, name in _class_index())
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(tuple(data[str(i)]) for i in range(1000))


def _normalize(name: str) -> str:
    return " ".join(re.sub(r"[_\-]", " ", name).casefold().split())


@lru_cache(maxsize=1)
def _name_table() -> tuple[dict, dict, dict]:
    """exact Keras name -> ids, normalized Keras name -> ids, normalized synonym -> ids."""
    exact, short, synonym = {}, {}, {}
    for i, ((_, name), syns) in enumerate(zip(_class_index(), _synonyms(), strict=True)):
        exact.setdefault(name, []).append(i)
        short.setdefault(_normalize(name), []).append(i)
        for s in syns:
            synonym.setdefault(_normalize(s), []).append(i)
    return exact, short, synonym


def imagenet_class_id(name) -> int:
    """The ImageNet-1k id (0..999) of a class name, synonym or wnid.

    Case, spaces, underscores and hyphens do not matter: ``"goose"``, ``"Egyptian cat"``,
    ``"egyptian_cat"``, ``"n02124075"``, ``"tabby cat"`` all work. Keras's own short names win over
    other classes' synonyms (``"missile"`` is 657, not 744 "projectile, missile"); a name that still
    means two classes (``"crane"``: bird 134 or machine 517) raises and lists them.
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        imagenet_class_name(int(name))  # range check
        return int(name)
    if not isinstance(name, str):
        raise TypeError(f"class name must be a string or an int id, got {type(name).__name__}")
    index = _class_index()
    text = name.strip()
    if re.fullmatch(r"n\d{8}", text):
        for i, (wnid, _) in enumerate(index):
            if wnid == text:
                return i
        raise UnknownClassName(f"{text!r} looks like a WordNet id but is not one of ImageNet-1k's 1000")
    exact, short, synonym = _name_table()
    key = _normalize(text)
    for ids in (exact.get(text.replace(" ", "_")), short.get(key), synonym.get(key)):
        if ids and len(set(ids)) == 1:
            return ids[0]
        if ids:
            raise UnknownClassName(f"{name!r} names more than one ImageNet class: "
                                   f"{_describe_twins(sorted(set(ids)))}; pass the id or the wnid")
    raise UnknownClassName(f"no ImageNet class named {name!r}{_suggestions(key, synonym)}")


def _describe_twins(ids: list[int]) -> str:
    """Candidates of an ambiguous name; twins with the very same synonyms (crane, crane) are told
    apart by their neighbours, since ImageNet's ids group related classes (birds, machines)."""
    index, synonyms = _class_index(), _synonyms()
    same = len({synonyms[i][0] for i in ids}) == 1
    parts = []
    for i in ids:
        text = f"{i} {index[i][1]} ({index[i][0]}: {', '.join(synonyms[i])})"
        if same:
            neighbours = [index[j][1] for j in (i - 1, i + 1) if 0 <= j < 1000]
            text += f" next to {' and '.join(neighbours)}"
        parts.append(text)
    return ", ".join(parts)


def _suggestions(key: str, synonym: dict) -> str:
    """'; did you mean: ...' with classes that contain the words first ('cat' -> 'tabby cat'), then
    similarly spelt names ('gose' -> 'goose')."""
    words = set(key.split())
    containing = sorted((s for s in synonym if words <= set(s.split())), key=lambda s: (len(s), s))
    close = difflib.get_close_matches(key, list(synonym), n=6, cutoff=0.6)
    picked, seen_ids = [], set()
    for s in containing[:6] + close:
        if synonym[s][0] not in seen_ids and len(picked) < 6:
            picked.append(s)
            seen_ids.add(synonym[s][0])
    index = _class_index()

    def describe(s: str) -> str:  # Keras's name and id, plus the synonym that matched when it differs
        i = synonym[s][0]
        return f"{index[i][1]!r} ({i}{'' if _normalize(index[i][1]) == s else ': ' + s})"

    return ("; did you mean: " + ", ".join(describe(s) for s in picked)) if picked else ""


def imagenet_class_name(class_id: int) -> str:
    """Keras's short name of an ImageNet-1k class id, e.g. 281 -> 'tabby'."""
    if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
        raise TypeError(f"class id must be an int 0..999, got {class_id!r}")
    if not 0 <= class_id < 1000:
        raise IndexError(f"ImageNet class ids run from 0 to 999, got {class_id}")
    return _class_index()[int(class_id)][1]


def imagenet_class_names() -> list[str]:
    """The 1000 short names in id order (Keras's spelling)."""
    return [name for _, name in _class_index()]


def decode_predictions(preds, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Like ``keras.applications.imagenet_utils.decode_predictions``, without the download:
    for each row of ``preds`` (N, 1000), the ``top`` (wnid, name, score) tuples, best first."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        hint = " (one image? use preds[None])" if preds.shape == (1000,) else ""
        raise ValueError(f"decode_predictions expects ImageNet scores of shape (N, 1000), got "
                         f"{preds.shape}{hint}")
    if not 1 <= int(top) <= 1000:
        raise ValueError(f"top must be between 1 and 1000, got {top}")
    index = _class_index()
    results = []
    for pred in preds:
        top_indices = pred.argsort()[-int(top):][::-1]  # Keras's own expression: same order on ties
        result = [(index[i][0], index[i][1], pred[i]) for i in top_indices]
        result.sort(key=lambda x: x[2], reverse=True)
        results.append(result)
    return results
