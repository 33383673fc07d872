/* The first layer's two training products, skipping the input's zeros (float32).
 *
 * Why: inputs such as MNIST's are mostly exact zeros (81% of its pixels: the background),
 * and a zero input element contributes nothing to either product that reads it:
 *
 *   forward          Z  (b, N) = X (b, d) @ W (d, N)        z_i = sum over j of x_ij W_j
 *   weight gradient  dW (d, N) = X^T (d, b) @ dZ (b, N)     dW_j = sum over i of x_ij dZ_i
 *
 * BLAS multiplies every element.  These kernels take X's row-major batch as it is (the
 * gathered rows) with a bitmap of its nonzeros, and do only the multiply-adds of nonzero
 * elements: on MNIST rows, 784-100 per thread (100 rows), the forward product in 67 against
 * BLAS's 190 us, the weight gradient 117 against 180 us (benchmarks/RESULTS.md, sessions
 * 18 and 19).  The engine takes them where its density check of X says they pay
 * (_network.pyx, SKIP_ZEROS_MAX_DENSITY) and never for products other than the first
 * layer's (hidden activations are ReLU-sparse too, but not in exact, reusable places).
 *
 * The bitmap: masks (b, dq), dq = ceil(d / 16), bit t of masks[i * dq + q] set when
 * x_i,16q+t != 0 (nonzero_masks).  Skipped terms are exact zeros, so the sums are those of
 * the dense product, summed in another order (x = -0.0 counts as zero: its terms are +-0).
 *
 * Each kernel has a naive reference beside it (portable C; the tests' oracle beside NumPy,
 * and what runs where the CPU has no AVX-512, which the engine then does not choose). */
#include "fm_internal.h"

/* ---- naive references ------------------------------------------------------------------ */

void nonzero_masks_naive_f32(int64_t b, int64_t d, const float *X, uint16_t *masks)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t i = 0; i < b; i++)
        for (int64_t q = 0; q < dq; q++) {
            unsigned bits = 0;
            for (int64_t t = 0; t < 16 && 16 * q + t < d; t++)
                bits |= (unsigned)(X[i * d + 16 * q + t] != 0) << t;
            masks[i * dq + q] = (uint16_t)bits;
        }
}

/* Z (b, N) = X (b, d) @ W (d, N), the terms of X's zeros skipped */
void skip_gemm_nn_naive_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const uint16_t *masks, const float *W, float *restrict Z)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t i = 0; i < b; i++) {
        float *z = Z + i * N;
        for (int64_t n = 0; n < N; n++) z[n] = 0;
        for (int64_t j = 0; j < d; j++) {
            if (!((masks[i * dq + j / 16] >> (j % 16)) & 1)) continue;
            const float x = X[i * d + j];
            for (int64_t n = 0; n < N; n++) z[n] += x * W[j * N + n];
        }
    }
}

/* dW (d, N) = beta dW + X^T (d, b) @ dZ (b, N), the terms of X's zeros skipped */
void skip_gemm_tn_naive_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const uint16_t *masks, const float *dZ, float beta,
                            float *restrict dW)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t j = 0; j < d; j++) {
        float *w = dW + j * N;
        for (int64_t n = 0; n < N; n++) w[n] = beta == 0 ? 0 : beta * w[n];
        for (int64_t i = 0; i < b; i++) {
            if (!((masks[i * dq + j / 16] >> (j % 16)) & 1)) continue;
            const float x = X[i * d + j];
            for (int64_t n = 0; n < N; n++) w[n] += x * dZ[i * N + n];
        }
    }
}


#if FM_HAVE_AVX512
/* ---- AVX-512 kernels (16 floats per vector; masked tails read and write nothing outside
 * the matrices) ---------------------------------------------------------------------------- */

/* mask of the first n lanes, n clamped to [0, 16] */
FM_AVX512_INLINE __mmask16 zs_lanes(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

FM_AVX512 static void nonzero_masks_avx512(int64_t b, int64_t d, const float *X,
                                           uint16_t *masks)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t i = 0; i < b; i++)
        for (int64_t q = 0; q < dq; q++) {
            const __mmask16 in = zs_lanes(d - 16 * q);
            const __m512 x = _mm512_maskz_loadu_ps(in, X + i * d + 16 * q);
            masks[i * dq + q] = _mm512_mask_cmp_ps_mask(in, x, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        }
}

