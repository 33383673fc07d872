"""784-500-500-10 with each hidden activation: fastmlp against PyTorch, in one process, time
per training step (SGD momentum 0.9, float32, 2 threads, MNIST when ../shared/data/mnist.npz
is there).  For comparing a change to the elementwise kernels: run it for two checkouts in
alternating processes and compare the ratios::

    for r in 1 2 3; do for d in /tmp/before .; do
        python benchmarks/activations.py $d; done; done

    python benchmarks/activations.py . gelu,softplus 512    # some activations, batch sizes

Each line: checkout, batch size, activation, fastmlp and PyTorch ms per step (best of 4
interleaved rounds) and their ratio (benchmarks/RESULTS.md, sessions 14 and 15, has the
numbers).
"""
import sys

import numpy as np


ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "softplus", "gelu")
BATCHES = {32: 4096, 128: 8192, 512: 16384}   # batch size: rows timed


def main(checkout, activations=ACTIVATIONS, batch_sizes=tuple(BATCHES)):
    sys.path.insert(0, checkout)
    from benchmarks.report import (fastmlp_epoch_fn, interleaved_best, mnist_like,
                                   torch_epoch_fn)
    rng = np.random.default_rng(0)
    X, y, _ = mnist_like(60000, rng)
    sizes = (784, 500, 500, 10)
    for batch_size in batch_sizes:
        rows = BATCHES[batch_size]
        for activation in activations:
            runs = {
                "fastmlp": fastmlp_epoch_fn(sizes, X[:rows], y[:rows], batch_size, n_threads=2,
                                            activation=activation)[0],
                "torch": torch_epoch_fn(sizes, X[:rows], y[:rows].astype(np.int64), batch_size,
                                        2, activation=activation)[0]}
            best = interleaved_best(runs, repeats=4, warmup=0,
                                    scale=dict.fromkeys(runs, 1e3 * batch_size / rows))
            print(f"{checkout} b{batch_size} {activation}: fastmlp {best['fastmlp']:.3f} ms "
                  f"torch {best['torch']:.3f} ms ratio {best['torch'] / best['fastmlp']:.2f}",
                  flush=True)


if __name__ == "__main__":
    args = sys.argv[1:] + [None] * 3
    main(args[0] or ".", tuple(args[1].split(",")) if args[1] else ACTIVATIONS,
         tuple(int(b) for b in args[2].split(",")) if args[2] else tuple(BATCHES))
