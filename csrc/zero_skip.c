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
 * elements: on MNIST rows, 784-100 per thread (100 rows), the forward product in 90 against
 * the dense direct kernel's 222 us, the weight gradient in 56 against 211 us
 * (benchmarks/zero_skip.py; benchmarks/RESULTS.md, sessions 18 to 20).  The engine takes
 * them where its density check of X says they pay (_network.pyx, SKIP_ZEROS_MAX_DENSITY)
 * and never for products other than the first layer's (hidden activations are ReLU-sparse
 * too, but not in exact, reusable places).
 *
 * The bitmap: masks (b, dq), dq = ceil(d / 16), bit t of masks[i * dq + q] set when
 * x_i,16q+t != 0 (nonzero_masks).  Skipped terms are exact zeros, so the sums are those of
 * the dense product, summed in another order (x = -0.0 counts as zero: its terms are +-0).
 *
 * The engine's feature split (_network.pyx) runs each thread on its share of the features,
 * [k0, k1), over the batch's rows read in place from X by index (the *_range_f32 entry
 * points at the end).
 *
 * Each kernel has a naive reference beside it (portable C; the tests' oracle beside NumPy,
 * and what runs where the CPU has no AVX-512, which the engine then does not choose). */
#include "fm_internal.h"

/* Row i of the batch: X's row rows[i] (X itself, unshuffled: rows NULL, row i) */
#define ZS_ROW(X, rows, i, d) ((X) + ((rows) != NULL ? (rows)[i] : (i)) * (d))

/* ---- naive references ------------------------------------------------------------------
 * Each over a range of X's columns (words [q0, q1) of the masks; features, which are W's
 * and dW's rows, [k0, k1)): all of them in the exported references, a thread's share in
 * the range entry points' fallbacks below. */

static void masks_words_naive(int64_t b, int64_t d, const float *X, const int64_t *rows,
                              int64_t q0, int64_t q1, uint16_t *masks)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t i = 0; i < b; i++)
        for (int64_t q = q0; q < q1; q++) {
            unsigned bits = 0;
            for (int64_t t = 0; t < 16 && 16 * q + t < d; t++)
                bits |= (unsigned)(ZS_ROW(X, rows, i, d)[16 * q + t] != 0) << t;
            masks[i * dq + q] = (uint16_t)bits;
        }
}

static void skip_nn_naive(int64_t b, int64_t N, int64_t d, const float *X,
                          const int64_t *rows, const uint16_t *masks, const float *W,
                          float *restrict Z, int64_t k0, int64_t k1)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t i = 0; i < b; i++) {
        float *z = Z + i * N;
        for (int64_t n = 0; n < N; n++) z[n] = 0;
        for (int64_t j = k0; j < k1; j++) {
            if (!((masks[i * dq + j / 16] >> (j % 16)) & 1)) continue;
            const float x = ZS_ROW(X, rows, i, d)[j];
            for (int64_t n = 0; n < N; n++) z[n] += x * W[j * N + n];
        }
    }
}

static void skip_tn_naive(int64_t b, int64_t N, int64_t d, const float *X,
                          const int64_t *rows, const uint16_t *masks, const float *dZ,
                          float beta, float *restrict dW, int64_t k0, int64_t k1)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t j = k0; j < k1; j++) {
        float *w = dW + j * N;
        for (int64_t n = 0; n < N; n++) w[n] = beta == 0 ? 0 : beta * w[n];
        for (int64_t i = 0; i < b; i++) {
            if (!((masks[i * dq + j / 16] >> (j % 16)) & 1)) continue;
            const float x = ZS_ROW(X, rows, i, d)[j];
            for (int64_t n = 0; n < N; n++) w[n] += x * dZ[i * N + n];
        }
    }
}

void nonzero_masks_naive_f32(int64_t b, int64_t d, const float *X, uint16_t *masks)
{
    masks_words_naive(b, d, X, NULL, 0, (d + 15) / 16, masks);
}

/* Z (b, N) = X (b, d) @ W (d, N), the terms of X's zeros skipped */
void skip_gemm_nn_naive_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const uint16_t *masks, const float *W, float *restrict Z)
{
    skip_nn_naive(b, N, d, X, NULL, masks, W, Z, 0, d);
}

/* dW (d, N) = beta dW + X^T (d, b) @ dZ (b, N), the terms of X's zeros skipped */
void skip_gemm_tn_naive_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const uint16_t *masks, const float *dZ, float beta,
                            float *restrict dW)
{
    skip_tn_naive(b, N, d, X, NULL, masks, dZ, beta, dW, 0, d);
}


