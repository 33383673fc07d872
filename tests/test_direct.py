"""The direct product kernels (csrc/gemm_direct_impl.inc), which short batches multiply
through instead of BLAS: against numpy and their naive references, on every tail shape,
and the engine trained through them against the NumPy reference and against BLAS."""

import numpy as np
import pytest

from fastmlp.backends import make_network, validate_training_data
from fastmlp.backends.base import NetworkSpec, OptimizerSpec
from fastmlp.backends.cpu import _network
from fastmlp.initializers import init_params

from conftest import engine_switch

AVX512 = _network.direct_kernels_available()
needs_avx512 = pytest.mark.skipif(
    not AVX512, reason="no AVX-512 direct kernels here (a CPU without AVX-512, or a "
                       "FASTMLP_SIMD=x86-64-v3/baseline build): the engine keeps BLAS for "
                       "these products (the naive references are tested everywhere)")


def direct_rows(rows):
    return engine_switch(_network.set_direct_max_rows, rows)


def avx512(enabled):
    return engine_switch(_network.set_direct_kernels, enabled)


def _oracle(kind, A, B, C=None, beta=0.0):
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    out = {"nn": lambda: A64 @ B64, "tn": lambda: A64.T @ B64, "nt": lambda: A64 @ B64.T}[kind]()
    return out + beta * C if C is not None else out


def _operands(kind, M, N, K, dtype, rng):
    shape_a = {"nn": (M, K), "tn": (K, M), "nt": (M, K)}[kind]
    shape_b = {"nn": (K, N), "tn": (K, N), "nt": (N, K)}[kind]
    return rng.normal(size=shape_a).astype(dtype), rng.normal(size=shape_b).astype(dtype)


# (M, N, K): whole blocks, every row tail (M % 12), column tails (N % 32 / % 16, one
# masked vector, N < 4 for the nt kernel's single columns), reductions shorter than a
# vector (the nt kernel's gather path), reductions over several chunks of K (128), tall
# products (M >= N: the row-aligned kernel, with N of every alignment period) and the
# MNIST layers at batch 32.
SHAPES = [(1, 1, 1), (8, 32, 16), (7, 33, 5), (9, 17, 31), (13, 10, 500), (32, 500, 784),
          (32, 500, 10), (3, 3, 3), (15, 47, 15), (16, 16, 17), (5, 100, 8), (64, 40, 2),
          (25, 70, 300), (12, 48, 129), (784, 500, 32), (100, 37, 20), (61, 50, 9),
          (50, 48, 130), (40, 4, 7), (33, 8, 64), (500, 10, 32)]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["nn", "tn", "nt"])
def test_direct_kernels_match_numpy(kind, dtype, n_threads, rng):
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for M, N, K in SHAPES:
        A, B = _operands(kind, M, N, K, dtype, rng)
        want = _oracle(kind, A, B)
        for naive in (False, True):
            got = _network.kernel_direct_gemm(kind, A, B, naive=naive, n_threads=n_threads)
            assert got.shape == (M, N) and got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.sqrt(K),
                                       err_msg=f"{kind} {M}x{N}x{K} naive={naive}")


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_k_forward_kernel_matches_numpy(dtype, n_threads, rng):
    """The training forward's product split over B's rows (each thread its own partial
    product, then summed): every shape, with 3 threads on a K too short for all of them
    (a thread with no rows contributes zeros), and nothing written outside C or the
    partials (the entry point checks its guard zones)."""
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for M, N, K in SHAPES:
        A, B = _operands("nn", M, N, K, dtype, rng)
        got = _network.kernel_direct_gemm_split_k(A, B, n_threads=n_threads)
        assert got.shape == (M, N) and got.dtype == dtype
        np.testing.assert_allclose(got, _oracle("nn", A, B), rtol=rtol, atol=rtol * np.sqrt(K),
                                   err_msg=f"{M}x{N}x{K} on {n_threads} threads")
    with pytest.raises(ValueError, match="A 2x3 and B 4x5: the inner dimensions differ"):
        _network.kernel_direct_gemm_split_k(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        _network.kernel_direct_gemm_split_k(np.ones((2, 3)), np.ones((3, 5)), n_threads=0)


EPILOGUE_ACTS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "softplus", "gelu",
                 "softmax"]
