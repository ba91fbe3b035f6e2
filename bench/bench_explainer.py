"""How fast and how lean is the Explainer on VGG16? Not a test: run it by hand and copy the figures
into bench/README.md.

    .venv/bin/python bench/bench_explainer.py               # everything (~10-30 min on 2 busy cores)
    .venv/bin/python bench/bench_explainer.py --only floor   # or: tfkv, memory
    .venv/bin/python bench/bench_explainer.py --repeats 3 --json bench/results.json

VGG16 gets random weights (seeded): the timing and the memory of a forward / backward pass do not depend
on the values of the weights, and this way the benchmark needs no 528 MB download. One batch of 4 photos
(the bundled scikit-image ones) at 224 x 224.

1. memory: peak resident memory (ru_maxrss) of a fresh process that runs every method of lab 05 through
   one Explainer vs one that only loads VGG16 and predicts. Target: at most 1.15x. The same for
   tf-keras-vis with clone=True, for comparison. Measured first, from a parent without TensorFlow.
2. floor:  Grad-CAM and vanilla saliency via the Explainer vs one forward + backward pass of a hand-written
   ``tf.function`` (the least any implementation must do). Target: at most 1.3x. SmoothGrad(20) vs a floor
   that draws the noise in-graph (one ``tf.function`` per chunk of noisy rows, as many rows as the
   Explainer's ``gradient_rows()``). Target: at most 1.03x. Memory also reports the peak of the work alone
   (after loading) against predict's.
3. tfkv:   the Explainer (built once, as the labs use it) vs tf-keras-vis as the labs used it: a new
   ``Gradcam`` / ``Saliency`` object with ``clone=True`` and tf-keras-vis's ``ReplaceToLinear`` for every
   call, construction included. Targets: at least 3x faster for Grad-CAM and saliency, 1.5x for
   SmoothGrad(20).

All times are medians of ``--repeats`` runs after one warm-up run (the warm-up compiles the steps; its time
is reported separately as "first call").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labhelpers.session import import_tensorflow_quietly, quiet_tensorflow  # noqa: E402

LAYER = "block5_conv3"
SMOOTH_SAMPLES = 20
SCORECAM_MAX_N = 10
TARGETS = {"floor": 1.3, "smooth_floor": 1.03, "tfkv_gradcam": 3.0, "tfkv_saliency": 3.0, "tfkv_smoothgrad": 1.5, "memory": 1.15}


# ----------------------------------------------------------------------------- shared set-up
def setup():
    quiet_tensorflow()
    tf = import_tensorflow_quietly()
    import numpy as np

    import labhelpers as lh
    from labhelpers import vgg_lab

    tf.get_logger().setLevel("ERROR")
    lh.set_seed(0)
    model, _ = lh.load_vgg16(weights=None)  # random weights on purpose: timing does not depend on them
    photos = vgg_lab.lab_images(names=["chelsea", "coffee", "rocket", "astronaut"])
    x = vgg_lab.vgg16_preprocess(photos.images)
    classes = np.array(photos.class_ids, dtype=np.int32)
    return tf, np, lh, model, x, classes


def once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn, repeats):
    """(median seconds of `repeats` calls, seconds of the warm-up call)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), first, times


def report(name, ours, base, target, higher_is_better=False):
    ratio = base / ours if higher_is_better else ours / base
    ok = ratio >= target if higher_is_better else ratio <= target
    sign = ">=" if higher_is_better else "<="
    print(f"  {name:<44} {ratio:6.2f}x  (target {sign} {target}x: {'met' if ok else 'MISSED'})", flush=True)
    return {"ratio": round(ratio, 3), "target": target, "met": bool(ok)}


