"""``make data`` (labhelpers.getdata): found, else Debian's package, else a download, else one screen.
No test installs or downloads anything: apt-get and the download are replaced by fakes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labhelpers import config, data, getdata
from labhelpers.data import fashion_mnist

REAL_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not all((REAL_DEBIAN / f).is_file() for f in data.FASHION_FILES),
    reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture(autouse=True)
def nowhere(tmp_path, monkeypatch):
    """No Fashion-MNIST anywhere, no network: the download fails as it does offline."""
    monkeypatch.delenv("LABS_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    monkeypatch.setenv(config.PROVENANCE_ENV, str(tmp_path / "provenance.jsonl"))
    monkeypatch.setattr(fashion_mnist, "_fashion_download", lambda target: (None, "no network (storage.googleapis.com)"))
    return tmp_path


def _link_real_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in data.FASHION_FILES:
        (folder / name).symlink_to(REAL_DEBIAN / name)


def test_nothing_works_one_screen_says_what_to_run_and_exit_2(monkeypatch, capsys, nowhere):
    monkeypatch.setattr(getdata, "_apt_prefix", lambda: None)
    assert getdata.ensure_fashion_mnist() == 2
    screen = capsys.readouterr().err
    assert "No lab has run" in screen
    # every place tried, with the reason, and every remedy a user can run
    assert str(nowhere / "no-debian") in screen and "keras" in screen
    assert "apt-get install dataset-fashion-mnist: not possible here" in screen
    assert "no network (storage.googleapis.com)" in screen
    for remedy in ("sudo apt-get install dataset-fashion-mnist", "make data", "export LABS_DATA_DIR=",
                   "t10k-labels-idx1-ubyte.gz"):
        assert remedy in screen
    assert len(screen.splitlines()) <= 25  # one screen


def test_a_failed_apt_install_is_retried_after_update_and_its_error_shown(monkeypatch, capsys):
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package dataset-fashion-mnist")

    monkeypatch.setattr(getdata, "_apt_prefix", lambda: [])
    monkeypatch.setattr(getdata.subprocess, "run", fake_run)
    assert getdata.ensure_fashion_mnist() == 2
    lock = ["-o", "DPkg::Lock::Timeout=120"]
    install = ["apt-get", *lock, "install", "--reinstall", "-y", "-qq", "dataset-fashion-mnist"]
    assert calls == [install, ["apt-get", *lock, "update", "-qq"], install]
    assert "Unable to locate package dataset-fashion-mnist" in capsys.readouterr().err


@needs_fashion
def test_apt_install_is_used_when_the_data_is_missing(monkeypatch, capsys, nowhere):
    debian = nowhere / "no-debian"

    def fake_apt(cmd, **kw):  # "installs" the package: the real files appear in the Debian folder
        _link_real_files(debian)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(getdata, "_apt_prefix", lambda: ["sudo", "-n"])
    monkeypatch.setattr(getdata.subprocess, "run", fake_apt)
    assert getdata.ensure_fashion_mnist() == 0
    assert f"installed from Debian (debian-package {debian})" in capsys.readouterr().out


@needs_fashion
def test_data_already_there_needs_no_install(monkeypatch, capsys, nowhere):
    _link_real_files(nowhere / "mine")
    monkeypatch.setenv("LABS_DATA_DIR", str(nowhere / "mine"))
    monkeypatch.setattr(getdata, "_apt_prefix", lambda: pytest.fail("apt-get asked for data that was there"))
    assert getdata.ensure_fashion_mnist() == 0
    assert "Fashion-MNIST found (LABS_DATA_DIR" in capsys.readouterr().out


def test_make_setup_passes_through_the_data_step():
    makefile = (config.repo_root() / "Makefile").read_text()
    setup_rule = makefile.split("\nsetup:", 1)[1].split("\n\n", 1)[0]
    assert "labhelpers.getdata" in setup_rule
    for target in ("test", "reports", "class"):
        assert f"\n{target}: setup" in makefile
