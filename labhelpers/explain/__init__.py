"""One implementation of each explanation method, one registry of them.

    from labhelpers.explain import Explainer, method_names, get_method
    ex = Explainer(model)                          # never changes `model`
    ex.gradcam(images, classes)                    # (N, H, W) in [0, 1]
    get_method("xgradcam")(model, images, classes)  # any registered method, f(model, images, classes)

Layout: ``base`` (the Method template and the registry), ``context`` (the one per-model cache of
rebuilt graphs and compiled steps), ``graph`` (in-graph resize / min-max / score, layer search),
``saliency``, ``cams``, ``attribution`` (each method a small subclass), ``explainer`` (the
Explainer facade and the functional helpers). Maps follow tf-keras-vis 0.8.7's conventions, so
results agree with it (tests/test_explain.py).
"""

from . import saliency, cams, attribution  # noqa: I001,F401  (registration order = the tables' column order)
from ..maps import EPSILON, normalize_maps, resize_maps
from .attribution import (
    IntegratedGradientsResult,
    OcclusionResult,
    integrated_gradients,
    occlusion,
)
from .base import METHODS, Method, get_method, method_names
from .cams import CAM, GradCAM, GradCAMPlusPlus, GradientCAM, GuidedGradCAM, LayerCAM, ScoreCAM, XGradCAM
from .context import ModelContext, context_for
from .explainer import Explainer, class_activation_map, feature_maps, gradcam, last_conv_layer_name
from .graph import GRADIENT_RULES
from .graph import normalize as _normalize  # noqa: F401  (the in-graph forms, for attacks and featurevis)
from .graph import resize as _resize  # noqa: F401
from .graph import score as _score  # noqa: F401
from .saliency import GuidedSaliency, RectifiedSaliency, Saliency, SmoothGrad

__all__ = [
    "CAM", "EPSILON", "Explainer", "GRADIENT_RULES", "GradCAM", "GradCAMPlusPlus", "GradientCAM", "GuidedGradCAM",
    "GuidedSaliency", "IntegratedGradientsResult", "LayerCAM", "METHODS", "Method", "ModelContext", "OcclusionResult",
    "RectifiedSaliency", "Saliency", "ScoreCAM", "SmoothGrad", "XGradCAM",
    "class_activation_map", "context_for", "feature_maps", "get_method", "gradcam", "integrated_gradients",
    "last_conv_layer_name", "method_names", "normalize_maps", "occlusion", "resize_maps",
]