# ----------------------------------------------------------------------------- 1. the floor
def bench_floor(repeats, smooth_repeats):
    tf, np, lh, model, x, classes = setup()
    import keras

    linear = lh.ReplaceToLinear()(model)  # logits, as the Explainer scores them
    features_and_logits = keras.Model(linear.input, [linear.get_layer(LAYER).output, linear.output])
    spec = [tf.TensorSpec((None, 224, 224, 3), tf.float32), tf.TensorSpec((None,), tf.int32)]

    @tf.function(input_signature=spec)
    def floor_saliency(images, cls):  # forward + backward to the pixels, nothing else
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = tf.gather(linear(images, training=False), cls, axis=1, batch_dims=1)
        return tape.gradient(score, images)

    @tf.function(input_signature=spec)
    def floor_gradcam(images, cls):  # forward + backward to block5_conv3 (no map, no resize)
        with tf.GradientTape() as tape:
            feats, logits = features_and_logits(images, training=False)
            score = tf.gather(logits, cls, axis=1, batch_dims=1)
        return feats, tape.gradient(score, feats)

    smooth_spec = spec + [tf.TensorSpec((None,), tf.float32), tf.TensorSpec((2,), tf.int64)]

    @tf.function(input_signature=smooth_spec)
    def floor_smooth_rows(images, cls, sigma, seed):  # noise drawn in-graph, forward + backward, |grad| per image
        noisy = images + sigma[:, None, None, None] * tf.random.stateless_normal(tf.shape(images), seed)
        with tf.GradientTape() as tape:
            tape.watch(noisy)
            score = tf.gather(linear(noisy, training=False), cls, axis=1, batch_dims=1)
        return tf.abs(tape.gradient(score, noisy))

    sigma = (0.2 * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))).astype(np.float32)
    grid = np.arange(SMOOTH_SAMPLES * len(x)) % len(x)  # row j of the (sample, image) grid: image j % N

    def floor_smoothgrad():  # as many noisy rows per step as the Explainer (its gradient_rows(): 5 on VGG16)
        total, step = tf.zeros_like(xt), explainer.gradient_rows()
        for k, start in enumerate(range(0, len(grid), step)):
            rows = tf.constant(grid[start:start + step])
            grads = floor_smooth_rows(tf.gather(xt, rows), tf.gather(ct, rows), tf.gather(sigma, rows),
                                      tf.constant([0, k], tf.int64))
            total += tf.math.unsorted_segment_sum(grads, rows, len(x))
        return (total / SMOOTH_SAMPLES).numpy()

    explainer = lh.Explainer(model)
    xt, ct = tf.constant(x), tf.constant(classes)
    rows = {}
    print(f"2. Explainer vs a hand-written tf.function (forward + backward), batch of {len(x)}, "
          f"median of {repeats}", flush=True)
    pairs = {
        "gradcam": (lambda: explainer.gradcam(x, classes, layer=LAYER),
                    lambda: [t.numpy() for t in floor_gradcam(xt, ct)]),
        "saliency": (lambda: explainer.saliency(x, classes), lambda: floor_saliency(xt, ct).numpy()),
        "smoothgrad": (lambda: explainer.saliency(x, classes, smooth_samples=SMOOTH_SAMPLES, smooth_noise=0.20,
                                                  seed=0), floor_smoothgrad),
    }
    for name, (ours, floor) in pairs.items():
        # interleave the two so a change in machine load hits both alike
        t_ours, t_floor = [], []
        ours(), floor()
        for _ in range(smooth_repeats if name == "smoothgrad" else repeats):
            t_ours.append(once(ours))
            t_floor.append(once(floor))
        m_ours, m_floor = statistics.median(t_ours), statistics.median(t_floor)
        print(f"  {name}: Explainer {m_ours:.3f} s, floor {m_floor:.3f} s", flush=True)
        target = TARGETS["smooth_floor"] if name == "smoothgrad" else TARGETS["floor"]
        rows[name] = {"explainer_s": round(m_ours, 4), "floor_s": round(m_floor, 4),
                      **report(f"Explainer.{name} / floor", m_ours, m_floor, target)}
    return rows


