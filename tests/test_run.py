"""The report runner, on tiny notebooks written here (no TensorFlow; ~2 s per kernel)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from labhelpers.course import cli, execute, reports, runner
from labhelpers.course.figures import THUMBNAIL_SIZE, add_key_figure, key_figure_source
from labhelpers.course.notebooks import STANDARD_PARAMETERS

PARAMETERS = STANDARD_PARAMETERS  # the course's standard parameters cell


def write_lab(path: Path, *cells: str, title: str = "A lab", extra_parameters: str = "") -> Path:
    """A notebook like the course's: a title, a tagged parameters cell, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMETERS + extra_parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\nText."), params]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


def index(report_dir: Path) -> dict:
    data = json.loads((report_dir / "index.json").read_text())
    return {lab["stem"]: lab for lab in data["labs"]}


def stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def inline_figures(nb) -> list[str]:
    return [o["data"]["image/png"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "image/png" in o.get("data", {})]


@pytest.fixture(scope="module")
def ok_run(tmp_path_factory):
    """One successful run of a lab that declares two lab-specific parameters, prints its parameters,
    records provenance, saves a line plot (also shown inline) and then its key figure (green, 80 x 40)."""
    root = tmp_path_factory.mktemp("ok")
    labs = root / "labs"
    labs.mkdir()
    lab = write_lab(
        labs / "01_params.ipynb",
        "import os\nfrom labhelpers.config import record_provenance\n"
        'record_provenance("data", "Fashion-MNIST from the Debian package", source="debian")\n'
        'record_provenance("weights", "random VGG16 weights (no ImageNet file)", fallback=True)',
        'print(f"PARAMS {profile} {seed} {student} {group} {instructor} {course}")\n'
        'print(f"LAB-SPECIFIC {image_dir} {class_name}")\n'
        'print("ENV", os.environ["LABS_PROFILE"], os.environ["MPLBACKEND"], os.environ["TF_CPP_MIN_LOG_LEVEL"])\n'
        'print("CWD", os.getcwd())',
        "import matplotlib.pyplot as plt\nimport numpy as np\nfig, ax = plt.subplots(figsize=(2, 2))\n"
        'ax.plot([0, 1], [0, 1])\nos.makedirs(output_dir, exist_ok=True)\nfig.savefig(os.path.join(output_dir, "line.png"))',
        'plt.imsave(os.path.join(output_dir, "key_figure.png"), np.tile([[[0.0, 1.0, 0.0]]], (40, 80, 1)))',
        title="Parameters and provenance", extra_parameters='\nimage_dir = ""\nclass_name = "tabby"',
    )
    write_lab(labs / "09_never_run.ipynb", "print('not run')")
    out = root / "reports"
    code = cli.main([str(lab), "--seed", "7", "--student", "Ann Lee", "--group", "A-21",
                     "--instructor", "Dr. Ada Byron", "--course", "CNN Vis & XAI", "-p", "class_name=goldfish",
                     "--parameter", "image_dir=/srv/images/ann", "--output-dir", str(out), "--cell-timeout", "120"])
    return code, labs, out / "smoke"


def test_successful_run_writes_reports_and_injects_parameters(ok_run):
    code, labs, report = ok_run
    assert code == 0
    for name in ("01_params.ipynb", "01_params.html", "01_params_files/line.png", "index.html", "index.json"):
        assert (report / name).is_file(), name
    assert not (report / ".staging").exists() and not (report / "failed").exists()

    executed = nbformat.read(report / "01_params.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "seed = 7" in injected[0].source and 'student = "Ann Lee"' in injected[0].source
    text = stream_text(executed)
    assert "PARAMS smoke 7 Ann Lee A-21 Dr. Ada Byron CNN Vis & XAI" in text
    # the inline backend, even though this test process exports MPLBACKEND=Agg (which would drop figures)
    assert "ENV smoke module://matplotlib_inline.backend_inline 3" in text
    assert f"CWD {labs}" in text  # runs in the notebook's folder
    assert len(inline_figures(executed)) == 1  # the line plot, shown inline at the end of its cell

    page = (report / "01_params.html").read_text()
    assert inline_figures(executed)[0].strip()[:200] in page.replace("\n", "")  # embedded in the report
    assert "record_provenance" in page  # input cells are kept

    lab = index(report)["01_params"]
    assert lab["status"] == "ok" and lab["seed"] == 7 and lab["profile"] == "smoke"
    assert (lab["student"], lab["group"], lab["title"]) == ("Ann Lee", "A-21", "Parameters and provenance")
    assert (lab["instructor"], lab["course"]) == ("Dr. Ada Byron", "CNN Vis & XAI")
    assert lab["html"] == "01_params.html" and lab["figures"] == "01_params_files"
    assert 0 < lab["duration_s"] < 120
    assert index(report)["09_never_run"]["status"] == "not run"  # a lab of the same folder, never run


def test_title_block_tops_each_report_and_the_index(ok_run):
    _, _, report = ok_run
    executed = nbformat.read(report / "01_params.ipynb", as_version=4)
    first = executed.cells[0]
    assert first.cell_type == "markdown" and first.metadata["labs"]["role"] == "title-block"
    today = datetime.now().astimezone().date().isoformat()
    assert {k: first.metadata["labs"][k] for k in ("course", "title", "student", "group", "instructor", "profile",
                                                   "seed", "date")} == {
        "course": "CNN Vis & XAI", "title": "Parameters and provenance", "student": "Ann Lee", "group": "A-21",
        "instructor": "Dr. Ada Byron", "profile": "smoke", "seed": 7, "date": today}
    assert sum(1 for c in executed.cells if c.metadata.get("labs", {}).get("role") == "title-block") == 1
    page = (report / "01_params.html").read_text()
    block = page[page.index('class="labs-title-block"'):]
    block = block[:block.index("</table>")]
    for shown in ("CNN Vis &amp; XAI", "Parameters and provenance", "Ann Lee", "A-21", "Dr. Ada Byron", today,
                  "smoke", ">7<"):
        assert shown in block, shown
    assert page.index('class="labs-title-block"') < page.index('id="Parameters-and-provenance"')  # at the top

    top = (report / "index.html").read_text()
    top = top[top.index('class="labs-title-block"'):top.index("</table>")]
    for shown in ("CNN Vis &amp; XAI", "Ann Lee", "A-21", "Dr. Ada Byron", today, "smoke", ">7<"):
        assert shown in top, shown
    header = json.loads((report / "index.json").read_text())["header"]
    assert header == {"course": "CNN Vis & XAI", "student": "Ann Lee", "group": "A-21",
                      "instructor": "Dr. Ada Byron", "date": today, "profile": "smoke", "seed": 7}


def test_lab_specific_parameters_reach_the_labs_that_declare_them(ok_run):
    """(The other half, a lab that does not declare them never gets them: the failure test.)"""
    _, _, report = ok_run
    nb = nbformat.read(report / "01_params.ipynb", as_version=4)
    injected = next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'class_name = "goldfish"' in injected and 'image_dir = "/srv/images/ann"' in injected
    assert "LAB-SPECIFIC /srv/images/ann goldfish" in stream_text(nb)
    assert index(report)["01_params"]["parameters"] == {"class_name": "goldfish", "image_dir": "/srv/images/ann"}
    assert execute.passed_parameters({"a": 1, "b": 2}, {"b", "c"}) == {"b": 2}
    for bad, said in (({"seed": 1}, "standard one"), ({"class name": "x"}, "not a Python identifier")):
        with pytest.raises(ValueError, match=said):
            runner.run_notebooks([report / "01_params.ipynb"], parameters=bad, output_dir=report / "never")
    assert not (report / "never").exists()


def test_index_shows_a_thumbnail_of_the_key_figure(ok_run):
    _, _, report = ok_run
    lab = index(report)["01_params"]  # key_figure.png wins over the first saved image (line.png)
    assert (lab["key_figure"], lab["key_figure_from"]) == ("01_params_files/key_figure.png", "key_figure.png")
    assert lab["thumbnail"] == "01_params_files/thumbnail.png"
    with Image.open(report / lab["thumbnail"]) as thumb:
        assert thumb.size == (80, 40)  # small already: a thumbnail never enlarges
        assert thumb.convert("RGB").getpixel((40, 20)) == (0, 255, 0)
    page = (report / "index.html").read_text()
    assert '<a href="01_params.html"><img class="thumb" src="01_params_files/thumbnail.png"' in page


def png_bytes(color, size) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_without_saved_images_the_last_inline_figure_is_the_thumbnail(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a"), nbformat.v4.new_code_cell("b"), nbformat.v4.new_code_cell("c")]
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", data={"image/png": png_bytes("blue", (10, 10))})]
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", execution_count=2,
                                                  data={"image/png": png_bytes("red", (800, 400))})]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="no picture")]
    nbformat.write(nb, tmp_path / "05_x.ipynb")
    figures = tmp_path / "05_x_files"  # the lab saved nothing
    info = add_key_figure(figures, tmp_path / "05_x.ipynb", "05_x")
    assert (info.key_figure, info.key_figure_from, info.thumbnail) == (None, "last inline figure",
                                                                       "05_x_files/thumbnail.png")
    with Image.open(tmp_path / info.thumbnail) as thumb:
        assert thumb.size == (320, 160) and max(thumb.size) <= max(THUMBNAIL_SIZE)  # aspect ratio kept
        assert thumb.convert("RGB").getpixel((160, 80)) == (255, 0, 0)
    empty = nbformat.v4.new_notebook()
    nbformat.write(empty, tmp_path / "06_y.ipynb")
    assert add_key_figure(tmp_path / "06_y_files", tmp_path / "06_y.ipynb", "06_y").thumbnail is None
    assert not (tmp_path / "06_y_files").exists()


