"""The first layer's zero-skipping products (csrc/zero_skip.c) against the dense ones, on
shuffled MNIST rows, in one process::

    python benchmarks/zero_skip.py              # kernels, then the engine A/B
    python benchmarks/zero_skip.py 7            # rounds (best of that many)

1. Kernels: one call of the forward product X @ W and of the weight gradient X^T @ dZ,
   masks included, skipping zeros (kernel_skip_gemm) and through the dense direct
   kernels (kernel_direct_gemm), for (rows, outputs, threads) = (100, 100, 1) (a shard of
   (c), scikit-learn's defaults) and (32, 500, 2), (128, 500, 2) (the direct path of (a),
   784-500-500-10, split over W's rows on two threads).
2. Engine: 784-500-500-10, SGD momentum 0.9, on 8192 MNIST rows, epochs with skipping on
   (the density rule) and off (set_skip_zeros(False)) interleaved, per step at batch 32,
   128 and 512 on two threads.
3. Predictions: the same network's outputs for the 8192 rows, skipping on and off
   interleaved, on two threads (split over them by rows) and on one.
4. Full batches, on all 60,000 MNIST rows: the loss and gradient of scikit-learn's
   default network (784-100-10, alpha 1e-4) as L-BFGS asks for them, on two threads and
   one; then MLPClassifier(solver="lbfgs", max_iter=30) fitted (one fit each way).

benchmarks/RESULTS.md (sessions 18 to 20; predictions and full batches: session 23) has
the numbers.
"""
import sys
import time

import numpy as np


def best_us(fn, calls, rounds):
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / calls * 1e6


def kernels(X, rounds):
    from fastmlp.backends.cpu import _network as cn
    rng = np.random.default_rng(1)
    calls = 200
    for b, N, nt in ((100, 100, 1), (32, 500, 2), (128, 500, 2)):
        Xb = np.ascontiguousarray(X[rng.permutation(X.shape[0])[:b]])
        W = rng.standard_normal((Xb.shape[1], N)).astype(np.float32)
        dZ = rng.standard_normal((b, N)).astype(np.float32)
        t = {}
        for kind, B in (("nn", W), ("tn", dZ)):
            t["skip", kind] = best_us(lambda: cn.kernel_skip_gemm(
                kind, Xb, B, repeats=calls, n_threads=nt), calls, rounds)
            t["dense", kind] = best_us(lambda: cn.kernel_direct_gemm(
                kind, Xb, B, repeats=calls, n_threads=nt), calls, rounds)
        print(f"{b} rows, 784 -> {N}, {nt} thread(s): forward {t['skip', 'nn']:.0f} us "
              f"skipping, {t['dense', 'nn']:.0f} dense; weight gradient "
              f"{t['skip', 'tn']:.0f} skipping, {t['dense', 'tn']:.0f} dense")


def skipping_and_dense(fn, rounds):
    """Best seconds of fn() as the density rule has it (skipping, on MNIST) and with the
    skipping off (the report's dense_first_layer), the two interleaved, `rounds` of each."""
    from benchmarks.report import dense_first_layer
    fns = (fn, dense_first_layer(fn))
    times = ([], [])
    for _ in range(rounds):
        for f, ts in zip(fns, times):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
    return min(times[0]), min(times[1])


def engine(X, y, rounds):
    from benchmarks.report import fastmlp_epoch_fn
    for b in (32, 128, 512):
        run, _ = fastmlp_epoch_fn((784, 500, 500, 10), X, y, b, n_threads=2)
        run()
        steps = -(-X.shape[0] // b)
        skip, dense = (sec / steps * 1e6 for sec in skipping_and_dense(run, rounds))
        print(f"784-500-500-10 batch {b}, 2 threads: {skip:.0f} us per step skipping, "
              f"{dense:.0f} dense ({dense / skip:.2f}x; best of {rounds})")


def predictions(X, y, rounds):
    from benchmarks.report import fastmlp_epoch_fn
    for n_threads in (2, 1):
        _, net = fastmlp_epoch_fn((784, 500, 500, 10), X[:64], y[:64], 64,
                                  n_threads=n_threads)
        skip, dense = (sec * 1e3 for sec in skipping_and_dense(lambda: net.forward(X), rounds))
        print(f"predict {X.shape[0]} rows, 784-500-500-10, {n_threads} thread(s): "
              f"{skip:.1f} ms skipping, {dense:.1f} dense ({dense / skip:.2f}x; best of "
              f"{rounds})")


def full_batches(rounds):
    import warnings
    from benchmarks.report import mnist_like
    from fastmlp import MLPClassifier
    from fastmlp.backends import make_network, validate_training_data
    from fastmlp.backends.base import NetworkSpec, OptimizerSpec
    from fastmlp.initializers import init_params
    X, y, _ = mnist_like(60000, np.random.default_rng(0))
    spec = NetworkSpec((784, 100, 10), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype="float32", l2=0.5e-4)
    for n_threads in (2, 1):
        net = make_network(spec, OptimizerSpec("sgd", 0.1), n_threads=n_threads)
        net.set_params(init_params(spec, seed=0))
        Xc, Yc, _ = validate_training_data(spec, X, y)
        skip, dense = (sec * 1e3 for sec in skipping_and_dense(
            lambda: net.loss_and_grad(Xc, Yc), rounds))
        print(f"loss and gradient of {X.shape[0]} rows, 784-100-10, {n_threads} thread(s): "
              f"{skip:.1f} ms skipping, {dense:.1f} dense ({dense / skip:.2f}x; best of "
              f"{rounds})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning: 30 iterations
        skip, dense = skipping_and_dense(lambda: MLPClassifier(
            solver="lbfgs", max_iter=30, random_state=0).fit(X, y), 1)
    print(f"MLPClassifier(solver='lbfgs', max_iter=30) on {X.shape[0]} rows: {skip:.2f} s "
          f"skipping, {dense:.2f} dense ({dense / skip:.2f}x)")


def main(rounds=5):
    sys.path.insert(0, ".")
    from benchmarks.report import mnist_like
    X, y, source = mnist_like(8192, np.random.default_rng(0))
    print(f"data: {source}, {np.count_nonzero(X) / X.size:.0%} nonzero")
    kernels(X, rounds)
    engine(X, y, rounds)
    predictions(X, y, rounds)
    full_batches(rounds)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
