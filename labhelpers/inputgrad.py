"""A convolution's gradient to its input alone, for the rebuilt graphs of :mod:`labhelpers.modifiers`.

The explanation steps differentiate with respect to the pixels. TensorFlow's gradient of a convolution builds
the kernel's gradient as well (``Conv2DBackpropFilter`` and its shapes): never run by those steps, but traced,
once per convolution. :func:`input_gradient_only` records a convolution on the tape with the input's gradient
alone, the way :func:`labhelpers.modifiers.rule_activation` records an activation with its backward rule.
"""

from __future__ import annotations

import tensorflow as tf

# the tape's own hook, under tf.custom_gradient (TensorFlow >= 2.13; pyproject asks for >= 2.16)
from tensorflow.python.eager import record as _tape

from .kerasapi import LEGACY, keras


# A convolution's op -> its gradient with respect to the input alone (the op's own attributes: the same
# strides, padding and layout as the forward pass).
def _conv2d_input_gradient(op, x, dy):
    return tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.shape(x), filter=op.inputs[1], out_backprop=dy, strides=op.get_attr("strides"),
        padding=op.get_attr("padding"), explicit_paddings=op.get_attr("explicit_paddings"),
        data_format=op.get_attr("data_format"), dilations=op.get_attr("dilations"),
        use_cudnn_on_gpu=op.get_attr("use_cudnn_on_gpu"))


def _depthwise_input_gradient(op, x, dy):
    return tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
        input_sizes=tf.shape(x), filter=op.inputs[1], out_backprop=dy, strides=op.get_attr("strides"),
        padding=op.get_attr("padding"), explicit_paddings=op.get_attr("explicit_paddings"),
        data_format=op.get_attr("data_format"), dilations=op.get_attr("dilations"))


_INPUT_GRADIENTS = {"Conv2D": _conv2d_input_gradient, "DepthwiseConv2dNative": _depthwise_input_gradient}


def input_gradient_only(conv, inputs, kernel):
    """``conv(inputs, kernel)`` (a convolution, linear in ``inputs``) whose gradient, in a trace, flows to
    ``inputs`` alone when no tape wants the kernel's. TensorFlow's gradient of a convolution always builds the
    kernel's gradient too (``Conv2DBackpropFilter`` and its shapes): a step that differentiates with respect
    to the pixels never runs it, but traces it, 49 times on EfficientNet-Lite0. Eagerly, when a tape watches
    the kernel (training, or any tape that watches the variables it reads), or when the op is not a plain
    Conv2D / depthwise convolution of ``inputs``, it is ``conv(inputs, kernel)`` unchanged."""
    if tf.executing_eagerly():
        return conv(inputs, kernel)
    k = tf.convert_to_tensor(kernel)  # a recorded read: a tape that watches the variables it reads now has it
    x = tf.convert_to_tensor(inputs)
    if _tape.should_record_backprop([k]) or not _tape.should_record_backprop([x]):
        return conv(x, k)
    with _tape.stop_recording():
        y = conv(x, k)
    gradient = _INPUT_GRADIENTS.get(y.op.type)
    if gradient is None or y.op.inputs[0].name != x.name:
        return conv(x, k)  # the unrecorded one is never run: nothing depends on it
    op = y.op
    _tape.record_operation(op.type, [y], [x], lambda dy: [gradient(op, x, dy)])
    return y


def input_gradient_view(view):
    """``view`` (of any layer), with :func:`input_gradient_only` as its convolution when it is a Keras 3
    Conv2D, or a DepthwiseConv2D without bias; the bias and the activation stay the view's own."""
    if LEGACY:
        return view
    if isinstance(view, keras.layers.Conv2D):
        convolution = type(view).convolution_op.__get__(view)
        object.__setattr__(view, "convolution_op",
                           lambda inputs, kernel: input_gradient_only(convolution, inputs, kernel))
    elif isinstance(view, keras.layers.DepthwiseConv2D) and not view.use_bias:
        def depthwise(x, k):
            return keras.ops.depthwise_conv(x, k, strides=view.strides, padding=view.padding,
                                            dilation_rate=view.dilation_rate, data_format=view.data_format)

        def call(inputs):
            outputs = input_gradient_only(depthwise, inputs, view.kernel)
            return outputs if view.activation is None else view.activation(outputs)

        object.__setattr__(view, "call", call)
    return view
