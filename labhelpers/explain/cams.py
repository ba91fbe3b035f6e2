"""Class activation maps: CAM, the gradient CAM family (Grad-CAM, Grad-CAM++, XGrad-CAM,
LayerCAM, guided Grad-CAM) and Score-CAM.

:class:`GradientCAM` is the template of the gradient family: one compiled step per image shape
(forward to the layer's feature maps A and the logits, backward to dS/dA, the map, its resizing
and min-max). A member overrides one piece: :meth:`GradientCAM.channel_weights` (alpha_k, as
pytorch-grad-cam's ``get_cam_weights`` and Xplique's ``_compute_weights``) or, for per-position
weights, :meth:`GradientCAM.combine`.

Maps are computed at the layer's resolution, ReLU'd, resized to the input by bilinear
interpolation with aligned corners (tf-keras-vis's ``zoom(order=1)``) and min-max scaled per
image; ``upsample=False`` keeps the layer's grid (the raw 14 x 14 / 7 x 7 heatmap),
``normalize=False`` the raw values.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ..kerasapi import keras
from ..maps import EPSILON, normalize_maps
from .base import Method
from .graph import cam_structure, check_rule, compiled, layer_gradients, normalize, resize

CAM_OPTIONS = {"layer": None, "rule": "vanilla", "normalize": True, "upsample": True}


class GradientCAM(Method):
    """Template: ReLU(sum_k alpha_k A_k) with alpha from :meth:`channel_weights`."""

    options = CAM_OPTIONS
    titled_by = ("rule",)
    predicted_in_step = True

    def channel_weights(self, feats, grads):
        """alpha (N, 1, 1, K) from the feature maps A and dS/dA (N, h, w, K)."""
        raise NotImplementedError

    def combine(self, feats, grads):
        """The map (N, h, w) before ReLU."""
        return tf.reduce_sum(feats * self.channel_weights(feats, grads), axis=-1)

    def compute(self, ctx, x, classes):
        check_rule(self.rule)
        index = ctx.layer_index(self.layer)
        call = ctx.graph().calls[index]
        model = ctx.layer_model(self.rule, index)
        name, size, upsample, normalized = call.layer.name, x.shape[1:3], bool(self.upsample), bool(self.normalize)

        def make():
            def step(images, classes):
                feats, grads = layer_gradients(model, images, classes, name)
                cam = tf.nn.relu(self.combine(feats, grads))
                cam = resize(cam, size) if upsample else cam
                return normalize(cam) if normalized else cam
            return compiled(step, input_signature=ctx.signature(x.shape[1:]))

        key = (type(self).__qualname__, self.rule, index, x.shape[1:], normalized, upsample)
        return ctx.batched(ctx.function(key, make), x, classes)


class GradCAM(GradientCAM):
    """Grad-CAM (Selvaraju et al. 2017): alpha_k = the spatial mean of dS/dA_k."""

    name, label = "gradcam", "Grad-CAM"

    def channel_weights(self, feats, grads):
        return tf.reduce_mean(grads, axis=(1, 2), keepdims=True)


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018), as tf-keras-vis computes it with exp(score)
    derivatives, without the exp(score) factor: it cancels in the alphas and only scales each map
    by a positive constant (removed by the min-max), and it overflows for logits above ~88."""

    name, label = "gradcam++", "Grad-CAM++"

    def channel_weights(self, feats, grads):
        second, third = grads ** 2, grads ** 3
        global_sum = tf.reduce_sum(feats, axis=(1, 2), keepdims=True)
        alphas = second / (2.0 * second + third * global_sum + tf.cast(second == 0.0, second.dtype))
        norm = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
        alphas = alphas / (norm + tf.cast(norm == 0.0, norm.dtype))
        return tf.reduce_sum(tf.nn.relu(grads) * alphas, axis=(1, 2), keepdims=True)


class LayerCAM(GradientCAM):
    """LayerCAM (Jiang et al. 2021): ReLU(sum_k ReLU(dS/dA_k) * A_k), weighted per position."""

    name, label = "layercam", "LayerCAM"
    in_tables = False

    def combine(self, feats, grads):
        return tf.reduce_sum(tf.nn.relu(grads) * feats, axis=-1)


class GuidedGradCAM(Method):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided saliency times Grad-CAM, rescaled to [0, 1].

    When no swapped backward rule lies after the layer (EfficientNet-Lite0: only pooling and the Dense
    head follow its last activation), the guided rebuild's gradient w.r.t. the layer's feature maps is the
    vanilla one, so one compiled step computes both factors from one forward and one backward pass (one
    trace, not two). Otherwise (VGG16: the fc1/fc2 ReLUs follow block5_conv3) it multiplies the two
    methods' maps."""

    name, label = "guided gradcam", "Guided Grad-CAM"
    options = {"layer": None}
    predicted_in_step = True

    def compute(self, ctx, x, classes):
        index = ctx.layer_index(self.layer)
        if ctx.graph("guided").rule_after(ctx.graph("guided").calls[index]):
            from .saliency import GuidedSaliency

            if (classes < 0).any():  # predicted: the two methods must explain the same class
                classes = np.where(classes < 0, ctx.predict_logits(x).argmax(axis=-1), classes).astype(np.int32)
            return normalize_maps(GuidedSaliency()(ctx, x, classes) * GradCAM(layer=self.layer)(ctx, x, classes))
        model, size = ctx.layer_model("guided", index), x.shape[1:3]
        name = ctx.graph().calls[index].layer.name

        def make():
            def step(images, classes):
                feats, feat_grads, pixel_grads = layer_gradients(model, images, classes, name, wrt_images=True)
                guided = normalize(tf.reduce_max(tf.abs(pixel_grads), axis=-1))
                cam = normalize(resize(tf.nn.relu(GradCAM().combine(feats, feat_grads)), size))
                return normalize(guided * cam)
            return compiled(step, input_signature=ctx.signature(x.shape[1:]))

        step = ctx.function(("guided gradcam", index, x.shape[1:]), make)
        return ctx.batched(step, x, classes, size=ctx.gradient_rows())


