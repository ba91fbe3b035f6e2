"""``python -m labhelpers.nbtools check|sync``: an alias of :mod:`labhelpers.course.notebooks`."""

import sys

from .course.notebooks import STANDARD_PARAMETERS, main, new_notebook, problems, sync  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
