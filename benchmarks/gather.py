"""The gather of shuffled rows (csrc/gather_impl.inc) against its naive reference (one
memcpy per row), in one process, epochs of the two interleaved: a whole epoch of MNIST's
60,000 rows in a fresh random order, batch by batch through one batch buffer, as training
runs it (the rows come from memory, the buffer stays in cache)::

    python benchmarks/gather.py                 # batch 200 on 2 threads ((c)'s shape)
    python benchmarks/gather.py 512 2 12        # batch size, threads, rounds

Prints the best epoch of each and the per-round ratios (benchmarks/RESULTS.md, session 17,
has the numbers).
"""
import sys
import time

import numpy as np


def main(batch_rows=200, n_threads=2, rounds=8):
    sys.path.insert(0, ".")
    from benchmarks.report import mnist_like
    from fastmlp.backends.cpu._network import kernel_gather_rows
    X = mnist_like(60000, np.random.default_rng(0))[0]
    times = {True: [], False: []}
    for r in range(rounds):
        for naive in (True, False):
            order = np.random.default_rng(2 * r + naive).permutation(X.shape[0])
            t = time.perf_counter()
            kernel_gather_rows(X, order, naive=naive, n_threads=n_threads,
                               batch_rows=batch_rows)
            times[naive].append(time.perf_counter() - t)
    ratios = [round(a / b, 2) for a, b in zip(times[True], times[False])]
    print(f"batch {batch_rows}, {n_threads} thread(s), {X.shape[0]} rows of {X.shape[1]}: "
          f"naive {min(times[True]) * 1e3:.1f} ms, gather_rows {min(times[False]) * 1e3:.1f} ms "
          f"per epoch (best of {rounds}); naive / gather_rows per round: {ratios}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
