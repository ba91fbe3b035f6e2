"""The HTML of the runner: a report's title block and the index page of a report folder.

Everything a user typed (student, group, instructor, course, parameters, error messages) and every
path reaches the page escaped, and every href/src is URL-encoded: a name is text, never markup.
Also the runner's clock (``now``, ``today``). No TensorFlow, no papermill; only the standard library.
"""

from __future__ import annotations

import html
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from string import Template

STATUS_OK, STATUS_FAILED, STATUS_NOT_RUN = "ok", "failed", "not run"


def now() -> str:
    """The time a report says it ran or was updated: ISO 8601, UTC, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def today() -> str:
    """The date of a title block: ISO, local."""
    return datetime.now().astimezone().date().isoformat()


@dataclass
class LabResult:
    """One lab's entry on the index (paths relative to its report folder)."""

    stem: str
    status: str  # "ok", "failed" or "not run"
    notebook: str = ""  # the source notebook
    title: str = ""
    profile: str = ""
    seed: int | None = None
    student: str = ""
    group: str = ""
    instructor: str = ""
    course: str = ""
    parameters: dict = field(default_factory=dict)  # lab-specific parameters passed (image_dir, class_name, ...)
    started_at: str | None = None  # ISO time, UTC
    duration_s: float | None = None
    html: str | None = None  # the HTML report of this run (failed runs: failed/<stem>.html when renderable)
    executed: str | None = None  # the executed notebook (failed runs: failed/<stem>.ipynb)
    figures: str | None = None  # <stem>_files, when the lab saved figures
    key_figure: str | None = None  # the full-size key figure file, when the lab saved one
    key_figure_from: str | None = None  # "key_figure.png", "first saved image" or "last inline figure"
    thumbnail: str | None = None  # small picture of the key figure shown on the index
    provenance: list[dict] = field(default_factory=list)
    error: dict | None = None  # failed: cell, exec_count, ename, evalue, source, message
    previous_ok: dict | None = None  # failed: the last successful report, still in place

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def fallbacks(self) -> list[dict]:
        """Provenance records that say the lab did not get the real data or weights."""
        return [p for p in self.provenance if p.get("fallback")]

    @classmethod
    def from_dict(cls, data: dict) -> LabResult:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)
DEFAULT_COURSE = "CNN Visualization Labs"  # the default of `course` in the standard parameters cell

TITLE_FIELDS = (("student", "Student"), ("group", "Group"), ("instructor", "Instructor"), ("date", "Date"),
                ("profile", "Profile"), ("seed", "Seed"))


TITLE_TEXT_FIELDS = ("course", "title", "student", "group", "instructor")  # free text someone typed
# Bidirectional overrides and isolates: invisible, and they reorder what a reader sees.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_title_field(value) -> str:
    """A title-block field as single-line text: newlines, tabs, other control characters, line and
    paragraph separators and bidi overrides each become a space, runs of spaces collapse to one.
    (A blank line inside the block would end its HTML and let what follows render as Markdown.)"""
    text = "" if value is None else str(value)
    text = "".join(" " if ch.isspace() or ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
                   else ch for ch in text)
    return " ".join(text.split())


def clean_title_fields(fields: dict) -> dict:
    """``fields`` with every free-text field (course, title, student, group, instructor) cleaned."""
    return {key: clean_title_field(value) if key in TITLE_TEXT_FIELDS else value for key, value in fields.items()}


def title_block_html(fields: dict) -> str:
    """A report's title page: course, title, then student, group, instructor, date, profile, seed
    (empty ones left out). Inline styles, so it looks the same in Jupyter, nbconvert and a browser.
    One line of HTML with every field cleaned (``clean_title_field``) and escaped: in a markdown cell
    it stays one HTML block, and no field can end it or turn into a link or an image."""
    esc = html.escape

    def text(key: str) -> str:
        return esc(clean_title_field(fields.get(key)))

    rows = "".join(
        f'<tr style="background:transparent"><th style="text-align:right;padding:0.15em 1em 0.15em 0;'
        f'font-weight:normal;color:#555;border:none">{label}</th><td style="text-align:left;padding:0.15em 0;'
        f'font-weight:bold;border:none">{text(key)}</td></tr>'
        for key, label in TITLE_FIELDS if clean_title_field(fields.get(key)))
    parts = ['<div class="labs-title-block" style="text-align:center;border-top:3px double #444;'
             'border-bottom:3px double #444;padding:1.2em 1em;margin:0 0 1.5em 0">']
    if text("course"):
        parts.append('<div style="font-size:1.05em;letter-spacing:0.08em;text-transform:uppercase;color:#444">'
                     f'{text("course")}</div>')
    if text("title"):
        parts.append(f'<div style="font-size:1.8em;font-weight:bold;margin:0.4em 0 0.7em 0">{text("title")}</div>')
    parts += [f'<table style="margin:0 auto;border:none;border-collapse:collapse">{rows}</table>', "</div>"]
    return "".join(parts)


def quote_href(path: str) -> str:
    """A relative path as an href/src value: URL-encoded (``#``, ``?``, ``%``, spaces) and HTML-escaped."""
    return html.escape(urllib.parse.quote(path, safe="/"))


def _link(href: str | None, text: str) -> str:
    return f'<a href="{quote_href(href)}">{html.escape(text)}</a>' if href else ""


