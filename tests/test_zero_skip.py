"""The first layer's zero-skipping products (csrc/zero_skip.c): the kernels against NumPy
and their naive references on every tail shape and density, and the engine trained
through them against the engine without them, the NumPy reference and finite differences;
and the density rule that chooses them."""

import numpy as np
import pytest

from fastmlp.backends import make_network, validate_training_data
from fastmlp.backends.base import NetworkSpec, OptimizerSpec
from fastmlp.backends.cpu import _network
from fastmlp.initializers import init_params

from conftest import engine_switch

AVX512 = _network.direct_kernels_available()


def skip_zeros(enabled):
    return engine_switch(_network.set_skip_zeros, enabled)


def sparse_rows(rng, b, d, density):
    """(b, d) float32 with about `density` of its elements nonzero, some -0.0 among the
    zeros (they count as zeros)."""
    X = rng.normal(size=(b, d)).astype(np.float32)
    X[rng.random((b, d)) >= density] = 0.0
    X[(X == 0) & (rng.random((b, d)) < 0.1)] = -0.0
    return X


# (b, d, N): feature counts around the 16-feature mask words and the 4-feature blocks of
# the weight gradient (d % 16, d % 4), outputs around the vectors and the panels (8 x 16
# columns forward, 7 x 16 for the weight gradient), single rows and columns, and MNIST's
# first layers.
SHAPES = [(1, 1, 1), (3, 5, 7), (7, 16, 16), (9, 17, 33), (5, 33, 100), (12, 64, 112),
          (4, 63, 113), (10, 130, 128), (6, 31, 129), (2, 48, 250), (100, 784, 100),
          (33, 784, 500), (1, 3, 300), (20, 4, 17)]


@pytest.mark.parametrize("naive", [False, True])
@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_kernels_match_numpy(naive, density, rng):
    for b, d, N in SHAPES:
        X = sparse_rows(rng, b, d, density)
        X64 = X.astype(np.float64)
        W = rng.normal(size=(d, N)).astype(np.float32)
        dZ = rng.normal(size=(b, N)).astype(np.float32)
        C = rng.normal(size=(d, N)).astype(np.float32)
        Z, masks = _network.kernel_skip_gemm("nn", X, W, naive=naive)
        np.testing.assert_allclose(Z, X64 @ W, rtol=1e-5, atol=1e-5 * np.sqrt(d),
                                   err_msg=f"nn {b}x{d}x{N}")
        dW, _ = _network.kernel_skip_gemm("tn", X, dZ, naive=naive)
        np.testing.assert_allclose(dW, X64.T @ dZ, rtol=1e-5, atol=1e-5 * np.sqrt(b),
                                   err_msg=f"tn {b}x{d}x{N}")
        for beta in (1.0, 0.5):
            dWb, _ = _network.kernel_skip_gemm("tn", X, dZ, C=C, beta=beta, naive=naive)
            np.testing.assert_allclose(dWb, beta * C + X64.T @ dZ, rtol=1e-5,
                                       atol=1e-5 * np.sqrt(b), err_msg=f"tn beta {beta}")
        # the masks: bit t of word q of row i says X[i, 16 q + t] != 0 (-0.0 is a zero)
        bits = np.unpackbits(masks.view(np.uint8).reshape(b, -1, 2)[..., ::-1], axis=-1,
                             bitorder="big").reshape(b, -1)
        want = np.zeros((b, masks.shape[1] * 16), dtype=bool)
        want[:, :d] = X != 0
        order = np.arange(masks.shape[1] * 16).reshape(-1, 16)[:, ::-1].ravel()
        np.testing.assert_array_equal(bits[:, order].astype(bool), want)


def test_kernels_agree_with_their_references_exactly_where_no_term_is_summed(rng):
    """A row of zeros gives zeros; a feature no row uses keeps beta * C (the skipped
    products are not computed and added as zeros)."""
    X = sparse_rows(rng, 6, 40, 0.3)
    X[2] = 0.0
    X[:, 7] = 0.0
    W = rng.normal(size=(40, 20)).astype(np.float32)
    Z, _ = _network.kernel_skip_gemm("nn", X, W)
    assert (Z[2] == 0).all()
    C = rng.normal(size=(40, 20)).astype(np.float32)
    dW, _ = _network.kernel_skip_gemm("tn", X, rng.normal(size=(6, 20)).astype(np.float32),
                                      C=C, beta=1.0)
    np.testing.assert_array_equal(dW[7], C[7])


