"""Row-major GEMM over scipy's BLAS (scipy.linalg.cython_blas), for float and double.

Layering: this module is the only place that calls BLAS.  ``gemm`` is the
``noexcept nogil`` kernel the engine calls; ``gemm_rowmajor`` is its Python twin,
which the tests compare with NumPy for every dtype x transpose.

BLAS is column-major; a row-major (r, c) matrix is the column-major (c, r) matrix
with the same memory.  So C = op(A) @ op(B) in row-major is C^T = op(B)^T @ op(A)^T
in column-major: swap the operands (and m with n); no copy is ever made.
"""
from scipy.linalg.cython_blas cimport sgemm, dgemm
from cython cimport floating


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
               const floating *A, int lda, const floating *B, int ldb, floating beta,
               floating *C, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    op(A) is (m, k): A is (m, k) with leading dimension lda, or (k, m) when trans_a.
    op(B) is (k, n): B is (k, n) with leading dimension ldb, or (n, k) when trans_b.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> B, &ldb, <float *> A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> B, &ldb, <double *> A, &lda,
              &beta, C, &ldc)


def gemm_rowmajor(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A,
                  const floating[:, ::1] B, double beta, floating[:, ::1] C):
    """Python twin of :c:func:`gemm` for tests: ``C = alpha op(A) op(B) + beta C`` in place."""
    cdef int m = A.shape[1] if trans_a else A.shape[0]
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    cdef int kb = B.shape[1] if trans_b else B.shape[0]
    cdef int n = B.shape[0] if trans_b else B.shape[1]
    if kb != k or C.shape[0] != m or C.shape[1] != n:
        raise ValueError(f"shapes do not match: op(A) ({m}, {k}), op(B) ({kb}, {n}), "
                         f"C ({C.shape[0]}, {C.shape[1]})")
    if m == 0 or n == 0:
        return
    with nogil:
        gemm(trans_a, trans_b, m, n, k, <floating> alpha, &A[0, 0], <int> A.shape[1],
             &B[0, 0], <int> B.shape[1], <floating> beta, &C[0, 0], <int> C.shape[1])
