"""``Explainer``: the course's one object for explaining a model, a facade over the registry.

    ex = Explainer(model)                       # never changes `model`
    ex.saliency(images, classes)                # (N, H, W) in [0, 1]
    ex.gradcam(images, classes, layer=None)     # (N, H, W) in [0, 1]
    ex.explain("xgradcam", images, classes)     # any registered method by name

Each method here is one line: it builds the registered :class:`~labhelpers.explain.base.Method`
with its options and runs it on this Explainer (which is the model's :class:`ModelContext`, so
every method shares its rebuilt graphs and compiled steps).

``classes``: None (the predicted class), an int, one int per image, or class names
(``class_names=`` given to the Explainer, else ImageNet names). ``layer``: a name, a layer object
or an index into ``model.layers``; default: the last convolution (or the activation right after
it, through BatchNorm). Images are used as given: apply the model's preprocessing first.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .base import get_method
from .cams import CAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from .context import _FACTORY, ModelContext, context_for
from .graph import check_rule, compiled
from .saliency import GuidedSaliency, RectifiedSaliency, Saliency, SmoothGrad

_SALIENCY = {"vanilla": Saliency, "guided": GuidedSaliency, "rectified": RectifiedSaliency}


class Explainer(ModelContext):
    """Explanations for one Keras image classifier (see :class:`ModelContext` for
    ``batch_size`` and ``class_names``)."""

    def explain(self, method: str, images, classes=None, **options) -> np.ndarray:
        """The registered method ``method`` (see ``labhelpers.explain.method_names()``)."""
        return get_method(method, **options)(self, images, classes)

    def saliency(self, images, classes=None, rule="vanilla", smooth_samples=0, smooth_noise=0.2,
                 normalize=True, seed=None, noise="graph") -> np.ndarray:
        """Gradient of the class logit w.r.t. the input pixels; rule "vanilla", "guided"
        (Springenberg) or "rectified" (deconvnet). smooth_samples > 0: SmoothGrad (see
        :class:`~labhelpers.explain.saliency.SmoothGrad`: noise="graph", the default, draws it in the
        compiled step, seeded by ``seed``; noise="numpy" as tf-keras-vis draws it). normalize=True:
        |gradient|, max over channels, per-image min-max -> (N, H, W); False: the raw signed
        gradients (N, H, W, C) (their mean over samples for SmoothGrad)."""
        check_rule(rule)
        if int(smooth_samples) < 0:
            raise ValueError(f"smooth_samples must be >= 0, got {smooth_samples}")
        if int(smooth_samples) == 0:
            return _SALIENCY[rule](normalize=normalize)(self, images, classes)
        return SmoothGrad(rule=rule, smooth_samples=int(smooth_samples), smooth_noise=smooth_noise, seed=seed,
                          normalize=normalize, noise=noise)(self, images, classes)

    def gradcam(self, images, classes=None, layer=None, rule="vanilla", normalize=True, upsample=True):
        """Grad-CAM (Selvaraju et al.): ReLU(sum_k alpha_k A_k), alpha_k the spatial mean of
        d logit / d A_k. rule="guided"/"rectified" applies those backward rules on the path from the
        logit to the layer. upsample=False: the layer's grid (N, h, w), e.g. 14 x 14 for VGG16's
        block5_conv3. normalize=False: the raw ReLU'd map."""
        return GradCAM(layer=layer, rule=rule, normalize=normalize, upsample=upsample)(self, images, classes)

    def gradcam_plus_plus(self, images, classes=None, layer=None, rule="vanilla", normalize=True, upsample=True):
        """Grad-CAM++ (Chattopadhyay et al.), as tf-keras-vis computes it (without exp(score))."""
        return GradCAMPlusPlus(layer=layer, rule=rule, normalize=normalize, upsample=upsample)(self, images, classes)

    def layercam(self, images, classes=None, layer=None, rule="vanilla", normalize=True, upsample=True):
        """LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(d logit / d A_k) * A_k), per position."""
        return LayerCAM(layer=layer, rule=rule, normalize=normalize, upsample=upsample)(self, images, classes)

    def scorecam(self, images, classes=None, layer=None, max_n=None, normalize=True, upsample=True):
        """Score-CAM (Wang et al. 2020); max_n: Faster Score-CAM (the max_n channels of largest std)."""
        return ScoreCAM(layer=layer, max_n=max_n, normalize=normalize, upsample=upsample)(self, images, classes)

    def class_activation_map(self, images, classes=None, normalize=True, upsample=False):
        """CAM (Zhou et al. 2016) for a GlobalAveragePooling2D -> Dense head.
        Returns (maps (N, h, w) at the feature resolution unless upsample, classes)."""
        classes = self.resolve_classes(images, classes)
        return CAM(normalize=normalize, upsample=upsample)(self, images, classes), classes

    def feature_maps(self, layers, images):
        """Activations of the given layers (names, layer objects or indices) via one multi-output
        model. One image (H, W, C) -> arrays without the batch axis. One layer (not in a list) ->
        one array, else a list."""
        single_image = self.is_single_image(images)
        x = self.prepare(images)
        single_layer = not isinstance(layers, (list, tuple))
        specs = [layers] if single_layer else list(layers)
        if not specs:
            raise ValueError("no layers given: pass a layer name, a layer or a list of them")
        graph = self.graph(head="model")
        indices = tuple(graph.calls.index(self.find_call(s, need_4d=False, graph=graph)) for s in specs)
        model = self.sub_model(("features", indices), lambda: _multi_output(graph, indices, self.model.name))
        step = self.function(("features", indices, x.shape[1:]), lambda: compiled(
            lambda images: [tf.cast(t, tf.float32) for t in tf.nest.flatten(model(images, training=False))],
            input_signature=self.signature(x.shape[1:])[:1]))
        parts = [step(x[s]) for s in self.chunks(len(x))]
        maps = [np.concatenate([p[j].numpy() for p in parts]) for j in range(len(indices))]
        if single_image:
            maps = [m[0] for m in maps]
        return maps[0] if single_layer else maps


