"""Profiles, seeding, paths and environment detection.

This module never imports TensorFlow at import time, so the runner and the tests
that only need paths stay fast. TensorFlow is imported inside the functions that
need it (``set_seed``, ``keras_mode``).
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROFILE_ENV = "LABS_PROFILE"
CACHE_ENV = "LABS_CACHE_DIR"
DATA_ENV = "LABS_DATA_DIR"
WEIGHTS_ENV = "LABS_WEIGHTS_DIR"
DEFAULT_SEED = 42


@dataclass(frozen=True)
class Profile:
    """How much work a lab does.

    ``smoke`` is for CI and quick checks (small subsets, one or two epochs, the
    whole course in minutes on two cores); ``full`` reproduces the labs' own
    settings (full datasets and epochs) and is meant for Colab or a patient CPU.
    """

    name: str
    train_samples: int | None  # None: the whole training set
    test_samples: int | None
    epochs: dict[str, int] = field(default_factory=dict)
    eval_images: int = 200  # images scored by the faithfulness metrics
    smoothgrad_samples: int = 20
    allow_random_weights: bool = False  # may VGG16 fall back to random weights?
    # A model's batch size where this profile departs from the lab's own (a lab passes its default).
    batch_sizes: dict[str, int] = field(default_factory=dict)

    def epochs_for(self, model_name: str) -> int:
        try:
            return self.epochs[model_name]
        except KeyError:
            raise KeyError(
                f"profile {self.name!r} has no epoch count for model {model_name!r}; "
                f"known models: {sorted(self.epochs)}"
            ) from None

    def batch_size_for(self, model_name: str, default: int) -> int:
        """The batch size this profile trains ``model_name`` with: ``default`` (the lab's), unless the
        profile says otherwise (smoke trains MNIST cam2 with batch 2: more updates for about the same compute)."""
        return self.batch_sizes.get(model_name, default)

    def subset(self, n_available: int, split: str = "train") -> int:
        """Number of samples of a split this profile uses."""
        limit = self.train_samples if split == "train" else self.test_samples
        return n_available if limit is None else min(limit, n_available)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        train_samples=6000,
        test_samples=1000,
        epochs={"fashion_cnn": 4, "mnist_cam1": 3, "mnist_cam2": 2, "shortcut_cnn": 2},
        eval_images=48,
        smoothgrad_samples=8,
        allow_random_weights=True,
        # cam2 (no pooling, 9x9 receptive fields, GAP over 28x28) learns slowly per update: with the lab's
        # batch 32 it was at 0.33 test accuracy after 1 epoch of the 4,000-digit subset. Smaller batches give
        # more updates per epoch (seed 42, test accuracy after each epoch, 2-core VM): batch 8 0.46 / 0.63 / 0.76;
        # batch 4 0.56 / 0.76 / 0.89 / 0.94 at ~22 s an epoch; batch 2 0.59 / 0.88 / 0.93 at ~19-20 s an epoch
        # (with train_or_load's steps per execution); batch 1 0.73 / 0.90 at ~19 s. Batch 2 cleared the lab's
        # 0.90 floor in 3 epochs (~60 s) where batch 4 needed 4 (~88 s). Those were with Keras's Glorot-uniform
        # default; with He-normal convolutions (builders._mnist_cam) batch 2 gives 0.80 / 0.93, so 2 epochs
        # (batch 8 with He: 0.66 / 0.84).
        batch_sizes={"mnist_cam2": 2},
    ),
    "full": Profile(
        name="full",
        train_samples=None,
        test_samples=None,
        epochs={"fashion_cnn": 20, "mnist_cam1": 30, "mnist_cam2": 30, "shortcut_cnn": 10},
        eval_images=200,
        smoothgrad_samples=20,
        allow_random_weights=False,
    ),
}


def resolve_profile(requested: str | Profile | None = None) -> Profile:
    """Pick the profile: an explicit value (papermill parameter) first, then
    ``$LABS_PROFILE``, then ``full`` (interactive use reproduces the labs)."""
    if isinstance(requested, Profile):
        return requested
    name = (requested or os.environ.get(PROFILE_ENV) or "full").strip().lower()
    if name not in PROFILES:
        source = "parameter" if requested else f"${PROFILE_ENV}"
        raise ValueError(
            f"unknown profile {name!r} (from the {source}); valid profiles: {sorted(PROFILES)}"
        )
    return PROFILES[name]


def set_seed(seed: int = DEFAULT_SEED, deterministic: bool = True) -> int:
    """Seed Python, NumPy and TensorFlow, and turn on TF op determinism.

    With determinism on, a rerun of a lab on the CPU gives bit-identical weights.
    Some GPU kernels have no deterministic implementation and raise instead of
    silently differing; pass ``deterministic=False`` there.
    """
    import numpy as np

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    import tensorflow as tf

    # python, numpy, tf and the Keras backend RNG. tf.keras is the Keras of labhelpers.kerasapi (both follow
    # TF_USE_LEGACY_KERAS), and config, which kerasapi reads, must not import kerasapi back.
    tf.keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return seed


def _user_cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def cache_dir() -> Path:
    """Where trained weights and derived files are cached (``$LABS_CACHE_DIR``)."""
    path = Path(os.environ.get(CACHE_ENV) or _user_cache_root() / "cnn-vis-labs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path | None:
    """A user-provided folder of dataset files (``$LABS_DATA_DIR``), or None."""
    value = os.environ.get(DATA_ENV)
    return Path(value) if value else None


def weights_dir() -> Path | None:
    """A user-provided folder of pretrained weights (``$LABS_WEIGHTS_DIR``), or None."""
    value = os.environ.get(WEIGHTS_ENV)
    return Path(value) if value else None


def keras_home() -> Path:
    """The Keras cache folder (``$KERAS_HOME`` or ``~/.keras``)."""
    value = os.environ.get("KERAS_HOME")
    return Path(value) if value else Path.home() / ".keras"


def repo_root() -> Path:
    """The repository checkout that holds this package (``data/``, ``notebooks/``)."""
    return Path(__file__).resolve().parent.parent


def project_data_dir() -> Path:
    """The ``data/`` folder of files the project ships (with provenance).

    In a checkout that is ``<repo>/data``; a wheel (e.g. ``pip install`` in Colab) carries
    the same files as the package ``labhelpers.resources`` (see pyproject.toml).
    """
    checkout = repo_root() / "data"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "resources"


def in_colab() -> bool:
    """True when running inside Google Colab."""
    if "google.colab" in sys.modules:
        return True
    return bool(os.environ.get("COLAB_RELEASE_TAG") or os.environ.get("COLAB_GPU"))


def legacy_keras() -> bool:
    """True when ``TF_USE_LEGACY_KERAS=1`` selects Keras 2 (the ``tf-keras`` package)."""
    # the values TensorFlow itself accepts, so labhelpers and tf.keras never disagree
    return os.environ.get("TF_USE_LEGACY_KERAS", "").strip() in {"1", "true", "True"}


def keras_mode() -> str:
    """A short description of the Keras in use, e.g. ``'Keras 3.12.0'`` (read from the installed
    package's metadata: no import of Keras, so config stays below kerasapi)."""
    from importlib.metadata import version

    if legacy_keras():
        return f"legacy tf-keras {version('tf-keras')}"
    return f"Keras {version('keras')}"


PROVENANCE_ENV = "LABS_PROVENANCE_FILE"


def record_provenance(kind: str, summary: str, **details) -> None:
    """Note where a lab's data or weights came from.

    The runner sets ``$LABS_PROVENANCE_FILE`` for each notebook it executes and
    shows these records on the course index; outside the runner this is a no-op
    (the notebook prints the provenance itself).
    """
    target = os.environ.get(PROVENANCE_ENV)
    if not target:
        return
    import json

    record = {"kind": kind, "summary": summary, **details}
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
