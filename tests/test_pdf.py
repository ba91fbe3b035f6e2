"""make pdf: finds Chromium or says how to get one; prints atomically."""

import stat
import sys

import pytest

from labhelpers.course import pdf


def _fake_chromium(tmp_path, body):
    exe = tmp_path / "bin" / "chromium"
    exe.parent.mkdir()
    exe.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_no_chromium_says_how_to_get_one(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("LABS_CHROMIUM", raising=False)
    assert pdf.main([str(tmp_path)]) == 3
    assert "apt-get install chromium" in capsys.readouterr().err


def test_prints_every_lab_report(monkeypatch, tmp_path):
    exe = _fake_chromium(tmp_path, "out = [a for a in sys.argv if a.startswith('--print-to-pdf=')][0]\n"
                                   "assert '--headless' in sys.argv and sys.argv[-1].startswith('file://')\n"
                                   "open(out.split('=', 1)[1], 'wb').write(b'%PDF-1.4 fake')")
    monkeypatch.setenv("LABS_CHROMIUM", str(exe))
    (tmp_path / "01_lab.html").write_text("<h1>one</h1>")
    (tmp_path / "index.html").write_text("<h1>index</h1>")  # the index is not a lab report
    assert pdf.main([str(tmp_path)]) == 0
    assert (tmp_path / "01_lab.pdf").read_bytes().startswith(b"%PDF")
    assert not (tmp_path / "index.pdf").exists()


def test_a_failed_print_leaves_no_pdf(monkeypatch, tmp_path):
    exe = _fake_chromium(tmp_path, "sys.stderr.write('boom'); sys.exit(1)")
    (tmp_path / "02_lab.html").write_text("<h1>two</h1>")
    with pytest.raises(RuntimeError, match="boom"):
        pdf.html_to_pdf(tmp_path / "02_lab.html", chromium=str(exe))
    assert list(tmp_path.glob("02_lab.pdf*")) == []
