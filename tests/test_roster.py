"""Class-wide runs from a roster: checks before anything runs, the local pool, and a real Dask
cluster on loopback (tiny notebooks, no TensorFlow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labhelpers.course import class_index, cli, reports, roster
from labhelpers.course.index import update_index
from labhelpers.course.notebooks import STANDARD_PARAMETERS

HEADER = "student,group,image_folder,class_name\n"


def write_lab(path: Path, *cells: str, extra_parameters: str = "") -> Path:
    """A course-style notebook: title, the standard parameters cell (+ a lab's own), then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(STANDARD_PARAMETERS + extra_parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


# The lab of the run tests: reports who ran it (the kernel's parent is the process that ran the
# task), its parameters, and fails on purpose for class_name "broken".
WHO_RAN_ME = ('import os\nprint(f"RAN-BY {os.getppid()} | {student} | {group} | {image_dir} | {class_name} | '
              '{instructor}")\nassert class_name != "broken", "broken on purpose"')


def stdout_of(executed: Path) -> str:
    nb = nbformat.read(executed, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def ran_by(executed: Path) -> list[str]:
    line = next(ln for ln in stdout_of(executed).splitlines() if ln.startswith("RAN-BY "))
    return line[len("RAN-BY "):].split(" | ")


@pytest.fixture
def course(tmp_path):
    """Two labs (only 01 declares image_dir / class_name; 02 is only checked, never run), and an image
    folder for a roster."""
    labs = tmp_path / "labs"
    labs.mkdir()
    first = write_lab(labs / "01_who.ipynb", WHO_RAN_ME,
                      extra_parameters='\nimage_dir = ""\nclass_name = "default"')
    second = write_lab(labs / "02_plain.ipynb", "print('plain')")
    (tmp_path / "class" / "images" / "ann").mkdir(parents=True)
    return tmp_path, [first, second]


# ----------------------------------------------------------------------------- the roster file


def test_roster_reads_names_groups_and_folders(tmp_path):
    (tmp_path / "imgs" / "ann").mkdir(parents=True)
    path = tmp_path / "roster.csv"
    path.write_text("\ufeffstudent, group ,image_folder,class_name,email\n"  # a BOM, padded names, an extra column
                    "Ann Lee,A-21,imgs/ann,goldfish,ann@uni.edu\n\n"
                    " José Núñez ,,,,\n", encoding="utf-8")
    ann, jose = roster.read_roster(path)
    assert (ann.student, ann.group, ann.image_dir, ann.class_name, ann.slug, ann.row) == (
        "Ann Lee", "A-21", (tmp_path / "imgs" / "ann").resolve(), "goldfish", "ann-lee", 2)
    assert ann.parameters() == {"image_dir": str((tmp_path / "imgs" / "ann").resolve()), "class_name": "goldfish"}
    assert (jose.student, jose.group, jose.image_dir, jose.slug, jose.row) == ("José Núñez", "", None, "jose-nunez", 4)
    assert jose.parameters() == {}  # blank: the labs keep their defaults
    assert roster.slugify("李 华") == "李-华"
    path.write_text("student;group;image_folder;class_name\nAnn Lee;A-21;;tabby\n")  # a spreadsheet's semicolons
    assert [(e.student, e.group, e.class_name) for e in roster.read_roster(path)] == [("Ann Lee", "A-21", "tabby")]


@pytest.mark.parametrize("rows, said", [
    ("student,group,class_name\nAnn,A,x\n", r"row 1 \(the header\): missing column\(s\) 'image_folder'"),
    (HEADER + "Ann,A,,\n,B,,\n", r"row 3, column 'student': empty student name"),
    (HEADER + "Ann Lee,A,,\nBob,B,,\nann lee,C,,\n", r"row 4, column 'student': duplicate student 'ann lee' "
                                                      r"\(already on row 2\)"),
    (HEADER + "Ann Lee,A,,\nAnn-Lee,B,,\n", r"row 3, column 'student': .*share the report folder students/ann-lee"),
    (HEADER + "Ann,A,,\nBob,B,pics/bob,\n", r"row 3, column 'image_folder': 'pics/bob' does not exist"),
    (HEADER + "Ann,A,roster.csv,\n", r"row 2, column 'image_folder': 'roster.csv' is not a folder"),
    (HEADER, "no students"),
])
def test_bad_roster_is_a_clear_error_naming_row_and_column(tmp_path, rows, said):
    path = tmp_path / "roster.csv"
    path.write_text(rows)
    with pytest.raises(roster.RosterError, match=said) as error:
        roster.read_roster(path)
    assert str(path) in str(error.value)


def test_bad_roster_stops_the_command_before_anything_runs(course, capsys):
    root, notebooks = course
    bad = root / "class" / "roster.csv"
    bad.write_text(HEADER + "Ann,A,images/ann,\nBob,B,images/bob,\n")
    out = root / "out"
    args = ["run", "--roster", str(bad), *map(str, notebooks), "--output-dir", str(out)]
    assert cli.main(args) == 2
    assert "row 3, column 'image_folder': 'images/bob' does not exist" in capsys.readouterr().err
    assert cli.main([*args[:3], "--student", "Ann", "--output-dir", str(out)]) == 2
    assert "come from the roster" in capsys.readouterr().err
    assert cli.main([str(notebooks[0]), "--scheduler", "tcp://127.0.0.1:1", "--output-dir", str(out)]) == 2
    assert "--scheduler needs --roster" in capsys.readouterr().err
    assert not out.exists()


def test_unreachable_scheduler_is_a_clear_error_before_any_output(course, monkeypatch, capsys):
    pytest.importorskip("distributed")
    root, notebooks = course
    path = root / "class" / "roster.csv"
    path.write_text(HEADER + "Ann,A,,\n")
    monkeypatch.setattr(roster, "DASK_CONNECT_TIMEOUT", 1)
    out = root / "out"
    assert cli.main(["run", "--roster", str(path), str(notebooks[0]), "--scheduler", "tcp://127.0.0.1:9",
                     "--output-dir", str(out)]) == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not out.exists()


def test_example_roster_is_valid():
    from labhelpers import config

    entries = roster.read_roster(config.repo_root() / "data" / "roster_example.csv")
    assert len(entries) >= 2 and len({e.slug for e in entries}) == len(entries)


# ----------------------------------------------------------------------------- running a class


def test_local_pool_runs_each_student_into_their_folder(course):
    """Through the command line: two students at a time, one of them with a failing lab. (That a lab which
    does not declare image_dir / class_name never gets them is tested in test_run.py.)"""
    root, notebooks = course
    path = root / "class" / "roster.csv"
    path.write_text(HEADER + "Ann Lee,A-21,images/ann,goldfish\nBob Stone,B-02,,broken\n")
    out = root / "out"
    done = subprocess.run([sys.executable, "-m", "labhelpers.run", "run", "--roster", str(path), str(notebooks[0]),
                           "-j", "2", "--instructor", "Dr. Ada Byron", "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 1, done.stdout + done.stderr  # Bob's lab 01 failed
    class_dir = out / "smoke"
    ann, bob = class_dir / "students" / "ann-lee", class_dir / "students" / "bob-stone"
    assert (ann / "index.html").is_file() and (bob / "index.html").is_file()
    assert (ann / "01_who.html").is_file() and (bob / "failed" / "01_who.ipynb").is_file(), done.stdout + done.stderr
    ppid, student, group, image_dir, class_name, instructor = ran_by(ann / "01_who.ipynb")
    assert (student, group, image_dir, class_name, instructor) == (
        "Ann Lee", "A-21", str((root / "class" / "images" / "ann").resolve()), "goldfish", "Dr. Ada Byron")
    assert ran_by(bob / "failed" / "01_who.ipynb")[1:5] == ["Bob Stone", "B-02", "", "broken"]  # blank folder: default
    title = nbformat.read(ann / "01_who.ipynb", 4).cells[0].metadata["labs"]
    assert (title["role"], title["student"], title["group"], title["instructor"]) == (
        "title-block", "Ann Lee", "A-21", "Dr. Ada Byron")

    data = json.loads((class_dir / "class_index.json").read_text())
    assert data["labs"] == ["01_who"] and data["header"]["instructor"] == "Dr. Ada Byron"
    rows = {row["student"]: row for row in data["students"]}
    assert rows["Ann Lee"]["labs"]["01_who"]["status"] == "ok"
    assert rows["Ann Lee"]["labs"]["01_who"]["html"] == "students/ann-lee/01_who.html"
    assert rows["Bob Stone"]["labs"]["01_who"]["status"] == "failed"
    assert "broken on purpose" in rows["Bob Stone"]["labs"]["01_who"]["error"]
    assert int(ppid) == rows["Ann Lee"]["ran_on"]["pid"] != os.getpid()  # ran in a pool process
    page = (class_dir / "class_index.html").read_text()
    assert 'href="students/ann-lee/index.html"' in page and 'href="students/ann-lee/01_who.html"' in page
    assert 'href="students/bob-stone/failed/01_who.html"' in page and "failed: Bob Stone" in page
    assert "Dr. Ada Byron" in page[:page.index("</table>")]  # in the title block
    assert "student Ann Lee: ok" in done.stdout and "1 of 2 student(s) ok" in done.stdout


@pytest.fixture
def dask_cluster():
    """A real two-process Dask cluster on loopback; closed even when the test fails."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            pids = set(client.run(os.getpid).values())
        yield cluster, pids
    finally:
        cluster.close()


def test_dask_cluster_runs_one_task_per_student(course, dask_cluster):
    cluster, worker_pids = dask_cluster
    root, notebooks = course
    path = root / "class" / "roster.csv"
    path.write_text(HEADER + "Ann Lee,A-21,images/ann,goldfish\nBob Stone,B-02,,\n")
    outcome = roster.run_roster(path, notebooks[:1], instructor="Dr. Ada Byron", output_dir=root / "out",
                                scheduler=cluster.scheduler_address, cell_timeout=120)
    assert outcome.ok, [(s.student, s.error, [lab.error for lab in s.labs]) for s in outcome.students]
    assert outcome.index == root / "out" / "smoke" / "class_index.html" and outcome.index.is_file()
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    for student in outcome.students:
        executed = outcome.class_dir / "students" / student.slug / "01_who.ipynb"
        assert (executed.with_suffix(".html")).is_file()
        assert int(ran_by(executed)[0]) in worker_pids  # the kernel was started by a Dask worker process
        assert student.ran_on["pid"] in worker_pids and student.ran_on["worker"] != ""
    assert ran_by(outcome.class_dir / "students" / "ann-lee" / "01_who.ipynb")[3:5] == [
        str((root / "class" / "images" / "ann").resolve()), "goldfish"]
    assert ran_by(outcome.class_dir / "students" / "bob-stone" / "01_who.ipynb")[3:5] == ["", "default"]
    rows = json.loads((outcome.class_dir / "class_index.json").read_text())["students"]
    assert [row["labs"]["01_who"]["status"] for row in rows] == ["ok", "ok"]


# ----------------------------------------------------------------------------- hostile rosters (issue 13)

LONG_NAME = "Александр" * 14 + " Пушкин"  # 266 bytes of UTF-8


def test_an_over_long_name_gets_a_bounded_folder_and_the_class_runs_on(course):
    root, notebooks = course
    assert len(LONG_NAME.encode()) > 255
    path = root / "class" / "roster.csv"
    path.write_text(HEADER + f"Ann Lee,A,,\n{LONG_NAME},B,,\n{LONG_NAME[:-1]}X,C,,\n", encoding="utf-8")
    ann, long_one, other = roster.read_roster(path)
    for entry in (long_one, other):
        assert len(entry.slug.encode()) <= roster.SLUG_MAX_BYTES and re.search(r"-[0-9a-f]{8}$", entry.slug)
    assert long_one.slug != other.slug  # same beginning, two folders
    outcome = roster.run_roster(path, notebooks[1:], output_dir=root / "out")  # one pool worker, three students
    assert outcome.ok, [(s.student, s.error) for s in outcome.students]
    rows = json.loads((outcome.class_dir / "class_index.json").read_text())["students"]
    assert [row["labs"]["02_plain"]["status"] for row in rows] == ["ok", "ok", "ok"]
    assert (outcome.class_dir / "students" / long_one.slug / "02_plain.html").is_file()


def test_an_unreadable_student_folder_hides_no_other_report(tmp_path, capsys):
    (tmp_path / "students" / "ann").mkdir(parents=True)
    update_index(tmp_path / "students" / "ann", "smoke", [reports.LabResult(stem="01_x", status="ok", html="01_x.html")],
                     [])
    students = [class_index.StudentRun(student="Ann", group="", slug="ann", index="students/ann/index.html"),
                class_index.StudentRun(student="Long", group="", slug="x" * 300, index="students/xxx/index.html")]
    rows = class_index.class_table(tmp_path, students, ["01_x"])  # the second folder name is too long for the OS
    assert [row["labs"]["01_x"]["status"] for row in rows] == ["ok", "not run"]
    assert "cannot read" in capsys.readouterr().err


def test_a_name_with_newlines_is_one_line(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(HEADER + '"Ann Lee\n\n[x](javascript:alert(1))",A\tB,,\n', encoding="utf-8")
    (entry,) = roster.read_roster(path)
    assert (entry.student, entry.group) == ("Ann Lee [x](javascript:alert(1))", "A B")


def test_roster_encodings(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_bytes((HEADER + "José Núñez,A,,\n").encode("latin-1"))
    with pytest.raises(roster.RosterError, match=r"roster.csv row 2: not UTF-8 text .* save the roster as UTF-8"):
        roster.read_roster(path)
    path.write_bytes((HEADER + "José Núñez,A,,\n").encode("utf-16"))  # with its BOM, as Excel writes it
    assert [e.student for e in roster.read_roster(path)] == ["José Núñez"]
    path.write_bytes((HEADER + "José Núñez,A,,\n").encode("utf-16-le"))  # no BOM: not guessable
    with pytest.raises(roster.RosterError, match="save the roster as UTF-8"):
        roster.read_roster(path)
