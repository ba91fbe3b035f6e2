"""Every course notebook follows the conventions; the convention checker itself works."""

import re
from pathlib import Path

import nbformat
import pytest

from labhelpers.course import conventions

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_course_has_numbered_notebooks():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name} is not NN_slug.ipynb"
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_conventions(path):
    assert conventions.problems(path) == []


def test_new_notebook_passes_and_problems_are_found(tmp_path):
    path = conventions.new_notebook(tmp_path / "99_demo.ipynb", [("md", "# Demo"), ("code", "print(1)")],
                                extra_parameters='image_path = ""')
    assert conventions.problems(path) == []
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[1].metadata["tags"] == ["parameters"] and 'image_path = ""' in nb.cells[1].source

    nb.cells[2].source = conventions.SETUP_SOURCE + "\nextra = 1"       # a drifted setup cell
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="1\n")]  # a stored output
    nb.cells.append(nbformat.v4.new_code_cell("\n".join(["x = 1"] * 41)))  # longer than a screen
    nbformat.write(nb, path)
    found = "\n".join(conventions.problems(path))
    assert "setup cell" in found and "stored outputs" in found and "41 lines" in found

    assert conventions.sync(path) is True  # repairs the setup cell and strips outputs
    assert [p for p in conventions.problems(path) if "lines" not in p] == []


def test_invalid_notebook_is_reported(tmp_path):
    bad = tmp_path / "01_bad.ipynb"
    bad.write_text("{not json")
    assert "not a valid notebook" in conventions.problems(bad)[0]


def test_sync_updates_standard_parameters_and_keeps_a_labs_own(tmp_path):
    path = conventions.new_notebook(tmp_path / "98_demo.ipynb", [("md", "# Demo")], extra_parameters='image_path = "a.jpg"')
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "# Parameters: old header\nseed = 42\nstudent = ''\n" + 'image_path = "a.jpg"'
    nbformat.write(nb, path)
    conventions.sync(path)
    cell = nbformat.read(path, as_version=4).cells[1]
    assert cell.source == conventions.parameters_source('image_path = "a.jpg"')
