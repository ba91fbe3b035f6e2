"""Google Colab: "Open in Colab" badges and the setup cell's install line.

The repository slug, branch and install ref live in one place, ``[tool.labs]`` of
``pyproject.toml``; this module rewrites every badge from them, idempotently:

    python -m labhelpers.colab            # rewrite badges in notebooks/, student/ and README.md
    python -m labhelpers.colab --check    # exit 1 when a badge points anywhere but its own notebook
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import tomllib

from .. import config
from ..files import atomic_path, atomic_write_text
from .notebooks import lab_notebooks, notebook_title

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_RE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\((?P<url>[^)]*)\)[ \t]*$", re.MULTILINE)
TABLE_BEGIN, TABLE_END = "<!-- labs-table:begin -->", "<!-- labs-table:end -->"
FOLDERS = ("notebooks", "student")  # the editions that carry a badge


@dataclass(frozen=True)
class CourseSettings:
    repository: str = "cnn-visualization-labs/cnn-visualization-labs"
    branch: str = "main"
    install_ref: str = "main"


def settings() -> CourseSettings:
    """``[tool.labs]`` of the checkout's pyproject.toml (defaults when installed without it)."""
    pyproject = config.repo_root() / "pyproject.toml"
    if not pyproject.exists():
        return CourseSettings()
    table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("labs", {})
    return CourseSettings(**{k: v for k, v in table.items() if k in CourseSettings.__dataclass_fields__})


def colab_url(relative_path: str, course: CourseSettings | None = None) -> str:
    course = course or settings()
    return f"https://colab.research.google.com/github/{course.repository}/blob/{course.branch}/{relative_path}"


def badge(relative_path: str, course: CourseSettings | None = None) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(relative_path, course)})"


def install_command(course: CourseSettings | None = None) -> str:
    course = course or settings()
    return f'pip install -q "labhelpers @ git+https://github.com/{course.repository}@{course.install_ref}"'


def _relative(path: Path) -> str:
    return path.resolve().relative_to(config.repo_root()).as_posix()


def rewrite_badge(path: Path, course: CourseSettings | None = None) -> bool:
    """Put exactly one badge, pointing at this notebook, atop its first markdown cell."""
    nb = nbformat.read(path, as_version=4)
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first is None:
        raise ValueError(f"{path}: no markdown cell to carry the Colab badge")
    body = BADGE_RE.sub("", first.source).lstrip("\n")
    new = badge(_relative(path), course) + "\n\n" + body
    if new == first.source:
        return False
    first.source = new
    with atomic_path(path) as tmp:
        nbformat.write(nb, tmp)
    return True


def badge_problems(path: Path, course: CourseSettings | None = None) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    urls = BADGE_RE.findall(first.source) if first else []
    want = colab_url(_relative(path), course)
    if urls != [want]:
        return [f"{path}: badge(s) {urls or 'none'} instead of {want}"]
    return []


def readme_table(notebooks: list[Path], course: CourseSettings | None = None) -> str:
    rows = ["| lab | notebook | open |", "| --- | --- | --- |"]
    for path in notebooks:
        rel = _relative(path)
        rows.append(f"| {notebook_title(path) or path.stem} | [`{path.name}`]({rel}) | {badge(rel, course)} |")
    return "\n".join([TABLE_BEGIN, *rows, TABLE_END])


def rewrite_readme(readme: Path, notebooks: list[Path], course: CourseSettings | None = None) -> bool:
    text = readme.read_text(encoding="utf-8")
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ValueError(f"{readme}: add the markers {TABLE_BEGIN} and {TABLE_END} where the lab table goes")
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    new = head + readme_table(notebooks, course) + tail
    if new == text:
        return False
    atomic_write_text(readme, new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labhelpers.colab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report badges that are wrong")
    args = parser.parse_args(argv)
    course = settings()
    paths = [p for folder in FOLDERS for p in lab_notebooks(folder)]
    if args.check:
        found = [p for path in paths for p in badge_problems(path, course)]
        print("\n".join(found) or f"{len(paths)} badges point at their own notebooks")
        return 1 if found else 0
    for path in paths:
        print(f"{'updated' if rewrite_badge(path, course) else 'unchanged'}: {_relative(path)}")
    readme = config.repo_root() / "README.md"
    print(f"{'updated' if rewrite_readme(readme, lab_notebooks(), course) else 'unchanged'}: README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
