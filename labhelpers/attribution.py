"""Moved to :mod:`labhelpers.explain.attribution` (temporary re-export while attacks moves)."""

from .explain.attribution import *  # noqa: F401,F403
from .explain.attribution import _explainer  # noqa: F401