@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_kernels_split_over_the_rows_of_w_match_numpy(density, rng):
    """n_threads = 2: the forward product split over W's rows (each thread's masks, its
    partial product over its rows of W, the partials summed) and the weight gradient split
    over dW's rows, as the direct path splits them (fm_direct_row_split, blocks of 8 rows:
    d = 9, 17, 33 split inside a mask word)."""
    for b, d, N in SHAPES + [(32, 784, 500), (64, 300, 256), (3, 9, 40)]:
        X = sparse_rows(rng, b, d, density)
        X64 = X.astype(np.float64)
        W = rng.normal(size=(d, N)).astype(np.float32)
        dZ = rng.normal(size=(b, N)).astype(np.float32)
        C = rng.normal(size=(d, N)).astype(np.float32)
        Z, masks = _network.kernel_skip_gemm("nn", X, W, n_threads=2)
        np.testing.assert_allclose(Z, X64 @ W, rtol=1e-5, atol=1e-5 * np.sqrt(d),
                                   err_msg=f"nn {b}x{d}x{N}")
        _, masks1 = _network.kernel_skip_gemm("nn", X, W)
        np.testing.assert_array_equal(masks, masks1, err_msg="each thread's rows' masks")
        for beta in (0.0, 1.0, 0.5):
            dW, _ = _network.kernel_skip_gemm("tn", X, dZ, C=C if beta else None, beta=beta,
                                              n_threads=2)
            np.testing.assert_allclose(dW, beta * C + X64.T @ dZ, rtol=1e-5,
                                       atol=1e-5 * np.sqrt(b), err_msg=f"tn beta {beta}")


def test_kernel_arguments_are_checked():
    X = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match="kind must be"):
        _network.kernel_skip_gemm("nt", X, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="inner dimensions differ"):
        _network.kernel_skip_gemm("nn", X, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="inner dimensions differ"):
        _network.kernel_skip_gemm("tn", X, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="beta != 0 needs C"):
        _network.kernel_skip_gemm("tn", X, np.zeros((3, 2), np.float32), beta=1.0)
    with pytest.raises(ValueError, match="n_threads"):
        _network.kernel_skip_gemm("nn", X, np.zeros((5, 2), np.float32), n_threads=0)
    with pytest.raises(ValueError, match="n_threads"):
        _network.kernel_skip_gemm("nn", X, np.zeros((5, 2), np.float32), naive=True,
                                  n_threads=2)


def _train(X, y, *, skip, n_threads, batch_size, shuffle=True, dtype="float32", dropout=None,
           sample_weight=None, epochs=2, sizes=(40, 24, 3), device="cpu"):
    spec = NetworkSpec(sizes, ("relu",) * (len(sizes) - 2) + ("softmax",),
                       loss="categorical_crossentropy", dtype=dtype, l2=1e-3,
                       dropout=dropout or (0.0,) * (len(sizes) - 1))
    kwargs = {"n_threads": n_threads} if device == "cpu" else {}
    net = make_network(spec, OptimizerSpec("adam", 1e-2), device=device, **kwargs)
    net.set_params(init_params(spec, seed=3))
    Xc, Yc, sw = validate_training_data(spec, X, y, sample_weight)
    losses, used = [], []
    with skip_zeros(skip):
        for e in range(epochs):
            if device == "cpu":
                net.start_epoch(Xc, Yc, sw, batch_size=batch_size, shuffle=shuffle, seed=5,
                                epoch=e + 1)
                used.append(net._engine.skips_zeros)
                net.run_steps()
                losses.append(net.finish_epoch())
            else:
                losses.append(net.train_epoch(Xc, Yc, sw, batch_size=batch_size,
                                              shuffle=shuffle, seed=5, epoch=e + 1))
    split = net._engine.zero_skip_split_batches if device == "cpu" else None
    return np.array(losses, dtype=float), net.get_params(), used, split


@pytest.fixture
def sparse_data(rng):
    X = sparse_rows(rng, 300, 40, 0.15)
    y = rng.integers(0, 3, 300)
    return X, y


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("batch_size", [7, 64, 150, 300])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("kernels", ["cpu's", "naive"])
def test_training_through_the_kernels_matches_training_without(sparse_data, n_threads,
                                                               batch_size, shuffle, kernels):
    """kernels "naive": the AVX-512 kernels switched off (set_direct_kernels), so that the
    engine runs the references as a CPU without AVX-512 would."""
    X, y = sparse_data
    dense = _train(X, y, skip=False, n_threads=n_threads, batch_size=batch_size,
                   shuffle=shuffle)
    with engine_switch(_network.set_direct_kernels, kernels != "naive"):
        skipping = _train(X, y, skip=True, n_threads=n_threads, batch_size=batch_size,
                          shuffle=shuffle)
    assert dense[2] == [False, False] and skipping[2] == [True, True]
    np.testing.assert_allclose(skipping[0], dense[0], rtol=1e-5)
    np.testing.assert_allclose(skipping[1], dense[1], rtol=1e-4, atol=1e-5)


