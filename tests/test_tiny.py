"""The fused training pass of tiny networks (csrc/tiny_impl.inc): which networks take it,
and that it trains exactly like the NumPy reference and like the general kernels."""

import contextlib

import numpy as np
import pytest

from fastmlp.backends import make_network, validate_training_data
from fastmlp.backends.base import NetworkSpec, OptimizerSpec
from fastmlp.backends.cpu import _network
from fastmlp.initializers import init_params
from conftest import engine_switch


@contextlib.contextmanager
def tiny_path(enabled):
    previous = _network.set_tiny_path(enabled)
    try:
        yield
    finally:
        _network.set_tiny_path(previous)


def _fit(spec, device, X, y, sw=None, *, batch_size, epochs=2, opt=None, scale=1.0):
    net = make_network(spec, opt or OptimizerSpec("sgd", 0.05, momentum=0.9), device=device,
                       n_threads=1)
    net.set_params(init_params(spec, seed=5) * scale)
    Xc, Yc, swc = validate_training_data(spec, X, y, sw)
    losses = [net.train_epoch(Xc, Yc, swc, batch_size=batch_size, shuffle=True, seed=2,
                              epoch=e, track_metrics=True) for e in range(epochs)]
    return net, losses


def _assert_same(a, b, dtype):
    (na, la), (nb, lb) = a, b
    rtol = 1e-10 if dtype == "float64" else 2e-4
    pa, pb = na.get_params(), nb.get_params()
    np.testing.assert_allclose(pa, pb, rtol=rtol, atol=rtol * np.abs(pb).max())
    np.testing.assert_allclose(la, lb, rtol=rtol)
    for key, value in nb.epoch_metrics.items():
        assert na.epoch_metrics[key] == pytest.approx(value, rel=rtol, abs=1e-12)


CASES = {
    # name: (sizes, activations, loss, targets)
    "iris-relu-softmax": ((4, 10, 10, 3), ("relu", "relu", "softmax"),
                          "categorical_crossentropy", "labels"),
    "leaky-tanh-onehot": ((5, 16, 7, 4), ("leaky_relu", "tanh", "softmax"),
                          "categorical_crossentropy", "onehot"),
    "sigmoid-binary": ((6, 9, 1), ("sigmoid", "sigmoid"), "binary_crossentropy", "binary"),
    "identity-regression": ((3, 12, 12, 2), ("identity", "relu", "identity"),
                            "squared_error", "real"),
    "softmax-squared-error": ((4, 8, 3), ("tanh", "softmax"), "squared_error", "onehot"),
    "logistic-no-hidden": ((4, 3), ("softmax",), "categorical_crossentropy", "labels"),
    "deep-five-layers": ((4, 16, 16, 16, 16, 5), ("relu",) * 4 + ("softmax",),
                         "categorical_crossentropy", "labels"),
    "wide-input-layer": ((40, 8, 3), ("relu", "softmax"), "categorical_crossentropy", "labels"),
}


def _data(case, rng, n):
    sizes, _, _, targets = CASES[case]
    X = rng.normal(size=(n, sizes[0]))
    K = sizes[-1]
    if targets == "labels":
        y = rng.integers(0, K, n)
    elif targets == "onehot":
        y = np.eye(K)[rng.integers(0, K, n)]
    elif targets == "binary":
        y = rng.integers(0, 2, (n, 1)).astype(float)
    else:
        y = rng.normal(size=(n, K))
    return X, y


def _spec(case, dtype, **kw):
    sizes, acts, loss, _ = CASES[case]
    return NetworkSpec(sizes, acts, loss=loss, dtype=dtype, **kw)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_tiny_path_matches_reference(case, dtype, rng):
    # 203 rows, batch 32: the last batch has 11 rows (4-row groups and a remainder)
    X, y = _data(case, rng, 203)
    sw = rng.uniform(0.5, 2.0, 203)
    spec = _spec(case, dtype, l2=1e-3)
    with tiny_path(True):      # on every build (by default only where x86-64-v4 runs)
        cpu = _fit(spec, "cpu", X, y, sw, batch_size=32)
        assert cpu[0]._engine.tiny_network and cpu[0]._engine.will_use_tiny_path(32)
    _assert_same(cpu, _fit(spec, "numpy", X, y, sw, batch_size=32), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [1, 3, 4, 7, 64])
