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
