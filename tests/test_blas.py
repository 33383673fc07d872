"""The BLAS wrapper and the small-matrix kernels against NumPy, for every dtype x
transpose: rtol 2e-5 for float32 and 1e-12 for float64 (10x that for the small kernels,
whose sums run in another order than NumPy's)."""
import numpy as np
import pytest

from fastmlp.backends.cpu._blas import gemm_rowmajor
from fastmlp.backends.cpu import _network
from fastmlp.backends.cpu._network import kernel_small_gemm
from conftest import engine_switch

RTOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (64, 33, 129)])
def test_gemm_rowmajor_matches_numpy(dtype, trans_a, trans_b, shape, rng):
    m, n, k = shape
    A = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    C = rng.normal(size=(m, n)).astype(dtype)
    expected = 0.5 * (A.T if trans_a else A) @ (B.T if trans_b else B) + 2.0 * C
    gemm_rowmajor(trans_a, trans_b, 0.5, A, B, 2.0, C)
    np.testing.assert_allclose(C, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * 10)


def test_gemm_rowmajor_rejects_mismatched_shapes():
    A = np.zeros((3, 4))
    with pytest.raises(ValueError, match="shapes do not match"):
        gemm_rowmajor(False, False, 1.0, A, np.zeros((5, 2)), 0.0, np.zeros((3, 2)))


def test_gemm_rowmajor_refuses_readonly_output():
    C = np.zeros((2, 2))
    C.setflags(write=False)
    with pytest.raises((ValueError, TypeError)):
        gemm_rowmajor(False, False, 1.0, np.ones((2, 2)), np.ones((2, 2)), 0.0, C)


@pytest.mark.parametrize("narrow", [True, False], ids=["narrow-kernels", "plain-loops"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["nn", "tn", "nt"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (32, 10, 4), (3, 17, 9), (7, 16, 5), (5, 9, 3),
                                   (33, 13, 6)])
def test_small_gemm_kernels_match_numpy(dtype, kind, shape, narrow, rng):
    # both paths on every build: the narrow kernels (32-byte vectors; by default only in
    # the x86-64-v3/v4 clones) and the plain loops that replace them elsewhere
    with engine_switch(_network.set_narrow_kernels, narrow):
        _check_small_gemm(dtype, kind, shape, rng)


def test_narrow_kernels_default_follows_the_simd_level():
    from fastmlp.backends.cpu import simd_level
    previous = _network.set_narrow_kernels(None)          # the default for this CPU
    try:
        assert _network.set_narrow_kernels(None) == (simd_level() != "baseline")
    finally:
        _network.set_narrow_kernels(previous)


def _check_small_gemm(dtype, kind, shape, rng):
    m, n, k = shape
    if kind == "nn":
        A, B = rng.normal(size=(m, k)), rng.normal(size=(k, n))
        expected = A @ B
    elif kind == "tn":
        A, B = rng.normal(size=(k, m)), rng.normal(size=(k, n))
        expected = A.T @ B
    else:
        A, B = rng.normal(size=(m, k)), rng.normal(size=(n, k))
        expected = A @ B.T
    out = kernel_small_gemm(kind, A.astype(dtype), B.astype(dtype))
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10)