# ----------------------------------------------------------------------------- 2. vs tf-keras-vis
def bench_tfkv(repeats, smooth_repeats):
    tf, np, lh, model, x, classes = setup()
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    score = CategoricalScore(classes.tolist())

    def tfkv_gradcam():  # as lab 05: a new object per method, clone=True, construction included
        return Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)(score, x, penultimate_layer=LAYER)

    def tfkv_saliency():
        return Saliency(model, model_modifier=ReplaceToLinear(), clone=True)(score, x)

    def tfkv_smoothgrad():
        return Saliency(model, model_modifier=ReplaceToLinear(), clone=True)(
            score, x, smooth_samples=SMOOTH_SAMPLES, smooth_noise=0.20)

    start = time.perf_counter()
    explainer = lh.Explainer(model)
    construction = time.perf_counter() - start
    ours = {
        "gradcam": lambda: explainer.gradcam(x, classes, layer=LAYER),
        "saliency": lambda: explainer.saliency(x, classes),
        "smoothgrad": lambda: explainer.saliency(x, classes, smooth_samples=SMOOTH_SAMPLES, smooth_noise=0.20),
    }
    theirs = {"gradcam": tfkv_gradcam, "saliency": tfkv_saliency, "smoothgrad": tfkv_smoothgrad}
    rows = {"explainer_construction_s": round(construction, 4)}
    print(f"3. Explainer (built once) vs tf-keras-vis (new object, clone=True, per call), batch of {len(x)}",
          flush=True)
    for name in ours:
        n = smooth_repeats if name == "smoothgrad" else repeats
        m_ours, first_ours, _ = median_time(ours[name], n)
        m_theirs, first_theirs, _ = median_time(theirs[name], n)
        print(f"  {name}: Explainer {m_ours:.3f} s (first call {first_ours:.2f} s), tf-keras-vis "
              f"{m_theirs:.3f} s (first call {first_theirs:.2f} s), median of {n}", flush=True)
        rows[name] = {"explainer_s": round(m_ours, 4), "explainer_first_s": round(first_ours, 4),
                      "tfkv_s": round(m_theirs, 4), "tfkv_first_s": round(first_theirs, 4), "repeats": n,
                      **report(f"speed-up over tf-keras-vis, {name}", m_ours, m_theirs,
                               TARGETS[f"tfkv_{name}"], higher_is_better=True)}
    return rows


# ----------------------------------------------------------------------------- 3. memory
def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def current_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_vm_hwm() -> None:
    """Reset VmHWM to the current resident size (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def vm_hwm_mib() -> float:
    """The kernel's high-water mark of this process's own memory (VmHWM), a cross-check."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def memory_child(mode: str) -> None:
    """Run in a fresh process; prints one JSON line with the peak resident memory."""
    tf, np, lh, model, x, classes = setup()
    after_load = peak_rss_mib()
    resident_after_load = current_rss_mib()
    # From here the kernel's high-water mark (VmHWM, which ru_maxrss also reads) is the peak of the
    # work alone; the whole process's peak is the larger of that and the peak of loading VGG16.
    reset_vm_hwm()
    if mode == "predict":
        model.predict(x, verbose=0)
    elif mode == "explainer":  # every method of lab 05, one Explainer
        ex = lh.Explainer(model)
        ex.saliency(x, classes, smooth_samples=SMOOTH_SAMPLES, smooth_noise=0.20)
        for rule in ("vanilla", "guided", "rectified"):
            ex.gradcam(x, classes, layer=LAYER, rule=rule)
        ex.gradcam_plus_plus(x, classes, layer=LAYER)
        ex.scorecam(x, classes, layer=LAYER, max_n=SCORECAM_MAX_N)
        ex.layercam(x, classes, layer=LAYER)
    elif mode == "tfkv":  # the same methods as the labs called them: clone=True, a new object each
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation, ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore

        from labhelpers import RectifiedBackpropagation

        score = CategoricalScore(classes.tolist())
        Saliency(model, model_modifier=ReplaceToLinear(), clone=True)(score, x, smooth_samples=SMOOTH_SAMPLES)
        for extra in ([], [GuidedBackpropagation()], [RectifiedBackpropagation()]):
            Gradcam(model, model_modifier=[ReplaceToLinear()] + extra, clone=True)(score, x, penultimate_layer=LAYER)
        GradcamPlusPlus(model, model_modifier=ReplaceToLinear(), clone=True)(score, x, penultimate_layer=LAYER)
        Scorecam(model, clone=True)(score, x, penultimate_layer=LAYER, max_N=SCORECAM_MAX_N)
        Layercam(model, model_modifier=ReplaceToLinear(), clone=True)(score, x, penultimate_layer=LAYER)
    else:
        raise ValueError(mode)
    work_peak = peak_rss_mib()
    print(json.dumps({"mode": mode, "after_load_mib": round(after_load, 1),
                      "peak_mib": round(max(after_load, work_peak), 1),
                      "resident_after_load_mib": round(resident_after_load, 1),
                      "work_peak_mib": round(work_peak, 1), "vm_hwm_mib": round(vm_hwm_mib(), 1)}))


