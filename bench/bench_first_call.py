"""What a student waits for: the FIRST call of each method on a new Explainer, against its second
call (issue 18). Not a test: run it by hand and copy the figures into bench/README.md.

    .venv/bin/python bench/bench_first_call.py --model vgg16 --json bench/first_vgg16.json
    .venv/bin/python bench/bench_first_call.py --model lite0 --json bench/first_lite0.json
    .venv/bin/python bench/bench_first_call.py --model vgg16 --only scorecam --tfkv   # + tf-keras-vis's Score-CAM

Every method runs in its own fresh process (nothing compiled or cached before): load the model, build an
``Explainer``, compute the photos' logits (``Explainer.predict_logits``, as lab 05 does before its methods:
the process's first forward pass; ``--cold`` leaves it out), then call the method three times on the same 4 photos (chelsea, coffee, rocket, astronaut)
at 224 x 224, scores = logits of each photo's class. Reported: the first and the second call, the target
``first <= 1.3 x second + 1 s``, and the traces of the Explainer's compiled steps after the first and the
third call (a later call must add none). VGG16 has seeded random weights (a pass costs the same whatever
the weights); Lite0 is the offline EfficientNet-Lite0 with its real weights (``lh.load_efficientnet_lite0``).
Settings as lab 05 uses them: Grad-CAM & co. at the default layer (VGG16: block5_conv3), SmoothGrad with 20
samples, Score-CAM with max_n=10, integrated gradients with 32 steps, occlusion with its default patch.

``--breakdown``: for Grad-CAM and saliency, where the first call's time goes: rebuilding the graph and the
sub-model, tracing the step (``get_concrete_function``), its first run, its second run.
``--tfkv``: tf-keras-vis's ``Scorecam(model, clone=True)`` at max_N=10 in a fresh process too (the first
call, then a second with a new object, as the labs called it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METHODS = {  # name -> (registry name, options)
    "saliency": ("vanilla", {}),
    "guided": ("guided", {}),
    "rectified": ("rectified", {}),
    "smoothgrad": ("smoothgrad", {"smooth_samples": 20, "seed": 0}),
    "gradcam": ("gradcam", {}),
    "gradcam++": ("gradcam++", {}),
    "layercam": ("layercam", {}),
    "xgradcam": ("xgradcam", {}),
    "guided gradcam": ("guided gradcam", {}),
    "scorecam": ("scorecam", {"max_n": 10}),
    "integrated gradients": ("integrated gradients", {"ig_steps": 32}),
    "occlusion": ("occlusion", {}),
}
PHOTOS = ["chelsea", "coffee", "rocket", "astronaut"]


def setup(which: str):
    from labhelpers.session import import_tensorflow_quietly, quiet_tensorflow

    quiet_tensorflow()
    tf = import_tensorflow_quietly()
    tf.get_logger().setLevel("ERROR")
    import numpy as np

    import labhelpers as lh
    from labhelpers import vgg_lab

    lh.set_seed(0)
    photos = vgg_lab.lab_images(names=PHOTOS)
    if which == "vgg16":
        model, _ = lh.load_vgg16(weights=None)
        x = vgg_lab.vgg16_preprocess(photos.images)
    else:
        from labhelpers.models.efficientnet import preprocess_input

        model, _ = lh.load_efficientnet_lite0()
        x = preprocess_input(photos.images)
    return tf, np, lh, model, np.asarray(x, np.float32), np.array(photos.class_ids, dtype=np.int32)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def child(which: str, method: str, cold: bool = False) -> dict:
    tf, np, lh, model, x, classes = setup(which)
    if method == "tfkv scorecam":
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.scores import CategoricalScore

        layer = lh.Explainer(model).default_layer()
        score = CategoricalScore(classes.tolist())
        calls = [timed(lambda: Scorecam(model, clone=True)(score, x, penultimate_layer=layer, max_N=10))[0]
                 for _ in range(2)]
        return {"first_s": calls[0], "second_s": calls[1]}
    from labhelpers.explain import get_method

    name, options = METHODS[method]
    built, ex = timed(lambda: lh.Explainer(model))
    if not cold:  # as lab 05 does before its methods: the logits of the photos (a forward pass)
        ex.predict_logits(x)
    fn = get_method(name, **options)
    times, traces = [], []
    for call in range(3):
        if call == 2 and times[1] > 10.0:  # a slow method: two calls tell enough, the third would cost minutes
            times.append(times[1])
            traces.append(traces[1])
            break
        times.append(timed(lambda: fn(ex, x, classes))[0])
        traces.append(ex.tracing_count())
    return {"explainer_s": built, "first_s": times[0], "second_s": times[1], "third_s": times[2],
            "traces_after_first": traces[0], "traces_after_third": traces[2]}


def breakdown(which: str, method: str) -> dict:
    """Where a first call's time goes, step by step (Grad-CAM or saliency)."""
    tf, np, lh, model, x, classes = setup(which)
    ex = lh.Explainer(model)
    out = {}
    out["rebuild_s"], _ = timed(lambda: ex.graph())
    if method == "gradcam":
        from labhelpers.explain.cams import GradCAM

        index = ex.layer_index(None)
        out["sub_model_s"], _ = timed(lambda: ex.layer_model("vanilla", index))
        captured = {}
        ex.batched = lambda fn, *arrays: captured.setdefault("fn", fn)  # make the step, do not run it
        GradCAM().compute(ex, x, classes)
        del ex.batched
        step = captured["fn"]
    else:
        out["sub_model_s"] = 0.0
        step = ex.input_gradient_step("vanilla", x.shape[1:], "map")
    out["trace_s"], _ = timed(lambda: step.get_concrete_function())
    xt, ct = tf.constant(x), tf.constant(classes)
    for run in ("first", "second", "third"):  # through the step, as the methods call it (its call options)
        out[f"{run}_run_s"], _ = timed(lambda: step(xt, ct).numpy())
    return out


