"""The labs' networks, a training cache, and pretrained ImageNet models that work offline.

  builders.py       build_fashion_cnn, build_mnist_cam1, build_mnist_cam2: the labs' own networks
  cache.py          train_or_load (checksummed weights cache), architecture_fingerprint, TrainInfo
  pretrained.py     load_vgg16 / load_xception (offline first), PretrainedInfo, WeightsNotFoundError
  efficientnet.py   EfficientNet-Lite0 with real ImageNet weights offline; load_imagenet_cnn (the labs' choice)
  torch_weights.py  a PyTorch state_dict read without torch (restricted unpickler)

``efficientnet`` and ``torch_weights`` are submodules (``lh.efficientnet`` maps to the first); the names
below are re-exported so that ``from labhelpers.models import X`` keeps working.
"""

from __future__ import annotations

from .builders import build_fashion_cnn, build_mnist_cam1, build_mnist_cam2
from .cache import (  # noqa: F401
    CACHE_FORMAT,
    TrainInfo,
    architecture_fingerprint,
    file_sha256,
    train_or_load,
)
from .pretrained import (  # noqa: F401
    APPLICATIONS,
    PretrainedInfo,
    WeightsNotFoundError,
    load_vgg16,
    load_xception,
)

__all__ = [
    "build_fashion_cnn", "build_mnist_cam1", "build_mnist_cam2", "train_or_load", "TrainInfo",
    "architecture_fingerprint", "load_vgg16", "load_xception", "PretrainedInfo", "WeightsNotFoundError",
]
