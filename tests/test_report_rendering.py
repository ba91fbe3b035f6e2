"""The rendered reports read as the lab texts were written (issue 11)."""

import re
from pathlib import Path

import nbformat
import pytest

from labhelpers.course import execute

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TAG = re.compile(r"<(sub|sup)>(.*?)</\1>", re.S)


def _markdown_tags(path: Path) -> list[tuple[str, str]]:
    nb = nbformat.read(path, as_version=4)
    return [m for c in nb.cells if c.cell_type == "markdown" for m in TAG.findall(c.source)]


@pytest.mark.parametrize("stem", ["03_vgg16_feature_maps_gradcam", "05_gradcam_gradcampp_smoothgrad"])
def test_subscripts_and_superscripts_survive_html(tmp_path, stem):
    source = NOTEBOOKS / f"{stem}.ipynb"
    written = _markdown_tags(source)
    assert len(written) >= 6, f"{source.name}: expected the Grad-CAM formulas written with <sub>/<sup>"
    target = tmp_path / f"{stem}.html"
    execute.render_html(source, target)
    html = target.read_text(encoding="utf-8")
    rendered = TAG.findall(html)
    assert "<sup></sup>" not in html and "<sub></sub>" not in html
    # every tag of the text is in the page with its content: "A<sup>k</sup>", not "A<sup></sup>k"
    for tag, content in written:
        assert (tag, content) in rendered, f"{source.name}: <{tag}>{content}</{tag}> lost in HTML"
    if stem.startswith("03"):
        assert "α<sub>k</sub> = mean<sub>i,j</sub> ∂y<sup>c</sup>" in html


def test_nbval_fails_a_cell_that_writes_to_stderr_or_warns(tmp_path):
    """notebooks/conftest.py: under `make test` a notebook cell that writes to stderr or shows a warning fails."""
    import shutil
    import subprocess
    import sys

    shutil.copy(NOTEBOOKS / "conftest.py", tmp_path / "conftest.py")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('fine')"),
                nbformat.v4.new_code_cell("import sys\nprint('oops', file=sys.stderr)"),
                nbformat.v4.new_code_cell("import warnings\nwarnings.warn('careful', UserWarning)"),
                nbformat.v4.new_code_cell("print('the FutureWarning class is documented')")]
    nbformat.write(nb, tmp_path / "demo.ipynb")
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
                           "-q", "demo.ipynb"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert "2 failed, 2 passed" in out, out
    assert "stderr: oops" in out and "UserWarning: careful" in out