#if FM_HAVE_AVX512
/* ---- AVX-512 kernels (16 floats per vector; masked tails read and write nothing outside
 * the matrices) ---------------------------------------------------------------------------- */

#define ZS_PREFETCH_ROWS 4   /* rows ahead whose lines nonzero_masks asks for */

/* mask of the first n lanes, n clamped to [0, 16] */
FM_AVX512_INLINE __mmask16 zs_lanes(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* words [q0, q1) of each row's masks */
FM_AVX512 static void nonzero_masks_avx512(int64_t b, int64_t d, const float *X,
                                           const int64_t *rows, uint16_t *masks, int64_t q0,
                                           int64_t q1)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t i = 0; i < b; i++) {
        if (rows != NULL && i + ZS_PREFETCH_ROWS < b) {
            /* rows scattered over a large X come from memory: ask for a later row's lines
             * now, so that ZS_PREFETCH_ROWS rows are in flight */
            const char *p = (const char *)(X + rows[i + ZS_PREFETCH_ROWS] * d + 16 * q0);
            const char *end = (const char *)(X + rows[i + ZS_PREFETCH_ROWS] * d
                                             + (16 * q1 < d ? 16 * q1 : d));
            for (; p < end; p += 64) _mm_prefetch(p, _MM_HINT_T0);
        }
        for (int64_t q = q0; q < q1; q++) {
            const __mmask16 in = zs_lanes(d - 16 * q);
            const __m512 x = _mm512_maskz_loadu_ps(in, ZS_ROW(X, rows, i, d) + 16 * q);
            masks[i * dq + q] = _mm512_mask_cmp_ps_mask(in, x, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        }
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

/* the bits of mask word q that stand for features in [k0, k1) (k0 <= 16 q + 15, 16 q < k1) */
static inline unsigned zs_word_in_range(int64_t q, int64_t k0, int64_t k1)
{
    const int64_t lo = k0 - 16 * q, hi = k1 - 16 * q;
    return (lo > 0 ? 0xFFFFu << lo : 0xFFFFu) & (hi < 16 ? (1u << hi) - 1 : 0xFFFFu);
}

/* Forward, one column panel of NV vectors (W, Z: the panel's first columns), over the
 * features [k0, k1) (all of them, or a thread's share of a product split over W's rows):
 * for each row of X its panel sums in NV registers, per nonzero x_ij one broadcast, NV
 * loads of W's row j and NV multiply-adds (W's rows stay in L2 across the batch; each row
 * of X is read once per panel). */
FM_AVX512_INLINE void zs_nn_panel(const int NV, int64_t b, int64_t N, int64_t d,
                                  const float *X, const int64_t *rows, const uint16_t *masks,
                                  const float *W, float *Z, __mmask16 last, int64_t k0,
                                  int64_t k1)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t i = 0; i < b; i++) {
        const float *x = ZS_ROW(X, rows, i, d);
        const uint16_t *mi = masks + i * dq;
        __m512 acc[8];
        for (int v = 0; v < NV; v++) acc[v] = _mm512_setzero_ps();
        for (int64_t q = k0 / 16; 16 * q < k1; q++) {
            unsigned bits = mi[q] & zs_word_in_range(q, k0, k1);
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

/* Z (b, N) = X[:, k0:k1] @ W[k0:k1, :] over the nonzeros */
FM_AVX512 static void skip_gemm_nn_avx512(int64_t b, int64_t N, int64_t d, const float *X,
                                          const int64_t *rows, const uint16_t *masks,
                                          const float *W, float *restrict Z, int64_t k0,
                                          int64_t k1)
{
    for (int64_t n0 = 0; n0 < N; n0 += 16 * ZS_NN_V) {
        __mmask16 last;
        const int nv = zs_panel(N, n0, ZS_NN_V, &last);
        ZS_PANEL_CASES(nv, zs_nn_panel, b, N, d, X, rows, masks, W + n0, Z + n0, last, k0, k1)
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
                                  const float *X, const int64_t *rows, const uint16_t *masks,
                                  const float *dZ, float beta, float *dW, __mmask16 last,
                                  int64_t k0, int64_t k1)
{
    const int64_t dq = (d + 15) / 16;
    for (int64_t j0 = k0; j0 < k1; j0 += ZS_TN_F) {
        const int nf = k1 - j0 < ZS_TN_F ? (int)(k1 - j0) : ZS_TN_F;
        const int64_t q = j0 / 16;
        const int shift = (int)(j0 % 16);
        __m512 acc[ZS_TN_F][8];
        for (int f = 0; f < ZS_TN_F; f++)
            for (int v = 0; v < NV; v++) acc[f][v] = _mm512_setzero_ps();
        for (int64_t i = 0; i < b; i++) {
            if (!((masks[i * dq + q] >> shift) & ((1u << ZS_TN_F) - 1))) continue;
            const float *x = ZS_ROW(X, rows, i, d) + j0;
            const float *g = dZ + i * N;
            __m512 s[ZS_TN_F];
            for (int f = 0; f < ZS_TN_F; f++) s[f] = _mm512_set1_ps(f < nf ? x[f] : 0.0f);
            for (int v = 0; v < NV; v++) {
                const __m512 gv = zs_load(v, NV, last, g + 16 * v);
                for (int f = 0; f < ZS_TN_F; f++)
                    acc[f][v] = _mm512_fmadd_ps(s[f], gv, acc[f][v]);
            }
        }
        /* a constant trip count (the break for a short last block): with `f < nf` GCC
         * indexes acc[f] at run time and keeps all of acc on the stack, a load and a
         * store around every multiply-add above (2.5-3x slower; session 20) */
        for (int f = 0; f < ZS_TN_F; f++) {
            if (f >= nf) break;
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

/* rows [k0, k1) of dW (d, N) = beta dW + X^T @ dZ over the nonzeros (k0 a multiple of
 * ZS_TN_F) */
FM_AVX512 static void skip_gemm_tn_avx512(int64_t b, int64_t N, int64_t d, const float *X,
                                          const int64_t *rows, const uint16_t *masks,
                                          const float *dZ, float beta, float *restrict dW,
                                          int64_t k0, int64_t k1)
{
    for (int64_t n0 = 0; n0 < N; n0 += 16 * ZS_TN_V) {
        __mmask16 last;
        const int nv = zs_panel(N, n0, ZS_TN_V, &last);
        ZS_PANEL_CASES(nv, zs_tn_panel, b, N, d, X, rows, masks, dZ + n0, beta, dW + n0, last,
                       k0, k1)
    }
}

#endif


/* ---- entry points: the AVX-512 kernels where the CPU runs them, else the references --- */

void nonzero_masks_f32(int64_t b, int64_t d, const float *X, uint16_t *masks)
{
#if FM_HAVE_AVX512
    if (fm_direct_available()) {
        nonzero_masks_avx512(b, d, X, NULL, masks, 0, (d + 15) / 16);
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
        skip_gemm_nn_avx512(b, N, d, X, NULL, masks, W, Z, 0, d);
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
        skip_gemm_tn_avx512(b, N, d, X, NULL, masks, dZ, beta, dW, 0, d);
        return;
    }
#endif
    skip_gemm_tn_naive_f32(b, N, d, X, masks, dZ, beta, dW);
}


/* ---- on several threads: the direct path's split over W's rows -------------------------
 * The engine's direct path (short batches on several threads, _network.pyx) gives each
 * thread the rows of W [k_t, k_t+1) = fm_direct_row_split(d): it writes their gradient
 * and runs their update, and its forward multiplies by them alone (direct_gemm_split_k).
 * These two do the same over X's nonzeros. */

void skip_gemm_split_k_f32(int64_t b, int64_t N, int64_t d, const float *X, uint16_t *masks,
                           const float *W, const float *bias, int act, float *Z,
                           float *partial, int n_threads)
{
#if FM_HAVE_AVX512 && defined(_OPENMP)
    if (fm_direct_available() && n_threads > 1) {
        const int64_t dq = (d + 15) / 16;
#pragma omp parallel num_threads(n_threads)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t i0 = b * t / nt, i1 = b * (t + 1) / nt;
            float *Zt = t == 0 ? Z : partial + (int64_t)(t - 1) * b * N;
            nonzero_masks_avx512(i1 - i0, d, X + i0 * d, NULL, masks + i0 * dq, 0, dq);
#pragma omp barrier
            skip_gemm_nn_avx512(b, N, d, X, NULL, masks, W, Zt, fm_direct_row_split(d, t, nt),
                                fm_direct_row_split(d, t + 1, nt));
#pragma omp barrier
            split_k_sum_f32(b, N, bias, act, Z, partial, t, nt);
        }
        return;
    }
#endif
    (void)partial;
    (void)n_threads;
    nonzero_masks_f32(b, d, X, masks);
    skip_gemm_nn_f32(b, N, d, X, masks, W, Z);
    if (act >= 0) bias_act_forward_f32(b, N, Z, bias, act, Z, 1);
}

void skip_gemm_tn_rows_f32(int64_t b, int64_t N, int64_t d, const float *X,
                           const uint16_t *masks, const float *dZ, float beta, float *dW,
                           int n_threads)
{
#if FM_HAVE_AVX512 && defined(_OPENMP)
    if (fm_direct_available() && n_threads > 1) {
#pragma omp parallel num_threads(n_threads)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            skip_gemm_tn_avx512(b, N, d, X, NULL, masks, dZ, beta, dW,
                                fm_direct_row_split(d, t, nt),
                                fm_direct_row_split(d, t + 1, nt));
        }
        return;
    }
#endif
    (void)n_threads;
    skip_gemm_tn_f32(b, N, d, X, masks, dZ, beta, dW);
}


/* ---- whole passes over many rows: predictions and full batches -------------------------
 * masks (b, dq) and Z (b, N) = X (b, d) @ W (d, N) over the nonzeros, by blocks of `block`
 * rows (each block's masks, then its product, while its rows are in the caches), the
 * blocks spread over n_threads.  The masks stay for a weight gradient of the same rows
 * (skip_gemm_tn_rows_f32). */
void skip_gemm_nn_blocks_f32(int64_t b, int64_t N, int64_t d, const float *X, uint16_t *masks,
                             const float *W, float *Z, int64_t block, int n_threads)
{
    const int64_t dq = (d + 15) / 16, n_blocks = block > 0 ? (b + block - 1) / block : 0;
    int64_t k;
    (void)n_threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1 && n_blocks > 1)
#endif
    for (k = 0; k < n_blocks; k++) {
        const int64_t r0 = k * block, rb = b - r0 < block ? b - r0 : block;
        nonzero_masks_f32(rb, d, X + r0 * d, masks + r0 * dq);
        skip_gemm_nn_f32(rb, N, d, X + r0 * d, masks + r0 * dq, W, Z + r0 * N);
    }
}


/* ---- one thread's share of X's columns: the engine's feature split ----------------------
 * A training step whose first layer is split over the input features (_network.pyx,
 * feature_split_thread) gives thread t the features [k0, k1) (k0 a multiple of 4), as its
 * rows of W and dW: it builds their masks (the words over them, of each row),
 * multiplies X's columns [k0, k1) by W's rows [k0, k1) into its own partial product of
 * every row, and writes dW's rows [k0, k1).  No OpenMP here: the caller is the thread. */

void nonzero_masks_range_f32(int64_t b, int64_t d, const float *X, const int64_t *rows,
                             int64_t k0, int64_t k1, uint16_t *masks)
{
    const int64_t q0 = k0 / 16, q1 = (k1 + 15) / 16;
#if FM_HAVE_AVX512
    if (fm_direct_available()) {
        nonzero_masks_avx512(b, d, X, rows, masks, q0, q1);
        return;
    }
#endif
    masks_words_naive(b, d, X, rows, q0, q1, masks);
}

void skip_gemm_nn_range_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const int64_t *rows, const uint16_t *masks, const float *W,
                            float *restrict Z, int64_t k0, int64_t k1)
{
#if FM_HAVE_AVX512
    if (fm_direct_available()) {
        skip_gemm_nn_avx512(b, N, d, X, rows, masks, W, Z, k0, k1);
        return;
    }
#endif
    skip_nn_naive(b, N, d, X, rows, masks, W, Z, k0, k1);
}

void skip_gemm_tn_range_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const int64_t *rows, const uint16_t *masks, const float *dZ,
                            float beta, float *restrict dW, int64_t k0, int64_t k1)
{
#if FM_HAVE_AVX512
    if (fm_direct_available()) {
        skip_gemm_tn_avx512(b, N, d, X, rows, masks, dZ, beta, dW, k0, k1);
        return;
    }
#endif
    skip_tn_naive(b, N, d, X, rows, masks, dZ, beta, dW, k0, k1);
}

/* Ask for the lines of features [k0, k1) of X's rows rows[0..b) (into L2: they are read
 * next step, after this step's weight gradient and update have used L1). */
void prefetch_rows_range_f32(int64_t b, int64_t d, const float *X, const int64_t *rows,
                             int64_t k0, int64_t k1)
{
#if defined(__GNUC__)
    for (int64_t i = 0; i < b; i++) {
        const char *p = (const char *)(ZS_ROW(X, rows, i, d) + k0);
        const char *end = (const char *)(ZS_ROW(X, rows, i, d) + k1);
        for (; p < end; p += 64) __builtin_prefetch(p, 0, 2);
    }
#else
    (void)b; (void)d; (void)X; (void)rows; (void)k0; (void)k1;
#endif
}