/* The column panel [n0, n0 + 16 nv) of a matrix N columns wide, nv <= max_vectors
 * vectors: returns nv; *last gets the lanes of the panel's last vector (the others are
 * whole). */
FM_AVX512_INLINE int zs_panel(int64_t N, int64_t n0, int max_vectors, __mmask16 *last)
{
    const int64_t width = N - n0 < 16 * max_vectors ? N - n0 : 16 * max_vectors;
    const int nv = (int)((width + 15) / 16);
    *last = zs_lanes(width - 16 * (nv - 1));
    return nv;
}

/* vector v of a panel of NV vectors at p: whole, or the last one's lanes */
FM_AVX512_INLINE __m512 zs_load(int v, int NV, __mmask16 last, const float *p)
{
    return v == NV - 1 ? _mm512_maskz_loadu_ps(last, p) : _mm512_loadu_ps(p);
}

FM_AVX512_INLINE void zs_store(int v, int NV, __mmask16 last, float *p, __m512 x)
{
    if (v == NV - 1) _mm512_mask_storeu_ps(p, last, x);
    else _mm512_storeu_ps(p, x);
}

/* A panel count nv (1 <= nv <= 8, a run-time value) as the constant first argument of
 * KERNEL, so that its arrays of NV vectors unroll into registers (with a run-time count
 * GCC keeps them on the stack: a store and a reload per multiply-add, 2-3x slower). */
#define ZS_PANEL_CASES(nv, KERNEL, ...)                                                   \
    switch (nv) {                                                                         \
    case 8: KERNEL(8, __VA_ARGS__); break;                                                \
    case 7: KERNEL(7, __VA_ARGS__); break;                                                \
    case 6: KERNEL(6, __VA_ARGS__); break;                                                \
    case 5: KERNEL(5, __VA_ARGS__); break;                                                \
    case 4: KERNEL(4, __VA_ARGS__); break;                                                \
    case 3: KERNEL(3, __VA_ARGS__); break;                                                \
    case 2: KERNEL(2, __VA_ARGS__); break;                                                \
    case 1: KERNEL(1, __VA_ARGS__); break;                                                \
    default: break;                                                                       \
    }

/* Forward, one column panel of NV vectors (W, Z: the panel's first columns): for each row
 * of X its panel sums in NV registers, per nonzero x_ij one broadcast, NV loads of W's row
 * j and NV multiply-adds (W's rows stay in L2 across the batch; each row of X is read
 * once per panel). */
FM_AVX512_INLINE void zs_nn_panel(const int NV, int64_t b, int64_t N, int64_t d,
                                  const float *X, const uint16_t *masks, const float *W,
                                  float *Z, __mmask16 last)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t i = 0; i < b; i++) {
        const float *x = X + i * d;
        const uint16_t *mi = masks + i * dq;
        __m512 acc[8];
        for (int v = 0; v < NV; v++) acc[v] = _mm512_setzero_ps();
        for (int64_t q = 0; q < dq; q++) {
            unsigned bits = mi[q];
            while (bits) {
                const int64_t j = 16 * q + __builtin_ctz(bits);
                bits &= bits - 1;
                const __m512 s = _mm512_set1_ps(x[j]);
                const float *w = W + j * N;
                for (int v = 0; v < NV; v++)
                    acc[v] = _mm512_fmadd_ps(s, zs_load(v, NV, last, w + 16 * v), acc[v]);
            }
        }
        for (int v = 0; v < NV; v++) zs_store(v, NV, last, Z + i * N + 16 * v, acc[v]);
    }
}

#define ZS_NN_V 8   /* vectors per forward panel (8 of the 32 registers) */

FM_AVX512 static void skip_gemm_nn_avx512(int64_t b, int64_t N, int64_t d, const float *X,
                                          const uint16_t *masks, const float *W,
                                          float *restrict Z)
{
    for (int64_t n0 = 0; n0 < N; n0 += 16 * ZS_NN_V) {
        __mmask16 last;
        const int nv = zs_panel(N, n0, ZS_NN_V, &last);
        ZS_PANEL_CASES(nv, zs_nn_panel, b, N, d, X, masks, W + n0, Z + n0, last)
    }
}