def _multi_output(graph, indices, name):
    from ..kerasapi import keras

    return keras.Model(graph.input, [graph.calls[i].outputs[0] for i in indices], name=f"{name}_feature_maps")


# ---------------------------------------------------------------------- functional API
_FACTORY[0] = Explainer  # the package's one cache of contexts holds Explainers


def feature_maps(model, layers, image):
    """Activations of ``layers`` (a name, layer object or index, or a list of them) for one image
    (H, W, C) -> arrays (h, w, k), or a batch -> (N, h, w, k). One array for one layer, a list for a list."""
    return context_for(model).feature_maps(layers, image)


def last_conv_layer_name(model) -> str:
    """The last convolutional layer's name: what tf-keras-vis calls the penultimate layer.

    tf-keras-vis 0.8.7 looks for it with ``isinstance(layer, keras.src...BaseConv)``, a Keras 3
    class, so under legacy tf-keras its Gradcam, Gradcam++, Layercam and Scorecam fail ("Unable to
    determine penultimate `Conv` layer"), even given a name, unless the search is switched off::

        Gradcam(model, ...)(score, x, penultimate_layer=last_conv_layer_name(model),
                            seek_penultimate_conv_layer=False)
    """
    return context_for(model).last_conv_layer()


def class_activation_map(model, images, class_index=None, normalize=True):
    """CAM from the GAP -> Dense weights for the predicted class (or ``class_index``: an int, one
    per image, or names), per-image min-max. Returns (maps (N, h, w), classes (N,))."""
    return context_for(model).class_activation_map(images, class_index, normalize=normalize)


def gradcam(model, images, class_index=None, layer=None, upsample=True, normalize=True, rule="vanilla"):
    """Grad-CAM for a Sequential or Functional model (:meth:`Explainer.gradcam` on the model's
    cached Explainer). upsample=True: (N, H, W) ready to overlay; False: the layer's grid (N, h, w),
    to compare with :func:`class_activation_map`. normalize=False: the raw ReLU(sum_k alpha_k A_k)."""
    return context_for(model).gradcam(images, class_index, layer=layer, rule=rule,
                                         normalize=normalize, upsample=upsample)
