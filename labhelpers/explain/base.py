"""The template every explanation method follows, and the registry of methods.

A method is a small subclass of :class:`Method` that names itself and overrides one step::

    class XGradCAM(GradCAM):                  # labhelpers/explain/cams.py
        name, label = "xgradcam", "XGrad-CAM"

        def channel_weights(self, feats, grads):
            ...

Defining the class registers it (``name`` in its body): it then shows up in
:func:`method_names`, in ``metrics.explanation_methods()`` (lab 06's faithfulness and sanity
tables, unless ``in_tables = False``) and in the contract test that runs every registered
method through the same checks (tests/test_method_contract.py).

Calling a method runs four steps on the model's cached :class:`ModelContext`:
``prepare`` (images that fit the model) -> ``resolve`` (one class per image) -> ``compute``
(the maps) -> ``finish`` (resize and min-max, if the method did not do it in its step).
``method(model, images, classes)`` is the ``f(model, images, classes) -> (N, H, W)`` form the
metrics take.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .context import ModelContext, context_for

METHODS: dict[str, type[Method]] = {}  # registry: name -> class, in the order they were defined


class Method:
    """One explanation method. Subclasses set ``name`` (registry key), ``label`` (for tables) and
    ``options`` (the keyword options it takes, with defaults), and override :meth:`compute`
    (or a smaller step of a family template such as ``GradientCAM.channel_weights``)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    options: ClassVar[dict] = {}
    titled_by: ClassVar[tuple] = ()  # options that :attr:`title` shows when not at their default
    in_tables: ClassVar[bool] = True      # in metrics.explanation_methods() by default
    predicted_in_step: ClassVar[bool] = False  # class None -> -1, picked inside the compiled step

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            if cls.name in METHODS and METHODS[cls.name].__qualname__ != cls.__qualname__:
                raise ValueError(f"explanation method {cls.name!r} is registered twice: "
                                 f"{METHODS[cls.name].__qualname__} and {cls.__qualname__}")
            METHODS[cls.name] = cls

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"{self.label or self.name} takes the options {sorted(self.options)}, not {unknown}")
        self.settings = {**self.options, **options}

    @classmethod
    def configured(cls, **common):
        """An instance with those of ``common`` this method takes (others ignored): how the metrics
        pass one set of settings (``layer``, ``smooth_samples``, ``seed``...) to every method."""
        return cls(**{k: v for k, v in common.items() if k in cls.options and v is not None})

    def __getattr__(self, option):
        settings = self.__dict__.get("settings", {})
        if option in settings:
            return settings[option]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {option!r}")

    @property
    def title(self) -> str:
        """The label and the options that change what is computed, e.g. "Grad-CAM (rule=guided)"."""
        changed = [f"{k}={self.settings[k]}" for k in self.titled_by if self.settings[k] != self.options[k]]
        return f"{self.label} ({', '.join(changed)})" if changed else self.label

    def __repr__(self):
        changed = {k: v for k, v in self.settings.items() if v != self.options[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # ------------------------------------------------------------------ the template
    def __call__(self, model, images, classes=None) -> np.ndarray:
        ctx = context_for(model)
        x = self.prepare(ctx, images)
        cls = self.resolve(ctx, x, classes)
        return self.finish(ctx, self.compute(ctx, x, cls), x)

    def prepare(self, ctx: ModelContext, images) -> np.ndarray:
        return ctx.prepare(images)

    def resolve(self, ctx: ModelContext, x: np.ndarray, classes) -> np.ndarray:
        return ctx.classes(x, classes, predicted_in_step=self.predicted_in_step)

    def compute(self, ctx: ModelContext, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define compute()")

    def finish(self, ctx: ModelContext, maps, x: np.ndarray) -> np.ndarray:
        """Resize to the image and min-max, per the ``upsample`` / ``normalize`` options (maps
        made inside a compiled step already are, and pass through)."""
        return np.asarray(maps)


def method_names(tables: bool = False) -> list[str]:
    """Registered method names, in definition order (``tables=True``: those lab 06 tabulates)."""
    return [name for name, cls in METHODS.items() if cls.in_tables or not tables]


def get_method(name: str, **options) -> Method:
    """The registered method ``name`` with ``options``, or an error listing the valid names."""
    if name not in METHODS:
        raise ValueError(f"unknown explanation method {name!r}; registered methods: {list(METHODS)}")
    return METHODS[name](**options)
