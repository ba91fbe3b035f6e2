"""``python -m labhelpers.colab``: an alias of :mod:`labhelpers.course.colab` (Colab badges, README table)."""

import sys

from .course.colab import badge, badge_problems, colab_url, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
