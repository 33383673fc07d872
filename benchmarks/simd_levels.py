"""Time one build of fastmlp, for comparing the builds of the x86-64 levels side by side.

Build copies of the checkout with ``FASTMLP_SIMD=x86-64-v3`` and ``FASTMLP_SIMD=baseline``
(``python setup.py build_ext --inplace`` in each), then alternate processes over them, e.g.::

    for r in 1 2 3; do for d in . /tmp/v3 /tmp/base; do
        python benchmarks/simd_levels.py workloads $d; done; done
    OPENBLAS_CORETYPE=Haswell python benchmarks/simd_levels.py workloads /tmp/v3

``tiny``: the fused tiny pass against the general kernels on a few tiny networks (8 rounds
interleaved in one process, best us per step).  ``workloads``: the iris-sized step, the
784-500-500-10 step at batch 32 and 512, and an epoch of scikit-learn's defaults
(784-100-10, Adam + L2, batch 200, 60,000 rows); best of 4.  Each line starts with the SIMD
level that ran (benchmarks/RESULTS.md, session 13, has the numbers).
"""
import sys
import time

import numpy as np


def _import(checkout):
    sys.path.insert(0, checkout)
    import fastmlp
    assert fastmlp.__file__.startswith(checkout.rstrip("/")) or checkout == ".", fastmlp.__file__


def tiny():
    from fastmlp.backends import make_network, validate_training_data
    from fastmlp.backends.base import NetworkSpec, OptimizerSpec
    from fastmlp.backends.cpu import _network, simd_level
    from fastmlp.initializers import init_params
    rng = np.random.default_rng(0)
    out = [simd_level()]
    for sizes, dt, act in [((4, 10, 10, 3), "float32", "relu"), ((4, 10, 10, 3), "float64", "relu"),
                           ((2, 16, 2), "float32", "tanh"), ((30, 16, 16, 1), "float32", "relu"),
                           ((4, 10, 10, 3), "float64", "tanh")]:
        n = 6000
        X = rng.standard_normal((n, sizes[0])).astype(dt)
        y = rng.integers(0, max(sizes[-1], 2), n)
        if sizes[-1] == 1:
            y = (y > 0).astype(float)
        out_act = "softmax" if sizes[-1] > 1 else "sigmoid"
        loss = "categorical_crossentropy" if sizes[-1] > 1 else "binary_crossentropy"
        spec = NetworkSpec(sizes, (act,) * (len(sizes) - 2) + (out_act,), loss=loss, dtype=dt)
        nets = {}
        for use_tiny in (True, False):
            net = make_network(spec, OptimizerSpec("sgd", 0.01, momentum=0.9), n_threads=2)
            net.set_params(init_params(spec, seed=0))
            nets[use_tiny] = (net,) + tuple(validate_training_data(spec, X, y)[:2])
        # not report.interleaved_best: its gc.collect() before each call leaves the caches
        # cold for these 0.5 ms epochs (+1 us a step on 4-10-10-3, measured)
        best = {True: np.inf, False: np.inf}
        for _ in range(8):
            for use_tiny in (True, False):
                _network.set_tiny_path(use_tiny)
                net, Xc, Yc = nets[use_tiny]
                t = time.perf_counter()
                net.train_epoch(Xc, Yc, batch_size=32, shuffle=True)
                best[use_tiny] = min(best[use_tiny], (time.perf_counter() - t) / (n / 32) * 1e6)
        _network.set_tiny_path(None)
        out.append(f"{'-'.join(map(str, sizes))}/{dt}/{act}: tiny {best[True]:.2f} "
                   f"general {best[False]:.2f}")
    print(" | ".join(out), flush=True)


def workloads():
    from benchmarks.report import fastmlp_epoch_fn, mnist_like
    from fastmlp.backends import make_network, validate_training_data
    from fastmlp.backends.base import NetworkSpec, OptimizerSpec
    from fastmlp.backends.cpu import simd_level
    from fastmlp.initializers import init_params
    rng = np.random.default_rng(0)
    X, y, _ = mnist_like(60000, rng)
    run_b, _ = fastmlp_epoch_fn((4, 10, 10, 3), X[:, :4].copy(), y % 3, 32, n_threads=2)
    run_32, _ = fastmlp_epoch_fn((784, 500, 500, 10), X[:8192], y[:8192], 32, n_threads=2)
    run_512, _ = fastmlp_epoch_fn((784, 500, 500, 10), X[:16384], y[:16384], 512, n_threads=2)
    spec = NetworkSpec((784, 100, 10), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype="float32", l2=0.5e-4)
    net = make_network(spec, OptimizerSpec("adam", 1e-3, epsilon=1e-8), n_threads=2)
    net.set_params(init_params(spec, seed=0))
    Xc, Yc, _ = validate_training_data(spec, X, y)

    def run_c():
        net.train_epoch(Xc, Yc, batch_size=200, shuffle=True)
    fns = {"b_us": (run_b, 1875, 1e6), "b32_ms": (run_32, 256, 1e3),
           "b512_ms": (run_512, 32, 1e3), "c_ms": (run_c, 1, 1e3)}
    for f, _, _ in fns.values():
        f()
    best = {k: np.inf for k in fns}
    for _ in range(4):
        for k, (f, steps, unit) in fns.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], (time.perf_counter() - t) / steps * unit)
    print(simd_level(), " ".join(f"{k}={v:.3f}" for k, v in best.items()), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("tiny", "workloads"):
        sys.exit("usage: python benchmarks/simd_levels.py tiny|workloads CHECKOUT")
    _import(sys.argv[2])
    tiny() if sys.argv[1] == "tiny" else workloads()
