"""Narrow outputs: the small kernels' narrow path against the direct kernels (session 27).

    python benchmarks/narrow_outputs.py kernels [K]
        one call of each product, us (Python's call overhead, timed on a 1x1 product,
        subtracted): the forward product (rows, K) @ (K, N) and the weight gradient
        (rows, K)^T @ (rows, N), small kernels / direct on one thread / direct on two
    python benchmarks/narrow_outputs.py engine BATCHES [SIZES [ROWS [THREADS]]]
        training epochs with the rule on and off (set_narrow_outputs), alternating in one
        process, best of 7, us per step; e.g. `engine 16,32,64,128 784-500-500-10 8192 2`

Run from the checkout after building (FASTMLP_DATA pointing at MNIST for the engine mode;
without it, MNIST-like random data).  Needs the AVX-512 direct kernels.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.report import fastmlp_epoch_fn, mnist_like  # noqa: E402
from fastmlp.backends.cpu import _network  # noqa: E402


def best_us(fn, repeats=400, rounds=5):
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / repeats * 1e6


def kernels(K=500):
    rng = np.random.default_rng(0)
    for dtype, widths in ((np.float32, (1, 3, 10, 16, 32)), (np.float64, (4, 8, 10, 16))):
        one = np.ones((1, 1), dtype)
        base_small = best_us(lambda: _network.kernel_small_gemm("nn", one, one))
        base_direct = best_us(lambda: _network.kernel_direct_gemm("nn", one, one))
        for N in widths:
            for rows in (32, 128, 512):
                A = rng.random((rows, K)).astype(dtype)
                cells = []
                for kind, B in (("nn", rng.random((K, N)).astype(dtype)),
                                ("tn", rng.random((rows, N)).astype(dtype))):
                    small = best_us(lambda: _network.kernel_small_gemm(kind, A, B)) - base_small
                    direct = [best_us(lambda: _network.kernel_direct_gemm(kind, A, B,
                                                                          n_threads=nt))
                              - base_direct for nt in (1, 2)]
                    cells.append(f"{kind} {small:6.1f} / {direct[0]:6.1f} / {direct[1]:6.1f}")
                print(f"{np.dtype(dtype).name} N={N:2d} rows={rows:3d} K={K}: "
                      + " | ".join(cells), flush=True)


def engine(batches, sizes=(784, 500, 500, 10), n_rows=8192, n_threads=2):
    X, y, _ = mnist_like(n_rows, np.random.default_rng(0))
    for b in batches:
        run, _ = fastmlp_epoch_fn(sizes, X, y, b, n_threads=n_threads)
        best = {True: float("inf"), False: float("inf")}
        try:
            for _ in range(7):
                for narrow in (False, True):
                    _network.set_narrow_outputs(narrow)
                    start = time.perf_counter()
                    run()
                    best[narrow] = min(best[narrow], time.perf_counter() - start)
        finally:
            _network.set_narrow_outputs(True)
        steps = -(-n_rows // b)
        print(f"{'-'.join(map(str, sizes))} b{b} {n_threads} thread(s): direct "
              f"{best[False] / steps * 1e6:.0f} us, narrow {best[True] / steps * 1e6:.0f} us, "
              f"{best[False] / best[True]:.3f}x", flush=True)


if __name__ == "__main__":
    if not _network.direct_kernels_available():
        sys.exit("no AVX-512 direct kernels here: nothing to compare")
    if len(sys.argv) > 1 and sys.argv[1] == "kernels":
        kernels(int(sys.argv[2]) if len(sys.argv) > 2 else 500)
    elif len(sys.argv) > 2 and sys.argv[1] == "engine":
        engine([int(b) for b in sys.argv[2].split(",")],
               tuple(int(s) for s in sys.argv[3].split("-")) if len(sys.argv) > 3
               else (784, 500, 500, 10),
               int(sys.argv[4]) if len(sys.argv) > 4 else 8192,
               int(sys.argv[5]) if len(sys.argv) > 5 else 2)
    else:
        sys.exit(__doc__)