@pytest.mark.parametrize("narrow", [True, False], ids=["narrow-kernels", "plain-loops"])
def test_tiny_path_equals_general_kernels(batch_size, dtype, narrow, rng):
    X, y = _data("iris-relu-softmax", rng, 150)
    spec = _spec("iris-relu-softmax", dtype)
    with tiny_path(True):
        fast = _fit(spec, "cpu", X, y, batch_size=batch_size,
                    opt=OptimizerSpec("adam", 0.01))
    # the general kernels with and without the small products' narrow kernels
    with tiny_path(False), engine_switch(_network.set_narrow_kernels, narrow):
        general = _fit(spec, "cpu", X, y, batch_size=batch_size,
                       opt=OptimizerSpec("adam", 0.01))
        assert not general[0]._engine.will_use_tiny_path(batch_size)
    _assert_same(fast, general, dtype)


def test_tiny_path_default_follows_the_simd_level_and_dtype():
    # the fused pass holds a row in one 16-lane vector: on by default only where that is
    # one register (the x86-64-v4 clones) and only for float32 (16 doubles are two, and the
    # general kernels are faster there); set_tiny_path(None) restores the default
    from fastmlp.backends.cpu import simd_level
    previous = _network.set_tiny_path(None)
    try:
        assert _network.set_tiny_path(None) is None
        for dtype, default in [("float32", simd_level() == "x86-64-v4"), ("float64", False)]:
            net = make_network(_spec("iris-relu-softmax", dtype), device="cpu", n_threads=1)
            assert net._engine.tiny_network
            assert net._engine.will_use_tiny_path(32) == default, dtype
            with tiny_path(True):
                assert net._engine.will_use_tiny_path(32), dtype
            with tiny_path(False):
                assert not net._engine.will_use_tiny_path(32), dtype
            assert net._engine.will_use_tiny_path(32) == default, dtype
    finally:
        _network.set_tiny_path(previous)


def test_tiny_softmax_with_extreme_logits(rng):
    # weights x 40: logits far apart, so the vector exp sees arguments down to the clamp
    X, y = _data("iris-relu-softmax", rng, 96)
    spec = _spec("iris-relu-softmax", "float32")
    with tiny_path(True):
        cpu = _fit(spec, "cpu", X, y, batch_size=32, epochs=1, scale=40.0,
                   opt=OptimizerSpec("sgd", 1e-4))
    ref = _fit(spec, "numpy", X, y, batch_size=32, epochs=1, scale=40.0,
               opt=OptimizerSpec("sgd", 1e-4))
    assert np.isfinite(cpu[1]).all()
    _assert_same(cpu, ref, "float32")


def test_which_networks_are_tiny():
    def engine(sizes, acts, **kw):
        spec = NetworkSpec(sizes, acts, loss="categorical_crossentropy", **kw)
        return make_network(spec, device="cpu", n_threads=1)._engine

    assert engine((4, 10, 10, 3), ("relu", "relu", "softmax")).tiny_network
    # dropout, a layer wider than 16 units, a hidden activation without a vector form,
    # or more than 8 layers: the general kernels
    assert not engine((4, 10, 3), ("relu", "softmax"), dropout=(0.2, 0.0)).tiny_network
    assert not engine((4, 17, 3), ("relu", "softmax")).tiny_network
    assert not engine((4, 10, 3), ("elu", "softmax")).tiny_network
    assert not engine((4,) + (8,) * 8 + (3,), ("relu",) * 8 + ("softmax",)).tiny_network
    # a tiny shape whose batch is too large for the small products
    big_input = engine((784, 10), ("softmax",))
    assert big_input.tiny_network
    with tiny_path(True):
        assert big_input.will_use_tiny_path(4) and not big_input.will_use_tiny_path(32)
