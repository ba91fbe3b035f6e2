"""``train_or_load``: train once per (architecture, data, epochs, batch size, seed, profile, TF/Keras major
version) and reuse the weights from ``<cache>/models/`` afterwards. Files are written atomically, with a
SHA-256 that is checked on every load (a damaged file is trained again, with a warning). The fingerprints
and the checked load are shared with the pretrained loaders (``efficientnet``'s converted-weights cache).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import config
from ..files import atomic_path, atomic_write_text, file_lock
from ..kerasapi import LEGACY, keras

CACHE_FORMAT = 1  # bump when the cache layout or key recipe changes
# Training steps per call of Keras 3's compiled train function: the same updates in the same order (bit-identical
# weights: cam2 and fashion_cnn checked against 1, so not part of the cache key), less Python per step, which
# counts at small batches: lab 02's smoke cam2 at batch 2 took 19 s an epoch instead of 23 s (2-core VM).
STEPS_PER_EXECUTION = 50


# ----------------------------------------------------------------------------- fingerprints
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def architecture_fingerprint(model: keras.Model) -> str:
    """SHA-256 of what defines a network: its layer graph and configurations, weight
    shapes, loss and optimizer settings. Layer and model names are replaced by their
    position, so Keras's automatic names (``dense_7``) do not change the fingerprint."""
    spec = json.loads(model.to_json())
    spec.pop("compile_config", None)  # taken from get_compile_config() below, with names dropped
    names = {model.name: "<model>"}
    names.update({layer.name: f"<layer{i}>" for i, layer in enumerate(model.layers)})

    def canonical(obj, drop_names=False):
        if isinstance(obj, dict):
            return {k: canonical(v, drop_names) for k, v in obj.items() if not (drop_names and k == "name")}
        if isinstance(obj, list):
            return [canonical(v, drop_names) for v in obj]
        if isinstance(obj, str):
            return names.get(obj, obj)
        return obj

    try:
        compiled = model.get_compile_config()
    except Exception:  # an uncompiled model: its training recipe is whatever fit() is told
        compiled = None
    return _digest({
        "graph": canonical(spec),
        "weights": [list(w.shape) for w in model.weights],
        "compile": canonical(compiled, drop_names=True),  # optimizers are auto-named too (adam_1)
    })


def _array_digest(*arrays) -> dict:
    """Shape, dtype and SHA-256 of the arrays a model is trained on (after preprocessing,
    so a changed scaling or label encoding also changes the cache key)."""
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        out.append({"shape": list(a.shape), "dtype": str(a.dtype),
                    "sha256": hashlib.sha256(a.view(np.uint8).reshape(-1)).hexdigest()})
    return {"arrays": out}


def _fingerprint_of(data_fingerprint):
    if data_fingerprint is None or isinstance(data_fingerprint, (str, int, float)):
        return data_fingerprint
    if hasattr(data_fingerprint, "to_dict"):
        return data_fingerprint.to_dict()
    if isinstance(data_fingerprint, dict):
        return data_fingerprint
    return str(data_fingerprint)


def _versions() -> dict:
    import tensorflow as tf

    return {"tensorflow": tf.__version__.split(".")[0], "keras": keras.__version__.split(".")[0],
            "legacy_keras": config.legacy_keras()}


# ----------------------------------------------------------------------------- training cache
@dataclass
class TrainInfo:
    """What ``train_or_load`` did: ``source`` is "trained" or "cache"."""

    name: str
    source: str
    path: Path
    key: str
    epochs: int
    batch_size: int
    seed: int
    profile: str | None
    history: dict = field(default_factory=dict)
    duration_s: float = 0.0  # this call: training, or loading from the cache
    train_duration_s: float = 0.0  # the original training run (also when loaded)
    created: str = ""

    @property
    def trained(self) -> bool:
        return self.source == "trained"

    @property
    def from_cache(self) -> bool:
        return self.source == "cache"

    def final(self, metric: str) -> float | None:
        """The last epoch's value of a history metric (e.g. "val_accuracy"), or None."""
        values = self.history.get(metric)
        return float(values[-1]) if values else None

    def __str__(self) -> str:
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        what = (f"trained {epochs} (batch {self.batch_size}, seed {self.seed}) in {self.duration_s:.1f} s"
                if self.trained else
                f"loaded from the cache in {self.duration_s:.1f} s (trained {epochs}, batch "
                f"{self.batch_size}, seed {self.seed}, in {self.train_duration_s:.1f} s on {self.created})")
        return f"{self.name}: {what}\n  weights: {self.path}"


def _atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, default=str))


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file, read in 4 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def entry_lock(folder: Path, stem: str, waiting: str):
    """The lock of one cache entry (``<folder>/<stem>.lock``): one process makes the entry (trains,
    converts) while another that wants it prints ``waiting`` and the lock's path, then finds it made."""
    lock = folder / f"{stem}.lock"
    return file_lock(lock, on_wait=lambda: print(f"{waiting} (lock {lock})", flush=True))


