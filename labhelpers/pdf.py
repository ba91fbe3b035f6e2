"""``python -m labhelpers.pdf``: an alias of :mod:`labhelpers.course.pdf` (HTML reports to PDF)."""

import sys

from .course.pdf import html_to_pdf, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