def test_key_figure_choice(tmp_path):
    folder = tmp_path / "03_x_files"
    assert key_figure_source(folder) is None  # no folder
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    assert key_figure_source(folder) is None
    for name, age in (("b_second.png", 20), ("a_third.jpg", 10), ("sub/c_first.png", 30), ("thumbnail.png", 40)):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (time.time() - age, time.time() - age))
    assert key_figure_source(folder) == (folder / "sub" / "c_first.png", "first saved image")
    (folder / "key_figure.png").write_bytes(b"x")  # saved last, still the key
    assert key_figure_source(folder) == (folder / "key_figure.png", "key_figure.png")


def test_provenance_records_reach_the_index(ok_run):
    _, _, report = ok_run
    records = index(report)["01_params"]["provenance"]
    assert records == [
        {"kind": "data", "summary": "Fashion-MNIST from the Debian package", "source": "debian"},
        {"kind": "weights", "summary": "random VGG16 weights (no ImageNet file)", "fallback": True},
    ]
    page = (report / "index.html").read_text()
    assert "Fashion-MNIST from the Debian package" in page
    # the fallback is loud: a badge on the record and a banner on the page
    assert "FALLBACK</span> <b>weights</b>: random VGG16 weights" in page
    assert 'class="banner"' in page and "01_params" in page.split('class="banner"')[1].split("</div>")[0]
    assert 'href="01_params.html"' in page


