"""``python -m labhelpers.nbtools check|sync``: an alias of :mod:`labhelpers.course.conventions`."""

import sys

from .course.conventions import SETUP_SOURCE, main, new_notebook, problems, sync  # noqa: F401
from .course.notebooks import STANDARD_NAMES, STANDARD_PARAMETERS  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
