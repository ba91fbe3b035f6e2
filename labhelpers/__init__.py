"""CNN Visualization Labs: the one home of the course's reusable code.

``import labhelpers`` is cheap: it does not import TensorFlow. Each public name is
loaded from its module on first use (PEP 562), so ``labhelpers.course`` and
``labhelpers.plotting`` stay TensorFlow-free while notebooks can still write
``import labhelpers as lh; lh.gradcam(...)``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # config: profiles, seeds, paths (no TensorFlow)
    "Profile": "config",
    "PROFILES": "config",
    "resolve_profile": "config",
    "set_seed": "config",
    "cache_dir": "config",
    "data_dir": "config",
    "weights_dir": "config",
    "in_colab": "config",
    # the one Keras alias: Keras 3, or tf-keras when TF_USE_LEGACY_KERAS=1
    "keras": "kerasapi",
    # session: the shared setup cell of every notebook
    "setup": "session",
    "LabSession": "session",
    # data: offline-first loaders with provenance
    "Dataset": "data",
    "as_float_images": "data",
    "Provenance": "data",
    "DataSourceError": "data",
    "FASHION_CLASSES": "data",
    "load_fashion_mnist": "data",
    "load_mnist": "data",
    "sample_images": "data",
    "load_images": "data",
    "imagenet_class_id": "data",
    "imagenet_class_name": "data",
    "imagenet_class_names": "data",
    "decode_predictions": "data",
    # models: builders, cached training, VGG16
    "build_fashion_cnn": "models",
    "build_mnist_cam1": "models",
    "build_mnist_cam2": "models",
    "train_or_load": "models",
    "load_vgg16": "models",
    "load_xception": "models",
    "WeightsNotFoundError": "models",
    "PretrainedInfo": "models",
    # efficientnet: a real ImageNet CNN offline (EfficientNet-Lite0), and the labs' choice of CNN
    "build_efficientnet_lite0": "models.efficientnet",
    "load_efficientnet_lite0": "models.efficientnet",
    "load_imagenet_cnn": "models.efficientnet",
    "imagenet_weights_report": "models.efficientnet",
    # modifiers: model modifiers that never mutate the caller's model
    "RectifiedBackpropagation": "modifiers",
    "GuidedBackpropagation": "modifiers",
    "ReplaceToLinear": "modifiers",
    # explain: one implementation of each explanation method
    "Explainer": "explain",
    "feature_maps": "explain",
    "class_activation_map": "explain",
    "gradcam": "explain",
    "last_conv_layer_name": "explain",
    "method_names": "explain",
    "get_method": "explain",
    "normalize_maps": "maps",
    "resize_maps": "maps",
    # metrics: faithfulness and sanity checks
    "deletion_auc": "metrics",
    "insertion_auc": "metrics",
    "randomization_check": "metrics",
    "pointing_game": "metrics",
    "random_map": "metrics",
    "edge_map": "metrics",
    "bootstrap_ci": "metrics",
    "faithfulness_table": "metrics",
    "explanation_methods": "metrics",
    # featurevis: what a unit wants (activation maximization, dataset examples)
    "activation_maximization": "featurevis",
    "unit_activations": "featurevis",
    "dataset_examples": "featurevis",
    "default_regularizers": "featurevis",
    "FeatureVisualizer": "featurevis",
    "Jitter": "featurevis",
    "RandomScale": "featurevis",
    "Blur": "featurevis",
    "L2": "featurevis",
    "TotalVariation": "featurevis",
    # attribution: occlusion sensitivity and integrated gradients
    "occlusion": "explain",
    "integrated_gradients": "explain",
    # attacks: FGSM / PGD, explanation manipulation, max-sensitivity
    "fgsm": "attacks",
    "pgd": "attacks",
    "robustness_curve": "attacks",
    "SoftplusSurrogate": "attacks",
    "manipulate_explanation": "attacks",
    "corner_mask": "attacks",
    "region_mass": "attacks",
    "max_sensitivity": "attacks",
    # plotting (no TensorFlow)
    "image_grid": "plotting",
    "filter_grid": "plotting",
    "feature_map_grid": "plotting",
    "overlay_heatmap": "plotting",
    "show_heatmap_overlays": "plotting",
    "method_grid": "plotting",
    # the course wing (no TensorFlow): papermill fan-out and reports
    "run_notebooks": "course.runner",
}

__all__ = sorted(_EXPORTS)


_SUBMODULES = {"maps", "config", "session", "data", "models", "modifiers", "explain", "metrics", "plotting",
               "run", "nbtools", "editions", "colab", "pdf", "roster", "shortcut", "vgg_lab", "efficientnet", "torch_weights",
               "featurevis", "attribution", "similarity", "attacks", "course"}
# lh.<name> -> the module's home when it is not labhelpers.<name> (run, nbtools, editions, colab and pdf
# keep thin aliases at labhelpers.<name> for `python -m`; the rest of the course wing lives in course/)
_SUBMODULE_HOMES = {"roster": "course.roster",
                    "efficientnet": "models.efficientnet", "torch_weights": "models.torch_weights",
                    "vgg_lab": "labs.vgg_lab", "shortcut": "labs.shortcut",
                    "attribution": "explain.attribution", "similarity": "metrics.similarity"}


def __getattr__(name: str):
    if name in _SUBMODULES:  # lh.config, lh.explain, ... without an explicit import
        return importlib.import_module(f"labhelpers.{_SUBMODULE_HOMES.get(name, name)}")
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'labhelpers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"labhelpers.{module_name}"), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
