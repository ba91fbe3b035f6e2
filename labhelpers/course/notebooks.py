"""The course's lab notebooks as files: which files they are, their titles, their parameters.

The one home of the lab file pattern (``NN_name.ipynb``: the runner, the editions, the Colab
badges, the PDF step), of the title a report and the README's table show, and of the standard
parameters cell every lab declares. No TensorFlow; nbformat and papermill load on first use.
"""

from __future__ import annotations

from pathlib import Path

from .. import config

LAB_STEM_PATTERN = "[0-9][0-9]_*"  # a lab's file name: two digits, an underscore, a name
NOTEBOOK_PATTERN = f"{LAB_STEM_PATTERN}.ipynb"
NOTEBOOKS_FOLDER = "notebooks"  # the instructor edition, in the repository

# The parameters cell every lab starts with (papermill fills it; the runner sets these names).
STANDARD_PARAMETERS = '''\
# Parameters: papermill replaces these values (`make reports PROFILE=full STUDENT=...`).
profile = None    # "smoke" (minutes) or "full" (the lab's own settings); None: $LABS_PROFILE, else "full"
seed = 42
student = ""      # these four fill the report's title block
group = ""
instructor = ""
course = "CNN Visualization Labs"
output_dir = ""   # where figures are saved; "" -> $LABS_OUTPUT_DIR or the cache folder'''
STANDARD_NAMES = ("profile", "seed", "student", "group", "instructor", "course", "output_dir")


def lab_files(folder: str | Path = NOTEBOOKS_FOLDER, suffix: str = ".ipynb") -> list[Path]:
    """The labs' files in ``folder`` (relative: to the repository), in lab order: ``NN_*<suffix>``
    (``.ipynb``: the notebooks; ``.html``: their reports)."""
    return sorted((config.repo_root() / folder).glob(LAB_STEM_PATTERN + suffix))


def lab_notebooks(folder: str | Path = NOTEBOOKS_FOLDER) -> list[Path]:
    """The lab notebooks in ``folder`` (default: the repository's notebooks/), in lab order."""
    return lab_files(folder, ".ipynb")


def notebook_title(nb) -> str:
    """A notebook's title: the first heading line (``#``, ``##``, ...) of its first markdown cell,
    without the hashes; "" when that cell has none. ``nb``: an nbformat node or a path."""
    if isinstance(nb, (str, Path)):
        import nbformat

        nb = nbformat.read(nb, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
            return ""
    return ""


def declared_parameters(path: str | Path) -> frozenset[str]:
    """The names the notebook's cell tagged ``parameters`` assigns (papermill's own parser)."""
    import papermill

    return frozenset(papermill.inspect_notebook(str(path)))


def display_path(path: Path) -> str:
    """A path relative to the repository when it lives there (stable across checkouts)."""
    try:
        return str(Path(path).relative_to(config.repo_root()))
    except ValueError:
        return str(path)
