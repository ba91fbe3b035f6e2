"""The runner under hostile names, signals, races and failures (issue 13; issue 11's report items).

Tiny notebooks, no TensorFlow; a kernel costs about 2 s."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from labhelpers.course import cli, execute, reports, runner
from labhelpers.course.notebooks import STANDARD_PARAMETERS
from labhelpers.course.staging import LabOutcome, new_staging, publish

PAYLOAD = ("Ann Lee\n\n[Open my report](javascript:alert(document.domain))\n\n"
           "![](http://attacker.example/b.png)")
SCRIPT = "<script>alert('x')</script>"
BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/o/r/blob/main/notebooks/01_x.ipynb)")


def write_lab(path: Path, *cells: str, title: str = "A lab", first_markdown: str = "Text.") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(STANDARD_PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n{first_markdown}"), params]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


def live_urls(page: str) -> list[str]:
    """Every href/src value of a page, and any markdown that survived as a live link or image."""
    return re.findall(r"""(?:href|src)\s*=\s*["']?([^"'\s>]+)""", page)


def assert_no_breakout(page: str) -> None:
    urls = live_urls(page)
    assert not [u for u in urls if u.strip().lower().startswith("javascript:")], urls
    assert not [u for u in urls if "attacker.example" in u], urls
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert" in page or SCRIPT not in page


# ----------------------------------------------------------------------------- 1: title block breakout


@pytest.mark.parametrize("field", ["student", "group", "instructor", "course"])
@pytest.mark.parametrize("payload", [PAYLOAD, SCRIPT], ids=["markdown-breakout", "script"])
def test_no_title_field_can_leave_the_title_block(tmp_path, field, payload):
    lab = tmp_path / "01_x.ipynb"
    write_lab(lab, "x = 1")
    fields = {"course": "C", "title": "A lab", "student": "S", "group": "G", "instructor": "I",
              "date": "2026-01-01", "profile": "smoke", "seed": 1, field: payload}
    execute.insert_title_block(lab, fields)
    block = nbformat.read(lab, as_version=4).cells[0].source
    assert "\n" not in block  # one HTML block: no blank line can end it
    execute.render_html(lab, tmp_path / "01_x.html")
    page = (tmp_path / "01_x.html").read_text()
    assert_no_breakout(page)
    shown = page[page.index('class="labs-title-block"'):]
    shown = shown[:shown.index("</table>")]
    assert "Ann Lee [Open my report](javascript:" in shown or "&lt;script&gt;" in shown
    index_page = reports.render_index_html([], "smoke", "now", header={k: v for k, v in fields.items() if k != "title"})
    assert_no_breakout(index_page)


def test_a_run_collapses_title_fields_to_one_line(tmp_path):
    lab = write_lab(tmp_path / "01_x.ipynb", 'print(repr(student), repr(course))')
    results = runner.run_notebooks([lab], student=PAYLOAD, group=SCRIPT, instructor=PAYLOAD, course=PAYLOAD,
                                output_dir=tmp_path / "out")
    assert results[0].ok, results[0].error
    report = tmp_path / "out" / "smoke"
    for page in ((report / "01_x.html").read_text(), (report / "index.html").read_text()):
        assert_no_breakout(page)
    flat = "Ann Lee [Open my report](javascript:alert(document.domain)) ![](http://attacker.example/b.png)"
    assert results[0].student == flat and json.loads((report / "index.json").read_text())["header"]["student"] == flat
    printed = "".join(o.get("text", "") for c in nbformat.read(report / "01_x.ipynb", as_version=4).cells
                      if c.cell_type == "code" for o in c.outputs)
    assert repr(flat) in printed  # the notebook got the cleaned value too


# ----------------------------------------------------------------------------- 7: names, output folder


def test_index_notebook_would_overwrite_the_index(tmp_path, capsys):
    lab = write_lab(tmp_path / "index.ipynb", "print(1)")
    assert cli.main([str(lab), "--output-dir", str(tmp_path / "out")]) == 2
    assert "would overwrite" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_hash_in_a_notebook_name_is_url_encoded_in_links():
    labs = [reports.LabResult(stem="03_a#b c", status="ok", profile="smoke", seed=1, html="03_a#b c.html",
                          executed="03_a#b c.ipynb", figures="03_a#b c_files", thumbnail="03_a#b c_files/thumbnail.png")]
    page = reports.render_index_html(labs, "smoke", "now")
    assert 'href="03_a%23b%20c.html"' in page and 'src="03_a%23b%20c_files/thumbnail.png"' in page
    assert 'href="03_a#b' not in page


def test_output_dir_naming_a_file_is_a_clear_error(tmp_path, capsys):
    lab = write_lab(tmp_path / "01_x.ipynb", "print(1)")
    (tmp_path / "afile").write_text("x")
    assert cli.main([str(lab), "--output-dir", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert "afile is a file, not a folder" in err and "Traceback" not in err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "smoke").write_text("x")
    with pytest.raises(ValueError, match="smoke is a file"):
        runner.run_notebooks([lab], output_dir=tmp_path / "out")


# ----------------------------------------------------------------------------- issue 11 a, b, d


@pytest.fixture(scope="module")
def two_labs(tmp_path_factory):
    """One run of the two labs of the tests below (one pool worker, kernel start-up and HTML exporter, not two):
    01_x fails with a long, multi-line message; 02_badge prints its output_dir and opens with a Colab badge.
    Returns the results by stem, the report folder and what the runner printed."""
    root = tmp_path_factory.mktemp("two_labs")
    message = ("could not load Fashion-MNIST; tried, in order:\\n  - LABS_DATA_DIR /x: no such folder\\n"
               "  - debian-package /usr/share/datasets/fashion-mnist: missing\\n"
               "How to get the data: run `make data` <as root>")
    failing = write_lab(root / "01_x.ipynb", "import os\nx = 1\n\ndef load():\n    raise RuntimeError(MESSAGE)\n\n"
                        "print('before')\nload()\nprint('never')".replace("MESSAGE", repr(message).replace("\\\\", "\\")))
    badged = write_lab(root / "02_badge.ipynb", "print('figures go to', output_dir)",
                       first_markdown=f"{BADGE}\n\nText.")
    said = io.StringIO()
    with contextlib.redirect_stdout(said):  # the runner's own lines (a lab's FAILED line), not its workers'
        results = runner.run_notebooks([failing, badged], output_dir=root / "out")
    return {result.stem: result for result in results}, root / "out" / "smoke", said.getvalue()


def test_a_failure_shows_the_whole_message_and_the_raising_line(two_labs):
    results, report, said = two_labs
    error = results["01_x"].error["message"]
    for expected in ("debian-package /usr/share/datasets/fashion-mnist: missing", "How to get the data: run `make data`",
                     "`load()`"):
        assert expected in error, error
        assert expected in said
    assert "import os" not in error
    page = (report / "index.html").read_text()
    assert "How to get the data: run `make data` &lt;as root&gt;" in page and "<as root>" not in page


def test_raising_line_from_an_ipython_traceback():
    traceback = ["\x1b[0;31mValueError\x1b[0m   Traceback (most recent call last)",
                 "Cell \x1b[0;32mIn[4], line 3\x1b[0m\n\x1b[1;32m      1\x1b[0m import os\n----> 3 f()",
                 "Cell In[2], line 2, in f()\n----> 2 raise ValueError"]
    assert execute.raising_line(traceback, "import os\nx = 1\nf()", 4) == "f()"
    assert execute.raising_line(None, "\nimport os\n", None) == "import os"


def test_reports_name_no_staging_path_and_have_no_external_badge(two_labs):
    results, report, _ = two_labs
    assert results["02_badge"].ok, results["02_badge"].error
    executed = (report / "02_badge.ipynb").read_text()
    page = (report / "02_badge.html").read_text()
    for text in (executed, page):
        assert ".staging" not in text
    nb = nbformat.read(report / "02_badge.ipynb", as_version=4)
    injected = next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f'output_dir = "{report / "02_badge_files"}"' in injected
    assert "colab-badge.svg" not in page and ">Open in Colab</a>" in page
    assert "colab-badge.svg" in executed  # the notebook itself keeps its badge


# ----------------------------------------------------------------------------- 3: SIGTERM


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def published_lab(tmp_path_factory) -> Path:
    """A lab and its published report (version 1), run once for the signal tests to copy."""
    root = tmp_path_factory.mktemp("published")
    write_lab(root / "01_slow.ipynb", "print('version 1')")
    assert cli.main([str(root / "01_slow.ipynb"), "--output-dir", str(root / "out")]) == 0
    return root


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_stops_workers_and_kernels_and_keeps_the_old_report(tmp_path, signame, published_lab):
    shutil.copytree(published_lab, tmp_path, dirs_exist_ok=True)
    lab = tmp_path / "01_slow.ipynb"
    out = tmp_path / "out"
    report = out / "smoke"
    before = {name: (report / name).read_bytes() for name in ("01_slow.html", "01_slow.ipynb", "index.json")}
    pid_file, go = tmp_path / "kernel.pid", tmp_path / "go"
    # version 2 waits (60 s at most) until the test says go: its kernel and the pool worker that started it
    # (the kernel's parent) must be gone by then; after go, an orphan would finish the lab and publish it
    write_lab(lab, f"import os, time\nopen({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{os.getppid()}}')\n"
              f"deadline = time.time() + 60\nwhile not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
              "    time.sleep(0.05)", "print('version 2')")
    runner = subprocess.Popen([sys.executable, "-m", "labhelpers.run", str(lab), "--output-dir", str(out), "-j", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pid_file.exists(), "the lab never started"
        time.sleep(0.3)
        kernel, worker = map(int, pid_file.read_text().split())
        assert worker != runner.pid  # the kernel's parent is the pool worker
        runner.send_signal(getattr(signal, signame))
        _, err = runner.communicate(timeout=30)
        assert runner.returncode == 128 + getattr(signal, signame), err
        assert f"stopped by {signame}" in err
        time.sleep(0.5)
        assert not alive(kernel), "the lab's kernel outlived the runner"
        assert not alive(worker), "the pool worker outlived the runner"
    finally:
        go.touch()  # the lab may end now
        if runner.poll() is None:  # a failed check above: no runner left behind
            runner.kill()
            runner.communicate()
    time.sleep(2)  # an orphaned worker would have published by now
    for name, content in before.items():
        assert (report / name).read_bytes() == content, name
    assert not (report / ".staging").exists() and not (report / "failed").exists()


# ----------------------------------------------------------------------------- 5: publishing race


def _publish_many(report_dir: str, rounds: int, tag: str) -> int:
    errors = 0
    for i in range(rounds):
        staging = new_staging(Path(report_dir), "01_x")
        (staging / "01_x_files").mkdir()
        for name in ("a.png", "b.png"):
            (staging / "01_x_files" / name).write_text(f"{tag}{i}")
        (staging / "01_x.ipynb").write_text(f"{tag}{i}")
        (staging / "01_x.html").write_text(f"{tag}{i}")
        try:
            publish(Path(report_dir), LabOutcome(stem="01_x", started_at="now", staging=str(staging),
                                                 lab_saved_files=True))
        except OSError:
            errors += 1
    return errors


def _publisher(report_dir: Path, rounds: int, tag: str) -> subprocess.Popen:
    """A fresh interpreter running ``_publish_many``; it imports only the staging module (a spawned pool
    process would import this test module first: the runner, nbformat and pytest, ~2.5 s of CPU each)."""
    code = "\n".join(["from pathlib import Path", "from labhelpers.course.staging import LabOutcome, new_staging, publish",
                      inspect.getsource(_publish_many), f"print(_publish_many({str(report_dir)!r}, {rounds}, {tag!r}))"])
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_publishing_of_the_same_lab(tmp_path):
    report = tmp_path / "smoke"
    report.mkdir()
    publishers = [_publisher(report, 150, tag) for tag in "abcd"]  # four processes at once
    done = [p.communicate(timeout=120) for p in publishers]
    assert [p.returncode for p in publishers] == [0, 0, 0, 0], [err for _, err in done]
    errors = [int(out) for out, _ in done]
    assert errors == [0, 0, 0, 0]
    assert sorted(p.name for p in report.iterdir()) == [".index.lock", "01_x.html", "01_x.ipynb", "01_x_files"]
    files = report / "01_x_files"
    assert sorted(p.name for p in files.iterdir()) == ["a.png", "b.png"]
    assert (files / "a.png").read_text() == (files / "b.png").read_text()  # one publication, whole


# ----------------------------------------------------------------------------- issue 11 c: the index fits 1400 px

DATA_ERROR = ("cell index 3 (In [2]) `ds = lh.load_fashion_mnist()`: DataSourceError: could not load Fashion-MNIST; "
              "tried, in order:\n  - LABS_DATA_DIR /home/student/a/very/long/path/to/a/data/folder/fashion-mnist: "
              "no such folder\n  - download https://storage.googleapis.com/tensorflow/tf-keras-datasets/: "
              "ConnectionError: no network connection (host name could not be resolved)\nHow to get the data: ...")
LONG_PROVENANCE = [{"kind": "weights", "fallback": True, "summary": "VGG16: RANDOM weights (smoke profile; no "
                    "vgg16_weights_tf_dim_ordering_tf_kernels.h5 in $LABS_WEIGHTS_DIR or ~/.keras/models)"},
                   {"kind": "data", "summary": "Fashion-MNIST: 60,000 train / 10,000 test from debian-package "
                    "/usr/share/datasets/fashion-mnist, SHA-256 verified"}]


def page_width(page: Path, chromium: str, width: int = 1400) -> int:
    """The page's scrollWidth in a headless Chromium window ``width`` pixels wide."""
    probe = page.with_name(".probe.html")
    probe.write_text(page.read_text().replace(
        "</body>", "<script>document.title = 'W' + document.documentElement.scrollWidth</script></body>"))
    profile = page.with_name(".chromium-profile")  # its own profile: another Chromium's lock cannot block it
    dom = subprocess.run([chromium, *chromium_flags(), f"--user-data-dir={profile}", f"--window-size={width},900",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    return int(re.search(r"<title>W(\d+)</title>", dom).group(1))


def chromium_flags() -> tuple[str, ...]:
    from labhelpers.course import pdf

    return tuple(f for f in pdf.FLAGS if f not in ("--no-pdf-header-footer", "--run-all-compositor-stages-before-draw"))


def test_the_index_fits_a_1400_px_window(tmp_path):
    from PIL import Image

    from labhelpers.course import class_index, pdf

    try:
        chromium = pdf.find_chromium()
    except pdf.ChromiumNotFound:
        pytest.skip("no headless Chromium (apt-get install chromium)")
    Image.new("RGB", (320, 220), "steelblue").save(tmp_path / "thumb.png")
    stems = [f"0{i}_fashion_mnist_filters_feature_maps_gradcam" for i in range(8)]
    labs = [reports.LabResult(stem=stem, status="ok", title="Lab 01 — Inside a small CNN: filters, feature maps and "
                          "Grad-CAM on Fashion-MNIST", profile="smoke", seed=42, student="Ann Lee", group="A-21",
                          parameters={"image_dir": "/srv/images/ann/a/long/folder/of/photos/taken/by/the/student"},
                          started_at="2026-12-03T10:00:00+00:00", duration_s=123.4, html=f"{stem}.html",
                          executed=f"{stem}.ipynb", figures=f"{stem}_files", thumbnail="thumb.png",
                          provenance=LONG_PROVENANCE) for stem in stems]
    labs[1] = reports.LabResult(stem=stems[1], status="failed", profile="smoke", seed=42, duration_s=3.0,
                            executed=f"failed/{stems[1]}.ipynb", error={"message": DATA_ERROR})
    (tmp_path / "index.html").write_text(reports.render_index_html(labs, "smoke", "now", header={"student": "Ann Lee"}))
    assert page_width(tmp_path / "index.html", chromium) <= 1400
    rows = [{"student": "Александр Пушкин-Долгоруков", "group": "A-21", "index": "students/a/index.html",
             "labs": {stem: {"status": "failed", "error": DATA_ERROR, "duration_s": 1.0} for stem in stems}}]
    (tmp_path / "class_index.html").write_text(class_index.render_class_index_html(rows, stems, {"profile": "smoke"}, "now"))
    assert page_width(tmp_path / "class_index.html", chromium) <= 1400
