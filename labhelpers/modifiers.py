"""Model modifiers that never mutate the caller's model.

Each modifier takes a Keras model and returns a *new* ``keras.Model`` built from
**views** of the original layers: a view is a second Python object of the same
class that shares the layer's ``__dict__`` (so the very same weight variables,
no copies) but gets its own graph bookkeeping, and, where needed, its own
``activation``. The caller's model keeps its layers, activations, graph and
``predict`` output; tf-keras-vis 0.8.7's modifiers instead assign
``layer.activation`` in place, which with ``clone=False`` changes the caller's
model (and a ``predict`` function traced before then disagrees with
``model(x)``).

The modifiers are tf-keras-vis-compatible (pass them as ``model_modifier=``; they
return the modified model, which tf-keras-vis then uses):

* :class:`ReplaceToLinear`: the output layer's activation (softmax) becomes linear,
  so a score is a pre-softmax logit. Works on ``keras.Sequential`` (tf-keras-vis
  0.8.7's raises ``AttributeError: output_names`` under Keras 3).
* :class:`GuidedBackpropagation` and :class:`RectifiedBackpropagation`: swap the
  backward rule of *every* ReLU-like nonlinearity: layers with
  ``activation="relu"`` (Conv/Dense), ``keras.layers.ReLU``,
  ``keras.layers.Activation("relu")`` and ``keras.layers.LeakyReLU``
  (tf-keras-vis 0.8.7 only sees the ``activation`` attribute, so on ``ReLU`` and
  ``LeakyReLU`` layers its guided backprop silently equals the plain gradient).

Backward rules, for a nonlinearity ``y = f(z)`` with upstream gradient ``dy``:

* vanilla:   ``dz = f'(z) * dy``
* guided (Springenberg et al. 2015):  ``dz = f'(z) * max(dy, 0)``; for a ReLU this
  passes the gradient only where the forward input was positive AND the upstream
  gradient is positive.
* rectified / deconvnet (Zeiler & Fergus 2014): ``dz = max(dy, 0)``; it ignores the
  forward sign entirely and only rectifies the backward signal, so it does not
  depend on which units were active for this image.

For ``LeakyReLU`` (slope ``a``) and parametrised ``ReLU`` layers the same formulas
hold with their own derivative: guided passes positive upstream gradients scaled
by ``f'(z)`` (1 where ``z > 0``, ``a`` where ``z < 0``), i.e. "the vanilla rule
applied to the rectified signal"; rectified passes ``max(dy, 0)`` whatever the
sign of ``z``. With ``a = 0`` both reduce to the ReLU rules above.

ReLU6 (``y = min(max(z, 0), 6)``, EfficientNet-Lite's nonlinearity; ``activation="relu6"``,
``Activation("relu6")`` or ``ReLU(max_value=6)``) follows the same formulas with its own
derivative ``f'(z) = [0 < z < 6]``: vanilla passes ``dy`` where ``0 < z < 6`` (a saturated unit,
``z >= 6``, passes nothing, as it does not change the output); guided passes ``dy`` where
``0 < z < 6`` and ``dy > 0``; rectified passes ``max(dy, 0)`` everywhere, saturated or negative
units included: the deconvnet rule never looks at the forward input, for ReLU6 as for ReLU
(this is also what the issue that added ReLU6 asked for). ``tests/test_modifiers.py`` checks
all three against a NumPy backward pass, through a depthwise convolution and a residual add.

Convolutions: a view of a Conv2D or (bias-free) DepthwiseConv2D, inside a ``tf.function`` trace, records
its convolution with the gradient to its input alone (:func:`labhelpers.inputgrad.input_gradient_only`): the
explanation steps differentiate with respect to the pixels, and TensorFlow's own convolution gradient would also
build the kernel's, which they never run. A tape that wants the kernel's gradient (training through a rebuilt
model) gets TensorFlow's own.

Flattening: nested Functional/Sequential models (a pretrained base inside a
Sequential) are inlined, so every inner layer is reachable in the new graph.
Supported: Functional and Sequential models with one input and one output, on
Keras 3 and on legacy tf-keras (``TF_USE_LEGACY_KERAS=1``): the graph walk is the
only part that differs (Keras 3 lets ``_run_through_graph`` call our function per
layer; tf-keras has no such hook, so :func:`_run_legacy_graph` repeats its
``_run_internal_graph`` loop with one). ``tests/test_legacy_keras.py`` checks the
rules' closed forms under tf-keras in a subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf

# the tape's own hook, under tf.custom_gradient (TensorFlow >= 2.13; pyproject asks for >= 2.16): see rule_activation
from tensorflow.python.eager import record as _tape

from .inputgrad import input_gradient_view
from .kerasapi import LEGACY, keras

try:  # tf-keras-vis's base class, so isinstance checks in user code still pass
    from tf_keras_vis.utils.model_modifiers import ModelModifier as _ModifierBase
except Exception:  # pragma: no cover - tf-keras-vis is optional for this module
    _ModifierBase = object

RULES = ("vanilla", "guided", "rectified")

# Layers whose `call` ends with `self.activation(outputs)`: a view with another
# activation computes the same affine map with the new nonlinearity.
FUSED_TYPES = tuple(
    getattr(keras.layers, name)
    for name in (
        "Dense", "EinsumDense",
        "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
        "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    )
    if hasattr(keras.layers, name)
)
CONV_TYPES = tuple(t for t in FUSED_TYPES if t.__name__ not in ("Dense", "EinsumDense"))
_RELU_NAMES = {"relu", "relu6", "leaky_relu"}
_RELU_FUNCTIONS = {
    f for f in (
        getattr(keras.activations, "relu", None), getattr(keras.activations, "relu6", None),
        getattr(keras.activations, "leaky_relu", None), tf.nn.relu, tf.nn.relu6, tf.nn.leaky_relu,
    ) if f is not None
}


def is_relu_like(fn) -> bool:
    """True for relu, relu6 and leaky_relu activation functions."""
    if fn is None:
        return False
    return fn in _RELU_FUNCTIONS or getattr(fn, "__name__", "") in _RELU_NAMES


def _is_linear(fn) -> bool:
    return fn is None or fn is keras.activations.linear or getattr(fn, "__name__", "") == "linear"


def _is_plain_relu(fn) -> bool:
    """max(z, 0) exactly: the relu function, or a ``ReLU`` layer's call with default settings."""
    if fn in (getattr(keras.activations, "relu", None), tf.nn.relu):
        return True
    owner = getattr(fn, "__self__", None)
    return (type(owner) is getattr(keras.layers, "ReLU", None) and not getattr(owner, "negative_slope", 0)
            and owner.max_value is None and not owner.threshold)


