"""Sanity: the model-parameter randomisation check (Adebayo et al. 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .methods import MapMethod, explanation_methods
from .similarity import rank_rows, spearman_of_ranks, ssim_rows
from .stats import _as_classes, _as_images, _as_maps, bootstrap_ci


# ------------------------------------------------------------------ randomisation check
@dataclass
class RandomizationResult:
    """What ``randomization_check`` measured.

    ``stages``: ``"original"`` then the layer names in the order they were
    randomised (output first). ``spearman_abs``, ``spearman``, ``ssim``: for each
    method, an array (stages, N) comparing the maps at that stage with the maps of
    the intact model (absolute-value and signed Spearman, SSIM). ``maps``: for each
    method, (stages, k, H, W) maps of the first k images, for figures.
    """

    methods: list[str]
    stages: list[str]
    mode: str
    spearman_abs: dict[str, np.ndarray] = field(default_factory=dict)
    spearman: dict[str, np.ndarray] = field(default_factory=dict)
    ssim: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    images: np.ndarray | None = None

    def mean(self, metric: str = "spearman_abs") -> dict[str, np.ndarray]:
        """Per method, the metric averaged over images at each stage, shape (stages,)."""
        table = getattr(self, metric)
        return {m: table[m].mean(axis=1) for m in self.methods}

    def final(self, metric: str = "spearman_abs") -> dict[str, float]:
        """Per method, the mean metric once every chosen layer is randomised."""
        return {m: float(v[-1]) for m, v in self.mean(metric).items()}

    def verdicts(self, threshold: float = 0.5, metric: str = "spearman_abs", stage: int = -1,
                 ci: float = 0.95, n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
        """Pass / fail per method, from the numbers.

        At ``stage`` (default: everything randomised) a method *passes* when the
        bootstrap interval of its mean ``metric`` lies wholly below ``threshold`` (its
        maps lost most of their resemblance to the trained model's), *fails* when it
        lies wholly above, and is *undecided* when it straddles the threshold (more
        images would tell). Returns ``{method: {"verdict", "mean", "low", "high"}}``.
        """
        table = getattr(self, metric)
        out = {}
        for m in self.methods:
            mean, low, high = bootstrap_ci(table[m][stage], n_boot=n_boot, ci=ci, seed=seed)
            verdict = "passes" if high < threshold else "fails" if low > threshold else "undecided"
            out[m] = {"verdict": verdict, "mean": mean, "low": low, "high": high}
        return out

    def to_rows(self) -> list[dict]:
        rows = []
        for m in self.methods:
            for s, stage in enumerate(self.stages):
                rows.append({"method": m, "stage": s, "randomised_down_to": stage,
                             "spearman_abs": float(self.spearman_abs[m][s].mean()),
                             "spearman": float(self.spearman[m][s].mean()),
                             "ssim": float(self.ssim[m][s].mean())})
        return rows


def layers_with_weights(model) -> list[str]:
    """Names of the model's layers that hold weights, input to output."""
    return [layer.name for layer in model.layers if layer.weights]


def layer_groups(model) -> dict[str, list[str]]:
    """The model's weighted layers grouped by block, input to output: ``{label: [names]}``.

    A layer named ``block<n>...`` belongs to block ``block<n>`` (VGG16's block5_conv1..3;
    EfficientNet-Lite0's stage block6 = block6a..block6d with their convolutions and batch
    norms); any other layer is grouped by its name up to the first underscore (``stem``,
    ``top``) or alone (``fc1``, ``predictions``). Pass it as ``randomization_check(...,
    layers=...)`` to randomise a deep network block by block instead of layer by layer.
    """
    import re

    groups: dict[str, list[str]] = {}
    for name in layers_with_weights(model):
        match = re.match(r"(block\d+)", name)
        label = match.group(1) if match else name.split("_")[0]
        groups.setdefault(label, []).append(name)
    return groups


def _fresh_values(layer, variable, rng: np.random.Generator) -> np.ndarray:
    """New values for one variable from the layer's own initialiser (new seed each time)."""
    from ..kerasapi import keras  # Keras 3, or tf_keras in legacy mode

    name = variable.name.split("/")[-1].split(":")[0]
    init = getattr(layer, f"{name}_initializer", None)
    if init is None:  # a layer without a named initialiser: Glorot for kernels, zeros otherwise
        init = keras.initializers.GlorotUniform() if len(variable.shape) >= 2 else keras.initializers.Zeros()
    config = init.get_config()
    if "seed" in config:
        config["seed"] = int(rng.integers(0, 2**31 - 1))
        init = init.__class__.from_config(config)
    return np.asarray(init(tuple(variable.shape), dtype=variable.dtype))


def randomization_check(model, images, classes, methods: Mapping[str, MapMethod] | None = None,
                        layers: Sequence[str] | None = None, mode: str = "cascading", seed: int = 0,
                        keep_maps: int = 4) -> RandomizationResult:
    """Model-parameter randomisation test (Adebayo et al., 2018).

    Re-initialise the weighted layers of ``model`` one at a time from the output backwards
    with their own initialisers. ``mode="cascading"`` keeps the earlier randomisations (the
    top k layers are random at stage k); ``"independent"`` randomises only one layer per
    stage. After each stage every method's maps are recomputed and compared with the intact
    model's maps, image by image.

    The randomisation happens on ``model`` itself and its trained weights are put back at the
    end, bit for bit, also when a method raises (``try``/``finally``). Working in place, the
    methods reuse the model's compiled steps: a copy (``clone_model``) would be a new model
    whose every step traces again (EfficientNet-Lite0: ~2.5 s per method), and subclassed
    models, which cannot be cloned, can be checked too. Stage ``original`` recomputes the
    maps before anything is randomised, so it also shows that each method is deterministic.

    ``methods`` maps a name to ``f(model, images, classes) -> (N, H, W)`` maps
    (default: :func:`explanation_methods`). ``layers`` restricts the check to some
    weighted layers (default: all), or is a mapping ``{label: [names]}`` whose groups are
    randomised together, one stage each (:func:`layer_groups`). A method that passes changes its maps as the
    weights go (correlation falls towards 0); one that fails keeps them.
    """

    images = _as_images(images)
    classes = _as_classes(classes, len(images))
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent'; got {mode!r}")
    methods = dict(methods) if methods is not None else explanation_methods()
    if not methods:
        raise ValueError("no methods to check")
    weighted = layers_with_weights(model)
    if layers is None:
        groups = {name: [name] for name in weighted}
    elif isinstance(layers, Mapping):
        groups = {str(label): [names] if isinstance(names, str) else list(names) for label, names in layers.items()}
    else:
        groups = {name: [name] for name in weighted if name in set(layers)}
        groups.update({name: [name] for name in layers if name not in weighted})  # reported below
    unknown = [name for names in groups.values() for name in names if name not in weighted]
    if unknown:
        raise ValueError(f"layers {unknown} are not weighted layers of model {model.name!r}; "
                         f"weighted layers: {weighted}")
    if not groups or not all(groups.values()):
        raise ValueError("no layers to randomise (an empty group or an empty list)")
    cascade = list(reversed(groups))  # from the output backwards

    original_weights = model.get_weights()
    rng = np.random.default_rng(seed)

    def maps_of(name):
        return _as_maps(methods[name](model, images, classes), images, name=f"maps of method {name!r}")

    result = RandomizationResult(methods=list(methods), stages=["original", *cascade], mode=mode,
                                 images=images[:keep_maps].copy())
    per_stage = {name: [] for name in methods}
    try:
        reference = {name: maps_of(name) for name in methods}
        for layer_name in [None, *cascade]:
            if layer_name is not None:
                if mode == "independent":
                    model.set_weights(original_weights)
                for name in groups[layer_name]:
                    layer = model.get_layer(name)
                    layer.set_weights([_fresh_values(layer, v, rng) for v in layer.weights])
            for name in methods:
                per_stage[name].append(maps_of(name))
    finally:
        model.set_weights(original_weights)  # the trained model again, whatever happened
    for name in methods:
        stack = np.stack(per_stage[name])  # (stages, N, H, W)
        ref = reference[name]
        ranks_abs, ranks = rank_rows(np.abs(ref)), rank_rows(ref)  # once per method, not per stage
        result.spearman_abs[name] = np.stack([spearman_of_ranks(ranks_abs, rank_rows(np.abs(m))) for m in stack])
        result.spearman[name] = np.stack([spearman_of_ranks(ranks, rank_rows(m)) for m in stack])
        result.ssim[name] = np.stack([ssim_rows(np.abs(ref), np.abs(m)) for m in stack])
        result.maps[name] = stack[:, :keep_maps].astype(np.float32)
    return result
