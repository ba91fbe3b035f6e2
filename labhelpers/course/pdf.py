"""Print HTML reports to PDF with a headless Chromium, when one is installed.

    python -m labhelpers.pdf [reports/smoke]      # every <lab>.html there -> <lab>.pdf

No TensorFlow. Chromium is optional: without it, the command says how to get one and
exits with status 3, and the HTML reports stay the deliverable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..files import atomic_path
from .notebooks import lab_files

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
HOW_TO_GET = (
    "no headless Chromium found (looked for $LABS_CHROMIUM and " + ", ".join(CANDIDATES) + " on PATH).\n"
    "Install one: Debian/Ubuntu `sudo apt-get install chromium`, macOS `brew install --cask chromium`,\n"
    "or point $LABS_CHROMIUM at a Chrome/Chromium executable. The HTML reports are complete without it."
)
# Flags for a closed network and a root user: no sandbox, no background fetches, a fresh profile.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw")


class ChromiumNotFound(RuntimeError):
    pass


def find_chromium() -> str:
    explicit = os.environ.get("LABS_CHROMIUM")
    if explicit:
        if shutil.which(explicit):
            return shutil.which(explicit)
        raise ChromiumNotFound(f"$LABS_CHROMIUM={explicit!r} is not an executable")
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumNotFound(HOW_TO_GET)


def html_to_pdf(html: Path, pdf: Path | None = None, chromium: str | None = None, timeout: float = 120) -> Path:
    """Print one HTML file to PDF; the PDF appears only when printing succeeded."""
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"{html}: no such HTML report (run `make reports` first)")
    pdf = Path(pdf or html.with_suffix(".pdf")).resolve()
    chromium = chromium or find_chromium()
    with tempfile.TemporaryDirectory() as profile, atomic_path(pdf, suffix=".pdf") as partial:
        command = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={partial}", html.as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0 or not partial.exists() or partial.stat().st_size == 0:
            raise RuntimeError(f"{chromium} could not print {html} (exit {result.returncode}): "
                               f"{result.stderr.strip()[-500:]}")
    return pdf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labhelpers.pdf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=Path("reports/smoke"))
    args = parser.parse_args(argv)
    try:
        chromium = find_chromium()
    except ChromiumNotFound as exc:
        print(f"make pdf: {exc}", file=sys.stderr)
        return 3
    reports = lab_files(args.folder.resolve(), ".html")
    if not reports:
        print(f"make pdf: no lab reports in {args.folder} (run `make reports` first)", file=sys.stderr)
        return 2
    failed = 0
    for html in reports:
        try:
            print(f"pdf: {html_to_pdf(html, chromium=chromium)}")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            failed += 1
            print(f"pdf: FAILED {html}: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
