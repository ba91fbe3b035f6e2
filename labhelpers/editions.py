"""``python -m labhelpers.editions``: an alias of :mod:`labhelpers.course.editions` (student editions)."""

import sys

from .course.editions import main, stale_editions, student_notebook, write_editions  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
