"""EfficientNet-Lite0, the real ImageNet CNN the labs use offline: conversion and cache-load times,
its top-5 on every bundled photo, and the Explainer's Grad-CAM against the floor. Not a test: run it
by hand and copy the figures into bench/README.md.

    .venv/bin/python bench/bench_lite0.py                      # everything (~1-2 min on 2 busy cores)
    .venv/bin/python bench/bench_lite0.py --repeats 9 --json bench/lite0.json

1. weights: ``lh.load_efficientnet_lite0()`` into an empty cache (reads the PyTorch file with the
   restricted unpickler, converts, writes the checksummed cache entry), then loads from that cache
   (median of ``--loads`` calls in this process; the first call of a process also imports Keras).
2. top-5 of each photo of ``lh.sample_images()``, both as ImageNet evaluates (short side 256, centre
   crop 224) and as the labs feed photos (``vgg_lab.lab_images``: resized to 224 x 224, no crop).
3. floor: one ``Explainer.gradcam`` call for the 4 photos of bench_explainer.py (chelsea, coffee,
   rocket, astronaut) at 224 x 224, scores = logits of each photo's class, the Explainer's default
   layer (``top_activation``, the ReLU6 after ``top_conv``: 7 x 7 x 1280) vs one hand-written
   ``tf.function`` forward + backward to the same layer (features and gradients, no map). Calls
   alternate, so a change of machine load hits both alike; medians of ``--repeats`` after a warm-up.
   Target: at most 1.1x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labhelpers.session import import_tensorflow_quietly, quiet_tensorflow  # noqa: E402

TARGET = 1.1
PHOTOS = ["chelsea", "coffee", "rocket", "astronaut"]


def once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_weights(lh, loads: int) -> dict:
    print("1. weights", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["LABS_CACHE_DIR"] = cache
        start = time.perf_counter()
        _, info = lh.load_efficientnet_lite0()
        first = time.perf_counter() - start
        assert info.source == "converted", info.source
        times = []
        for _ in range(loads):
            start = time.perf_counter()
            _, again = lh.load_efficientnet_lite0()
            times.append(time.perf_counter() - start)
            assert again.source == "cache", again.source
        conversion = info.details["conversion_s"]
    out = {"first_call_s": round(first, 3), "read_and_convert_s": conversion,
           "cache_load_median_s": round(statistics.median(times), 3), "cache_loads_s": [round(t, 3) for t in times]}
    print(f"  first call (build, read the .pth, convert, write the cache): {first:.2f} s, of which reading + "
          f"converting {conversion:.2f} s", flush=True)
    print(f"  from the cache (build + SHA-256 + load_weights): median {out['cache_load_median_s']:.2f} s of "
          f"{loads} ({', '.join(f'{t:.2f}' for t in times)})", flush=True)
    return out


def bench_top5(np, lh, model) -> dict:
    from labhelpers import vgg_lab
    from labhelpers.models import efficientnet

    print("2. top-5 on the bundled photos (ImageNet crop | the labs' 224 x 224 resize)", flush=True)
    photos = lh.sample_images()
    crops = np.stack([efficientnet.resize_center_crop(p.image) for p in photos])
    squashed = vgg_lab.lab_images(names=[p.name for p in photos]).images
    out = {}
    for how, images in (("crop", crops), ("resize", squashed)):
        probs = model.predict(efficientnet.preprocess_input(images), verbose=0)
        for photo, p in zip(photos, probs, strict=True):
            top = np.argsort(p)[::-1][:5]
            entry = [[int(c), lh.imagenet_class_name(int(c)), round(float(p[c]), 4)] for c in top]
            out.setdefault(photo.name, {"label": [photo.class_id, photo.class_name]})[how] = entry
    for name, row in out.items():
        print(f"  {name} (label {row['label'][0]} {row['label'][1]})", flush=True)
        for how in ("crop", "resize"):
            print(f"    {how:<6} " + ", ".join(f"{c} {n} {p:.3f}" for c, n, p in row[how]), flush=True)
    return out


def bench_floor(tf, np, lh, model, repeats: int) -> dict:
    from labhelpers import vgg_lab
    from labhelpers.kerasapi import keras
    from labhelpers.models.efficientnet import preprocess_input

    photos = vgg_lab.lab_images(names=PHOTOS)
    x = preprocess_input(photos.images)
    classes = np.array(photos.class_ids, dtype=np.int32)
    explainer = lh.Explainer(model)
    layer = explainer.default_layer()
    linear = lh.ReplaceToLinear()(model)
    features_and_logits = keras.Model(linear.input, [linear.get_layer(layer).output, linear.output])
    spec = [tf.TensorSpec((None, 224, 224, 3), tf.float32), tf.TensorSpec((None,), tf.int32)]

    @tf.function(input_signature=spec)
    def floor_gradcam(images, cls):  # forward + backward to the layer (no map, no resize)
        with tf.GradientTape() as tape:
            feats, logits = features_and_logits(images, training=False)
            score = tf.gather(logits, cls, axis=1, batch_dims=1)
        return feats, tape.gradient(score, feats)

    xt, ct = tf.constant(x), tf.constant(classes)

    def ours():
        return explainer.gradcam(x, classes)

    def floor():
        return [t.numpy() for t in floor_gradcam(xt, ct)]

    print(f"3. Explainer.gradcam vs a hand-written tf.function (forward + backward to {layer!r}), "
          f"batch of {len(x)}, median of {repeats}", flush=True)
    first_ours, first_floor = once(ours), once(floor)
    t_ours, t_floor = [], []
    for _ in range(repeats):
        t_ours.append(once(ours))
        t_floor.append(once(floor))
    m_ours, m_floor = statistics.median(t_ours), statistics.median(t_floor)
    ratio = m_ours / m_floor
    met = ratio <= TARGET
    print(f"  Explainer {m_ours:.4f} s (first call {first_ours:.2f} s), floor {m_floor:.4f} s (first call "
          f"{first_floor:.2f} s): {ratio:.2f}x (target <= {TARGET}x: {'met' if met else 'MISSED'})", flush=True)
    print(f"  runs: Explainer {[round(t, 4) for t in t_ours]}, floor {[round(t, 4) for t in t_floor]}", flush=True)
    peaks = [np.unravel_index(int(np.argmax(m)), m.shape) for m in explainer.gradcam(x, classes, upsample=False)]
    print(f"  Grad-CAM peaks on the 7 x 7 grid (row, col): {dict(zip(PHOTOS, [tuple(map(int, p)) for p in peaks], strict=True))}")
    return {"layer": layer, "explainer_s": round(m_ours, 4), "floor_s": round(m_floor, 4), "ratio": round(ratio, 3),
            "target": TARGET, "met": met, "explainer_first_s": round(first_ours, 3),
            "runs_explainer": t_ours, "runs_floor": t_floor}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9, help="timed Grad-CAM runs of each (median)")
    parser.add_argument("--loads", type=int, default=3, help="cache loads to time (median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    tf = import_tensorflow_quietly()
    import numpy as np

    import labhelpers as lh

    tf.get_logger().setLevel("ERROR")
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {' '.join(load)} at start; Python "
          f"{platform.python_version()}, TensorFlow {tf.__version__}", flush=True)
    results = {"cpus": os.cpu_count(), "load_at_start": load}
    start = time.perf_counter()
    results["weights"] = bench_weights(lh, args.loads)
    model, _ = lh.load_efficientnet_lite0()
    results["top5"] = bench_top5(np, lh, model)
    results["floor"] = bench_floor(tf, np, lh, model, args.repeats)
    with open("/proc/loadavg") as fh:
        results["load_at_end"] = fh.read().split()[:3]
    results["total_s"] = round(time.perf_counter() - start, 1)
    print(f"done in {results['total_s']:.0f} s; load average at the end {' '.join(results['load_at_end'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
