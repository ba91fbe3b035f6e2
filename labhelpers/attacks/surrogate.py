"""``SoftplusSurrogate``: the model with every ReLU-like nonlinearity replaced by softplus with a large
``beta`` (a rebuild from views of the same layers, shared weights), so that an explanation has a useful
gradient. Used by :mod:`labhelpers.attacks.manipulation`."""

from __future__ import annotations

import tensorflow as tf

from .. import modifiers
from ..kerasapi import keras


# ---------------------------------------------------------------------------- softplus surrogate
def smooth_activation(fn, beta: float):
    """A smooth stand-in for a ReLU-like ``fn``: softplus_beta(z) = softplus(beta z) / beta for
    ReLU, ``a z + (1 - a) softplus_beta(z)`` for a leaky ReLU of slope ``a``, and
    ``softplus_beta(z) - softplus_beta(z - 6)`` for ReLU6. Converges to ``fn`` as beta grows."""
    owner = getattr(fn, "__self__", None)
    slope = float(getattr(owner, "negative_slope", getattr(owner, "alpha", 0.0)) or 0.0)
    name = getattr(fn, "__name__", "")
    if name == "leaky_relu" and owner is None:
        slope = 0.2  # keras.activations.leaky_relu's default
    cap = getattr(owner, "max_value", None)
    if name == "relu6" or fn is tf.nn.relu6:
        cap = 6.0
    beta = float(beta)

    def sp(z):
        return tf.nn.softplus(beta * z) / beta

    def activation(z):
        y = sp(z) if cap is None else sp(z) - sp(z - float(cap))
        return slope * z + (1.0 - slope) * y if slope else y

    activation.__name__ = f"softplus{beta:g}_{name or 'relu'}"
    return activation


class _SmoothLayer(keras.layers.Layer):
    """Stand-in for a ``ReLU`` / ``LeakyReLU`` layer: its smooth surrogate."""

    def __init__(self, fn, name):
        super().__init__(name=name, trainable=False)
        object.__setattr__(self, "_fn", fn)  # not tracked

    def call(self, inputs):
        return self._fn(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


class _SoftplusBuilder(modifiers._Builder):
    def __init__(self, beta, linear_head):
        super().__init__(None, linear_head)
        self.beta = beta

    def _make_stand_in(self, op, is_output):
        activation = getattr(op, "activation", None)
        if is_output and self.linear_head:
            return super()._make_stand_in(op, is_output)
        if isinstance(op, modifiers._relu_layer_types()):
            self.replaced.append(op.name)
            return _SmoothLayer(smooth_activation(op.call, self.beta), name=self.unique_name(op.name))
        if modifiers.is_relu_like(activation):
            if not (isinstance(op, modifiers.FUSED_TYPES) or isinstance(op, keras.layers.Activation)):
                raise NotImplementedError(f"layer {op.name!r} ({type(op).__name__}) has a ReLU inside a call "
                                          "this module does not know; cannot make it smooth")
            self.replaced.append(op.name)
            return modifiers._view(op, self.unique_name(op.name),
                                   activation=smooth_activation(activation, self.beta))
        return super()._make_stand_in(op, is_output)


def softplus_rebuild(model, beta: float = 20.0, linear_head: bool = True) -> modifiers.RebuiltGraph:
    """:func:`labhelpers.modifiers.rebuild` with every ReLU-like nonlinearity made smooth."""
    modifiers.ensure_built(model)
    inputs = modifiers._model_inputs(model)
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r}: single-input, single-output classifiers only")
    template = inputs[0]
    new_input = keras.Input(shape=tuple(template.shape[1:]), dtype=template.dtype, name=f"{model.name}_input")
    builder = _SoftplusBuilder(float(beta), linear_head)
    input_layer = getattr(template, "_keras_history", (None,))[0]
    if input_layer is not None:
        builder.calls.append(modifiers.LayerCall(input_layer, new_input._keras_history[0], [], [new_input]))
    output = builder.walk(model, [new_input], is_output=True)[0]
    new_model = keras.Model(new_input, output, name=f"{model.name}_softplus")
    return modifiers.RebuiltGraph(new_model, new_input, output, builder.calls, builder.replaced)


class SoftplusSurrogate(modifiers._Modifier):
    """ReLU -> softplus with a large ``beta`` (Dombrowski et al. 2019): a smooth copy of the
    model whose explanations have useful second derivatives. Returns a new model sharing the
    weights (the caller's is never changed); ``linear_head=True`` also makes the output logits."""

    def __init__(self, beta: float = 20.0, linear_head: bool = False):
        self.beta, self.linear_head = float(beta), bool(linear_head)

    def __call__(self, model):
        return softplus_rebuild(model, self.beta, self.linear_head).model

    def __repr__(self):
        return f"SoftplusSurrogate(beta={self.beta:g}, linear_head={self.linear_head})"
