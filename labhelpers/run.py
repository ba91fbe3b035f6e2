"""``python -m labhelpers.run``: an alias of the course's command line, :mod:`labhelpers.course.cli`.

The Makefile, README and CI call it, and ``lh.run_notebooks`` lives there too.
"""

import sys

from .course.cli import main, run_notebooks  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
