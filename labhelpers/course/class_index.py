"""A class run's outcome and its page: each student's labs, ``class_index.json`` and ``class_index.html``.

The class page (students x labs, each cell linking to that student's report) is rewritten after
every student, from the students' own ``index.json`` files. No TensorFlow.
"""

from __future__ import annotations

import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write_text
from .index import read_index
from .reports import (
    DEFAULT_COURSE,
    STATUS_FAILED,
    STATUS_NOT_RUN,
    STATUS_OK,
    LabResult,
    now,
    quote_href,
    render_page,
)

CLASS_INDEX_SCHEMA = 1
STUDENTS_FOLDER = "students"  # students/<slug>/ of the class folder: one report folder per student


@dataclass
class StudentRun:
    """One student's outcome in a class run."""

    student: str
    group: str
    slug: str
    index: str  # students/<slug>/index.html, relative to the class folder
    labs: list[LabResult] = field(default_factory=list)  # this run's labs
    error: str | None = None  # the whole task failed (not a notebook)
    ran_on: dict = field(default_factory=dict)  # host, pid, worker

    @property
    def ok(self) -> bool:
        return self.error is None and all(lab.ok for lab in self.labs)


@dataclass
class ClassRun:
    """A class run: where its index is and each student's outcome."""

    class_dir: Path
    students: list[StudentRun]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.students)

    @property
    def index(self) -> Path:
        return self.class_dir / "class_index.html"


def class_table(class_dir: Path, students: list[StudentRun], stems: list[str]) -> list[dict]:
    """Each student's row: their labs' latest status from their own index.json (links relative to the class folder)."""
    rows = []
    for student in students:
        folder = f"{STUDENTS_FOLDER}/{student.slug}"
        try:
            latest = {lab.stem: lab for lab in read_index(class_dir / folder)}
        except OSError as exc:  # one student's unreadable folder must not hide the others' reports
            print(f"warning: cannot read {class_dir / folder}/index.json ({exc})", file=sys.stderr)
            latest = {}
        labs = {}
        for stem in stems:
            lab = latest.get(stem)
            if lab is None:
                labs[stem] = {"status": STATUS_NOT_RUN}
                continue
            entry = {"status": lab.status, "duration_s": lab.duration_s, "started_at": lab.started_at,
                     "fallback": bool(lab.fallbacks)}
            for key in ("html", "executed", "thumbnail"):
                if getattr(lab, key):
                    entry[key] = f"{folder}/{getattr(lab, key)}"
            if lab.error:
                entry["error"] = lab.error.get("message", "")
            labs[stem] = entry
        rows.append({"student": student.student, "group": student.group, "slug": student.slug,
                     "index": student.index, "error": student.error, "ran_on": student.ran_on, "labs": labs})
    return rows


def write_class_index(class_dir: Path, students: list[StudentRun], stems: list[str], header: dict,
                      roster: Path | None = None) -> Path:
    """Write ``class_index.json`` and ``class_index.html`` (students x labs) into ``class_dir``."""
    rows = class_table(class_dir, students, stems)
    data = {"schema": CLASS_INDEX_SCHEMA, "profile": header.get("profile"), "updated_at": now(),
            "header": header, "roster": str(Path(roster).resolve()) if roster else None, "labs": stems, "students": rows}
    atomic_write_text(class_dir / "class_index.json", json.dumps(data, indent=2, default=str) + "\n")
    atomic_write_text(class_dir / "class_index.html", render_class_index_html(rows, stems, header, data["updated_at"]))
    return class_dir / "class_index.html"


def _cell(entry: dict) -> str:
    esc = html.escape
    css = {STATUS_OK: "ok", STATUS_FAILED: "failed"}.get(entry["status"], "notrun")
    badge = f'<span class="badge {css}">{esc(entry["status"])}</span>'
    href = entry.get("html") or entry.get("executed")
    text = f'<a href="{quote_href(href)}">{badge}</a>' if href else badge
    if entry.get("fallback"):
        text += ' <span class="badge fallback" title="ran on fallback data or weights">&#9888;</span>'
    if entry.get("duration_s") is not None:
        text += f'<div class="small">{entry["duration_s"]:.0f} s</div>'
    if entry.get("error"):
        text += f'<div class="error" title="{esc(entry["error"])}">{esc(entry["error"][:80])}</div>'
    return text


def render_class_index_html(rows: list[dict], stems: list[str], header: dict, updated: str) -> str:
    """The class page: a title block, then one row per student and one column per lab."""
    esc = html.escape
    header = {**header, "title": f"Class reports ({header.get('profile', '')})"}
    body = []
    for row in rows:
        who = f'<a href="{quote_href(row["index"])}"><b>{esc(row["student"])}</b></a>'
        if row.get("error"):
            who += f'<div class="error">{esc(row["error"])}</div>'
        cells = "".join(f"<td>{_cell(row['labs'][stem])}</td>" for stem in stems)
        body.append(f"<tr><td>{who}</td><td>{esc(row['group'])}</td>{cells}</tr>")
    total = len(rows) * len(stems)
    ok = sum(1 for row in rows for stem in stems if row["labs"][stem]["status"] == STATUS_OK)
    failed = [row["student"] for row in rows
              if row.get("error") or any(row["labs"][s]["status"] == STATUS_FAILED for s in stems)]
    banners = [f'<div class="failbanner">&#10007; failed: {esc(", ".join(failed))}</div>'] if failed else []
    meta = (f"profile <b>{esc(str(header.get('profile', '')))}</b> &middot; updated {esc(updated)} &middot; "
            f"{len(rows)} student(s), {ok} of {total} report(s) ok")
    footer = ('Machine-readable: <a href="class_index.json">class_index.json</a>. Each student\'s name links to '
              "their own index (provenance, key figures, logs).")
    return render_page(f"{header.get('course') or DEFAULT_COURSE}: class reports", header, meta, banners,
                           ["Student", "Group", *stems], body, footer, table_class="class-index")
