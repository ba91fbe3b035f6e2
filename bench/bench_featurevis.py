"""How much does batching buy lab 08's methods? Not a test: run it by hand and copy the figures into
bench/README.md.

    .venv/bin/python bench/bench_featurevis.py                 # everything (~2-4 min on 2 busy cores)
    .venv/bin/python bench/bench_featurevis.py --repeats 5 --json /tmp/fv.json

On the Fashion CNN of lab 01 (``lh.build_fashion_cnn``, seeded random weights: a pass costs the same
whatever the weights), 28 x 28 x 1:

1. am:        activation maximization of 16 channels of ``conv2`` in one batch vs 16 single-channel runs
              (same steps, same regularisers); ratio = 16 singles / one batch.
2. tfkv:      one channel by ``lh.activation_maximization`` vs tf-keras-vis's ``ActivationMaximization``
              (its default input modifiers and regularisers, the same number of steps), side by side; the
              tf-keras-vis object built for every call (clone=True) and built once.
3. occlusion: 4 images, 4 x 4 patches with stride 2 (169 patches each), batched (64 per call) vs one patch
              per call; floor: one forward pass of all 4 x 169 patched images at once, already built.
4. ig:        integrated gradients with 32 steps on 4 images, batched (one call of 128) vs 32 separate
              gradient calls per image (batch_size=1); floor: one hand-written tf.function gradient of the
              128 path points.

Medians of ``--repeats`` interleaved runs (A, B, A, B, ...) after one warm-up of each (which compiles).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labhelpers.session import import_tensorflow_quietly, quiet_tensorflow  # noqa: E402

STEPS = 64


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(named, repeats):
    """Medians (s) of each callable, run alternately ``repeats`` times after one warm-up each."""
    for fn in named.values():
        fn()
    times = {name: [] for name in named}
    for _ in range(repeats):
        for name, fn in named.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    tf = import_tensorflow_quietly()
    tf.get_logger().setLevel("ERROR")
    import numpy as np

    import labhelpers as lh
    from labhelpers import attribution, featurevis

    lh.set_seed(0)
    model = lh.build_fashion_cnn()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    results = {}

    # 1. activation maximization: 16 channels in one batch vs 16 single runs
    vis = featurevis.FeatureVisualizer(model)
    regs = featurevis.default_regularizers(28)

    def batch16():
        vis.maximize(list(range(16)), layer="conv2", steps=STEPS, regularizers=regs, batch_size=16)

    def singles16():
        for unit in range(16):
            vis.maximize([unit], layer="conv2", steps=STEPS, regularizers=regs, batch_size=1)

    am = interleaved({"batch": batch16, "singles": singles16}, args.repeats)
    results["am"] = {**am, "ratio": am["singles"] / am["batch"]}
    print(f"activation maximization, 16 channels x {STEPS} steps: one batch {am['batch']:.3f} s, 16 single runs "
          f"{am['singles']:.3f} s -> {results['am']['ratio']:.1f}x", flush=True)

    # 2. tf-keras-vis ActivationMaximization on the same unit (conv2 channel 0), same steps
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer
    from tf_keras_vis.utils.scores import CategoricalScore

    def ours():
        vis.maximize([0], layer="conv2", steps=STEPS, regularizers=regs, batch_size=1)

    def theirs():
        am_tfkv = ActivationMaximization(model, model_modifier=ExtractIntermediateLayer("conv2"), clone=True)
        am_tfkv(lambda out: tf.reduce_mean(out[..., 0], axis=(1, 2)), steps=STEPS, input_range=(0.0, 1.0),
                seed_input=tf.random.uniform((1, 28, 28, 1), 0, 1, seed=0))

    built_once = ActivationMaximization(model, model_modifier=ExtractIntermediateLayer("conv2"), clone=True)

    def theirs_reused():
        built_once(lambda out: tf.reduce_mean(out[..., 0], axis=(1, 2)), steps=STEPS, input_range=(0.0, 1.0),
                   seed_input=tf.random.uniform((1, 28, 28, 1), 0, 1, seed=0))

    _ = CategoricalScore  # the same idea for a class: CategoricalScore(c) on the logits
    tk = interleaved({"labhelpers": ours, "tf_keras_vis": theirs, "tf_keras_vis_reused": theirs_reused},
                     args.repeats)
    results["tfkv"] = {**tk, "ratio": tk["tf_keras_vis"] / tk["labhelpers"],
                       "ratio_reused": tk["tf_keras_vis_reused"] / tk["labhelpers"]}
    print(f"one channel, {STEPS} steps: labhelpers {tk['labhelpers']:.3f} s, tf-keras-vis {tk['tf_keras_vis']:.3f} s "
          f"built per call ({results['tfkv']['ratio']:.1f}x), {tk['tf_keras_vis_reused']:.3f} s built once "
          f"({results['tfkv']['ratio_reused']:.1f}x)", flush=True)

    # 3. occlusion: batched vs one patch per call, and the floor
    occ_b = lambda: attribution.occlusion(model, images, classes=0, patch=4, stride=2, batch_size=64)  # noqa: E731
    occ_1 = lambda: attribution.occlusion(model, images, classes=0, patch=4, stride=2, batch_size=1)  # noqa: E731
    ex = attribution.context_for(model)
    linear = ex.model_linear
    positions = [(y, x) for y in attribution._positions(28, 4, 2) for x in attribution._positions(28, 4, 2)]
    patched = np.repeat(images, len(positions), axis=0)
    for i in range(len(images)):
        for j, (y, x) in enumerate(positions):
            patched[i * len(positions) + j, y:y + 4, x:x + 4] = 0.0
    forward = tf.function(lambda x: linear(x, training=False),
                          input_signature=[tf.TensorSpec((None, 28, 28, 1), tf.float32)])
    occ = interleaved({"batched": occ_b, "one_per_call": occ_1, "floor": lambda: forward(patched).numpy()},
                      args.repeats)
    results["occlusion"] = {**occ, "patches": len(positions) * len(images),
                            "ratio": occ["one_per_call"] / occ["batched"], "vs_floor": occ["batched"] / occ["floor"]}
    print(f"occlusion, {len(images)} images x {len(positions)} patches: batched {occ['batched']:.3f} s, one patch per "
          f"call {occ['one_per_call']:.3f} s -> {results['occlusion']['ratio']:.1f}x; floor {occ['floor']:.3f} s "
          f"(batched = {results['occlusion']['vs_floor']:.2f}x floor)", flush=True)

    # 4. integrated gradients, 32 steps: one batch vs 32 gradient calls per image, and the floor
    ig_b = lambda: attribution.integrated_gradients(model, images, classes=0, steps=32, batch_size=128)  # noqa: E731
    ig_1 = lambda: attribution.integrated_gradients(model, images, classes=0, steps=32, batch_size=1)  # noqa: E731
    alphas = ((np.arange(32) + 0.5) / 32).astype(np.float32)
    path = (alphas[None, :, None, None, None] * images[:, None]).reshape(-1, 28, 28, 1)

    @tf.function(input_signature=[tf.TensorSpec((None, 28, 28, 1), tf.float32)])
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = linear(x, training=False)[:, 0]
        return tape.gradient(score, x)

    ig = interleaved({"batched": ig_b, "separate": ig_1, "floor": lambda: grad(path).numpy()}, args.repeats)
    results["ig"] = {**ig, "ratio": ig["separate"] / ig["batched"], "vs_floor": ig["batched"] / ig["floor"]}
    print(f"integrated gradients, 4 images x 32 steps: batched {ig['batched']:.3f} s, 32 separate calls per image "
          f"{ig['separate']:.3f} s -> {results['ig']['ratio']:.1f}x; floor {ig['floor']:.3f} s "
          f"(batched = {results['ig']['vs_floor']:.2f}x floor)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
