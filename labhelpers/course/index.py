"""A report folder's index: ``index.json`` (the record) and ``index.html`` (the page), kept together.

Each run merges its labs into the index under the report folder's lock; labs not run this time
keep their last entry, and a failed run keeps a pointer to the last good report. No TensorFlow.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..files import atomic_write_text
from .notebooks import display_path, lab_notebooks
from .reports import STATUS_FAILED, STATUS_NOT_RUN, STATUS_OK, LabResult, now, render_index_html
from .staging import report_lock

INDEX_SCHEMA = 1


def _read_index_data(report_dir: str | Path) -> dict:
    path = Path(report_dir) / "index.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["labs"] = [LabResult.from_dict(entry) for entry in data.get("labs", [])]
        return data
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        print(f"warning: ignoring unreadable {path} ({exc}); the index starts afresh", file=sys.stderr)
        return {}


def read_index(report_dir: str | Path) -> list[LabResult]:
    """The labs listed in ``<report_dir>/index.json`` (empty when there is none)."""
    return _read_index_data(report_dir).get("labs", [])


def _merge(previous: dict[str, LabResult], new: LabResult) -> LabResult:
    """A failed run keeps a pointer to the last successful report (which stays in place)."""
    if new.status == STATUS_FAILED:
        old = previous.get(new.stem)
        if old is not None and old.status == STATUS_OK:
            new.previous_ok = {k: getattr(old, k)
                               for k in ("html", "executed", "started_at", "seed", "duration_s", "thumbnail")}
        elif old is not None:
            new.previous_ok = old.previous_ok
    return new


def update_index(report_dir: Path, profile: str, results: list[LabResult], folders: list[Path],
                 header: dict | None = None) -> list[LabResult]:
    """Merge ``results`` into ``index.json`` and rewrite it and ``index.html``.

    Labs not run this time keep their last entry; notebooks in ``folders`` that never ran
    are listed as "not run". ``header``: the title-block fields shown at the top (course,
    student, group, instructor, date, profile, seed); None keeps the previous ones.
    """
    report_dir = Path(report_dir)
    with report_lock(report_dir):
        previous = _read_index_data(report_dir)
        labs = {lab.stem: lab for lab in previous.get("labs", [])}
        for result in results:
            labs[result.stem] = _merge(labs, result)
        for folder in folders:
            for path in lab_notebooks(folder):
                labs.setdefault(path.stem, LabResult(stem=path.stem, status=STATUS_NOT_RUN,
                                                     notebook=display_path(path), profile=profile))
        ordered = [labs[stem] for stem in sorted(labs)]
        header = header if header is not None else previous.get("header")
        data = {"schema": INDEX_SCHEMA, "profile": profile, "updated_at": now(), "header": header,
                "labs": [asdict(lab) for lab in ordered]}
        atomic_write_text(report_dir / "index.json", json.dumps(data, indent=2, default=str) + "\n")
        atomic_write_text(report_dir / "index.html", render_index_html(ordered, profile, data["updated_at"],
                                                                       header=header))
    return ordered
