"""The shared setup cell of every notebook: ``lab = labhelpers.setup(...)``.

It quiets TensorFlow's log noise *before* TensorFlow is imported (so the C++ log
lines and known Python warnings do not land in executed notebooks), resolves the
profile, seeds everything, warms TensorFlow once, and prints what it runs with.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import config

# Warnings that TensorFlow, Keras and tf-keras-vis raise on every run and that say
# nothing about the lab. Anything else still shows.
_KNOWN_NOISE = [
    (DeprecationWarning, r".*"),
    (FutureWarning, r".*np\.object.*|.*`tf\.keras`.*"),
    (UserWarning, r".*Do not pass an `input_shape`.*|.*input_shape.*argument to a layer.*"),
    (UserWarning, r".*The structure of `inputs` doesn't match.*"),
    (UserWarning, r".*is not a valid (layer|model) modifier.*"),
    (UserWarning, r".*Skipping variable loading for optimizer.*"),
    # tqdm.auto (imported by tf-keras-vis) without ipywidgets: the text progress bar works; the
    # TqdmWarning would be a pink box in labs 03-05's reports
    (Warning, r".*IProgress not found.*"),
]


def import_tensorflow_quietly():
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    TF 2.21 writes a few C++ start-up lines ("All log messages before
    absl::InitializeLog()...", "Could not find cuda drivers") that ignore
    TF_CPP_MIN_LOG_LEVEL; in a notebook they would land in the first cell's output.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


def quiet_tensorflow() -> None:
    """Silence TF's C++ logging and known Python warnings. Safe to call twice."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TF_ENABLE_ONEDNN_OPTS is left at TensorFlow's default (on, as in Colab): with oneDNN a VGG16
    # forward+backward pass to the input takes 0.72 s instead of 2.0 s here, and reruns stay
    # bit-identical (same weights after training, same gradients, in fresh processes)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    for category, pattern in _KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=pattern, category=category)


@dataclass
class LabSession:
    """What a notebook runs with; printed at the top of every report."""

    profile: config.Profile
    seed: int
    params: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    output_dir: Path | None = None

    def output_path(self, name: str) -> Path:
        """Where a lab saves a figure or file that belongs next to its report."""
        assert self.output_dir is not None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return self.output_dir / name

    def describe(self) -> str:
        lines = [f"profile: {self.profile.name}   seed: {self.seed}"]
        lines += [f"{k}: {v}" for k, v in self.params.items() if v not in (None, "")]
        lines.append("   ".join(f"{k} {v}" for k, v in self.versions.items()))
        return "\n".join(lines)


def versions() -> dict:
    """Versions of the pieces a lab depends on (imports TensorFlow)."""
    import tensorflow as tf
    import tf_keras_vis

    from .kerasapi import keras

    return {
        "Python": platform.python_version(),
        "TensorFlow": tf.__version__,
        "Keras": keras.__version__ + (" (legacy tf-keras)" if config.legacy_keras() else ""),
        "tf-keras-vis": tf_keras_vis.__version__,
    }


def gpu_count() -> int:
    """Number of GPUs TensorFlow sees (as tf-keras-vis's ``num_of_gpus`` reports it)."""
    from tf_keras_vis.utils import num_of_gpus

    _, logical = num_of_gpus()
    return int(logical)


def setup(profile: str | None = None, seed: int = config.DEFAULT_SEED, output_dir: str | None = None,
          verbose: bool = True, **params) -> LabSession:
    """Prepare a lab: quiet logs, resolve the profile, seed, warm TensorFlow.

    ``profile`` is the papermill parameter (None: ``$LABS_PROFILE``, else ``full``).
    ``output_dir`` is where figures are saved (the runner passes the report's folder;
    empty: ``$LABS_OUTPUT_DIR``, else ``<cache>/outputs``).
    Extra keyword parameters (student, group, ...) are recorded and printed.
    """
    quiet_tensorflow()
    resolved = config.resolve_profile(profile)
    tf = import_tensorflow_quietly()
    config.set_seed(seed)

    tf.get_logger().setLevel("ERROR")
    tf.constant(0.0) + 1.0  # warm the runtime here, not in the first checked cell
    out = Path(output_dir or os.environ.get("LABS_OUTPUT_DIR") or config.cache_dir() / "outputs")
    session = LabSession(profile=resolved, seed=int(seed), params=dict(params), versions=versions(),
                         output_dir=out)
    if verbose:
        print(session.describe())
        if config.in_colab():
            print("running in Google Colab")
        sys.stdout.flush()
    return session