class ScoreCAM(Method):
    """Score-CAM (Wang et al. 2020): each channel of the layer, resized to the input and min-max
    scaled, masks the image; its weight is the softmax probability of the class for the masked image
    (softmax of ``model_linear``'s logits). Gradient-free: one forward pass per channel,
    ``batch_size`` masked images per compiled step. max_n: Faster Score-CAM, only the max_n channels
    with the largest spatial std (chosen per image; tf-keras-vis takes the union over the batch,
    which is the same for one image); None: every channel."""

    name, label = "scorecam", "Score-CAM"
    options = {"layer": None, "max_n": None, "normalize": True, "upsample": True}
    titled_by = ("max_n",)
    in_tables = False
    predicted_in_step = True

    def __init__(self, **options):
        super().__init__(**options)
        max_n = self.max_n
        if max_n is not None and (isinstance(max_n, (bool, np.bool_)) or not isinstance(max_n, (int, np.integer))
                                  or max_n < 1):
            raise ValueError(f"max_n must be None (every channel) or a positive number of channels, got {max_n!r}")

    def compute(self, ctx, x, classes):
        index = ctx.layer_index(self.layer)
        call = ctx.graph().calls[index]
        feature_model = ctx.layer_model("vanilla", index)
        features = ctx.function(("score_features", index, x.shape[1:]), lambda: compiled(
            lambda images: [tf.cast(t, tf.float32) for t in feature_model(images, training=False)],
            input_signature=ctx.signature(x.shape[1:])[:1]))
        parts = [features(x[s]) for s in ctx.chunks(len(x))]
        feats = np.concatenate([p[0].numpy() for p in parts])  # (N, h, w, K)
        logits = np.concatenate([p[1].numpy() for p in parts])
        classes = np.where(classes < 0, logits.argmax(axis=-1), classes).astype(np.int32)
        channels, max_n = feats.shape[-1], self.max_n
        if max_n is not None and int(max_n) > channels:
            raise ValueError(f"max_n must be between 1 and {channels} (the channels of layer "
                             f"{call.layer.name!r}), got {max_n}")
        model, size = ctx.model_linear, x.shape[1:3]

        def make():
            def step(image, maps, c):
                masks = normalize(resize(maps, size))  # (k, H, W), each channel min-max scaled
                logits = model(image[None] * masks[..., None], training=False)
                return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)[:, c]
            return compiled(step, input_signature=[
                tf.TensorSpec(x.shape[1:], tf.float32), tf.TensorSpec((None, *feats.shape[1:3]), tf.float32),
                tf.TensorSpec((), tf.int32)])

        step = ctx.function(("scorecam", index, x.shape[1:]), make)
        cams = []
        for image, a, c in zip(x, feats, classes, strict=True):
            if max_n is not None and int(max_n) < channels:
                a = a[..., tf.math.top_k(tf.math.reduce_std(a, axis=(0, 1)), int(max_n)).indices.numpy()]
            maps = np.ascontiguousarray(np.transpose(a, (2, 0, 1)))  # (k, h, w)
            weights = np.concatenate([step(image, maps[s], c).numpy() for s in ctx.chunks(len(maps))])
            cams.append(np.maximum(a @ weights.astype(np.float32), 0.0))
        return np.stack(cams)

    def finish(self, ctx, maps, x):
        return ctx.finish(maps, x.shape[1:3], self.normalize, self.upsample)


class CAM(Method):
    """CAM (Zhou et al. 2016) for a model ending in GlobalAveragePooling2D -> Dense:
    cam_c = sum_k W[k, c] A_k with A the features entering the pooling. Maps at the feature
    resolution unless ``upsample``."""

    name, label = "cam", "CAM"
    options = {"normalize": True, "upsample": False}
    in_tables = False

    def compute(self, ctx, x, classes):
        graph = ctx.graph()
        gap_call, dense = cam_structure(graph, ctx.model.name)
        model = ctx.sub_model(("cam", id(gap_call)), lambda: keras.Model(
            graph.input, gap_call.inputs[0], name=f"{ctx.model.name}_cam"))
        step = ctx.function(("cam", x.shape[1:]), lambda: compiled(
            lambda images: tf.cast(model(images, training=False), tf.float32),
            input_signature=ctx.signature(x.shape[1:])[:1]))
        feats = ctx.batched(step, x)
        kernel = np.asarray(dense.kernel.numpy(), dtype=np.float32)
        return np.einsum("nhwk,nk->nhw", feats, kernel[:, classes].T)

    def finish(self, ctx, maps, x):
        return ctx.finish(maps, x.shape[1:3], self.normalize, self.upsample)


class XGradCAM(GradCAM):
    """XGrad-CAM (Fu et al. 2020): alpha_k = sum_ij (A_k,ij / sum_ij A_k) dS/dA_k,ij, the gradient
    averaged with the feature map's own weights (the axioms of sensitivity and conservation).
    On a GlobalAveragePooling2D -> Dense head dS/dA is constant over positions, so it equals Grad-CAM."""

    name, label = "xgradcam", "XGrad-CAM"

    def channel_weights(self, feats, grads):
        total = tf.reduce_sum(feats, axis=(1, 2), keepdims=True)
        return tf.reduce_sum(grads * feats, axis=(1, 2), keepdims=True) / (total + EPSILON)