def rule_activation(fn, rule: str):
    """``fn`` with the backward pass of ``rule`` ("guided" or "rectified"); the
    forward value is unchanged. See the module docstring for the rules."""
    if rule not in ("guided", "rectified"):
        raise ValueError(f"unknown backward rule {rule!r}; valid rules: 'guided', 'rectified'")

    plain = _is_plain_relu(fn)
    name = f"{rule}_{getattr(fn, '__name__', 'activation')}"

    def backward(z, dy):
        positive = tf.nn.relu(dy)
        if rule == "rectified":
            return positive
        if plain:  # f'(z) = [z > 0]: one select instead of re-running the activation
            return tf.where(z > 0, positive, tf.zeros_like(positive))
        # guided: the layer's own local derivative f'(z), applied to max(dy, 0)
        with tf.GradientTape() as tape:
            tape.watch(z)
            again = fn(z)
        return tape.gradient(again, z, output_gradients=positive)

    def activation(z):
        # What tf.custom_gradient does, without its per-call bookkeeping (variable scans, a gradient
        # registered per call, an IdentityN): the forward op unrecorded, then one tape entry whose
        # backward is the rule. The activations hold no variables. In a trace this saves ~7 ms per
        # activation: 33 on EfficientNet-Lite0, whose guided step traced in ~0.9 s instead of ~1.07 s
        # (medians of 7, alternating in one process); the same ops run, so later calls do not change.
        z = tf.convert_to_tensor(z)
        with _tape.stop_recording():
            y = fn(z)
        _tape.record_operation(name, [y], [z], lambda dy: [backward(z, dy)])
        return y

    activation.__name__ = name
    return activation