def _thumbnail_cell(lab: LabResult) -> str:
    esc = html.escape
    if lab.status == STATUS_OK and lab.thumbnail:
        why = f"key figure: {lab.key_figure_from or '?'}" + (f" ({lab.key_figure})" if lab.key_figure else "")
        return (f'<a href="{quote_href(lab.html or lab.thumbnail)}"><img class="thumb" src="{quote_href(lab.thumbnail)}" '
                f'alt="{esc(lab.stem)} key figure" title="{esc(why)}" loading="lazy"></a>')
    previous = lab.previous_ok or {}
    if lab.status == STATUS_FAILED and previous.get("thumbnail"):
        return (f'<a href="{quote_href(previous.get("html") or previous["thumbnail"])}"><img class="thumb old" '
                f'src="{quote_href(previous["thumbnail"])}" alt="{esc(lab.stem)}: last good key figure"></a>'
                '<div class="small">last good run</div>')
    return ""


def _row(lab: LabResult) -> str:
    esc = html.escape
    css = {STATUS_OK: "ok", STATUS_FAILED: "failed"}.get(lab.status, "notrun")
    status = f'<span class="badge {css}">{esc(lab.status)}</span>'
    if lab.fallbacks:
        status += ' <span class="badge fallback" title="ran on fallback data or weights">&#9888; fallback</span>'
    if lab.error:
        status += f'<div class="error">{esc(lab.error.get("message", ""))}</div>'
    stem = esc(lab.stem).replace("_", "_<wbr>")  # a long notebook name breaks at its underscores
    name = f"<b>{stem}</b>" + (f"<br>{esc(lab.title)}" if lab.title else "")
    duration = f"{lab.duration_s:.1f} s" if lab.duration_s is not None else ""
    run_with = []
    if lab.status != STATUS_NOT_RUN:
        run_with.append(f"profile {esc(lab.profile)}, seed {esc(str(lab.seed))}")
        who = " / ".join(x for x in (lab.student, lab.group) if x)
        if who:
            run_with.append(esc(who))
        for pname, value in (lab.parameters or {}).items():
            run_with.append(f'<span class="small">{esc(pname)} = {esc(str(value))}</span>')
        if lab.started_at:
            run_with.append(f'<span class="small">{esc(lab.started_at)}</span>')
    items = []
    for record in lab.provenance:
        text = f"<b>{esc(str(record.get('kind', '?')))}</b>: {esc(str(record.get('summary', '')))}"
        if record.get("fallback"):
            items.append(f'<li class="fallback-record"><span class="badge fallback">&#9888; FALLBACK</span> {text}</li>')
        else:
            items.append(f"<li>{text}</li>")
    provenance = f'<ul class="prov">{"".join(items)}</ul>' if items else ""
    links = []
    if lab.status == STATUS_OK:
        links += [_link(lab.html, "report"), _link(lab.executed, "notebook"), _link(lab.figures, "figures")]
    elif lab.status == STATUS_FAILED:
        links += [_link(lab.executed, "failed notebook"), _link(lab.html, "failed run (HTML)"),
                  _link((lab.error or {}).get("stderr_log"), "kernel stderr")]
        if lab.previous_ok:
            when = lab.previous_ok.get("started_at") or "an earlier run"
            links.append(f'{_link(lab.previous_ok.get("html"), "last good report")} '
                         f'<span class="small">({esc(when)})</span>')
    links_html = "<br>".join(x for x in links if x)
    return (f"<tr><td>{name}</td><td>{status}</td><td>{duration}</td><td>{'<br>'.join(run_with)}</td>"
            f"<td>{provenance}</td><td>{_thumbnail_cell(lab)}</td><td>{links_html}</td></tr>")


def render_page(title: str, header: dict, meta: str, banners: list[str], columns: list[str], rows: list[str],
                footer: str, table_class: str = "") -> str:
    """Fill ``report_index.html`` (shared by the lab index, ``table_class="lab-index"``, and the class
    index, ``"class-index"``: the class picks the column widths)."""
    from importlib.resources import files

    template = Template(files("labhelpers.course").joinpath("report_index.html").read_text(encoding="utf-8"))
    return template.substitute(
        title=html.escape(title), header=title_block_html(header), meta=meta, banners="\n".join(banners),
        thead="<tr>" + "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in columns) + "</tr>",
        rows="\n".join(rows), footer=footer, table_class=html.escape(table_class))


def render_index_html(labs: list[LabResult], profile: str, updated: str, header: dict | None = None) -> str:
    """The index page: a title block, then one row per lab, fallbacks and failures impossible to miss."""
    header = {"course": DEFAULT_COURSE, "profile": profile, **(header or {})}
    header.setdefault("title", f"Lab reports ({profile})")
    counts = {s: sum(1 for lab in labs if lab.status == s) for s in (STATUS_OK, STATUS_FAILED, STATUS_NOT_RUN)}
    banners = []
    with_fallback = [lab.stem for lab in labs if lab.fallbacks]
    if with_fallback:
        banners.append(f'<div class="banner">&#9888; {len(with_fallback)} lab(s) ran on fallback data or weights '
                       f'(subsets, random weights): {html.escape(", ".join(with_fallback))}. Their numbers are '
                       f"not the real results.</div>")
    failed = [lab.stem for lab in labs if lab.status == STATUS_FAILED]
    if failed:
        banners.append(f'<div class="failbanner">&#10007; failed: {html.escape(", ".join(failed))}</div>')
    meta = (f"profile <b>{html.escape(profile)}</b> &middot; updated {html.escape(updated)} &middot; "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    footer = ('Machine-readable: <a href="index.json">index.json</a>. Reports are replaced only when a lab runs '
              "and renders successfully; a failed run keeps the previous report.")
    return render_page(f"{header['course'] or DEFAULT_COURSE}: reports ({profile})", header, meta, banners,
                       ["Lab", "Status", "Duration", "Run with", "Data and weights", "Key figure", "Report"],
                       [_row(lab) for lab in labs], footer, table_class="lab-index")
