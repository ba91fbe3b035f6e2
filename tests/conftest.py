"""Shared test set-up: quiet TensorFlow before anything imports it, and keep every
test's cache (trained weights, outputs) away from the user's real cache."""

import os

from labhelpers.session import quiet_tensorflow

quiet_tensorflow()
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LABS_CACHE_DIR", str(tmp_path_factory.mktemp("labs-cache")))
    monkeypatch.delenv("LABS_PROVENANCE_FILE", raising=False)


# The longest files first, so the two pytest-xdist workers of `make test` finish together instead of one
# waiting on a long file collected last (seconds on the course's 2-core VM, 2026-12-03).
LONGEST_FIRST = ("tests/test_grading.py", "tests/test_legacy_keras.py", "notebooks/06_evaluating_explanations.ipynb",
                 "notebooks/08_feature_visualization.ipynb", "notebooks/09_attacks_on_explanations.ipynb")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file, and of the other files, is kept
