"""The first layer's zero-skipping products (csrc/zero_skip.c): the kernels against NumPy
and their naive references on every tail shape and density, and the engine trained
through them against the engine without them, the NumPy reference and finite differences;
and the density rule that chooses them."""

import contextlib

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


def feature_split(enabled):
    return engine_switch(_network.set_feature_split, enabled)


def sparse_rows(rng, b, d, density):
    """(b, d) float32 with about `density` of its elements nonzero, some -0.0 among the
    zeros (they count as zeros)."""
    X = rng.normal(size=(b, d)).astype(np.float32)
    X[rng.random((b, d)) >= density] = 0.0
    X[(X == 0) & (rng.random((b, d)) < 0.1)] = -0.0
    return X


# (b, d, N): feature counts around the 16-feature mask words and the 4-feature blocks
# (d % 16, d % 4), outputs around the vectors and the panels (7 x 16 columns), single rows
# and columns, MNIST's first layers, and rows and blocks beyond one set of the kernels'
# lists (128 rows, 128 blocks of 4 features: b > 128, d > 512).
SHAPES = [(1, 1, 1), (3, 5, 7), (7, 16, 16), (9, 17, 33), (5, 33, 100), (12, 64, 112),
          (4, 63, 113), (10, 130, 128), (6, 31, 129), (2, 48, 250), (100, 784, 100),
          (33, 784, 500), (1, 3, 300), (20, 4, 17), (128, 512, 20), (129, 513, 30),
          (300, 1030, 19)]


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
        # split at given cuts (the engine's nonzero-balanced ones): anywhere, inside a
        # block of 4 features or a mask word, or all rows of W on one thread
        for cut in sorted({0, d // 3, d - 1, d}):
            cuts = [0, cut, d]
            Zc, _ = _network.kernel_skip_gemm("nn", X, W, n_threads=2, cuts=cuts)
            np.testing.assert_allclose(Zc, X64 @ W, rtol=1e-5, atol=1e-5 * np.sqrt(d),
                                       err_msg=f"nn {b}x{d}x{N} cuts {cuts}")
            dWc, _ = _network.kernel_skip_gemm("tn", X, dZ, C=C, beta=0.5, n_threads=2,
                                               cuts=cuts)
            np.testing.assert_allclose(dWc, 0.5 * C + X64.T @ dZ, rtol=1e-5,
                                       atol=1e-5 * np.sqrt(b), err_msg=f"tn cuts {cuts}")


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
    W = np.zeros((5, 2), np.float32)
    for n_threads, cuts in ((2, [0, 3]), (2, [1, 3, 5]), (2, [0, 3, 4]), (2, [0, 4, 3, 5]),
                            (2, [0, 4, 2]), (1, [0, 5])):
        with pytest.raises(ValueError, match="cuts must be"):
            _network.kernel_skip_gemm("nn", X, W, n_threads=n_threads, cuts=cuts)


def _train(X, y, *, skip, n_threads, batch_size, shuffle=True, dtype="float32", dropout=None,
           sample_weight=None, epochs=2, sizes=(40, 24, 3), device="cpu", activation="relu",
           optimizer=None, l1=0.0, fs=None):
    """Returns (losses, params, whether each epoch skipped zeros, batches split over W's
    rows, (batches through the feature split, batches the batch split would have split,
    pieces of its step 3 that a thread took from another's features)) (the counts None off
    the CPU); fs: the feature split on or off (None: as it is)."""
    spec = NetworkSpec(sizes, (activation,) * (len(sizes) - 2) + ("softmax",),
                       loss="categorical_crossentropy", dtype=dtype, l2=1e-3, l1=l1,
                       dropout=dropout or (0.0,) * (len(sizes) - 1))
    kwargs = {"n_threads": n_threads} if device == "cpu" else {}
    net = make_network(spec, optimizer or OptimizerSpec("adam", 1e-2), device=device,
                       **kwargs)
    net.set_params(init_params(spec, seed=3))
    Xc, Yc, sw = validate_training_data(spec, X, y, sample_weight)
    losses, used = [], []
    with skip_zeros(skip), feature_split(fs) if fs is not None else contextlib.nullcontext():
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
    split = fs_counts = None
    if device == "cpu":
        split = net._engine.zero_skip_split_batches
        n = len(X)
        sharded = sum(net._engine.will_shard(min(batch_size, n - lo))
                      for lo in range(0, n, batch_size))
        fs_counts = (net._engine.feature_split_batches, epochs * sharded,
                     net._engine.feature_split_pieces_taken)
    return np.array(losses, dtype=float), net.get_params(), used, split, fs_counts


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


@pytest.mark.skipif(not AVX512, reason="the split over W's rows runs on AVX-512 CPUs only")
def test_split_over_the_rows_of_w_at_balanced_cuts_matches_the_even_split(rng):
    """The direct path splits the skipping products over W's rows at the epoch's
    nonzero-balanced cuts (skip_cuts), far from the middle here (the last 148 features
    hold 6x the nonzeros of the first 152), and updates those rows on the thread that
    wrote their gradient: training matches the dense products and the even split
    (set_balanced_direct_cuts(False)), and the cuts are taken (the forward's partial
    products, summed over other features, round otherwise)."""
    X = np.concatenate([sparse_rows(rng, 256, 152, 0.05), sparse_rows(rng, 256, 148, 0.3)],
                       axis=1)
    y = rng.integers(0, 4, 256)
    assert _network.balanced_feature_cuts(X, 2)[1] > 200
    dense = _train(X, y, skip=False, n_threads=2, batch_size=32, sizes=(300, 64, 4))
    runs = {}
    for balanced in (True, False):
        with engine_switch(_network.set_balanced_direct_cuts, balanced):
            runs[balanced] = _train(X, y, skip=True, n_threads=2, batch_size=32,
                                    sizes=(300, 64, 4))
        assert runs[balanced][3] == 2 * 256 // 32
        np.testing.assert_allclose(runs[balanced][0], dense[0], rtol=1e-5)
        np.testing.assert_allclose(runs[balanced][1], dense[1], rtol=1e-4, atol=1e-5)
    assert not np.array_equal(runs[True][1], runs[False][1])


@pytest.mark.skipif(not AVX512, reason="the split over W's rows runs on AVX-512 CPUs only")
@pytest.mark.parametrize("batch_size", [200, 256])
def test_a_wide_network_takes_the_direct_path_up_to_256_rows(rng, batch_size):
    """A network with a layer wider than SHARD_MAX_WIDTH on two threads: its batches of up
    to DIRECT_MAX_ROWS_THREADED = 256 rows go through the direct products split over W's
    rows (before session 25, 129-255 rows went to BLAS's threads and 256 were split by
    rows), the first layer skipping zeros in every batch, the last short one included;
    training matches the dense products and the NumPy reference."""
    X = sparse_rows(rng, 600, 300, 0.15)
    y = rng.integers(0, 4, 600)
    sizes = (300, 260, 4)
    spec = NetworkSpec(sizes, ("relu", "softmax"), loss="categorical_crossentropy")
    engine = make_network(spec, n_threads=2)._engine
    assert not engine.will_shard(batch_size) and engine.will_shard(257)
    batches = -(-600 // batch_size)
    dense = _train(X, y, skip=False, n_threads=2, batch_size=batch_size, sizes=sizes)
    skipping = _train(X, y, skip=True, n_threads=2, batch_size=batch_size, sizes=sizes)
    ref = _train(X, y, skip=None, n_threads=1, batch_size=batch_size, device="numpy",
                 sizes=sizes)
    assert skipping[2] == [True, True] and skipping[3] == 2 * batches
    assert dense[3] == 0 and dense[4][0] == 0 and skipping[4][0] == 0
    for run in (dense, skipping):
        np.testing.assert_allclose(run[0], ref[0], rtol=1e-4)
        np.testing.assert_allclose(run[1], ref[1], rtol=1e-3, atol=1e-4)


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


# ---- predictions (Engine.predict) ---------------------------------------------------------

def _predict_net(sizes, dtype="float32", n_threads=2, seed=0):
    spec = NetworkSpec(sizes, ("relu",) * (len(sizes) - 2) + ("softmax",),
                       loss="categorical_crossentropy", dtype=dtype)
    net = make_network(spec, OptimizerSpec("sgd", 0.1), n_threads=n_threads)
    net.set_params(init_params(spec, seed=seed))
    return net


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n", [1, 5, 127, 128, 129, 1000, 5003])
@pytest.mark.parametrize("kernels", ["cpu's", "naive"])
def test_prediction_through_the_kernels_matches_prediction_without(n_threads, n, kernels,
                                                                   rng):
    """Rows around the blocks of PREDICT_SKIP_ROWS, split over the threads or not, through
    the AVX-512 kernels or the naive references: the outputs of the dense products, to
    rounding; the rows too few for the general products predict densely."""
    net = _predict_net((100, 64, 32, 3), n_threads=n_threads)
    X = sparse_rows(rng, n, 100, 0.15)
    with skip_zeros(False):
        want = net.forward(X)
        assert not net._engine.last_call_skipped_zeros
    with engine_switch(_network.set_direct_kernels, kernels == "cpu's"), skip_zeros(True):
        got = net.forward(X)
        skipped = net._engine.last_call_skipped_zeros
    sharded = net._engine.will_shard_prediction(n)
    shard_rows = -(-n // 2) if sharded else n
    general = min(shard_rows, _network.call_chunk_rows()) * 64 * 100 > 32768  # SMALL_GEMM_WORK
    assert skipped == general
    if n >= 1000:
        assert skipped, "the case this test is for"
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_prediction_reports_no_skipping_where_its_shards_take_the_narrow_kernels(rng):
    """A narrow first layer before wide ones: 16 rows split over two threads leave 8 per
    shard, whose first product (8 x 4 x 1000) goes through the narrow kernels, so nothing
    skips; 64 rows do skip."""
    net = _predict_net((4, 1000, 1000, 3))
    assert net._engine.will_shard_prediction(16)
    for n, skips in ((16, False), (64, True)):
        X = sparse_rows(rng, n, 4, 0.3)
        with skip_zeros(False):
            want = net.forward(X)
        with skip_zeros(True):
            got = net.forward(X)
            assert net._engine.last_call_skipped_zeros == skips
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_prediction_follows_the_density_rule(rng):
    """Sparse float32 X: skipped where the AVX-512 kernels run; dense X and float64
    networks: not; forced off: not."""
    net = _predict_net((100, 64, 3))
    sparse = sparse_rows(rng, 2000, 100, 0.1)
    dense = rng.normal(size=(2000, 100)).astype(np.float32)
    with skip_zeros(None):
        want = {}
        for name, X, skips in (("sparse", sparse, AVX512), ("dense", dense, False)):
            want[name] = net.forward(X)
            assert net._engine.last_call_skipped_zeros == skips
        net64 = _predict_net((100, 64, 3), dtype="float64")
        out64 = net64.forward(sparse.astype(np.float64))
        assert not net64._engine.last_call_skipped_zeros
        np.testing.assert_allclose(want["sparse"], out64, rtol=1e-4, atol=1e-6)
    with skip_zeros(False):
        np.testing.assert_allclose(net.forward(sparse), want["sparse"], rtol=2e-5, atol=1e-6)
        assert not net._engine.last_call_skipped_zeros


def test_prediction_after_training_through_the_kernels_and_between_epochs(sparse_data):
    """A prediction between the epochs of a training that skips zeros (an early-stopping
    score) leaves the training as it was: the same losses and parameters as without it."""
    X, y = sparse_data
    X = np.ascontiguousarray(np.tile(X, (4, 1)))
    y = np.tile(y, 4)
    results = []
    for predict_between in (False, True):
        spec = NetworkSpec((40, 64, 3), ("relu", "softmax"),
                           loss="categorical_crossentropy", dtype="float32")
        net = make_network(spec, OptimizerSpec("adam", 1e-2), n_threads=2)
        net.set_params(init_params(spec, seed=1))
        Xc, Yc, _ = validate_training_data(spec, X, y)
        losses = []
        with skip_zeros(True):
            for e in range(3):
                losses.append(net.train_epoch(Xc, Yc, batch_size=64, shuffle=True, seed=2,
                                              epoch=e + 1))
                if predict_between:
                    out = net.forward(Xc)
                    assert net._engine.last_call_skipped_zeros
                    assert np.isfinite(out).all()
        results.append((losses, net.get_params()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n", [300, 4096, 5003])
@pytest.mark.parametrize("kernels", ["cpu's", "naive"])
def test_full_batch_through_the_kernels_matches_the_dense_one(n_threads, n, kernels, rng):
    """Loss and gradient of a full batch (L-BFGS, evaluate), in chunks of the workspace
    (call_chunk_rows: 4096 and 5003 rows take several, each after the first accumulating
    into the gradient), with L2 and sample weights: the dense products' to rounding."""
    spec = NetworkSpec((100, 64, 32, 3), ("relu", "relu", "softmax"),
                       loss="categorical_crossentropy", dtype="float32", l2=1e-3)
    net = make_network(spec, OptimizerSpec("sgd", 0.1), n_threads=n_threads)
    net.set_params(init_params(spec, seed=2))
    X = sparse_rows(rng, n, 100, 0.15)
    y = rng.integers(0, 3, n)
    sw = rng.uniform(0.5, 2.0, n)
    Xc, Yc, swc = validate_training_data(spec, X, y, sw)
    with skip_zeros(False):
        want_loss, want_grad = net.loss_and_grad(Xc, Yc, swc)
        want_eval = net.compute_loss(Xc, Yc, swc)
        assert not net._engine.last_call_skipped_zeros
    with engine_switch(_network.set_direct_kernels, kernels == "cpu's"), skip_zeros(True):
        loss, grad = net.loss_and_grad(Xc, Yc, swc)
        assert net._engine.last_call_skipped_zeros
        evaluated = net.compute_loss(Xc, Yc, swc)
        assert net._engine.last_call_skipped_zeros
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert evaluated == pytest.approx(want_eval, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)
    assert np.abs(grad[:100 * 64]).max() > 1e-4, "the first layer's gradient is tested"


def test_lbfgs_fit_through_the_kernels_matches_the_dense_one(rng):
    """scikit-learn's L-BFGS front on sparse float32 rows: the same fit to rounding."""
    from fastmlp import MLPClassifier
    X = sparse_rows(rng, 600, 100, 0.15)
    y = rng.integers(0, 3, 600)
    fits = {}
    for mode in (False, None):
        with skip_zeros(mode):
            clf = MLPClassifier(hidden_layer_sizes=(64,), solver="lbfgs", max_iter=15,
                                random_state=0, n_threads=2)
            with pytest.warns(Warning):   # ConvergenceWarning: 15 iterations
                clf.fit(X, y)
            fits[mode] = clf
    assert fits[None]._net._engine.last_call_skipped_zeros == AVX512
    assert fits[None].n_iter_ == fits[False].n_iter_
    assert fits[None].loss_ == pytest.approx(fits[False].loss_, rel=1e-4)
    for a, b in zip(fits[None].coefs_, fits[False].coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not AVX512, reason="the AVX-512 kernels are not available on this CPU")
def test_kernel_by_blocks_of_rows_and_into_out(rng):
    X = sparse_rows(rng, 300, 100, 0.2)
    W = rng.normal(size=(100, 40)).astype(np.float32)
    whole, masks = _network.kernel_skip_gemm("nn", X, W)
    for block in (1, 7, 128, 300, 1000):
        out = np.full((300, 40), np.nan, np.float32)
        got, got_masks = _network.kernel_skip_gemm("nn", X, W, block_rows=block, out=out)
        assert got is out
        np.testing.assert_array_equal(got, whole)
        np.testing.assert_array_equal(got_masks, masks)
    with pytest.raises(ValueError, match="block_rows"):
        _network.kernel_skip_gemm("tn", X, np.zeros((300, 4), np.float32), block_rows=8)
    with pytest.raises(ValueError, match="block_rows"):
        _network.kernel_skip_gemm("nn", X, W, block_rows=8, n_threads=2)
    with pytest.raises(ValueError, match="block_rows"):
        _network.kernel_skip_gemm("nn", X, W, block_rows=-1)
    with pytest.raises(ValueError, match="out must be"):
        _network.kernel_skip_gemm("nn", X, W, out=np.zeros((300, 41), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        _network.kernel_skip_gemm("nn", X, W, out=np.zeros((300, 40), np.float64))
    with pytest.raises(ValueError, match="out and C"):
        _network.kernel_skip_gemm("tn", X, np.zeros((300, 4), np.float32),
                                  C=np.zeros((100, 4), np.float32),
                                  out=np.zeros((100, 4), np.float32))


# ---- the feature split (_network.pyx, feature_split_thread) ------------------------------

@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("density", [0.0, 0.2, 1.0])
def test_feature_range_kernels_match_numpy(direct, density, rng):
    """One thread's share of the features, over rows read in place by index (repeated and
    out of order) or X's first rows: the masks of the words over [k0, k1), the partial
    product X[rows][:, k0:k1] @ W[k0:k1], and dW's rows [k0, k1) alone (the others keep C).
    direct False: the references (set_direct_kernels), as on a CPU without AVX-512."""
    with engine_switch(_network.set_direct_kernels, direct):
        for b, d, N in SHAPES + [(200, 784, 100)]:
            X = sparse_rows(rng, b + 5, d, density)
            W = rng.normal(size=(d, N)).astype(np.float32)
            dZ = rng.normal(size=(b, N)).astype(np.float32)
            C = rng.normal(size=(d, N)).astype(np.float32)
            ranges = {(0, d), (0, min(d, 4 * (d // 8))), (4 * (d // 8), d), (4 * (d // 4), d)}
            for rows in (rng.integers(0, b + 5, b), None):
                Xb = (X[rows] if rows is not None else X[:b]).astype(np.float64)
                for k0, k1 in sorted(ranges):
                    msg = f"{b}x{d}x{N} [{k0}, {k1}) rows {rows is not None}"
                    Z, masks = _network.kernel_skip_gemm_features(
                        "nn", X if rows is not None else X[:b], W, (k0, k1), rows)
                    np.testing.assert_allclose(Z, Xb[:, k0:k1] @ W[k0:k1], rtol=1e-5,
                                               atol=1e-5 * np.sqrt(d), err_msg="nn " + msg)
                    q0, q1 = k0 // 16, -(-k1 // 16)
                    _, full = _network.kernel_skip_gemm(
                        "nn", np.ascontiguousarray(Xb, np.float32), W)
                    np.testing.assert_array_equal(masks[:, q0:q1], full[:, q0:q1])
                    assert not masks[:, :q0].any() and not masks[:, q1:].any()
                    for beta in (0.0, 0.5):
                        dW, _ = _network.kernel_skip_gemm_features(
                            "tn", X if rows is not None else X[:b], dZ, (k0, k1), rows,
                            C=C, beta=beta)
                        want = C.astype(np.float64)
                        want[k0:k1] = beta * C[k0:k1] + Xb[:, k0:k1].T @ dZ
                        np.testing.assert_allclose(dW, want, rtol=1e-5,
                                                   atol=1e-5 * np.sqrt(b),
                                                   err_msg=f"tn beta {beta} " + msg)


def test_feature_range_kernel_arguments_are_checked():
    X = np.zeros((3, 8), np.float32)
    W = np.zeros((8, 2), np.float32)
    with pytest.raises(ValueError, match="kind must be"):
        _network.kernel_skip_gemm_features("nt", X, W, (0, 8))
    for bad in ((2, 8), (0, 9), (8, 4), (-4, 4)):
        with pytest.raises(ValueError, match="features must be"):
            _network.kernel_skip_gemm_features("nn", X, W, bad)
    with pytest.raises(ValueError, match="row indices"):
        _network.kernel_skip_gemm_features("nn", X, W, (0, 8), rows=[0, 3])
    with pytest.raises(ValueError, match="dimensions differ"):
        _network.kernel_skip_gemm_features("tn", X, np.zeros((2, 2), np.float32), (0, 8),
                                           rows=[0, 1, 2])
    with pytest.raises(ValueError, match="beta != 0 needs C"):
        _network.kernel_skip_gemm_features("tn", X, np.zeros((3, 2), np.float32), (0, 8),
                                           beta=1.0)


def test_balanced_feature_cuts(rng):
    """Multiples of 4 from 0 to d, non-decreasing, splitting the sampled nonzeros about
    evenly; more threads than blocks leave some threads empty, not out of range."""
    X = np.zeros((1000, 100), np.float32)
    X[:, 60:100] = rng.random((1000, 40))     # every nonzero in the last 40 features
    cuts = _network.balanced_feature_cuts(X, 2)
    assert cuts[0] == 0 and cuts[-1] == 100 and (cuts % 4 == 0).all()
    assert 76 <= cuts[1] <= 84, cuts           # about half of the nonzeros on each side
    for nt in (1, 3, 7, 40):
        cuts = _network.balanced_feature_cuts(X, nt)
        assert len(cuts) == nt + 1 and cuts[0] == 0 and cuts[-1] == 100
        assert (np.diff(cuts) >= 0).all() and (cuts[:-1] % 4 == 0).all()
    cuts = _network.balanced_feature_cuts(np.ones((5, 10), np.float32), 2)
    assert list(cuts) == [0, 4, 10] or list(cuts) == [0, 8, 10]


# sharded batches (batch_is_sharded: at least SHARD_MIN_WORK multiply-adds) whose first
# layer holds most of the parameters
FS_SIZES = [(300, 64, 4), (300, 64, 32, 4), (300, 80)]


def _train_fs(X, y, *, fs, n_threads=2, batch_size=128, sizes=(300, 64, 4), device="cpu",
              **kwargs):
    """_train with the zero skipping on and the feature split on or off (fs; both left as
    they are off the CPU): (losses, params, (batches through the feature split, batches
    the batch split would have split: all of them must take it, pieces taken across
    threads))."""
    cpu = device == "cpu"
    losses, params, _, _, counts = _train(
        X, y, skip=True if cpu else None, fs=fs if cpu else None, n_threads=n_threads,
        batch_size=batch_size, sizes=sizes, device=device, **kwargs)
    return losses, params, counts


@pytest.fixture
def fs_data(rng):
    X = sparse_rows(rng, 600, 300, 0.15)
    y = rng.integers(0, 40, 600)
    return X, y


@pytest.mark.parametrize("sizes", FS_SIZES)
@pytest.mark.parametrize("batch_size", [128, 150])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("direct", [True, False])
def test_feature_split_matches_the_batch_split(fs_data, sizes, batch_size, shuffle, direct):
    """Every split batch of both epochs through the feature split on two threads (600 = 4 x
    150, and 4 x 128 + 88: the batch split leaves the short last batch to one thread, for
    (300, 64, 4) and (300, 64, 32, 4)), against the same training split over the batch's
    rows; a first layer that is the output layer too (300 -> 80).  direct False:
    the references (set_direct_kernels)."""
    X, y = fs_data
    y = y % sizes[-1]
    with engine_switch(_network.set_direct_kernels, direct):
        batch = _train_fs(X, y, fs=False, batch_size=batch_size, sizes=sizes, shuffle=shuffle)
        split = _train_fs(X, y, fs=True, batch_size=batch_size, sizes=sizes, shuffle=shuffle)
    assert batch[2][0] == 0 and split[2][0] == split[2][1] > 0
    np.testing.assert_allclose(split[0], batch[0], rtol=1e-5)
    np.testing.assert_allclose(split[1], batch[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sizes, n_threads, optimizer", [
    ((300, 64, 4), 2, None), ((300, 80), 2, None), ((300, 64, 32, 4), 3, None),
    ((300, 64, 4), 2, OptimizerSpec("sgd", 1e-2, momentum=0.9, nesterov=True))])
def test_feature_split_pieces_taken_by_other_threads_change_nothing(fs_data, sizes, n_threads,
                                                                    optimizer):
    """Step 3's pieces (dW0's rows and their update) computed by threads other than the
    one whose features they are (set_feature_split_others_first: every thread claims the
    others' pieces first) give the same losses and parameters, to the bit, as each thread
    computing its own; and pieces did cross threads (each thread's first claim is another
    thread's piece, so at least one crosses)."""
    X, y = fs_data
    y = y % sizes[-1]
    kwargs = dict(fs=True, n_threads=n_threads, sizes=sizes, optimizer=optimizer, l1=1e-4)
    own = _train_fs(X, y, **kwargs)
    with engine_switch(_network.set_feature_split_others_first, True):
        crossed = _train_fs(X, y, **kwargs)
    assert own[2][0] == own[2][1] > 0 and crossed[2][:2] == own[2][:2]
    assert crossed[2][2] > 0
    np.testing.assert_array_equal(crossed[0], own[0])
    np.testing.assert_array_equal(crossed[1], own[1])


@pytest.mark.parametrize("case", ["sample weights", "dropout", "gelu", "l1", "sgd nesterov",
                                  "rmsprop", "3 threads"])
def test_feature_split_matches_the_numpy_reference(fs_data, case):
    """The feature split against the float64 NumPy reference, with what it passes through:
    row weights (the batch's norm, gathered by each thread for its rows), dropout on the
    first layer's output (the draws of each thread's rows), a first layer whose Z is kept
    (gelu), L1 and L2 penalties (their value from each thread's parameters, their gradient
    in the update), other optimizers, a team of three threads (cuts of three)."""
    X, y = fs_data
    y = y % 4
    kwargs = {"sample weights": dict(sample_weight=np.linspace(0.2, 3.0, 600)),
              "dropout": dict(dropout=(0.25, 0.0)),
              "gelu": dict(activation="gelu"),
              "l1": dict(l1=1e-3),
              "sgd nesterov": dict(optimizer=OptimizerSpec("sgd", 0.05, momentum=0.9,
                                                           nesterov=True)),
              "rmsprop": dict(optimizer=OptimizerSpec("rmsprop", 1e-3)),
              "3 threads": dict(n_threads=3)}[case]
    n_threads = kwargs.pop("n_threads", 2)
    split = _train_fs(X, y, fs=True, n_threads=n_threads, **kwargs)
    assert split[2][0] == split[2][1] == 2 * 4
    if case == "dropout":   # the reference draws other masks: compare with the batch split
        ref = _train_fs(X, y, fs=False, **kwargs)
    else:
        ref = _train_fs(X, y, fs=None, device="numpy", **kwargs)
    np.testing.assert_allclose(split[0], ref[0], rtol=1e-4)
    np.testing.assert_allclose(split[1], ref[1], rtol=1e-3, atol=1e-4)


def test_feature_split_runs_only_where_it_applies(fs_data):
    """Counted batches: none on one thread, with the zero skipping off, with clipping (the
    whole gradient's norm comes first), for a network whose first layer holds under half
    of the parameters, for batches the batch split would not take (too little work) or
    with more rows than half the input's features."""
    X, y = fs_data
    y = y % 4

    def count(sizes=(300, 64, 4), n_threads=2, skip=True, clipnorm=None, batch_size=128):
        spec = NetworkSpec(sizes, ("relu",) * (len(sizes) - 2) + ("softmax",),
                           loss="categorical_crossentropy", dtype="float32")
        net = make_network(spec, OptimizerSpec("adam", 1e-3, clipnorm=clipnorm),
                           n_threads=n_threads)
        net.set_params(init_params(spec, seed=0))
        Xc, Yc, _ = validate_training_data(spec, X, y)
        with skip_zeros(skip), feature_split(True):
            net.train_epoch(Xc, Yc, batch_size=batch_size, shuffle=True)
        return net._engine.feature_split_batches

    assert count() == 4     # 600 = 4 x 128 + 88: the last batch stays on one thread
    assert count(n_threads=1) == 0
    assert count(skip=False) == 0
    assert count(clipnorm=1.0) == 0
    assert count(sizes=(300, 64, 512, 4)) == 0
    assert count(batch_size=16) == 0
    # 600 = 3 x 151 + 147: the last batch alone is short enough
    assert count(batch_size=150) == 4 and count(batch_size=151) == 1


def test_feature_split_buffers_follow_the_batch_not_a_prediction(fs_data):
    """The feature split's buffers hold the epoch's batch (at most FEATURE_SPLIT_MAX_ROWS
    of them): a prediction that grows the workspace to a call's chunk leaves them as they are,
    and the training after it is the same as without the prediction."""
    X, y = fs_data
    y = y % 4
    spec = NetworkSpec((300, 64, 4), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype="float32")
    Xc, Yc, _ = validate_training_data(spec, X, y)
    Xp = np.tile(X, (8, 1))
    results = []
    for predict_between in (True, False):
        net = make_network(spec, OptimizerSpec("adam", 1e-3), n_threads=2)
        net.set_params(init_params(spec, seed=0))
        with skip_zeros(True), feature_split(True):
            net.train_epoch(Xc, Yc, batch_size=128, shuffle=True, seed=1)
            assert net._engine.feature_split_rows == 128
            if predict_between:
                net.forward(Xp)
                assert net._engine.workspace_rows == _network.call_chunk_rows() > 128
            net.train_epoch(Xc, Yc, batch_size=128, shuffle=True, seed=2, epoch=1)
            assert net._engine.feature_split_rows == 128
            # a batch longer than the split takes (half the 300 features) sizes them for
            # the longest that does
            net.train_epoch(Xc, Yc, batch_size=400, shuffle=True, seed=3, epoch=2)
            assert net._engine.feature_split_rows == 150
        results.append((net.get_params(), net._engine.feature_split_batches))
    (p1, c1), (p2, c2) = results
    assert c1 == c2 == 2 * 4
    np.testing.assert_array_equal(p1, p2)


def test_feature_split_tracks_metrics_as_the_batch_split_does(fs_data):
    X, y = fs_data
    y = y % 4
    spec = NetworkSpec((300, 64, 4), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype="float32", l2=1e-3)
    states = []
    for fs in (True, False):
        net = make_network(spec, OptimizerSpec("adam", 1e-2), n_threads=2)
        net.set_params(init_params(spec, seed=0))
        Xc, Yc, _ = validate_training_data(spec, X, y)
        with skip_zeros(True), feature_split(fs):
            net.start_epoch(Xc, Yc, batch_size=128, shuffle=True, seed=1, epoch=1,
                            track_metrics=True)
            net.run_steps(2)          # in two calls: the region ends and starts again
            net.run_steps()
            states.append(net._engine.epoch_state)
            net.finish_epoch()
    (done, n, loss, diverged, metrics), want = states
    assert (done, n, diverged) == want[:2] + (want[3],) == (600, 600, False)
    assert loss == pytest.approx(want[2], rel=1e-5)
    np.testing.assert_allclose(metrics, want[4], rtol=1e-5)


@pytest.mark.parametrize("fs", [True, False])
def test_feature_split_stops_at_a_non_finite_loss_before_its_update(fs_data, fs):
    """An inf weight among the features no row of the batch uses: the skipped products
    never read it, so the data loss stays finite, but the penalty is inf: the epoch stops
    at the first batch, with no update applied, on both paths."""
    X, y = fs_data
    X = X.copy()
    X[:, 7] = 0.0
    y = y % 4
    spec = NetworkSpec((300, 64, 4), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype="float32", l2=1e-3)
    net = make_network(spec, OptimizerSpec("adam", 1e-2), n_threads=2)
    params = init_params(spec, seed=0).astype(np.float32)
    params[7 * 64 + 3] = np.inf
    net.set_params(params)
    Xc, Yc, _ = validate_training_data(spec, X, y)
    with skip_zeros(True), feature_split(fs):
        net.start_epoch(Xc, Yc, batch_size=128, shuffle=True, seed=1, epoch=1)
        net.run_steps()
        done, _, _, diverged, _ = net._engine.epoch_state
        net.finish_epoch()
    assert diverged and done == 0
    np.testing.assert_array_equal(net.get_params(), params)
    assert net._engine.feature_split_batches == 0


@pytest.mark.parametrize("setter", [_network.set_feature_split,
                                    _network.set_feature_split_others_first,
                                    _network.set_balanced_direct_cuts])
def test_feature_split_switches_return_the_previous_setting(setter):
    previous = setter(False)
    try:
        assert setter(True) is False
        assert setter(True) is True
    finally:
        setter(previous)
