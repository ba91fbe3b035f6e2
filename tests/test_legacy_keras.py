"""Legacy Keras 2 mode (``TF_USE_LEGACY_KERAS=1`` with tf-keras): the explanation tests,
run again under tf-keras.

The mode must be chosen before TensorFlow is imported, so the same test modules run in a
fresh interpreter. They import Keras through ``labhelpers.kerasapi`` and so build their
networks with tf-keras there; the tests that show a tf-keras-vis failure check the failure
of the mode they run in (e.g. its Gradcam cannot find the penultimate layer under tf-keras).

What is rerun: every test of these modules that builds, trains, saves or loads a Keras model or
explains one: the architectures and their fingerprints, the explanation math and its
ground truths, tf-keras-vis parity, the modifiers' rebuild of graphs, seeded bit-identical
training with its cache round trip, pretrained and converted weights saved and loaded, the
metrics, attacks and feature visualisation on tf-keras models. What is not: the tests marked
``mode_independent`` (registered in pyproject's pytest markers), pure logic that runs the same
code in both modes, so a second run would check nothing new: which recipe changes give a new
cache key, the SHA-256 checks on cached weights and the retraining they trigger (that retraining
under tf-keras is the bit-identical test's), provenance records, input errors raised before any
Keras object exists, the restricted unpickler of the PyTorch file, the import structure of
``labhelpers.explain`` (a fresh interpreter of its own, ~9 s) and NumPy-only preprocessing.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNDER_LEGACY = ["test_modifiers.py", "test_explain.py", "test_metrics.py", "test_models.py",
                "test_shortcut.py", "test_vgg_labs.py", "test_efficientnet.py", "test_featurevis.py",
                "test_attacks.py"]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tf_keras") is None,
                                reason="tf-keras is not installed (pip install -e .[legacy])")


def test_explanation_tests_pass_under_tf_keras(tmp_path):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "LABS_CACHE_DIR": str(tmp_path / "cache"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
            "-m", "not mode_independent", *(str(ROOT / "tests" / name) for name in UNDER_LEGACY)]
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join(run.stdout.splitlines()[-30:])
    assert run.returncode == 0, f"under TF_USE_LEGACY_KERAS=1:\n{tail}\n{run.stderr[-2000:]}"
    assert " passed" in tail and "skipped" not in tail.splitlines()[-1], tail
