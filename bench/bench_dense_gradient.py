"""The input gradient of a Dense layer at small batches (issue 18): VGG16's fc1 (25088 -> 4096).
Not a test: run it by hand and copy the figures into bench/README.md.

    .venv/bin/python bench/bench_dense_gradient.py --repeats 5 --json bench/dense.json

1. products: the gradient of ``x @ W`` w.r.t. ``x`` for dy of shape (N, 4096), written as TensorFlow's
   gradient writes it (``matmul(dy, W, transpose_b=True)``, "plain") and as
   :func:`labhelpers.modifiers.dense_matmul` writes it (``transpose(matmul(W, dy, transpose_b=True))``,
   "transposed", :func:`dense_matmul` below), N = 1, 2, 4, 8; one compiled ``tf.function`` each,
   calls alternating.
2. Grad-CAM (``block5_conv3``) on VGG16 (seeded random weights) per image, at batch 1 and at batch 4
   (the 4 bundled photos of bench_explainer.py), for the Explainer as it is (TensorFlow's own Dense
   gradient, "plain") and for one whose rebuilt graphs compute every Dense input gradient in the
   transposed form (:func:`dense_matmul`, patched into the rebuild for this comparison only); calls
   alternate, medians of ``--repeats`` after a warm-up call each. Target: per image, batch 4 no slower
   than batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labhelpers.session import import_tensorflow_quietly, quiet_tensorflow  # noqa: E402


def dense_matmul(tf):
    """``x @ kernel`` whose input gradient is ``transpose(kernel @ dy^T)`` (issue 18's better form)."""
    @tf.custom_gradient
    def matmul(x, kernel):
        def grad(dy):
            return tf.transpose(tf.matmul(kernel, dy, transpose_b=True)), tf.matmul(x, dy, transpose_a=True)
        return tf.matmul(x, kernel), grad
    return matmul


def transposed_dense_rebuilds(tf, modifiers, keras):
    """Patch the rebuild so views of Dense layers use :func:`dense_matmul` (for this comparison)."""
    matmul, original = dense_matmul(tf), modifiers._Builder.stand_in

    def stand_in(self, op, is_output):
        view = original(self, op, is_output)
        if type(op) is keras.layers.Dense and view is not op and "call" not in view.__dict__:
            def call(inputs, *args, view=view, **kwargs):
                out = matmul(inputs, tf.convert_to_tensor(view.kernel))
                out = out + tf.convert_to_tensor(view.bias) if view.bias is not None else out
                return view.activation(out) if view.activation is not None else out
            object.__setattr__(view, "call", call)
        return view
    return original, stand_in


def once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each of ``fns`` (one warm-up call each, then calls alternating)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(once(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_products(tf, repeats) -> dict:
    kernel = tf.Variable(tf.random.stateless_normal((25088, 4096), seed=(0, 1)) * 0.01)
    spec = [tf.TensorSpec((None, 4096), tf.float32)]
    plain = tf.function(lambda dy: tf.matmul(dy, kernel, transpose_b=True), input_signature=spec)
    transposed = tf.function(lambda dy: tf.transpose(tf.matmul(kernel, dy, transpose_b=True)),
                             input_signature=spec)
    rows = {}
    print("1. dL/dx of x @ W, W 25088 x 4096 (VGG16's fc1), median of", repeats, flush=True)
    for n in (1, 2, 4, 8):
        dy = tf.random.stateless_normal((n, 4096), seed=(1, n))
        got = interleaved({"plain": lambda dy=dy: plain(dy).numpy(),
                           "transposed": lambda dy=dy: transposed(dy).numpy()}, repeats)
        rows[n] = {k: round(v * 1000, 1) for k, v in got.items()}
        print(f"  N={n}: plain {rows[n]['plain']:.1f} ms, transposed {rows[n]['transposed']:.1f} ms", flush=True)
    return rows


def bench_gradcam(tf, repeats) -> dict:
    import numpy as np

    import labhelpers as lh
    from labhelpers import modifiers, vgg_lab

    lh.set_seed(0)
    model, _ = lh.load_vgg16(weights=None)
    photos = vgg_lab.lab_images(names=["chelsea", "coffee", "rocket", "astronaut"])
    x = vgg_lab.vgg16_preprocess(photos.images)
    classes = np.array(photos.class_ids, dtype=np.int32)
    from labhelpers.kerasapi import keras

    plain = lh.Explainer(model)
    plain.graph()
    original, patched = transposed_dense_rebuilds(tf, modifiers, keras)
    modifiers._Builder.stand_in = patched
    try:
        fast = lh.Explainer(model)
        fast.graph()
    finally:
        modifiers._Builder.stand_in = original
    got, want = fast.saliency(x, classes, normalize=False), plain.saliency(x, classes, normalize=False)
    print(f"  the two forms' input gradients differ by at most {np.abs(got - want).max():.2g} "
          f"(largest |gradient| {np.abs(want).max():.2g})", flush=True)
    fns = {}
    for label, ex in (("transposed", fast), ("plain", plain)):
        fns[f"{label} batch 4"] = lambda ex=ex: ex.gradcam(x, classes, layer="block5_conv3")
        fns[f"{label} batch 1"] = lambda ex=ex: [ex.gradcam(x[i:i + 1], classes[i:i + 1], layer="block5_conv3")
                                                 for i in range(len(x))]
    print(f"2. Grad-CAM per image on VGG16, {len(x)} photos, median of {repeats}", flush=True)
    got = interleaved(fns, repeats)
    rows = {k: round(v / len(x), 4) for k, v in got.items()}
    for label in ("transposed", "plain"):
        b4, b1 = rows[f"{label} batch 4"], rows[f"{label} batch 1"]
        print(f"  {label:<10}: per image {b4:.3f} s at batch 4, {b1:.3f} s at batch 1 "
              f"(batch 4 / batch 1 = {b4 / b1:.2f}x)", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["products", "gradcam"], action="append")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    quiet_tensorflow()
    tf = import_tensorflow_quietly()
    tf.get_logger().setLevel("ERROR")
    load = os.getloadavg()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          "at start", flush=True)
    results = {"load_at_start": [round(v, 2) for v in load]}
    parts = args.only or ["products", "gradcam"]
    if "products" in parts:
        results["products_ms"] = bench_products(tf, args.repeats)
    if "gradcam" in parts:
        results["gradcam_per_image_s"] = bench_gradcam(tf, args.repeats)
    results["load_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print("load average at the end", " ".join(f"{v:.2f}" for v in results["load_at_end"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
