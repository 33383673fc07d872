"""The C activation kernels: fast vs naive twin vs the NumPy reference, for every
activation x dtype x n_threads, on a small shape, a medium one and one large enough for
the elementwise loops to go parallel (FM_PARALLEL_MIN_ELEMENTS, 2**20, in
csrc/fm_internal.h); the vector math they are built on; the gather of shuffled rows."""
import numpy as np
import pytest

from fastmlp.backends import ACTIVATIONS
from fastmlp.backends.array.network import activation_backward, activation_forward
from fastmlp.backends.cpu._network import (kernel_act_backward, kernel_bias_act_forward,
                                           kernel_gather_rows, kernel_vmath)

TOL = {np.float32: 2e-6, np.float64: 1e-13}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", [(3, 5), (300, 257), (1100, 1000)])
def test_activation_kernels(dtype, act, n_threads, shape, rng):
    Z = (rng.normal(size=shape) * 3).astype(dtype)
    Z[0, 0] = 0.0  # the kink of relu-like activations
    if act == "exp":
        Z = np.clip(Z, -20, 20)
    bias = rng.normal(size=shape[1]).astype(dtype)
    ref = activation_forward(np, act, Z + bias)
    fast = kernel_bias_act_forward(Z, bias, act, naive=False, n_threads=n_threads)
    naive = kernel_bias_act_forward(Z, bias, act, naive=True)
    tol = TOL[dtype]
    np.testing.assert_allclose(fast, ref, rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(naive, ref, rtol=tol * 10, atol=tol)

    Zb = (Z + bias).astype(dtype)
    dA = rng.normal(size=shape).astype(dtype)
    ref_d = activation_backward(np, act, Zb, ref.astype(dtype), dA)
    fast_d = kernel_act_backward(Zb, fast, dA, act, naive=False, n_threads=n_threads)
    naive_d = kernel_act_backward(Zb, fast, dA, act, naive=True)
    np.testing.assert_allclose(fast_d, ref_d, rtol=tol * 100, atol=tol * 10)
    np.testing.assert_allclose(naive_d, ref_d, rtol=tol * 100, atol=tol * 10)


def test_kernels_without_bias(rng):
    Z = rng.normal(size=(4, 6))
    np.testing.assert_allclose(kernel_bias_act_forward(Z, None, "tanh"), np.tanh(Z),
                               rtol=1e-14)


def test_sigmoid_and_softmax_do_not_overflow():
    Z = np.array([[-1000.0, 0.0, 1000.0]])
    s = kernel_bias_act_forward(Z, None, "sigmoid")
    np.testing.assert_allclose(s, [[0.0, 0.5, 1.0]])
    sm = kernel_bias_act_forward(Z, None, "softmax")
    assert np.all(np.isfinite(sm)) and np.isclose(sm.sum(), 1.0)


# ---- csrc/vmath.h: the vectorised exp / tanh / sigmoid of the fast kernels ----------------
# Bounds in units in the last place of the correctly rounded result, measured when they were
# written (every float32 in [-110, 100]; 10^7 float64 against long double): exp 0.99 / 0.97,
# tanh 1.33 / 1.31, sigmoid 2.40 / 2.30 (float32 / float64).
ULP_BOUND = {"exp": 1.0, "tanh": 1.5, "sigmoid": 2.5}
HAVE_LONG_DOUBLE = np.finfo(np.longdouble).nmant >= 63


def _reference(act, x):
    """act(x) by the NumPy reference in a wider type: float64 for float32 inputs, long
    double for float64."""
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    return activation_forward(np, act, x.astype(wide))


def _ulp_errors(got, ref, dtype):
    rounded = ref.astype(dtype)
    ulp = np.spacing(np.abs(rounded)).astype(ref.dtype)
    return np.abs(got.astype(ref.dtype) - ref) / ulp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["exp", "tanh", "sigmoid"])