/* Weight gradient, one column panel of NV vectors (dZ, dW: the panel's first columns):
 * blocks of ZS_TN_F features (rows of dW), ZS_TN_F x NV accumulators (28 of the 32
 * registers at NV = 7); each row of the batch whose ZS_TN_F features are all zero is
 * skipped (its mask bits), the others add x_ij dZ_i to the block's rows j (one load of
 * dZ_i's panel per ZS_TN_F rows of dW).  On MNIST rows a block of 4 does 1.5x the
 * multiply-adds of the nonzeros alone; variants that did exactly those (per-feature row
 * lists of the nonzeros, with their values; dW's rows in L1 updated per nonzero) were no
 * faster (benchmarks/RESULTS.md, session 19). */
#define ZS_TN_F 4   /* features per block: a divisor of 16, so no block spans two words */
#define ZS_TN_V 7   /* vectors per panel */

FM_AVX512_INLINE void zs_tn_panel(const int NV, int64_t b, int64_t N, int64_t d,
                                  const float *X, const uint16_t *masks, const float *dZ,
                                  float beta, float *dW, __mmask16 last)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t j0 = 0; j0 < d; j0 += ZS_TN_F) {
        const int nf = d - j0 < ZS_TN_F ? (int)(d - j0) : ZS_TN_F;
        const int64_t q = j0 / 16;
        const int shift = (int)(j0 % 16);
        __m512 acc[ZS_TN_F][8];
        for (int f = 0; f < ZS_TN_F; f++)
            for (int v = 0; v < NV; v++) acc[f][v] = _mm512_setzero_ps();
        for (int64_t i = 0; i < b; i++) {
            if (!((masks[i * dq + q] >> shift) & ((1u << ZS_TN_F) - 1))) continue;
            const float *x = X + i * d + j0;
            const float *g = dZ + i * N;
            __m512 s[ZS_TN_F];
            for (int f = 0; f < ZS_TN_F; f++) s[f] = _mm512_set1_ps(f < nf ? x[f] : 0.0f);
            for (int v = 0; v < NV; v++) {
                const __m512 gv = zs_load(v, NV, last, g + 16 * v);
                for (int f = 0; f < ZS_TN_F; f++)
                    acc[f][v] = _mm512_fmadd_ps(s[f], gv, acc[f][v]);
            }
        }
        for (int f = 0; f < nf; f++) {
            float *w = dW + (j0 + f) * N;
            for (int v = 0; v < NV; v++) {
                __m512 r = acc[f][v];
                if (beta != 0)
                    r = _mm512_fmadd_ps(_mm512_set1_ps(beta), zs_load(v, NV, last, w + 16 * v),
                                        r);
                zs_store(v, NV, last, w + 16 * v, r);
            }
        }
    }
}

FM_AVX512 static void skip_gemm_tn_avx512(int64_t b, int64_t N, int64_t d, const float *X,
                                          const uint16_t *masks, const float *dZ, float beta,
                                          float *restrict dW)
{
    for (int64_t n0 = 0; n0 < N; n0 += 16 * ZS_TN_V) {
        __mmask16 last;
        const int nv = zs_panel(N, n0, ZS_TN_V, &last);
        ZS_PANEL_CASES(nv, zs_tn_panel, b, N, d, X, masks, dZ + n0, beta, dW + n0, last)
    }
}
#endif


/* ---- entry points: the AVX-512 kernels where the CPU runs them, else the references --- */

void nonzero_masks_f32(int64_t b, int64_t d, const float *X, uint16_t *masks)
{
#if FM_HAVE_AVX512
    if (fm_direct_available()) {
        nonzero_masks_avx512(b, d, X, masks);
        return;
    }
#endif
    nonzero_masks_naive_f32(b, d, X, masks);
}

void skip_gemm_nn_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks,
                      const float *W, float *restrict Z)
{
#if FM_HAVE_AVX512
    if (fm_direct_available()) {
        skip_gemm_nn_avx512(b, N, d, X, masks, W, Z);
        return;
    }
#endif
    skip_gemm_nn_naive_f32(b, N, d, X, masks, W, Z);
}

void skip_gemm_tn_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks,
                      const float *dZ, float beta, float *restrict dW)
{
#if FM_HAVE_AVX512
    if (fm_direct_available()) {
        skip_gemm_tn_avx512(b, N, d, X, masks, dZ, beta, dW);
        return;
    }
#endif
    skip_gemm_tn_naive_f32(b, N, d, X, masks, dZ, beta, dW);
}