EPILOGUE_SHAPES = [(1, 1, 1), (7, 33, 5), (13, 10, 500), (32, 500, 784), (25, 70, 300),
                   (128, 500, 500), (61, 50, 9), (40, 4, 7), (50, 500, 10)]


@pytest.fixture(params=[True, False], ids=["avx512", "naive"])
def kernel_code(request):
    """Run the test on the direct kernels' AVX-512 code (where the CPU has it) and on their
    naive fallback."""
    if request.param and not AVX512:
        pytest.skip("no AVX-512 direct kernels here (a CPU without AVX-512, or a "
                    "FASTMLP_SIMD=x86-64-v3/baseline build)")
    with avx512(request.param):
        yield request.param


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_k_forward_with_bias_and_activation(dtype, n_threads, kernel_code, rng):
    """The split-K forward with the hidden layer's bias and activation applied by each
    thread to the rows it summed: act(A @ B + bias) as the plain kernel followed by the
    naive activation, for every activation (softmax too: rows stay whole), with and without
    a bias, on the AVX-512 kernels and on the naive fallback."""
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for M, N, K in EPILOGUE_SHAPES:
        A, B = _operands("nn", M, N, K, dtype, rng)
        bias = rng.normal(size=N).astype(dtype)
        Z = _oracle("nn", A, B)
        for act in EPILOGUE_ACTS:
            for b in (bias, None):
                got = _network.kernel_direct_gemm_split_k(A, B, n_threads=n_threads,
                                                          bias=b, act=act)
                want = _network.kernel_bias_act_forward(  # in float64
                    Z, None if b is None else b.astype(np.float64), act, naive=True)
                np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.sqrt(K),
                                           err_msg=f"{act} {M}x{N}x{K} bias={b is not None}")
        # relu has no rounding of its own: the fused pass equals product then activation
        plain = _network.kernel_direct_gemm_split_k(A, B, n_threads=n_threads)
        np.testing.assert_array_equal(
            _network.kernel_direct_gemm_split_k(A, B, n_threads=n_threads, bias=bias,
                                                act="relu"),
            _network.kernel_bias_act_forward(plain, bias, "relu"))
    with pytest.raises(ValueError, match="bias must have 5 elements, got 4"):
        _network.kernel_direct_gemm_split_k(np.ones((2, 3)), np.ones((3, 5)), bias=np.ones(4),
                                            act="relu")
    with pytest.raises(ValueError, match="bias needs act"):
        _network.kernel_direct_gemm_split_k(np.ones((2, 3)), np.ones((3, 5)), bias=np.ones(5))


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_product_with_activation_derivative(dtype, n_threads, kernel_code, rng):
    """dZ @ W^T with the derivative of the layer below applied by each thread to the
    columns it wrote: the plain product followed by the naive act_backward, for every
    activation (softmax's row Jacobian after the whole product), on every tail shape (K
    shorter than a vector takes the gather kernel), and nothing written outside C."""
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for M, N, K in EPILOGUE_SHAPES:
        A, B = _operands("nt", M, N, K, dtype, rng)
        Zb = rng.normal(size=(M, N)).astype(dtype)
        dA = _oracle("nt", A, B)
        for act in EPILOGUE_ACTS:
            P = _network.kernel_bias_act_forward(Zb, None, act, naive=True)
            want = _network.kernel_act_backward(Zb, P, dA.astype(dtype), act, naive=True)
            got = _network.kernel_direct_gemm_nt_act(A, B, Zb, P, act, n_threads=n_threads)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.sqrt(K),
                                       err_msg=f"{act} {M}x{N}x{K}")
        # relu's derivative is a mask: exactly the plain product, masked
        P = _network.kernel_bias_act_forward(Zb, None, "relu")
        plain = _network.kernel_direct_gemm("nt", A, B, n_threads=n_threads)
        np.testing.assert_array_equal(
            _network.kernel_direct_gemm_nt_act(A, B, None, P, "relu", n_threads=n_threads),
            np.where(P > 0, plain, 0))
    with pytest.raises(ValueError, match="P must be 2x4, got 2x3"):
        _network.kernel_direct_gemm_nt_act(np.ones((2, 3)), np.ones((4, 3)), None,
                                           np.ones((2, 3)), "relu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["nn", "tn"])
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_direct_kernels_add_beta_c(kind, dtype, beta, rng):
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for M, N, K in [(9, 37, 20), (32, 500, 32), (4, 5, 6)]:
        A, B = _operands(kind, M, N, K, dtype, rng)
        C = rng.normal(size=(M, N)).astype(dtype)
        got = _network.kernel_direct_gemm(kind, A, B, C=C, beta=beta, n_threads=2)
        np.testing.assert_allclose(got, _oracle(kind, A, B, C, beta), rtol=rtol,
                                   atol=rtol * np.sqrt(K))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tall_kernel_for_every_alignment_of_c(dtype, rng):
    """The weight-gradient kernel splits each row of C at its own 64-byte boundaries: C
    moved by every offset within a cache line, N of every alignment period (rows 1, 2, 4,
    8 or 16 apart share their split), with beta, over two chunks of K."""
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    lanes = 64 // np.dtype(dtype).itemsize
    for M, N, K in [(40, 37, 5), (30, 18, 3), (27, 20, 140), (26, 24, 2), (19, 16, 4)]:
        A, B = _operands("tn", M, N, K, dtype, rng)
        C = rng.normal(size=(M, N)).astype(dtype)
        for c_offset in range(lanes):
            got = _network.kernel_direct_gemm("tn", A, B, C=C, beta=0.5, n_threads=2,
                                              c_offset=c_offset)  # raises on a stray write
            np.testing.assert_allclose(got, _oracle("tn", A, B, C, 0.5), rtol=rtol,
                                       atol=rtol * np.sqrt(K),
                                       err_msg=f"{M}x{N}x{K} c_offset={c_offset}")


def test_direct_kernels_write_nothing_outside_c(rng):
    """Masked tails: the wrapper surrounds C with guard zones and raises if one changed."""
    for kind in ("nn", "tn", "nt"):
        for M, N, K in [(11, 37, 9), (1, 15, 1), (3, 1, 40), (17, 49, 23)]:
            A, B = _operands(kind, M, N, K, np.float32, rng)
            _network.kernel_direct_gemm(kind, A, B, n_threads=2)  # raises on a stray write


def test_direct_kernel_argument_errors(rng):
    A = np.ones((3, 4))
    with pytest.raises(ValueError, match="kind must be"):
        _network.kernel_direct_gemm("tt", A, A)
    with pytest.raises(ValueError, match="A 3x4 and B 5x2: the inner dimensions differ"):
        _network.kernel_direct_gemm("nn", A, np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"c_offset must be in \[0, 64\), got 64"):
        _network.kernel_direct_gemm("nn", A, A.T.copy(), c_offset=64)
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        _network.kernel_direct_gemm("nn", A, A.T.copy(), repeats=0)
    with pytest.raises(ValueError, match="repeats > 1 needs beta == 0"):
        _network.kernel_direct_gemm("tn", A, A, C=np.ones((4, 4)), beta=1.0, repeats=2)


def test_repeated_product_gives_the_single_product(rng):
    """repeats (for benchmarks) runs the same product again into C: the result is that of
    one product, not a sum, for every kind and with threads."""
    for kind in ("nn", "tn", "nt"):
        A, B = _operands(kind, 20, 45, 33, np.float32, rng)
        once = _network.kernel_direct_gemm(kind, A, B, n_threads=2)
        again = _network.kernel_direct_gemm(kind, A, B, n_threads=2, repeats=5)
        np.testing.assert_array_equal(again, once)
        np.testing.assert_allclose(once, _oracle(kind, A, B), rtol=1e-5, atol=1e-4)


def test_naive_fallback_switch_is_restored():
    before = _network.direct_kernels_available()
    with avx512(False):
        assert not _network.direct_kernels_available()
    assert _network.direct_kernels_available() == before


# ---- the engine through the direct kernels ------------------------------------------------
def _fit(spec, device, X, y, *, batch_size, n_threads, opt, epochs=2):
    net = make_network(spec, opt, device=device, n_threads=n_threads)
    net.set_params(init_params(spec, seed=3))
    Xc, Yc, _ = validate_training_data(spec, X, y)
    losses = [net.train_epoch(Xc, Yc, batch_size=batch_size, shuffle=True, seed=1, epoch=e)
              for e in range(epochs)]
    return net, losses


def _fit_with_switch(setter, spec, X, y, **fit_args):
    """{True: (net, losses), False: ...}: the same training with an engine switch (one of
    _network's set_* functions) on and off."""
    runs = {}
    for value in (True, False):
        with engine_switch(setter, value):
            runs[value] = _fit(spec, "cpu", X, y, **fit_args)
    return runs


def _assert_direct_matches_reference(spec, X, y, *, batch_size, n_threads, opt):
    """Train through the direct products (up to 64 rows) and through the NumPy reference:
    weights and losses agree (float64 to 1e-10, float32 to 2e-4)."""
    with direct_rows(64):
        cpu, lc = _fit(spec, "cpu", X, y, batch_size=batch_size, n_threads=n_threads, opt=opt)
    ref, lr = _fit(spec, "numpy", X, y, batch_size=batch_size, n_threads=1, opt=opt)
    rtol = 1e-10 if spec.dtype == "float64" else 2e-4
    np.testing.assert_allclose(cpu.get_params(), ref.get_params(), rtol=rtol,
                               atol=rtol * np.abs(ref.get_params()).max())
    np.testing.assert_allclose(lc, lr, rtol=rtol)


OPTS = [OptimizerSpec("sgd", 0.05, momentum=0.9), OptimizerSpec("sgd", 0.05, momentum=0.9,
                                                                 nesterov=True),
        OptimizerSpec("adam", 1e-3), OptimizerSpec("sgd", 0.05, clipnorm=0.5)]


@needs_avx512
@pytest.mark.parametrize("opt", OPTS, ids=lambda o: f"{o.kind}{'-nesterov' if o.nesterov else ''}"
                         f"{'-clip' if o.clipnorm else ''}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_engine_direct_path_matches_numpy_reference(dtype, n_threads, opt, rng):
    # wide enough that every product is above the small kernels' size (the output layer's,
    # 6 columns, too: to the small kernels by its work, not as a narrow output); batches of
    # 24 and a last batch of 13 rows (row tails); 37 and 70 units (column tails); L2 on
    # layer 0
    spec = NetworkSpec((70, 37, 40, 6), ("relu", "tanh", "softmax"),
                       loss="categorical_crossentropy", dtype=dtype, l2=(0.01, 0.0, 0.0))
    X = rng.normal(size=(205, 70))
    y = rng.integers(0, 6, 205)
    _assert_direct_matches_reference(spec, X, y, batch_size=24, n_threads=n_threads, opt=opt)


@needs_avx512
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_narrow_outputs_take_the_small_kernels_where_the_direct_ones_run_on_one_thread(dtype):
    """The rule (NARROW_OUTPUT_BYTES): an output row of at most 64 bytes (16 floats, 8
    doubles) sends the forward product and the weight gradient to the small kernels where
    the direct kernels would multiply them on one thread: one thread, or too little work
    to split (784-500-500-10's output layer at b32 on two threads, not at b128).  The
    delta passed down (nt), wide outputs and BLAS's batches keep their kernels."""
    narrow = 16 if dtype == "float32" else 8
    kernel = _network.product_kernel_of
    for kind in ("nn", "tn"):
        assert kernel(kind, 32, 500, 10, 2, dtype) == ("small" if dtype == "float32"
                                                       else "direct")
        assert kernel(kind, 32, 500, narrow, 2, dtype) == "small"
        assert kernel(kind, 32, 500, narrow + 1, 2, dtype) == "direct"
        assert kernel(kind, 128, 500, narrow, 2, dtype) == "direct"   # split over 2 threads
        assert kernel(kind, 64, 500, narrow, 1, dtype) == "small"     # one thread
        assert kernel(kind, 65, 500, narrow, 1, dtype) == "blas"      # past DIRECT_MAX_ROWS
        assert kernel(kind, 32, 500, 500, 2, dtype) == "direct"
        assert kernel(kind, 4, 100, 3, 1, dtype) == "small"           # small by its work
        with engine_switch(_network.set_narrow_outputs, False):
            assert kernel(kind, 32, 500, narrow, 2, dtype) == "direct"
    assert kernel("nt", 32, 500, 10, 2, dtype) == "direct"
    with engine_switch(_network.set_narrow_kernels, False):   # no narrow path to go to
        assert kernel("nn", 32, 500, narrow, 2, dtype) == "direct"
    with pytest.raises(ValueError, match="kind must be"):
        kernel("tt", 32, 500, 10)
    with pytest.raises(ValueError, match="dtype must be"):
        kernel("nn", 32, 500, 10, dtype=np.int16)


@needs_avx512
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_narrow_output_layers_train_like_the_direct_kernels(dtype, n_threads, rng):
    """MNIST-shaped 784-500-500-10 (float32) / 784-500-500-8 (float64) at b32, and a
    regression head of one output (784-1200-1: 32 x 1200 products pass the small kernels'
    size by their work): the output layer through the narrow small kernels and
    through the direct ones give the same weights, losses and predictions up to rounding,
    both the NumPy reference's."""
    k = 10 if dtype == "float32" else 8
    X = rng.random(size=(96, 784))
    for spec, y in [
            (NetworkSpec((784, 500, 500, k), ("relu", "relu", "softmax"),
                         loss="categorical_crossentropy", dtype=dtype, l2=1e-3),
             rng.integers(0, k, 96)),
            (NetworkSpec((784, 1200, 1), ("tanh", "identity"), loss="squared_error",
                         dtype=dtype), rng.normal(size=96))]:
        assert _network.product_kernel_of("tn", 32, spec.layer_sizes[-2], spec.layer_sizes[-1],
                                          n_threads, dtype) == "small"
        opt = OptimizerSpec("sgd", 0.01, momentum=0.9)
        runs = _fit_with_switch(_network.set_narrow_outputs, spec, X, y, batch_size=32,
                                n_threads=n_threads, opt=opt, epochs=1)
        reference = _fit(spec, "numpy", X, y, batch_size=32, n_threads=1, opt=opt, epochs=1)
        rtol = 1e-10 if dtype == "float64" else 1e-4
        for net, losses in runs.values():
            np.testing.assert_allclose(net.get_params(), reference[0].get_params(), rtol=rtol,
                                       atol=rtol * np.abs(reference[0].get_params()).max())
            np.testing.assert_allclose(losses, reference[1], rtol=rtol)
        # the switch does change the kernels: they sum in another order
        assert not np.array_equal(runs[True][0].get_params(), runs[False][0].get_params())
        with engine_switch(_network.set_narrow_outputs, False):
            direct = runs[False][0].forward(X[:32].astype(dtype))
        np.testing.assert_allclose(runs[True][0].forward(X[:32].astype(dtype)), direct,
                                   rtol=rtol, atol=1e-6)


@needs_avx512
@pytest.mark.parametrize("opt", [OptimizerSpec("sgd", 0.01, momentum=0.9),
                                 OptimizerSpec("adam", 1e-3)], ids=lambda o: o.kind)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_engine_direct_path_matches_blas_on_mnist_shapes(dtype, opt, rng):
    """784-500-500-10 at batch 32 (the benchmark's workload), direct against BLAS, and the
    prediction of a few rows (direct too).  Large enough that the update after the direct
    products is split over the threads by the weight rows each owns."""
    spec = NetworkSpec((784, 500, 500, 10), ("relu", "relu", "softmax"),
                       loss="categorical_crossentropy", dtype=dtype)
    X = rng.random(size=(96, 784))
    y = rng.integers(0, 10, 96)
    with direct_rows(64):
        direct, ld = _fit(spec, "cpu", X, y, batch_size=32, n_threads=2, opt=opt, epochs=1)
        pd = direct.forward(X[:20].astype(dtype))
    with direct_rows(0):
        blas, lb = _fit(spec, "cpu", X, y, batch_size=32, n_threads=2, opt=opt, epochs=1)
        pb = blas.forward(X[:20].astype(dtype))
    rtol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(direct.get_params(), blas.get_params(), rtol=rtol,
                               atol=rtol * np.abs(blas.get_params()).max())
    np.testing.assert_allclose(ld, lb, rtol=rtol)
    np.testing.assert_allclose(pd, pb, rtol=rtol, atol=1e-6)


@needs_avx512
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_k_forward_trains_like_the_column_split(dtype, rng):
    """784-500-500-10 at batch 32 on two threads with the training forward split over W's
    rows (the default) and over its columns: the same weights and losses, up to rounding
    (the partial products are summed in another order), and both the reference's."""
    spec = NetworkSpec((784, 500, 500, 10), ("relu", "relu", "softmax"),
                       loss="categorical_crossentropy", dtype=dtype)
    X = rng.random(size=(96, 784))
    y = rng.integers(0, 10, 96)
    opt = OptimizerSpec("sgd", 0.05, momentum=0.9)
    runs = _fit_with_switch(_network.set_split_k_forward, spec, X, y, batch_size=32,
                            n_threads=2, opt=opt, epochs=1)
    reference = _fit(spec, "numpy", X, y, batch_size=32, n_threads=1, opt=opt, epochs=1)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    for net, losses in (runs[True], runs[False]):
        np.testing.assert_allclose(net.get_params(), reference[0].get_params(), rtol=rtol,
                                   atol=rtol * np.abs(reference[0].get_params()).max())
        np.testing.assert_allclose(losses, reference[1], rtol=rtol)
    # the switch does change the path: the two orders of summation round differently
    assert not np.array_equal(runs[True][0].get_params(), runs[False][0].get_params())


@needs_avx512
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("acts,dropout,exact", [(("relu", "relu", "softmax"), 0.0, True),
                                                (("tanh", "gelu", "softmax"), 0.0, False),
                                                (("sigmoid", "relu", "softmax"),
                                                 (0.0, 0.3, 0.0), True)],
                         ids=["relu", "tanh-gelu", "dropout"])
def test_fused_epilogues_train_like_the_separate_passes(dtype, acts, dropout, exact, rng):
    """A direct batch on two threads with its elementwise passes inside the products'
    parallel regions (the default: bias and activation in the split-K forward's sum,
    act' in dZ @ W^T, the shuffled rows gathered by both threads) and as separate passes
    (set_fused_epilogues(False)): both match the NumPy reference, and match each other bit
    for bit where the fused passes take the same roundings (exact: relu, sigmoid's
    derivative, an activation after a bias row by row as before; gelu and tanh may take a
    vector or a scalar evaluation at other elements).  With dropout on a layer, its
    derivative stays a separate pass after the dropout mask."""
    spec = NetworkSpec((300, 250, 120, 10), acts, loss="categorical_crossentropy",
                       dtype=dtype, dropout=dropout)
    assert spec.n_params >= 65536  # the update (and the gather) split over the threads
    X = rng.normal(size=(100, 300))
    y = rng.integers(0, 10, 100)
    opt = OptimizerSpec("sgd", 0.05, momentum=0.9)
    runs = _fit_with_switch(_network.set_fused_epilogues, spec, X, y, batch_size=32,
                            n_threads=2, opt=opt)
    rtol = 1e-10 if dtype == "float64" else 2e-4
    if dropout == 0.0:
        reference = _fit(spec, "numpy", X, y, batch_size=32, n_threads=1, opt=opt)
        for net, losses in runs.values():
            np.testing.assert_allclose(net.get_params(), reference[0].get_params(), rtol=rtol,
                                       atol=rtol * np.abs(reference[0].get_params()).max())
            np.testing.assert_allclose(losses, reference[1], rtol=rtol)
    np.testing.assert_allclose(runs[True][0].get_params(), runs[False][0].get_params(),
                               rtol=rtol, atol=rtol * np.abs(runs[False][0].get_params()).max())
    if exact:
        np.testing.assert_array_equal(runs[True][0].get_params(), runs[False][0].get_params())
        assert runs[True][1] == runs[False][1]


@needs_avx512
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_penalty_split_over_threads_after_direct_products(dtype, rng):
    """A network above the split update's size (>= 65,536 parameters) with L2 and L1 on
    every layer, trained through the direct products on two threads: the penalty and its
    gradient are then computed by flat slices, one per thread, cutting across the layers'
    weight blocks.  Weights and losses equal the NumPy reference's."""
    spec = NetworkSpec((300, 250, 10), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype=dtype, l2=(1e-2, 3e-2), l1=(1e-3, 2e-3))
    assert spec.n_params >= 65536
    X = rng.normal(size=(100, 300))
    y = rng.integers(0, 10, 100)
    _assert_direct_matches_reference(spec, X, y, batch_size=32, n_threads=2,
                                     opt=OptimizerSpec("adam", 1e-3))


@needs_avx512
def test_direct_path_is_reproducible_across_runs(rng):
    spec = NetworkSpec((64, 48, 5), ("relu", "softmax"), loss="categorical_crossentropy",
                       dtype="float32")
    X = rng.normal(size=(100, 64))
    y = rng.integers(0, 5, 100)
    opt = OptimizerSpec("sgd", 0.05, momentum=0.9)
    with direct_rows(64):
        a, la = _fit(spec, "cpu", X, y, batch_size=20, n_threads=2, opt=opt)
        b, lb = _fit(spec, "cpu", X, y, batch_size=20, n_threads=2, opt=opt)
    np.testing.assert_array_equal(a.get_params(), b.get_params())
    assert la == lb
