"""Under nbval (``make test``), a notebook cell also fails when it writes to stderr or shows a warning.

A report is read by students: a pink stderr box or a "SomethingWarning" in it is noise at best and a hidden
problem at worst. Fallbacks are said on stdout, in words (issue 11). nbval keeps each executed cell's outputs
in ``item.test_outputs``; this hook reads them after the cell ran.
"""

import re

import pytest

WARNING = re.compile(r"\b[A-Z][A-Za-z]*Warning\b:")


def stderr_or_warning(outputs) -> list[str]:
    """The stderr text and the warning lines among one cell's outputs."""
    found = []
    for out in outputs or []:
        if out.get("output_type") != "stream":
            continue
        text = out.get("text", "")
        if out.get("name") == "stderr" and text.strip():
            found.append(f"stderr: {text.strip()[:400]}")
        elif WARNING.search(text):
            found.append(f"warning on stdout: {text.strip()[:400]}")
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.passed or not hasattr(item, "test_outputs"):
        return
    found = stderr_or_warning(item.test_outputs)
    if found:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid}: the cell wrote to stderr or showed a warning; a report must not:\n"
                           + "\n".join(found))