def run_child(which, method, kind="child", cold=False) -> dict:
    out = subprocess.run([sys.executable, __file__, "--model", which, f"--{kind}", method]
                         + (["--cold"] if cold else []), capture_output=True,
                         text=True, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{which} {method} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["vgg16", "lite0"], default="vgg16")
    parser.add_argument("--only", action="append", choices=list(METHODS))
    parser.add_argument("--processes", type=int, default=1, help="fresh processes per method (median)")
    parser.add_argument("--tfkv", action="store_true")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--cold", action="store_true", help="no forward pass before the first call")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--breakdown-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in child(args.model, args.child, args.cold).items()}))
        return 0
    if args.breakdown_child:
        print(json.dumps({k: round(v, 3) for k, v in breakdown(args.model, args.breakdown_child).items()}))
        return 0
    load = os.getloadavg()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at "
          f"start; {args.model}, one fresh process per method", flush=True)
    results = {"model": args.model, "load_at_start": [round(v, 2) for v in load], "methods": {}}
    start = time.perf_counter()
    for method in args.only or list(METHODS):
        runs = [run_child(args.model, method, cold=args.cold) for _ in range(args.processes)]
        row = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
        limit = 1.3 * row["second_s"] + 1.0
        row["met"] = row["first_s"] <= limit
        results["methods"][method] = row
        print(f"  {method:<21} first {row['first_s']:7.2f} s, second {row['second_s']:7.2f} s, third "
              f"{row['third_s']:7.2f} s (limit {limit:6.2f} s: {'met' if row['met'] else 'MISSED'}); traces "
              f"{row['traces_after_first']} after the first call, {row['traces_after_third']} after the third",
              flush=True)
    if args.tfkv:
        runs = [run_child(args.model, "tfkv scorecam") for _ in range(args.processes)]
        row = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
        results["tfkv_scorecam"] = row
        print(f"  tf-keras-vis Scorecam(clone=True), max_N=10: first {row['first_s']:.2f} s, second "
              f"{row['second_s']:.2f} s", flush=True)
    if args.breakdown:
        for method in ("gradcam", "saliency"):
            row = run_child(args.model, method, kind="breakdown-child")
            results.setdefault("breakdown", {})[method] = row
            print(f"  {method} first call, step by step: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()),
                  flush=True)
    results["load_at_end"] = [round(v, 2) for v in os.getloadavg()]
    results["total_s"] = round(time.perf_counter() - start, 1)
    print(f"done in {results['total_s']:.0f} s; load average at the end "
          + " ".join(f"{v:.2f}" for v in results["load_at_end"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
