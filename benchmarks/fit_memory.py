"""Peak memory of one fit (tracemalloc, to which NumPy reports its buffers), after a
warm-up fit of another network has done the lazy imports (scikit-learn's, SciPy's: tens of
MiB of Python objects that a first fit in a process would count), and the engine's
workspaces after it (``workspace_nbytes``: the shards' workspaces, the other threads'
gradient buffers, the split products' partial buffers)::

    python benchmarks/fit_memory.py sklearn     # MLPClassifier(max_iter=1), full MNIST
    python benchmarks/fit_memory.py 128         # Model 784-500-500-10, batch 128, 20,000
                                                # rows, validation_split=0.25, one epoch

Run each case in a fresh process (the peak is the process's since tracing began); run it
from two checkouts to compare builds (benchmarks/RESULTS.md, session 26, has the numbers).
MNIST comes from $FASTMLP_DATA or the checkout, else the report's MNIST-like stand-in.
"""
import sys
import tracemalloc
import warnings

import numpy as np


def main(case="sklearn"):
    sys.path.insert(0, ".")
    from benchmarks.report import mnist_like
    from fastmlp import MLPClassifier, Model
    from fastmlp.layers import Dense
    X, y, source = mnist_like(60000, np.random.default_rng(0))
    warnings.simplefilter("ignore")

    def model(widths, batch_size, rows, validation_split):
        m = Model()
        for w in widths:
            m.add(Dense(w, activation="relu"))
        m.add(Dense(10, activation="softmax"))
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        m.fit(X[:rows], y[:rows], batch_size=batch_size, epochs=1,
              validation_split=validation_split, verbose=0)
        return m

    MLPClassifier((8,), max_iter=1).fit(X[:500], y[:500])   # the warm-up
    model((8,), 100, 500, 0.2).predict(X[:3000])
    tracemalloc.start()
    if case == "sklearn":
        engine = MLPClassifier(max_iter=1, random_state=0).fit(X, y)._net._engine
        what = "MLPClassifier(max_iter=1).fit, 60,000 rows"
    else:
        engine = model((500, 500), int(case), 20000, 0.25)._network._engine
        what = (f"Model 784-500-500-10, batch {case}, 20,000 rows, validation_split=0.25, "
                f"one epoch")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"{what} ({source}, {engine.n_threads} threads): peak {peak / 2**20:.1f} MiB, "
          f"workspaces {engine.workspace_nbytes / 2**20:.1f} MiB")


if __name__ == "__main__":
    main(*sys.argv[1:2])
