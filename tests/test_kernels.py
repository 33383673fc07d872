"""The C activation kernels: fast vs naive twin vs the NumPy reference, for every
activation x dtype x n_threads, on a small shape, a medium one and one large enough for
the elementwise loops to go parallel (FM_PARALLEL_MIN_ELEMENTS, 2**20, in
csrc/fm_internal.h)."""
import numpy as np
import pytest

from fastmlp.backends import ACTIVATIONS
from fastmlp.backends.array.network import activation_backward, activation_forward
from fastmlp.backends.cpu._network import kernel_act_backward, kernel_bias_act_forward

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
