"""Measure explanations instead of judging them by eye.

* Faithfulness: ``deletion_auc`` and ``insertion_auc`` (RISE, Petsiuk et al. 2018)
  remove or insert pixels in order of decreasing attribution and integrate the class
  probability over the fraction of pixels changed.
* Sanity: ``randomization_check`` (Adebayo et al. 2018) re-initialises the model's
  layers from the output backwards, on a copy, and measures how much each method's
  maps change (Spearman rank correlation, SSIM).
* Localisation: ``pointing_game`` (Zhang et al. 2016): does the map's maximum fall
  inside an object mask?
* Baselines every method should beat: ``random_map`` and ``edge_map``; and
  ``bootstrap_ci`` for the tables.

Maps are ``(N, H, W)`` arrays in any range; images are ``(N, H, W, C)`` arrays as
the model takes them. TensorFlow is only used through the model calls; data loading
is never imported here.

Layout: ``stats`` (checks, AUC, bootstrap), ``reference`` (random and edge maps), ``perturbation``
(deletion / insertion), ``localization`` (pointing game), ``randomization`` (the sanity check),
``similarity`` (Spearman, SSIM per row), ``methods`` (the registry's methods as callables).
"""

from __future__ import annotations

from .localization import pointing_game
from .methods import MapMethod, explanation_methods
from .perturbation import BASELINES, PerturbationResult, deletion_auc, faithfulness_table, insertion_auc
from .randomization import RandomizationResult, layer_groups, layers_with_weights, randomization_check
from .reference import edge_map, random_map
from .similarity import spearman_rows, ssim_rows
from .stats import area_under_curve, bootstrap_ci


def __getattr__(name):
    if name == "METHOD_NAMES":  # the methods of lab 06's tables, in their order (kept for old notebooks)
        from ..explain import method_names

        return tuple(method_names(tables=True))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BASELINES", "MapMethod", "PerturbationResult", "RandomizationResult", "area_under_curve", "bootstrap_ci",
    "deletion_auc", "edge_map", "explanation_methods", "faithfulness_table", "insertion_auc", "layer_groups",
    "layers_with_weights", "pointing_game", "random_map", "randomization_check", "spearman_rows", "ssim_rows",
]