class _RuleActivationLayer(keras.layers.Layer):
    """Stand-in for a ``ReLU`` / ``LeakyReLU`` layer: same forward function (the
    original layer's stateless ``call``), backward rule swapped."""

    def __init__(self, forward, rule: str, name: str):
        super().__init__(name=name, trainable=False)
        object.__setattr__(self, "_rule_fn", rule_activation(forward, rule))  # not tracked
        self.rule = rule

    def call(self, inputs):
        return self._rule_fn(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


class _IdentityHead(keras.layers.Layer):
    """Stand-in for a final ``Softmax`` / ``Activation`` layer under a linear head
    (accepts the ``mask`` argument that ``Softmax`` is called with)."""

    def __init__(self, name: str):
        super().__init__(name=name, trainable=False)

    def call(self, inputs, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _view(op, name: str, **attrs):
    """A second object for ``op`` sharing its state (weights included) but with its
    own graph nodes, so calling it never touches the original's bookkeeping.

    ``copy.copy`` is no use: Keras layers pickle themselves, which copies weights.
    """
    view = object.__new__(type(op))
    view.__dict__.update(op.__dict__)
    # object.__setattr__ bypasses Keras's attribute tracking; tf-keras keeps the
    # node lists and the name behind properties
    suffix = "_value" if LEGACY else ""
    object.__setattr__(view, "_inbound_nodes" + suffix, [])
    object.__setattr__(view, "_outbound_nodes" + suffix, [])
    object.__setattr__(view, "_name" if LEGACY else "name", name)
    for key, value in attrs.items():
        object.__setattr__(view, key, value)
    return view


@dataclass(eq=False)  # identity comparison: fields hold symbolic tensors
class LayerCall:
    """One call of an original layer in a rebuilt graph."""

    layer: object  # the caller's layer (or nested model)
    op: object  # what the rebuilt graph called (a view or a stand-in)
    inputs: list
    outputs: list


@dataclass(eq=False)
class RebuiltGraph:
    """A rebuilt model plus where each original layer's output lives in it."""

    model: object
    input: object
    output: object
    calls: list = field(default_factory=list)
    replaced: list = field(default_factory=list)  # names of layers whose rule/activation changed
    rule_ops: list = field(default_factory=list)  # the stand-ins whose backward rule was swapped

    def calls_of(self, layer) -> list:
        return [c for c in self.calls if c.layer is layer]

    def rule_after(self, call) -> bool:
        """True when a nonlinearity with a swapped backward rule lies between ``call``'s output and the
        model's output, i.e. when the gradient w.r.t. that output differs from the vanilla one (VGG16's
        fc1 and fc2 ReLUs after block5_conv3; nothing after EfficientNet-Lite0's last activation)."""
        swapped = {id(op) for op in self.rule_ops}
        reached, after = list(call.outputs), []
        for other in self.calls:  # the calls are in the order they were made: each after its inputs
            if other is not call and any(t is r for t in other.inputs for r in reached):
                after.append(other)
                reached.extend(other.outputs)
        return any(id(other.op) in swapped for other in after)


def model_input_shape(model):
    """``(H, W, C)`` (entries may be None) of a single-input model; raises clearly."""
    inputs = _model_inputs(model)
    if inputs is None:
        return None
    return tuple(inputs[0].shape[1:])


def _model_inputs(model):
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    return inputs or None


def ensure_built(model, sample_shape=None):
    """Make sure ``model`` has symbolic inputs. A Sequential that was never called
    is built for ``sample_shape`` (one image's shape); otherwise a clear error."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    if _model_inputs(model) is not None:
        return model
    if isinstance(model, keras.Sequential) and sample_shape is not None:
        model.build((None, *tuple(sample_shape)))
        if _model_inputs(model) is not None:
            return model
    raise ValueError(
        f"model {model.name!r} has no defined input yet: it has never been called. "
        "Give it a keras.Input(shape=...) as first layer, call it once on a batch, "
        "or pass images so the Sequential model can be built for their shape."
    )


def rebuild(model, relu_rule: str | None = None, linear_head: bool = False,
            suffix: str | None = None) -> RebuiltGraph:
    """Rebuild ``model`` from views of its layers.

    relu_rule: None (keep) or "guided" / "rectified" for every ReLU-like nonlinearity.
    linear_head: replace the output layer's activation by linear (logits out).
    The caller's model is not changed in any way; the result shares its weights.
    """
    if relu_rule not in (None, "vanilla", "guided", "rectified"):
        raise ValueError(f"unknown rule {relu_rule!r}; valid rules: {list(RULES)}")
    if relu_rule == "vanilla":
        relu_rule = None
    ensure_built(model)
    inputs = _model_inputs(model)
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(inputs)} inputs and {len(model.outputs)} outputs; "
            "these helpers explain single-input, single-output classifiers"
        )
    template = inputs[0]
    new_input = keras.Input(shape=tuple(template.shape[1:]), dtype=template.dtype,
                            name=f"{model.name}_input")
    builder = _Builder(relu_rule, linear_head)
    # the input layer is a "call" too, so `model.layers[0]` of a Functional model resolves
    input_layer = getattr(template, "_keras_history", (None,))[0]
    if input_layer is not None:
        builder.calls.append(LayerCall(input_layer, new_input._keras_history[0], [], [new_input]))
    outputs = builder.walk(model, [new_input], is_output=True)
    output = outputs[0]
    name = f"{model.name}_{suffix}" if suffix else f"{model.name}_view"
    new_model = keras.Model(new_input, output, name=name)
    return RebuiltGraph(new_model, new_input, output, builder.calls, builder.replaced, builder.rule_ops)


class _Builder:
    def __init__(self, relu_rule, linear_head):
        self.relu_rule = relu_rule
        self.linear_head = linear_head
        self.calls: list[LayerCall] = []
        self.replaced: list[str] = []
        self.rule_ops: list = []
        self._names: set[str] = set()
        self._stand_ins: dict[tuple[int, bool], object] = {}

    def walk(self, model, inputs, is_output):
        if isinstance(model, keras.Sequential):
            x = inputs[0]
            layers = model.layers
            for i, layer in enumerate(layers):
                x = self.call(layer, (x,), {}, is_output and i == len(layers) - 1)
            return [x]
        if not _is_functional(model):
            raise NotImplementedError(
                f"cannot rebuild model {model.name!r} ({type(model).__name__}): only Functional "
                "and Sequential models are supported (subclassed models are not)"
            )
        output_op = model.outputs[0]._keras_history[0] if is_output else None

        def call_fn(op, *args, **kwargs):
            return self.call(op, args, kwargs, is_output and op is output_op)

        if LEGACY:
            return _run_legacy_graph(model, inputs, call_fn)
        return tf.nest.flatten(model._run_through_graph(inputs, call_fn=call_fn))

    def call(self, op, args, kwargs, is_output):
        flat_inputs = [t for t in tf.nest.flatten((args, kwargs)) if keras.backend.is_keras_tensor(t)]
        if isinstance(op, keras.Model):
            if not isinstance(op, keras.Sequential) and not _is_functional(op):
                if self.relu_rule or (is_output and self.linear_head):
                    raise NotImplementedError(
                        f"nested model {op.name!r} is a subclassed model: its layers cannot be "
                        "rebuilt, so backward rules / a linear head cannot be applied inside it"
                    )
                stand_in = op
            else:
                outputs = self.walk(op, flat_inputs, is_output)
                self.calls.append(LayerCall(op, op, flat_inputs, outputs))
                return outputs[0] if len(outputs) == 1 else outputs
        else:
            stand_in = self.stand_in(op, is_output)
        result = stand_in(*args, **kwargs)
        self.calls.append(LayerCall(op, stand_in, flat_inputs, tf.nest.flatten(result)))
        return result

    def unique_name(self, name):
        candidate, k = name, 0
        while candidate in self._names:
            k += 1
            candidate = f"{name}_{k}"
        self._names.add(candidate)
        return candidate

    def stand_in(self, op, is_output):
        key = (id(op), is_output)
        if key not in self._stand_ins:
            self._stand_ins[key] = self._make_stand_in(op, is_output)
        return self._stand_ins[key]

    def _make_stand_in(self, op, is_output):
        name = self.unique_name(op.name)
        activation = getattr(op, "activation", None)
        if is_output and self.linear_head:
            if isinstance(op, _RuleActivationLayer) or isinstance(op, _softmax_types()):
                self.replaced.append(op.name)
                return _IdentityHead(name=name)
            if callable(activation) and not _is_linear(activation):
                self.replaced.append(op.name)
                return _view(op, name, activation=keras.activations.linear)
            # already linear, or an op we cannot see into (documented limitation)
            return _view(op, name)
        if self.relu_rule is None:
            return input_gradient_view(_view(op, name))
        if isinstance(op, _relu_layer_types()):
            self.replaced.append(op.name)
            self.rule_ops.append(_RuleActivationLayer(op.call, self.relu_rule, name=name))
            return self.rule_ops[-1]
        if is_relu_like(activation):
            if isinstance(op, FUSED_TYPES) or isinstance(op, keras.layers.Activation):
                self.replaced.append(op.name)
                self.rule_ops.append(input_gradient_view(
                    _view(op, name, activation=rule_activation(activation, self.relu_rule))))
                return self.rule_ops[-1]
            raise NotImplementedError(
                f"layer {op.name!r} ({type(op).__name__}) has a ReLU activation inside a call this "
                "module does not know; cannot apply the backward rule to it"
            )
        return input_gradient_view(_view(op, name))


def _is_functional(model) -> bool:
    """A graph of layers we can walk (not a subclassed model)."""
    walker = "_run_internal_graph" if LEGACY else "_run_through_graph"
    return hasattr(model, walker) and hasattr(model, "_nodes_by_depth")


def _run_legacy_graph(model, inputs, call_fn):
    """tf-keras's ``Functional._run_internal_graph`` (same order, same bookkeeping)
    with ``call_fn(layer, *args, **kwargs)`` in place of ``layer(*args, **kwargs)``."""
    usage = model._tensor_usage_count
    tensors = {}
    for reference, tensor in zip(model.inputs, inputs, strict=True):
        tensors[str(id(reference))] = [tensor] * usage[str(id(reference))]
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            outputs = call_fn(node.layer, *args, **kwargs)
            for output_id, tensor in zip(node.flat_output_ids, tf.nest.flatten(outputs), strict=True):
                tensors[output_id] = [tensor] * usage[output_id]
    return [tensors[str(id(output))].pop() for output in model.outputs]


def _relu_layer_types():
    return tuple(getattr(keras.layers, n) for n in ("ReLU", "LeakyReLU") if hasattr(keras.layers, n))


def _softmax_types():
    return tuple(getattr(keras.layers, n) for n in ("Softmax",) if hasattr(keras.layers, n))


class _Modifier(_ModifierBase):
    relu_rule: str | None = None
    linear_head = False
    suffix = "modified"

    def __call__(self, model):
        """Return a new model (the given one is never changed)."""
        return rebuild(model, relu_rule=self.relu_rule, linear_head=self.linear_head,
                       suffix=self.suffix).model

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReplaceToLinear(_Modifier):
    """Replace the output layer's activation (e.g. softmax) by linear, so scores
    are logits. Returns a new model sharing the weights; works on Sequential and
    Functional models; a final ``Activation``/``Softmax`` layer becomes identity."""

    linear_head = True
    suffix = "linear"


class GuidedBackpropagation(_Modifier):
    """Guided backprop: every ReLU-like nonlinearity passes ``f'(z) * max(dy, 0)``,
    i.e. for a ReLU only where the forward input was positive AND the upstream
    gradient is positive. Unlike :class:`RectifiedBackpropagation` it still
    depends on which units were active (the forward mask). Covers fused
    ``activation="relu"``, ``ReLU``, ``Activation("relu")`` and ``LeakyReLU``."""

    relu_rule = "guided"
    suffix = "guided"


class RectifiedBackpropagation(_Modifier):
    """Deconvnet ("rectified") rule: every ReLU-like nonlinearity passes
    ``max(dy, 0)``, whatever the sign of its forward input. Guided backprop
    additionally masks by the forward input (``z > 0``); rectified does not, so
    its maps depend less on the image and more on the weights."""

    relu_rule = "rectified"
    suffix = "rectified"