@pytest.fixture
def wide_sparse_data(rng):
    """Wide enough rows for the direct path's split over W's rows (forward_is_split_k:
    at least FM_DIRECT_PARALLEL_MIN_WORK multiply-adds in the first product)"""
    X = sparse_rows(rng, 256, 300, 0.15)
    y = rng.integers(0, 40, 256)
    return X, y


@pytest.mark.skipif(not AVX512, reason="the split over W's rows runs on AVX-512 CPUs only")
@pytest.mark.parametrize("batch_size", [32, 100])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("sizes", [(300, 64, 4), (300, 40)])
def test_training_split_over_the_rows_of_w_matches_training_without(
        wide_sparse_data, batch_size, shuffle, fused, sizes):
    """Two threads on the direct path (these short batches): the first layer's products
    over X's nonzeros, split over W's rows, in every batch of both epochs; with the hidden
    layer's bias and activation in the sum of the partials (fused) or after it, and a
    first layer that is the output layer (300 -> 40, softmax: its Z is kept)."""
    X, y = wide_sparse_data
    y = y % sizes[-1]
    with engine_switch(_network.set_fused_epilogues, fused):
        dense = _train(X, y, skip=False, n_threads=2, batch_size=batch_size,
                       shuffle=shuffle, sizes=sizes)
        skipping = _train(X, y, skip=True, n_threads=2, batch_size=batch_size,
                          shuffle=shuffle, sizes=sizes)
    assert dense[2] == [False, False] and skipping[2] == [True, True]
    assert dense[3] == 0 and skipping[3] == 2 * -(-256 // batch_size)
    np.testing.assert_allclose(skipping[0], dense[0], rtol=1e-5)
    np.testing.assert_allclose(skipping[1], dense[1], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not AVX512, reason="the split over W's rows runs on AVX-512 CPUs only")
def test_split_over_the_rows_of_w_runs_where_the_direct_path_does(wide_sparse_data):
    """The engine counts the batches whose zero-skipping first layer ran split: every
    batch of an epoch of 32-row batches on two threads, none on one thread or with the
    split-K forward switched off (then the single-thread kernels, or the dense products,
    run)."""
    X, y = wide_sparse_data
    y = y % 4
    spec = NetworkSpec((300, 64, 4), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype="float32")
    Xc, Yc, _ = validate_training_data(spec, X, y)
    counts = {}
    for n_threads, split_k in ((2, True), (1, True), (2, False)):
        net = make_network(spec, OptimizerSpec("sgd", 1e-2), n_threads=n_threads)
        net.set_params(init_params(spec, seed=0))
        with skip_zeros(True), engine_switch(_network.set_split_k_forward, split_k):
            net.train_epoch(Xc, Yc, batch_size=32, shuffle=True)
        counts[n_threads, split_k] = net._engine.zero_skip_split_batches
    assert counts == {(2, True): 256 // 32, (1, True): 0, (2, False): 0}


def test_training_split_over_the_rows_of_w_matches_the_numpy_reference(wide_sparse_data):
    X, y = wide_sparse_data
    y = y % 4
    sw = np.linspace(0.5, 2.0, 256)
    ref = _train(X, y, skip=None, n_threads=1, batch_size=32, device="numpy",
                 sample_weight=sw, sizes=(300, 64, 32, 4))
    skipping = _train(X, y, skip=True, n_threads=2, batch_size=32, sample_weight=sw,
                      sizes=(300, 64, 32, 4))
    np.testing.assert_allclose(skipping[0], ref[0], rtol=1e-4)
    np.testing.assert_allclose(skipping[1], ref[1], rtol=1e-3, atol=1e-4)


def test_training_through_the_kernels_matches_the_numpy_reference(sparse_data):
    X, y = sparse_data
    ref = _train(X, y, skip=None, n_threads=1, batch_size=50, device="numpy",
                 sample_weight=np.linspace(0.5, 2.0, 300), sizes=(40, 30, 20, 3))
    skipping = _train(X, y, skip=True, n_threads=2, batch_size=50,
                      sample_weight=np.linspace(0.5, 2.0, 300), sizes=(40, 30, 20, 3))
    np.testing.assert_allclose(skipping[0], ref[0], rtol=1e-4)
    np.testing.assert_allclose(skipping[1], ref[1], rtol=1e-3, atol=1e-4)


def test_dropout_on_the_first_layer_output_with_the_kernels(sparse_data):
    X, y = sparse_data
    dense = _train(X, y, skip=False, n_threads=2, batch_size=64, dropout=(0.3, 0.0))
    skipping = _train(X, y, skip=True, n_threads=2, batch_size=64, dropout=(0.3, 0.0))
    np.testing.assert_allclose(skipping[0], dense[0], rtol=1e-5)


def test_gradient_through_the_kernels_matches_finite_differences(rng):
    """One full-batch step of SGD (lr 1, no momentum, no penalty) through the kernels moves
    W1 by minus its gradient: against central differences of the float64 reference's data
    loss, at entries of used and of unused (all-zero) features."""
    X = sparse_rows(rng, 20, 24, 0.25)
    X[:, 5] = 0.0
    y = rng.integers(0, 3, 20)
    spec = NetworkSpec((24, 8, 3), ("tanh", "softmax"), loss="categorical_crossentropy",
                       dtype="float32")
    params = init_params(spec, seed=1)
    net = make_network(spec, OptimizerSpec("sgd", 1.0, momentum=0.0), n_threads=1)
    net.set_params(params)
    Xc, Yc, _ = validate_training_data(spec, X, y)
    with skip_zeros(True):
        net.start_epoch(Xc, Yc, batch_size=20, shuffle=False)
        assert net._engine.skips_zeros
        net.run_steps()
        net.finish_epoch()
    grad_W1 = np.asarray(params, np.float64)[:24 * 8] - net.get_params()[:24 * 8]

    spec64 = NetworkSpec((24, 8, 3), ("tanh", "softmax"), loss="categorical_crossentropy",
                         dtype="float64")
    ref = make_network(spec64, OptimizerSpec("sgd", 1.0), device="numpy")
    X64, Y64, _ = validate_training_data(spec64, X.astype(np.float64), y)
    flat = np.asarray(params, np.float64)
    h = 1e-6
    used = [int(j) for j in np.flatnonzero(X.any(axis=0))[:5]]
    for j, k in [(used[0], 0), (used[1], 3), (used[2], 7), (used[4], 5), (5, 2), (5, 6)]:
        e = j * 8 + k
        plus, minus = flat.copy(), flat.copy()
        plus[e] += h
        minus[e] -= h
        ref.set_params(plus)
        up = ref.compute_loss(X64, Y64)
        ref.set_params(minus)
        down = ref.compute_loss(X64, Y64)
        fd = (up - down) / (2 * h)
        assert grad_W1[e] == pytest.approx(fd, rel=2e-3, abs=1e-6), (j, k)
    assert (grad_W1.reshape(24, 8)[5] == 0).all()


def test_density_rule_chooses_the_kernels(rng):
    """Sparse float32 X: on where the AVX-512 kernels run; dense X and float64 networks:
    off; end_epoch turns it off."""
    sparse = sparse_rows(rng, 400, 40, 0.1)
    dense = rng.normal(size=(400, 40)).astype(np.float32)
    y = rng.integers(0, 3, 400)
    with skip_zeros(None):
        for X, want in ((sparse, AVX512), (dense, False)):
            spec = NetworkSpec((40, 16, 3), ("relu", "softmax"),
                               loss="categorical_crossentropy", dtype="float32")
            net = make_network(spec, OptimizerSpec("adam", 1e-3), n_threads=2)
            net.set_params(init_params(spec, seed=0))
            Xc, Yc, _ = validate_training_data(spec, X, y)
            net.start_epoch(Xc, Yc, batch_size=100, shuffle=True)
            assert net._engine.skips_zeros == want
            net.run_steps()
            net.finish_epoch()
            assert not net._engine.skips_zeros
        spec = NetworkSpec((40, 16, 3), ("relu", "softmax"), loss="categorical_crossentropy",
                           dtype="float64")
        net = make_network(spec, OptimizerSpec("adam", 1e-3), n_threads=2)
        net.set_params(init_params(spec, seed=0))
        Xc, Yc, _ = validate_training_data(spec, sparse.astype(np.float64), y)
        net.start_epoch(Xc, Yc, batch_size=100, shuffle=True)
        assert not net._engine.skips_zeros
        net.finish_epoch()
    with skip_zeros(True):
        net.start_epoch(Xc, Yc, batch_size=100)
        assert not net._engine.skips_zeros, "forced on, float64 networks still never skip"
        net.finish_epoch()


def test_set_skip_zeros_returns_the_previous_setting():
    previous = _network.set_skip_zeros(True)
    try:
        assert _network.set_skip_zeros(False) is True
        assert _network.set_skip_zeros(None) is False
        assert _network.set_skip_zeros(None) is None
    finally:
        _network.set_skip_zeros(previous)
