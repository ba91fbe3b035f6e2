"""``python -m labhelpers.run``: an alias of the course's command line, :mod:`labhelpers.course.cli`.

The Makefile, README and CI call it; ``run_notebooks`` (the Python API) lives in
:mod:`labhelpers.course.runner`.
"""

import sys

from .course.cli import main
from .course.runner import run_notebooks  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