def test_failure_keeps_previous_report_and_runs_the_others(tmp_path, capfd):
    labs, out = tmp_path / "labs", tmp_path / "reports"
    labs.mkdir()
    save_note = 'import os\nos.makedirs(output_dir, exist_ok=True)\nopen(os.path.join(output_dir, "note.txt"), "w").write("v1")'
    timed = "import time\nstart = time.time()\ntime.sleep(1.0)\nprint(start, time.time())"
    write_lab(labs / "03_fragile.ipynb", "print('version 1')", save_note, timed)
    write_lab(labs / "04_steady.ipynb", "print('steady')", timed)

    # First run: both succeed, two at a time, through the command line (`python -m labhelpers.run run`).
    first = subprocess.run([sys.executable, "-m", "labhelpers.run", "run", str(labs / "03_fragile.ipynb"),
                            str(labs / "04_steady.ipynb"), "-j", "2", "--output-dir", str(out),
                            "-p", "class_name=goldfish"],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    # neither lab declares class_name: it is said (and not injected, below)
    assert "no notebook declares parameter 'class_name'" in first.stderr
    for stem in ("03_fragile", "04_steady"):  # a progress line per lab start and end, then a summary
        assert f"start   {stem}" in first.stdout and f"ok      {stem}" in first.stdout
    assert "2 ok, 0 failed" in first.stdout
    report = out / "smoke"
    spans = []
    for stem in ("03_fragile", "04_steady"):
        meta = nbformat.read(report / f"{stem}.ipynb", as_version=4).metadata.papermill
        spans.append((datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"])))
    assert max(s for s, _ in spans) < min(e for _, e in spans), "with -j 2 the two labs overlap in time"
    injected = next(c.source for c in nbformat.read(report / "04_steady.ipynb", as_version=4).cells
                    if "injected-parameters" in c.metadata.get("tags", []))
    assert "class_name" not in injected and 'output_dir = "' in injected
    kept = {name: (report / name).read_bytes()
            for name in ("03_fragile.ipynb", "03_fragile.html", "03_fragile_files/note.txt")}
    capfd.readouterr()

    # Second run: the same lab now fails in its fourth cell (index 3 of the source notebook).
    write_lab(labs / "03_fragile.ipynb", "print('version 2')",
              "raise ValueError('deliberate failure in step 2')", save_note)
    code = cli.main([str(labs / "03_fragile.ipynb"), "--output-dir", str(out)])
    captured = capfd.readouterr()
    assert code == 1
    said = captured.out + captured.err
    assert "03_fragile.ipynb" in said and "cell index 3" in said
    assert "ValueError: deliberate failure in step 2" in said

    for name, content in kept.items():  # the previous successful report, byte for byte
        assert (report / name).read_bytes() == content, name
    failed = nbformat.read(report / "failed" / "03_fragile.ipynb", as_version=4)
    assert "version 2" in stream_text(failed)
    assert any(o.get("ename") == "ValueError" for c in failed.cells if c.cell_type == "code" for o in c.outputs)
    assert not (report / ".staging").exists()

    labs_index = index(report)
    fragile = labs_index["03_fragile"]
    assert fragile["status"] == "failed" and fragile["executed"] == "failed/03_fragile.ipynb"
    assert fragile["error"]["cell"] == 3 and fragile["error"]["ename"] == "ValueError"
    assert fragile["previous_ok"]["html"] == "03_fragile.html"
    assert labs_index["04_steady"]["status"] == "ok"  # not run this time: its last result stays
    page = (report / "index.html").read_text()
    assert 'href="failed/03_fragile.ipynb"' in page and 'href="04_steady.html"' in page


def test_cell_timeout_fails_that_lab_naming_the_cell(tmp_path, capfd):
    lab = write_lab(tmp_path / "05_slow.ipynb", "x = 1", "import time\ntime.sleep(60)", "print('never')")
    results = runner.run_notebooks([lab], profile="smoke", cell_timeout=2, output_dir=tmp_path / "out")
    assert len(results) == 1 and results[0].status == "failed"
    assert results[0].duration_s < 40
    assert results[0].error["cell"] == 3
    assert "time.sleep(60)" in results[0].error["source"]
    assert "CellTimeoutError" in results[0].error["message"] and "2 seconds" in results[0].error["message"]
    assert (tmp_path / "out" / "smoke" / "failed" / "05_slow.ipynb").is_file()
    assert not (tmp_path / "out" / "smoke" / "05_slow.html").exists()
    log = tmp_path / "out" / "smoke" / results[0].error["stderr_log"]  # the console stays quiet
    assert "Timeout waiting for execute reply" in log.read_text()


def test_unknown_profile_is_an_error_before_anything_runs(tmp_path, capsys):
    lab = write_lab(tmp_path / "01_x.ipynb", "print(1)")
    out = tmp_path / "out"
    for spelling in ([], ["run"]):  # `labs ...` and `labs run ...`
        assert cli.main([*spelling, str(lab), "--profile", "turbo", "--output-dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert "unknown profile 'turbo'" in err and "full" in err and "smoke" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="unknown profile"):
        runner.run_notebooks([lab], profile="turbo", output_dir=out)


def test_missing_notebook_is_a_clear_error(tmp_path, capsys):
    good = write_lab(tmp_path / "01_x.ipynb", "print(1)")
    missing = tmp_path / "02_missing.ipynb"
    out = tmp_path / "out"
    assert cli.main([str(good), str(missing), "--output-dir", str(out)]) == 2
    assert f"notebook not found: {missing}" in capsys.readouterr().err
    assert not out.exists()  # nothing ran, not even the good one
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a notebook file"):
        runner.run_notebooks([tmp_path / "notes.txt"], output_dir=out)


def test_index_page_is_loud_about_failures_and_fallbacks():
    labs = [
        reports.LabResult(stem="01_a", status="ok", profile="full", seed=1, html="01_a.html",
                      provenance=[{"kind": "data", "summary": "a <subset>", "fallback": True}]),
        reports.LabResult(stem="02_b", status="failed", profile="full", seed=1, executed="failed/02_b.ipynb",
                      error={"message": "cell index 4 (In [3]): KeyError: 'x'"},
                      previous_ok={"html": "02_b.html", "started_at": "2025-01-01T00:00:00+00:00"}),
        reports.LabResult(stem="03_c", status="not run"),
    ]
    page = reports.render_index_html(labs, "full", "now")
    assert "a &lt;subset&gt;" in page  # escaped
    assert "FALLBACK" in page and "ran on fallback data or weights" in page
    assert "failed: 02_b" in page and "KeyError: &#x27;x&#x27;" in page
    assert 'href="failed/02_b.ipynb"' in page and 'href="02_b.html"' in page
    assert '<span class="badge notrun">not run</span>' in page


def test_runner_imports_no_tensorflow():
    code = ("import sys, labhelpers.run, labhelpers.course.roster, papermill, nbconvert, PIL.Image\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