def run_child(mode: str) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {mode!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_memory(repeats, modes=("predict", "explainer", "tfkv")):
    # Run first, from a parent that has not imported TensorFlow: a child started by fork + exec
    # inherits the parent's resident size as the floor of its ru_maxrss (the kernel carries the old
    # memory's high-water mark over exec), so a parent holding VGG16 would hide every difference.
    assert "tensorflow" not in sys.modules, "measure memory before this process imports TensorFlow"
    print("1. peak resident memory (ru_maxrss) of a fresh process, VGG16 loaded in each", flush=True)
    results = {}
    for mode in modes:
        runs = [run_child(mode) for _ in range(repeats)]
        results[mode] = {"peak_mib": statistics.median(r["peak_mib"] for r in runs),
                         "after_load_mib": statistics.median(r["after_load_mib"] for r in runs),
                         "resident_after_load_mib": statistics.median(r["resident_after_load_mib"] for r in runs),
                         "work_peak_mib": statistics.median(r["work_peak_mib"] for r in runs),
                         "runs": [r["peak_mib"] for r in runs]}
        r = results[mode]
        print(f"  {mode:<9}: peak {r['peak_mib']:.0f} MiB (ru_maxrss {r['after_load_mib']:.0f} MiB once VGG16 "
              f"was loaded); resident after loading {r['resident_after_load_mib']:.0f} MiB, peak of the work "
              f"alone {r['work_peak_mib']:.0f} MiB; runs {r['runs']}", flush=True)
    base = results["predict"]["peak_mib"]
    results["explainer_ratio"] = report("Explainer process / predict-only process",
                                        results["explainer"]["peak_mib"], base, TARGETS["memory"])
    if "tfkv" in results:
        ratio = results["tfkv"]["peak_mib"] / base
        print(f"  {'tf-keras-vis (clone=True) process / predict-only':<44} {ratio:6.2f}x  (for comparison)")
        results["tfkv_ratio"] = round(ratio, 3)
    work = {m: results[m]["work_peak_mib"] / results["predict"]["work_peak_mib"]
            for m in ("explainer", "tfkv") if m in results}
    results["work_alone_ratio"] = report("work-alone peak: Explainer / predict-only", results["explainer"]["work_peak_mib"],
                                         results["predict"]["work_peak_mib"], TARGETS["memory"])
    print("  peak of the work alone vs predict's: " + ", ".join(f"{m} {v:.2f}x" for m, v in work.items())
          + " (VGG16's loading peak left out)", flush=True)
    results["work_peak_ratios"] = {k: round(v, 3) for k, v in work.items()}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["floor", "tfkv", "memory"], action="append")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--smooth-repeats", type=int, default=3, help="timed runs for SmoothGrad(20)")
    parser.add_argument("--memory-repeats", type=int, default=2, help="processes per memory measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-tfkv-memory", action="store_true", help="memory: skip the tf-keras-vis process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        memory_child(args.child)
        return 0
    parts = args.only or ["floor", "tfkv", "memory"]
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {' '.join(load)} at start; "
          f"Python {platform.python_version()}", flush=True)
    results = {"cpus": os.cpu_count(), "load_at_start": load}
    start = time.perf_counter()
    if "memory" in parts:  # first: this process must not hold TensorFlow yet (see bench_memory)
        modes = ("predict", "explainer") if args.no_tfkv_memory else ("predict", "explainer", "tfkv")
        results["memory"] = bench_memory(args.memory_repeats, modes)
    if "floor" in parts:
        results["floor"] = bench_floor(args.repeats, args.smooth_repeats)
    if "tfkv" in parts:
        results["tfkv"] = bench_tfkv(args.repeats, args.smooth_repeats)
    with open("/proc/loadavg") as fh:
        results["load_at_end"] = fh.read().split()[:3]
    results["total_s"] = round(time.perf_counter() - start, 1)
    print(f"done in {results['total_s']:.0f} s; load average at the end {' '.join(results['load_at_end'])}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
