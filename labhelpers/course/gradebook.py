"""The gradebook of a graded batch: a CSV, an HTML page and one feedback file per student.

Written by :mod:`labhelpers.course.grading`. Everything is sorted and free of time stamps and timings,
so that the same submissions give the same files on a rerun; every text on the HTML page is escaped
(student names, file names and error messages come from the submissions).
"""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path

from ..files import atomic_write_text

# status -> what it means (the order is the order a status list is written in)
STATUS_TEXT = {
    "ok": "ran to the end without an error",
    "renamed file": "the notebook was submitted under another name; graded all the same",
    "missing cell": "a question's check cell was deleted; its tests ran at the end of the notebook",
    "syntax error": "a cell does not parse (SyntaxError, IndentationError); the rest of the notebook ran",
    "error": "a cell raised an exception; the rest of the notebook ran",
    "timeout": "a cell ran over the per-cell time limit (an infinite loop?) and was interrupted",
    "notebook timeout": "the notebook ran over its time limit and was stopped; questions after it score 0",
    "wrong lab": "the notebook is another lab's; not run",
    "missing notebook": "no notebook found in the student's folder",
    "not a notebook": "the file is not a Jupyter notebook (or is a link); refused",
    "too large": "the file is over the size limit; refused",
    "grader failure": "the grader itself failed on this notebook; grade it by hand",
}


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _safe_file(student: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", student).strip("._") or "student"


def feedback_names(graded) -> dict[str, str]:
    """A distinct, file-system-safe feedback file name per student."""
    names, used = {}, set()
    for g in graded:
        base, n = _safe_file(g.student), 1
        name = f"{base}.txt"
        while name in used:
            n += 1
            name = f"{base}-{n}.txt"
        used.add(name)
        names[g.student + "\0" + g.file] = name
    return names


def rows(assigned, graded) -> tuple[list[str], list[list[str]]]:
    auto = [q.name for q in assigned.auto_questions]
    manual = [q.name for q in assigned.manual_questions]
    header = ["student", "file", *auto, *manual, "auto_total", "auto_possible", "status"]
    possible = {q.name: q.points for q in assigned.questions}
    table = []
    for g in sorted(graded, key=lambda g: (g.student, g.file)):
        scores = [g.questions.get(name, {}).get("score", 0.0) for name in auto]
        top = sum(g.questions.get(name, {}).get("possible", possible.get(name) or 0.0) for name in auto)
        table.append([g.student, g.file, *map(_number, scores), *[""] * len(manual), _number(sum(scores)),
                      _number(top), "; ".join(g.statuses)])
    return header, table


def gradebook_csv(assigned, graded) -> str:
    header, table = rows(assigned, graded)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    return buffer.getvalue()


def gradebook_html(assigned, graded, feedback: dict[str, str]) -> str:
    header, table = rows(assigned, graded)
    esc = html.escape
    by_key = {(g.student, g.file): g for g in graded}
    lines = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Gradebook: {esc(assigned.name)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}"
             "tr.problem td{background:#fff3f0}</style></head><body>",
             f"<h1>Gradebook: {esc(assigned.name)}</h1>",
             "<p>Automatic scores from the hidden and public tests; the free-text questions ("
             + esc(", ".join(q.name for q in assigned.manual_questions) or "none")
             + ") are graded by hand with the rubric of the instructor edition.</p>",
             "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "<th>feedback</th></tr></thead><tbody>"]
    for row in table:
        g = by_key[(row[0], row[1])]
        css = "" if g.statuses == ["ok"] else ' class="problem"'
        link = feedback[g.student + "\0" + g.file]
        lines.append(f"<tr{css}>" + "".join(f"<td>{esc(cell)}</td>" for cell in row)
                     + f'<td><a href="feedback/{esc(link, quote=True)}">{esc(link)}</a></td></tr>')
    lines += ["</tbody></table>", "<h2>Statuses</h2>", "<dl>"]
    lines += [f"<dt>{esc(s)}</dt><dd>{esc(text)}</dd>" for s, text in STATUS_TEXT.items()]
    lines += ["</dl>", "</body></html>", ""]
    return "\n".join(lines)


def feedback_text(assigned, g) -> str:
    out = [f"Feedback: {assigned.name}", f"Student: {g.student}", f"File: {g.file}",
           f"Status: {'; '.join(g.statuses)}"]
    out += [f"  {s}: {STATUS_TEXT.get(s, '')}" for s in g.statuses]
    out += [f"  - {note}" for note in g.notes]
    for q in assigned.auto_questions:
        result = g.questions.get(q.name)
        out.append("")
        if result is None:
            out.append(f"{q.name}: 0 (not run)")
            continue
        out.append(f"{q.name}: {_number(result['score'])} of {_number(result['possible'])}")
        out += ["    " + line for line in str(result.get("public", "")).splitlines()]
        if result.get("hidden_total"):
            out.append(f"    hidden tests: {result['hidden_passed']} of {result['hidden_total']} passed")
            out += [f"    - {message}" for message in result.get("hidden_messages", [])]
    manual = assigned.manual_questions
    if manual:
        out += ["", "Graded by hand: " + ", ".join(f"{q.name} ({_number(q.points)} points)" for q in manual)]
    return "\n".join(out) + "\n"


def write_gradebook(out: Path, assigned, graded) -> None:
    out = Path(out)
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    feedback = feedback_names(graded)
    for old in (out / "feedback").glob("*.txt"):
        if old.name not in feedback.values():
            old.unlink()
    for g in graded:
        atomic_write_text(out / "feedback" / feedback[g.student + "\0" + g.file], feedback_text(assigned, g))
    atomic_write_text(out / "gradebook.csv", gradebook_csv(assigned, graded))
    atomic_write_text(out / "gradebook.html", gradebook_html(assigned, graded, feedback))
