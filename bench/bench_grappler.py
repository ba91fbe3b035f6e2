"""Would the Explainer's first calls be cheaper without Grappler, and what would the later calls pay?
(issue 18). Not a test: run it by hand and copy the figures into bench/README.md.

    .venv/bin/python bench/bench_grappler.py --model lite0 --rounds 5
    .venv/bin/python bench/bench_grappler.py --model vgg16 --rounds 3

A compiled step's first call traces it and then runs it once, and that first run includes Grappler's
rewrites of the graph (constant folding, arithmetic simplification, the remapper's fused ops, ...).
TensorFlow takes the rewriter's settings from the call site's ``FunctionCallOptions`` when a concrete
function runs for the first time; the Explainer's steps switch Grappler off that way for their own calls
(``labhelpers.explain.graph``), and ``graph.GRAPPLER = True`` gives them TensorFlow's default back.
In one process, for ``--rounds`` rounds, each method runs on a NEW ``ModelContext`` (nothing traced
yet) with Grappler on, then with it off (alternating, so both see the same load): the first call (trace +
first run), then the median of three more.
VGG16 has seeded random weights; Lite0 is the offline EfficientNet-Lite0 with its real weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["vgg16", "lite0"], default="lite0")
    parser.add_argument("--methods", default="vanilla,gradcam", help="registry names, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from labhelpers.session import quiet_tensorflow

    quiet_tensorflow()
    import numpy as np

    import labhelpers as lh
    from labhelpers import config
    from labhelpers.explain import get_method, graph
    from labhelpers.explain.context import ModelContext

    if args.model == "lite0":
        net, info = lh.load_imagenet_cnn(profile=config.resolve_profile("smoke"), allow_download=False, seed=0)
        x = info.preprocess(np.stack([p.image for p in lh.sample_images(size=info.input_size)]))[:4]
    else:
        from labhelpers.kerasapi import keras

        config.set_seed(0)
        net = keras.applications.VGG16(weights=None)
        x = (np.random.default_rng(0).normal(size=(4, 224, 224, 3)) * 50).astype("float32")
    classes = [1, 2, 3, 4]
    ModelContext(net).predict_logits(x)  # the process's first forward pass, as lab 05 does
    print(f"vm: {os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at start; "
          f"{args.model}, {args.rounds} rounds", flush=True)
    seen: dict = {}
    for _ in range(args.rounds):
        for on in (True, False):
            for name in args.methods.split(","):
                graph.GRAPPLER = on  # read at every call; the new context's steps first run under it
                method, ctx = get_method(name), ModelContext(net)
                started = time.perf_counter()
                method(ctx, x, classes)
                first = time.perf_counter() - started
                later = []
                for _ in range(3):
                    started = time.perf_counter()
                    method(ctx, x, classes)
                    later.append(time.perf_counter() - started)
                seen.setdefault((name, on), []).append((first, statistics.median(later)))
    for (name, on), runs in sorted(seen.items()):
        firsts, laters = [r[0] for r in runs], [r[1] for r in runs]
        print(f"  {name:12s} Grappler {'on ' if on else 'off'}: first call median {statistics.median(firsts):.2f} s, "
              f"later calls median {statistics.median(laters):.3f} s (firsts {sorted(round(f, 2) for f in firsts)})")
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
