"""Shared test set-up: quiet TensorFlow before anything imports it, keep every test's cache (trained
weights, outputs) away from the user's real cache unless it asks for the notebooks' (``notebook_cache``),
and hand the longest files out first."""

import os

from labhelpers.session import quiet_tensorflow

quiet_tensorflow()
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

# The cache the notebooks of this run use (`$LABS_CACHE_DIR` as the run started, else the user's cache), read before
# any test replaces the variable: for the one test that runs a lab's own training cell as the notebooks do.
NOTEBOOK_CACHE = os.environ.get("LABS_CACHE_DIR") or None


@pytest.fixture
def notebook_cache(_isolated_cache, monkeypatch):  # after the isolated cache, which it overrides
    """Point ``$LABS_CACHE_DIR`` back at the notebooks' cache (see ``NOTEBOOK_CACHE``), so that a model a lab
    trains is trained once for the whole run, whichever of the lab and the test asks first (the cache's lock
    makes the other wait, then load)."""
    from labhelpers import config

    if NOTEBOOK_CACHE is None:
        monkeypatch.delenv("LABS_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("LABS_CACHE_DIR", NOTEBOOK_CACHE)
    return config.cache_dir()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LABS_CACHE_DIR", str(tmp_path_factory.mktemp("labs-cache")))
    monkeypatch.delenv("LABS_PROVENANCE_FILE", raising=False)


# The longest files first, so the two pytest-xdist workers of `make test` finish together instead of one
# waiting on a long file handed out last: xdist hands files out in this order, to whichever worker has fewer than
# two waiting (`--no-loadscope-reorder` in the Makefile: by default xdist re-sorts files by their number of tests,
# which put these anywhere), and the files not listed (each under 8 s) after them. Seconds each in one cold `make
# test` on the course's 2-core VM, 2026-12-04 (some of them waiting on timeouts or subprocesses, not CPU): 94, 58,
# 60, 43, 28, 39, 18, 17, 16, 8, 15, 13, 12, 12, 13, 11, 9, 8, 8, 7, 7. With only the first ten listed, labs 04,
# 01 and 00 went out last and one worker ran lab 04 alone for the last 12 s; test_vgg_labs.py (the suite's one
# real VGG16, 4-8 s) went out last and alone while it was not listed.
LONGEST_FIRST = ("tests/test_grading.py", "notebooks/02_mnist_class_activation_maps.ipynb",
                 "tests/test_legacy_keras.py", "notebooks/06_evaluating_explanations.ipynb",
                 "notebooks/09_attacks_on_explanations.ipynb", "notebooks/08_feature_visualization.ipynb",
                 "notebooks/07_shortcut_learning.ipynb", "tests/test_run_hardening.py",
                 "notebooks/05_gradcam_gradcampp_smoothgrad.ipynb", "tests/test_models.py",
                 "notebooks/04_vgg16_saliency_guided_rectified.ipynb", "tests/test_run.py",
                 "notebooks/03_vgg16_feature_maps_gradcam.ipynb", "tests/test_roster.py", "tests/test_efficientnet.py",
                 "notebooks/01_fashion_mnist_filters_feature_maps_gradcam.ipynb", "tests/test_explain.py",
                 "tests/test_method_contract.py", "tests/test_vgg_labs.py", "tests/test_attacks.py",
                 "notebooks/00_setup_check.ipynb")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file, and of the other files, is kept