def test_vector_math_is_within_its_ulp_bound(act, dtype, rng):
    if dtype == np.float64 and not HAVE_LONG_DOUBLE:
        pytest.skip("no 80-bit or wider long double on this platform for a float64 reference")
    lo = -110.0 if dtype == np.float32 else -750.0
    hi = 100.0 if dtype == np.float32 else 715.0
    # a dense grid over the whole range, random points near 0 (tanh's two formulas meet at
    # 0.625) and down into the subnormals of exp, and the overflow edge
    x = np.concatenate([np.linspace(lo, hi, 400_001), rng.uniform(-3, 3, 200_000),
                        rng.uniform(-1e-3, 1e-3, 10_000), rng.uniform(lo, lo + 15, 20_000),
                        rng.uniform(hi - 15, hi, 20_000)]).astype(dtype)
    got = kernel_bias_act_forward(x.reshape(1, -1), None, act).ravel()
    ref = _reference(act, x)
    with np.errstate(over="ignore"):
        rounded = ref.astype(dtype)
    finite = np.isfinite(rounded)
    np.testing.assert_array_equal(got[~finite], rounded[~finite])   # overflow: inf
    err = _ulp_errors(got[finite], ref[finite], dtype)
    assert err.max() <= ULP_BOUND[act], (act, x[finite][err.argmax()], err.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_math_special_values(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 1000.0, -1000.0],
                 dtype=dtype).reshape(1, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        for act in ("exp", "tanh", "sigmoid"):
            want = activation_forward(np, act, x)
            got = kernel_bias_act_forward(x, None, act)
            np.testing.assert_array_equal(got, want, err_msg=act)
            # the sign of zero (tanh(-0) = -0, as libm)
            np.testing.assert_array_equal(np.signbit(got[0, 3:5]), np.signbit(want[0, 3:5]))
    # exp down through the subnormals to 0: the least subnormal and below it
    ln_tiny = np.log(np.float64(tiny))
    x = np.array([[ln_tiny + 0.2, ln_tiny - 1.0]], dtype=dtype)
    got = kernel_bias_act_forward(x, None, "exp")
    assert got[0, 0] == tiny and got[0, 1] == 0.0


# ---- vmath.h's expm1, log1p, erf and normal distribution (elu, softplus, gelu) ------------
# Bounds in ulps, measured when they were written (every float32 in the ranges below; 18,000
# float64 against mpmath): expm1 1.44 / 1.09, log1p 0.86 / 0.75, erf 1.33 / 0.99, Phi 6.14 /
# 4.24, exp(-z^2 / 2) 1.14 / 0.98 (float32 / float64), with FMA contraction (the AVX2 and
# AVX-512 clones); the baseline clone, without FMA, has Phi at 6.65 (simulated in NumPy);
# the activations built on them: elu is expm1; softplus and gelu below.
VMATH_ULP_BOUND = {"expm1": 1.5, "log1p": 1.0, "erf": 1.5, "normal_cdf": 7.0,
                   "normal_pdf": 1.5}
VMATH_RANGE = {np.float32: {"expm1": (-20, 90), "log1p": (-1, 1e30), "erf": (-10, 10),
                            "normal_cdf": (-14, 9), "normal_pdf": (-14, 14)},
               np.float64: {"expm1": (-40, 709), "log1p": (-1, 1e300), "erf": (-7, 7),
                            "normal_cdf": (-38, 9), "normal_pdf": (-38, 38)}}


def _vmath_points(name, dtype, rng, n):
    """A dense grid over the function's range plus random points where its formulas meet:
    expm1's k = 0 / +-1 and its switch to exp(x) - 1, log1p's sqrt(2) split and the tiny
    arguments, erf's split at 1 (z = +-sqrt 2 for Phi)."""
    lo, hi = VMATH_RANGE[dtype][name]
    if name == "log1p":
        x = np.concatenate([np.expm1(np.linspace(np.log1p(lo + 1e-7), np.log1p(hi), n)),
                            rng.uniform(-0.5, 1.5, n // 2), rng.uniform(-1e-4, 1e-4, n // 8),
                            rng.uniform(0.40, 0.43, n // 8)])
    else:
        edges = {"expm1": [0.0, 0.35, -0.35, 1.0, -1.0, 16.0, 36.0],
                 "erf": [1.0, -1.0, 0.0], "normal_cdf": [1.4142, -1.4142, 0.0],
                 "normal_pdf": [0.0, 3.0, -3.0]}[name]
        x = np.concatenate([np.linspace(lo, hi, n)]
                           + [rng.uniform(e - 0.1, e + 0.1, n // 16) for e in edges])
    return x.astype(dtype)


def _vmath_reference_float64(name, x):
    """The function of float32 points in float64 (exact enough: float32 rounds it)."""
    from scipy import special
    x = x.astype(np.float64)
    return {"expm1": np.expm1, "log1p": np.log1p, "erf": special.erf,
            "normal_cdf": special.ndtr, "normal_pdf": lambda v: np.exp(-v * v / 2)}[name](x)


@pytest.mark.parametrize("name", list(VMATH_ULP_BOUND))
def test_vector_math_float32_is_within_its_ulp_bound(name, rng):
    x = _vmath_points(name, np.float32, rng, 400_001)
    got = kernel_vmath(name, x)
    ref = _vmath_reference_float64(name, x)
    with np.errstate(over="ignore"):
        rounded = ref.astype(np.float32)
    # normal results only: in the subnormals a float32 ulp is absolute
    normal = np.isfinite(rounded) & (np.abs(ref) >= np.finfo(np.float32).tiny)
    np.testing.assert_array_equal(got[np.isinf(rounded)], rounded[np.isinf(rounded)])
    err = _ulp_errors(got[normal], ref[normal], np.float32)
    assert err.max() <= VMATH_ULP_BOUND[name], (name, x[normal][err.argmax()], err.max())


@pytest.mark.parametrize("name", list(VMATH_ULP_BOUND))
def test_vector_math_float64_is_within_its_ulp_bound(name, rng):
    mp = pytest.importorskip("mpmath", reason="mpmath (the test extra) gives the float64 "
                                              "reference")
    f = {"expm1": mp.expm1, "log1p": mp.log1p, "erf": mp.erf, "normal_cdf": mp.ncdf,
         "normal_pdf": lambda v: mp.exp(-v * v / 2)}[name]
    x = _vmath_points(name, np.float64, rng, 1601)
    got = kernel_vmath(name, x)
    worst = 0.0
    with mp.workdps(40):
        for xi, gi in zip(x.tolist(), got.tolist()):
            ref = f(mp.mpf(xi))
            if not (2.3e-308 <= abs(ref) < 1.7e308):
                continue
            ulp = np.spacing(abs(float(ref)))
            err = float(abs(mp.mpf(gi) - ref)) / ulp
            assert err <= VMATH_ULP_BOUND[name], (name, xi, err)
            worst = max(worst, err)
    assert worst > 0    # the reference was really exercised


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_math_special_values_of_the_new_functions(dtype):
    inf, nan = np.inf, np.nan
    cases = {"expm1": ([nan, inf, -inf, 0.0, -0.0, 1e4, -1e4],
                       [nan, inf, -1, 0, -0.0, inf, -1]),
             "log1p": ([nan, inf, -1.0, -2.0, 0.0, -0.0, -inf],
                       [nan, inf, -inf, nan, 0, -0.0, nan]),
             "erf": ([nan, inf, -inf, 0.0, -0.0, 1e30], [nan, 1, -1, 0, -0.0, 1]),
             "normal_cdf": ([nan, inf, -inf, 0.0, -1e4], [nan, 1, 0, 0.5, 0]),
             "normal_pdf": ([nan, inf, -inf, 0.0, 1e4], [nan, 0, 0, 1, 0])}
    with np.errstate(invalid="ignore", over="ignore"):
        for name, (x, want) in cases.items():
            got = kernel_vmath(name, np.array(x, dtype=dtype))
            np.testing.assert_array_equal(got, np.array(want, dtype=dtype), err_msg=name)
            zero = np.array(want) == 0      # the sign of zero, as libm (-0 -> -0)
            np.testing.assert_array_equal(np.signbit(got[zero]),
                                          np.signbit(np.array(want, dtype)[zero]), err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transcendental_activations_special_values(dtype):
    z = np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0, 1e4, -1e4]], dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        for act in ("elu", "softplus", "gelu"):
            want = kernel_bias_act_forward(z, None, act, naive=True)   # libm's
            got = kernel_bias_act_forward(z, None, act)
            np.testing.assert_array_equal(got, want, err_msg=act)
            if act != "softplus":   # odd at 0: elu(-0) = expm1(-0) = -0, gelu(-0) = -0
                assert got[0, 4] == 0 and np.signbit(got[0, 4]), act


# Measured over every float32 of the ranges (AVX-512 clone): elu = expm1 (alpha 1) and the
# identity, 1.15 ulp over [-20, 90]; softplus(z) = max(z, 0) + log1p(exp(-|z|)), 1.64 over
# [-105, 90]; gelu = z Phi(z), Phi's error and one rounding more, 6.73 over [-13, 10],
# accurate in the lower tail too, where the usual 0.5 z (1 + erf(z / sqrt 2)) cancels to
# nothing.  Below -13, Phi(z) is subnormal in float32 while z Phi(z) is not: there gelu
# keeps Phi's absolute, not relative, accuracy (13 ulp at -13.12), as libm's would.
ACTIVATION_ULP_BOUND = {"elu": 1.5, "softplus": 2.0, "gelu": 7.5}


@pytest.mark.parametrize("act", list(ACTIVATION_ULP_BOUND))
def test_transcendental_activations_are_within_their_ulp_bound(act, rng):
    x = np.concatenate([np.linspace(-13, 10, 400_001), rng.uniform(-2, 2, 100_000),
                        rng.uniform(-4, -1, 100_000)])
    x = x.astype(np.float32)
    got = kernel_bias_act_forward(x.reshape(1, -1), None, act).ravel()
    ref = activation_forward(np, act, x.astype(np.float64))   # the erfc form for gelu
    normal = np.abs(ref) >= np.finfo(np.float32).tiny
    err = _ulp_errors(got[normal], ref[normal], np.float32)
    assert err.max() <= ACTIVATION_ULP_BOUND[act], (act, x[normal][err.argmax()], err.max())


@pytest.mark.parametrize("K", [1, 2, 3, 10, 16])
def test_softmax_is_accurate(K, rng):
    # the fast kernel (vmath.h's exp over the block) on rows of few classes, as the tiny
    # networks' outputs; spreads from 0.01 to 200: probabilities from ~1/K down into the
    # subnormals and 0
    Z = (rng.normal(size=(500, K)) * np.geomspace(0.01, 200, 500)[:, None]).astype(np.float32)
    P = kernel_bias_act_forward(Z, None, "softmax")
    z = Z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-6)
    assert (P >= 0).all()
    # a few float32 ulps (2^-23 = 1.2e-7) while z - max is small; further out the float32
    # rounding of z - max itself (|z - max| ulps) dominates, as it would for any float exp
    near = ref > 1e-2
    np.testing.assert_allclose(P[near], ref[near], rtol=4e-7)
    mid = (ref > 1e-6) & ~near
    np.testing.assert_allclose(P[mid], ref[mid], rtol=1.5e-6)
    far = (ref > 1e-30) & (ref <= 1e-6)
    np.testing.assert_allclose(P[far], ref[far], rtol=1e-5)
    assert (P[ref <= 1e-30] <= 2e-30).all() and (P >= 0).all()


@pytest.mark.parametrize("K", [1, 3, 10, 16])
def test_softmax_is_accurate_float64(K, rng):
    Z = rng.normal(size=(500, K)) * np.geomspace(0.01, 800, 500)[:, None]
    P = kernel_bias_act_forward(Z, None, "softmax")
    e = np.exp(Z - Z.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)
    # float64 z - max is exact enough here that the few-ulp exp shows directly
    big = ref > 1e-300
    np.testing.assert_allclose(P[big], ref[big], rtol=1e-14)
    np.testing.assert_array_equal(P[ref == 0], 0.0)


# ---- the gather of shuffled rows (csrc/gather_impl.inc) ------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 4, 16, 17, 31, 255, 257, 511, 515, 784])
@pytest.mark.parametrize("B", [1, 7, 8, 9, 100])
@pytest.mark.parametrize("naive", [False, True])
def test_gather_rows_equals_numpy_take(dtype, d, B, naive, rng):
    """The inline path of rows up to 16 elements, one memcpy per row under 2,048 bytes,
    longer rows in groups of 8 (B = 1, 7, 8, 9, 100: groups short, whole and both) one line
    at a time, their bytes
    ending inside a line (515 floats, 257 doubles) or not; repeated indices; nothing
    written outside the output (the entry point raises if so)."""
    X = rng.normal(size=(300, d)).astype(dtype)
    idx = rng.integers(0, 300, size=B)
    idx[B // 2] = idx[0]
    np.testing.assert_array_equal(kernel_gather_rows(X, idx, naive=naive), X[idx])


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("batch_rows", [0, 25, 64])
def test_gather_rows_by_batches_and_threads(n_threads, batch_rows, rng):
    """Split over threads, and batch by batch through one buffer (the benchmark's mode):
    the result is the last whole batch."""
    X = rng.normal(size=(1000, 784)).astype(np.float32)
    idx = rng.permutation(1000)[:200]
    out = kernel_gather_rows(X, idx, n_threads=n_threads, batch_rows=batch_rows)
    if batch_rows == 0:
        np.testing.assert_array_equal(out, X[idx])
    else:
        last = (200 // batch_rows - 1) * batch_rows
        np.testing.assert_array_equal(out, X[idx[last:last + batch_rows]])


def test_gather_rows_rejects_bad_indices():
    X = np.zeros((10, 20), np.float32)
    with pytest.raises(ValueError, match="outside"):
        kernel_gather_rows(X, [0, 10])
    with pytest.raises(ValueError, match="outside"):
        kernel_gather_rows(X, [-1])
    with pytest.raises(ValueError, match="n_threads"):
        kernel_gather_rows(X, [0], n_threads=0)
    with pytest.raises(TypeError, match="integers"):
        kernel_gather_rows(X, [0.9, 1.7])
