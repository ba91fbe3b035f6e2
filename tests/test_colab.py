"""Colab badges point at their own notebooks; rewriting them is idempotent."""

import shutil
from pathlib import Path

import nbformat

from labhelpers import config
from labhelpers.course import colab, conventions
from labhelpers.course.notebooks import lab_notebooks

ROOT = Path(__file__).resolve().parent.parent


def test_every_badge_points_at_its_own_notebook():
    paths = [p for folder in colab.FOLDERS for p in lab_notebooks(folder)]
    assert paths
    assert [p for path in paths for p in colab.badge_problems(path)] == []


def test_readme_lists_every_lab_with_its_badge():
    readme = (ROOT / "README.md").read_text()
    for path in lab_notebooks():
        assert colab.colab_url(f"notebooks/{path.name}") in readme


def test_rewrite_is_idempotent_and_fixes_a_wrong_badge(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "repo_root", lambda: tmp_path)
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = conventions.new_notebook(tmp_path / "notebooks" / "05_x.ipynb", [("md", "# Five")])
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace("05_x", "04_other")  # a copy-paste slip
    nbformat.write(nb, path)
    assert colab.badge_problems(path)
    assert colab.rewrite_badge(path) is True
    assert colab.badge_problems(path) == []
    assert colab.rewrite_badge(path) is False  # idempotent
    assert nbformat.read(path, as_version=4).cells[0].source.count("Open In Colab") == 1


def test_setup_cell_installs_only_in_colab_at_the_pinned_ref():
    course = colab.settings()
    assert f"@{course.install_ref}" in conventions.SETUP_SOURCE
    assert 'if "google.colab" in sys.modules' in conventions.SETUP_SOURCE