def _load_cached(path: Path, meta_path: Path, key: str, model: keras.Model, redo: str = "retraining"):
    """``model`` (freshly built) with the cached weights, or None when the cache entry is
    absent or unusable (then ``model`` may hold partly loaded weights: build a new one).
    The weights file must have the SHA-256 its metadata recorded: one flipped bit is a
    warning naming the file, and the caller trains (converts) again."""
    if not (path.exists() and meta_path.exists()):
        return None, None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            raise ValueError(f"{meta_path} belongs to another recipe")
        if meta.get("sha256") is None:
            raise ValueError(f"{meta_path} records no SHA-256 of the weights (an older cache entry)")
        if (actual := file_sha256(path)) != meta["sha256"]:
            raise ValueError(f"SHA-256 {actual} differs from the {meta['sha256']} recorded in {meta_path.name}: "
                             "the file was damaged or changed after it was written")
        with warnings.catch_warnings():  # the optimizer's slots are not restored: not needed for inference
            warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
            model.load_weights(path)
        return model, meta
    except Exception as exc:  # a damaged file: say so and train again
        warnings.warn(f"cached weights {path} could not be loaded ({type(exc).__name__}: {exc}); {redo}",
                      stacklevel=3)
        return None, None


def train_or_load(name: str, build_fn: Callable[[], keras.Model], x_train, y_train, *, epochs: int,
                  batch_size: int, validation_data=None, profile=None, seed: int = config.DEFAULT_SEED,
                  data_fingerprint=None, verbose: int | str = 2, shuffle: bool = True):
    """Train ``build_fn()`` on (x_train, y_train), or load the weights of an identical run.

    The cache key covers the architecture (``architecture_fingerprint``), the training
    arrays themselves (SHA-256), ``data_fingerprint`` (the dataset's provenance, recorded
    and part of the key), epochs, batch size, seed, the profile's name and the
    TensorFlow/Keras major versions. Weights (``.weights.h5``) and a JSON of history and
    metadata land in ``<cache>/models/`` atomically (``labhelpers.files``), the
    JSON last, so a parallel notebook sees a complete entry or none. A recipe is trained by one
    process at a time (a lock file beside the weights): a second notebook that asks for the same
    recipe meanwhile says that it waits, then loads the first one's weights instead of training too.

    The seed is set (``config.set_seed``, op determinism on) before building, so two
    trainings with the same inputs give bit-identical weights on the CPU.
    Returns ``(model, TrainInfo)``.
    """
    if not callable(build_fn):
        raise TypeError(f"build_fn must be a function returning a compiled keras.Model, got {build_fn!r}")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"epochs and batch_size must be positive, got epochs={epochs}, batch_size={batch_size}")
    if len(x_train) != len(y_train):
        raise ValueError(f"{name}: {len(x_train)} training images but {len(y_train)} labels")
    profile_name = config.resolve_profile(profile).name if profile is not None else None
    epochs, batch_size, seed = int(epochs), int(batch_size), int(seed)

    config.set_seed(seed)
    model = build_fn()
    if not isinstance(model, keras.Model):
        raise TypeError(f"build_fn for {name!r} returned {type(model).__name__}, not a keras.Model")
    data = _array_digest(x_train, y_train)
    if validation_data is not None:
        data["validation"] = _array_digest(*validation_data[:2])
    recipe = {
        "format": CACHE_FORMAT, "name": name, "architecture": architecture_fingerprint(model),
        "data": data, "data_fingerprint": _fingerprint_of(data_fingerprint), "epochs": epochs,
        "batch_size": batch_size, "seed": seed, "shuffle": bool(shuffle), "profile": profile_name,
        "versions": _versions(),
    }
    key = _digest(recipe)
    folder = config.cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{key[:16]}"
    path, meta_path = folder / f"{stem}.weights.h5", folder / f"{stem}.json"

    with entry_lock(folder, stem, f"{name}: another process is training this recipe; waiting for its weights"):
        start = time.perf_counter()
        cached, meta = _load_cached(path, meta_path, key, model)
        if cached is not None:
            info = TrainInfo(name=name, source="cache", path=path, key=key, epochs=epochs,
                             batch_size=batch_size, seed=seed, profile=profile_name,
                             history=meta.get("history", {}), duration_s=time.perf_counter() - start,
                             train_duration_s=float(meta.get("train_duration_s", 0.0)),
                             created=meta.get("created", ""))
            model = cached
        else:
            if path.exists() or meta_path.exists():  # a failed load may have touched the weights
                config.set_seed(seed)
                model = build_fn()
            if not LEGACY and getattr(model, "steps_per_execution", None) == 1:  # tf-keras sets it in compile()
                model.steps_per_execution = STEPS_PER_EXECUTION
            history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size,
                                validation_data=validation_data, shuffle=shuffle, verbose=verbose)
            duration = time.perf_counter() - start
            hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
            created = time.strftime("%Y-%m-%d %H:%M:%S")
            with atomic_path(path, suffix=".weights.h5") as tmp:  # Keras goes by the extension
                model.save_weights(tmp)
                digest = file_sha256(tmp)
            _atomic_write_json(meta_path, {"key": key, "recipe": recipe, "history": hist, "sha256": digest,
                                           "train_duration_s": duration, "created": created})
            info = TrainInfo(name=name, source="trained", path=path, key=key, epochs=epochs,
                             batch_size=batch_size, seed=seed, profile=profile_name, history=hist,
                             duration_s=duration, train_duration_s=duration, created=created)
    config.record_provenance(kind="weights", summary=str(info).splitlines()[0], name=name, source=info.source,
                             path=str(path), key=key, fallback=False,
                             data_fingerprint=recipe["data_fingerprint"])
    return model, info
