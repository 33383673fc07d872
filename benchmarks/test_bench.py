"""pytest-benchmark comparisons, grouped per workload so the table shows them side by side:

    pytest benchmarks/ --benchmark-only                 # all systems available here
    pytest benchmarks/ --benchmark-only -k small        # one workload

fastmlp (device="cpu") against the pure-NumPy reference (device="numpy"), and, when
installed, scikit-learn's MLPClassifier and PyTorch (CPU).  Each benchmark runs one
epoch on the same data.  The full report with GFLOP/s and the targets is
``python -m benchmarks.report``; numbers are kept in benchmarks/RESULTS.md.

pytest-benchmark times the systems one after the other, so on a shared machine a slow
phase of the host can hit one system of a group and not the next (2026-11-22, the 2-core
VM: fastmlp's 4096-row prediction 37 ms at best in the whole suite, 19 ms when the group
ran alone, PyTorch 21 and 24 ms).  The report interleaves the systems of each workload in
rounds; quote its ratios, not these tables'.
"""
import numpy as np
import pytest

from benchmarks.report import (IRIS_NET, MNIST_NET, dense_first_layer, fastmlp_epoch_fn,
                               sklearn_epoch_fn, torch_available, torch_epoch_fn)

RNG = np.random.default_rng(0)
X_MNIST = RNG.random((4096, 784), dtype=np.float32)
Y_MNIST = RNG.integers(0, 10, 4096)
# MNIST's density: 19% of the elements nonzero (the first layer then skips the zeros)
X_SPARSE = np.where(RNG.random((4096, 784)) < 0.19, X_MNIST, 0).astype(np.float32)
X_SMALL = RNG.normal(size=(150 * 40, 4)).astype(np.float32)
Y_SMALL = RNG.integers(0, 3, 150 * 40)

SYSTEMS = ["fastmlp", "numpy", "sklearn", "torch"]


def _epoch_fn(system, sizes, X, y, batch_size, activation="relu"):
    if system == "fastmlp":
        return fastmlp_epoch_fn(sizes, X, y, batch_size, n_threads=None,
                                activation=activation)[0]
    if system == "numpy":
        return fastmlp_epoch_fn(sizes, X, y, batch_size, device="numpy",
                                activation=activation)[0]
    if system == "sklearn":
        assert activation == "relu"
        return sklearn_epoch_fn(sizes, X, y, batch_size)
    if not torch_available():
        pytest.skip("PyTorch is not installed (pip install torch==2.13.0; never a dependency)")
    from fastmlp._threads import available_cpus
    return torch_epoch_fn(sizes, X, y.astype(np.int64), batch_size, available_cpus(),
                          activation=activation)[0]


@pytest.mark.parametrize("system", SYSTEMS)
def test_small_network_epoch(benchmark, system):
    """(b) iris-sized 4-10-10-3, batch 32: per-step overhead dominates."""
    benchmark.group = "4-10-10-3, batch 32, 6000 rows"
    run = _epoch_fn(system, IRIS_NET, X_SMALL, Y_SMALL, 32)
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("batch_size", [32, 128, 512])
@pytest.mark.parametrize("system", SYSTEMS)
def test_mnist_network_epoch(benchmark, system, batch_size):
    """(a) 784-500-500-10 ReLU/softmax, SGD momentum 0.9, float32."""
    benchmark.group = f"784-500-500-10, batch {batch_size}, 4096 rows"
    run = _epoch_fn(system, MNIST_NET, X_MNIST, Y_MNIST, batch_size)
    benchmark.pedantic(run, rounds=2, warmup_rounds=1)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "elu", "softplus", "gelu"])
@pytest.mark.parametrize("system", ["fastmlp", "numpy", "torch"])
def test_mnist_network_other_activations(benchmark, system, activation):
    """(a) with other hidden activations, batch 512: their elementwise exp, tanh, expm1,
    log1p and erf count (fastmlp vectorises them, csrc/vmath.h; libm's, one element at a
    time, were 0.49-0.85x PyTorch here: benchmarks/RESULTS.md, sessions 14 and 15)."""
    benchmark.group = f"784-500-500-10 {activation}, batch 512, 4096 rows"
    run = _epoch_fn(system, MNIST_NET, X_MNIST, Y_MNIST, 512, activation=activation)
    benchmark.pedantic(run, rounds=2, warmup_rounds=1)


@pytest.mark.parametrize("system", ["fastmlp", "numpy", "torch"])
def test_predict(benchmark, system):
    """(d) predict 4096 rows through 784-500-500-10."""
    benchmark.group = "predict 4096 rows, 784-500-500-10"
    if system == "torch":
        if not torch_available():
            pytest.skip("PyTorch is not installed")
        import torch
        _, model = torch_epoch_fn(MNIST_NET, X_MNIST[:64], Y_MNIST[:64].astype(np.int64), 64, 2)
        Xt = torch.from_numpy(X_MNIST)

        def run():
            with torch.no_grad():
                return torch.softmax(model(Xt), dim=1)
    else:
        _, net = fastmlp_epoch_fn(MNIST_NET, X_MNIST[:64], Y_MNIST[:64], 64,
                                  device="cpu" if system == "fastmlp" else "numpy")

        def run():
            return net.forward(X_MNIST)
    out = benchmark(run)
    assert tuple(out.shape) == (4096, 10)


@pytest.mark.parametrize("first_layer", ["skipping zeros", "dense"])
def test_sparse_input_epoch(benchmark, first_layer):
    """784-100-10 at batch 200 on rows 19% nonzero, as MNIST's: the first layer's products
    over the nonzeros alone (the default there) against the dense products."""
    benchmark.group = "784-100-10 b200, 19% nonzero input: first layer"
    run, net = fastmlp_epoch_fn((784, 100, 10), X_SPARSE, Y_MNIST, 200)
    if first_layer == "dense":
        run = dense_first_layer(run)
    benchmark(run)
    assert np.isfinite(net.get_params()).all()
