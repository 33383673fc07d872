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

