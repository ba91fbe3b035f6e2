"""Student editions: markers replaced, unbalanced markers refused, committed editions fresh.

A student edition really runs: a graded one (otter's edition) cell by cell in tests/test_grading.py (alice's
submission: lab 01's edition with the solutions filled in, every cell); for every lab, the code before the first
exercise is the very source code nbval executes, in the same kernel (below). Executing an edition here too would
run those same cells again (lab 03's up to its first exercise: 13 s of the suite and one more TensorFlow kernel).
"""

from pathlib import Path

import nbformat
import pytest

from labhelpers.course import conventions, editions
from labhelpers.course.notebooks import lab_notebooks

ROOT = Path(__file__).resolve().parent.parent
SOURCES = lab_notebooks()


def _notebook(tmp_path, cells):
    return conventions.new_notebook(tmp_path / "90_demo.ipynb", [("md", "# Demo")] + cells)


def test_solution_and_answer_regions_are_replaced(tmp_path):
    path = _notebook(tmp_path, [
        ("code", "x = 1\nfor i in range(3):\n    ### BEGIN SOLUTION\n    x += i\n    ### END SOLUTION\nprint(x)"),
        ("md", "Why?\n<!-- BEGIN ANSWER -->\nBecause the secret reason.\n<!-- END ANSWER -->"),
    ])
    student = editions.student_notebook(path)
    code, answer = student.cells[-2], student.cells[-1]
    assert code.source == "x = 1\nfor i in range(3):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(x)"
    assert "secret" not in answer.source and editions.ANSWER_PROMPT in answer.source
    assert "exercise" in code.metadata["tags"]
    nbformat.validate(student)
    assert editions.count_exercises(path) == 2
    # the instructor edition is untouched
    assert "x += i" in nbformat.read(path, as_version=4).cells[-2].source


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "nested"),
    ("<!-- BEGIN ANSWER -->\n<!-- END ANSWER -->", "markdown cells"),
])
def test_unbalanced_markers_name_the_cell(tmp_path, source, message):
    path = _notebook(tmp_path, [("code", source)])
    with pytest.raises(editions.MarkerError, match=rf"90_demo.ipynb, cell 3.*{message}|{message}"):
        editions.student_notebook(path)


def test_stale_and_fresh_editions(tmp_path):
    path = _notebook(tmp_path, [("code", "### BEGIN SOLUTION\ny = 2\n### END SOLUTION")])
    out = tmp_path / "student"
    assert "missing" in editions.stale_editions([path], out)[0]
    editions.write_editions([path], out)
    assert editions.stale_editions([path], out) == []
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source = nb.cells[-1].source.replace("y = 2", "y = 3")  # only the solution changed:
    nbformat.write(nb, path)                                             # the student edition is still fresh
    assert editions.stale_editions([path], out) == []
    nb.cells[-1].source = "z = 0\n" + nb.cells[-1].source
    nbformat.write(nb, path)
    assert "stale" in editions.stale_editions([path], out)[0]


def test_committed_student_editions_are_fresh_and_valid():
    assert SOURCES
    assert editions.stale_editions(SOURCES) == []
    for path in sorted((ROOT / "student").glob("*.ipynb")):
        nbformat.validate(nbformat.read(path, as_version=4))


def _cells_before_first_exercise(student):
    first = next((i for i, c in enumerate(student.cells) if editions.EXERCISE_TAG in c.metadata.get("tags", [])),
                 len(student.cells))
    return student.cells[:first]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_student_edition_matches_the_executed_source_up_to_its_first_exercise(source):
    """CI executes every source notebook under nbval; a student edition whose code before the first
    exercise is the very same code therefore runs that far without error too."""
    student = editions.student_notebook(source)
    instructor = nbformat.read(source, as_version=4)
    assert student.metadata.get("kernelspec") == instructor.metadata.get("kernelspec"), source.name
    before = _cells_before_first_exercise(student)
    for index, cell in enumerate(before):
        if cell.cell_type == "code":
            assert cell.source == instructor.cells[index].source, f"{source.name}: cell {index} differs"
    for cell in student.cells[len(before):]:  # no solution survives in what students get
        assert editions.BEGIN_SOLUTION not in cell.source and editions.BEGIN_ANSWER not in cell.source


def test_student_editions_drop_every_output_and_execution_count(tmp_path):
    """Issue 13 item 2: a solution cell saved with its outputs must not carry them into student/."""
    path = _notebook(tmp_path, [("code", "### BEGIN SOLUTION\nprint('THE-SOLUTION-42')\n### END SOLUTION"),
                                ("code", "print('plain cell')")])
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells[-2:]:
        cell.execution_count = 7
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="THE-SOLUTION-42\n"),
                        nbformat.v4.new_output("execute_result", execution_count=7,
                                               data={"text/plain": "'THE-SOLUTION-42'"})]
    nbformat.write(nb, path)
    out = tmp_path / "student"
    editions.write_editions([path], out)
    written = (out / path.name).read_text()
    assert "THE-SOLUTION-42" not in written
    student = nbformat.read(out / path.name, as_version=4)
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert "THE-SOLUTION-42" in path.read_text()  # the instructor edition keeps its outputs


@pytest.mark.parametrize("cell_type, line", [
    ("code", "### Begin Solution"), ("code", "###  BEGIN SOLUTION"), ("code", "#BEGIN SOLUTION"),
    ("code", "### end solution"), ("md", "<!-- Begin Answer -->"), ("md", "<!--END ANSWER-->"),
])
def test_near_miss_markers_are_an_error(tmp_path, cell_type, line):
    path = _notebook(tmp_path, [(cell_type, f"x = 1\n{line}\nsecret = 42")])
    with pytest.raises(editions.MarkerError, match=r"90_demo.ipynb, cell \d+, line 2: .* not spelled exactly"):
        editions.student_notebook(path)


def test_the_docstrings_command_line_works(tmp_path, capsys):
    """`editions write --out DIR nb.ipynb` (the module docstring's spelling) and the options-last one."""
    path = _notebook(tmp_path, [("code", "### BEGIN SOLUTION\ny = 2\n### END SOLUTION")])
    assert editions.main(["write", "--out", str(tmp_path / "a"), str(path)]) == 0
    assert editions.main(["write", str(path), "--out", str(tmp_path / "b")]) == 0
    assert editions.main(["check", "--out", str(tmp_path / "a"), str(path)]) == 0
    assert (tmp_path / "a" / path.name).is_file() and (tmp_path / "b" / path.name).is_file()
    assert "up to date" in capsys.readouterr().out
