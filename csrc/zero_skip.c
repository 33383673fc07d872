/* The first layer's two training products, skipping the input's zeros (float32).
 *
 * Why: inputs such as MNIST's are mostly exact zeros (81% of its pixels: the background),
 * and a zero input element contributes nothing to either product that reads it:
 *
 *   forward          Z  (b, N) = X (b, d) @ W (d, N)        z_i = sum over j of x_ij W_j
 *   weight gradient  dW (d, N) = X^T (d, b) @ dZ (b, N)     dW_j = sum over i of x_ij dZ_i
 *
 * BLAS multiplies every element.  These kernels take X's row-major batch as it is (the
 * gathered rows) with a bitmap of its nonzeros, and do the multiply-adds of the blocks of
 * 4 features that hold a nonzero (below): on MNIST rows, 784-500 on two threads (128
 * rows), the forward product in 219 against the dense direct kernels' 505 us, the weight
 * gradient in 175 against 530 us (benchmarks/zero_skip.py; benchmarks/RESULTS.md,
 * sessions 18 to 24).  The engine takes them where its density check of X says they pay
 * (_network.pyx, SKIP_ZEROS_MAX_DENSITY) and never for products other than the first
 * layer's (hidden activations are ReLU-sparse too, but not in exact, reusable places, and
 * 60% dense on MNIST).
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

/* ---- blocks of features and their lists of rows --------------------------------------
 * Both products work on blocks of ZS_F = 4 features (4 rows of W and of dW, a quarter of
 * a mask word) and, for each block, the list of the batch's rows that have a nonzero among
 * its features (zs_row_lists: one pass over the masks, without a branch per row).  Per
 * listed row a kernel does the block's 4 multiply-adds per vector, zeros included: on MNIST
 * a listed row holds 2.7 nonzeros of the 4, so 1.5x the multiply-adds of the nonzeros
 * alone, for work by registers.  Measured on 128 MNIST rows, 392 features, 500 outputs, one
 * thread (session 24, benchmarks/RESULTS.md): the forward product by rows (per nonzero one
 * of W's rows streamed from L2, the kernel until session 23) took 1.37x this one's time;
 * testing each row's bits in the product loops instead of lists (a mispredicted branch on
 * about a third of the (block, row) pairs), 1.03-1.15x forward and 1.1x for the weight
 * gradient.  Lists are built for up to ZS_LIST_ROWS rows and ZS_LIST_BLOCKS blocks at
 * once (row offsets in a byte; 16.5 KB on the stack) and serve every column panel of those
 * rows and blocks (64 or 32 rows at once were slower). */
#define ZS_F 4
#define ZS_LIST_ROWS 128
#define ZS_LIST_BLOCKS 128

typedef struct {
    int64_t r0;                                   /* the rows r0 + row[k][e] */
    int64_t j0;                                   /* block k: features j0 + ZS_F k + f */
    int n_blocks;
    uint8_t count[ZS_LIST_BLOCKS];                /* rows listed per block */
    uint8_t lanes[ZS_LIST_BLOCKS];                /* bit f: feature f is in [k0, k1) */
    uint8_t row[ZS_LIST_BLOCKS][ZS_LIST_ROWS];
} zs_lists;

/* the valid features of the block from feature j: bit f set when j + f is in [k0, k1) */
static inline unsigned zs_block_lanes(int64_t j, int64_t k0, int64_t k1)
{
    unsigned lanes = 0;
    for (int f = 0; f < ZS_F; f++) lanes |= (unsigned)(j + f >= k0 && j + f < k1) << f;
    return lanes;
}

/* Lists of the rows [r0, r0 + rc) (rc <= ZS_LIST_ROWS) for the n_blocks blocks from
 * feature j0 (a multiple of ZS_F; n_blocks <= ZS_LIST_BLOCKS), features outside [k0, k1)
 * left out (each block's lanes): zs_row_lists, and here one row at a time, for masks of
 * fewer than two words a row (the caller has set L's r0, j0 and n_blocks). */
static void zs_row_lists_scalar(int64_t dq, const uint16_t *masks, int64_t r0, int64_t rc,
                                int64_t j0, int n_blocks, int64_t k0, int64_t k1,
                                zs_lists *L)
{
    for (int k = 0; k < n_blocks; k++) {
        const int64_t j = j0 + ZS_F * k;
        const unsigned lanes = zs_block_lanes(j, k0, k1);
        const uint16_t *m = rc > 0 ? masks + r0 * dq + j / 16 : NULL;
        const int shift = (int)(j % 16);
        uint8_t *row = L->row[k];
        unsigned n = 0;
        for (int64_t i = 0; i < rc; i++) {   /* written always, kept when the row has one */
            row[n] = (uint8_t)i;
            n += ((m[i * dq] >> shift) & lanes) != 0;
        }
        L->count[k] = (uint8_t)n;
        L->lanes[k] = (uint8_t)lanes;
    }
}

/* 16 rows at a time: their mask words gathered (as 32-bit reads of word q with the word
 * before it, or after it for q = 0, all inside the row), each block's bits tested in 16
 * lanes at once and the offsets of the rows that have one compressed into the list (3.3x
 * faster than a row at a time: 2.2 against 7.2 us for 98 blocks of 128 MNIST rows, the
 * same lists; session 24). */
FM_AVX512 static void zs_row_lists(int64_t dq, const uint16_t *masks, int64_t r0, int64_t rc,
                                   int64_t j0, int n_blocks, int64_t k0, int64_t k1,
                                   zs_lists *L)
{
    L->r0 = r0;
    L->j0 = j0;
    L->n_blocks = n_blocks;
    if (dq < 2 || rc <= 0 || dq > INT32_MAX / ZS_LIST_ROWS) {
        zs_row_lists_scalar(dq, masks, r0, rc, j0, n_blocks, k0, k1, L);
        return;
    }
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                           15);
    const __m512i row_words = _mm512_mullo_epi32(iota, _mm512_set1_epi32((int)dq));
    const int groups = (int)((rc + 15) / 16);
    __m512i words[ZS_LIST_ROWS / 16];
    int64_t q_loaded = -1;
    int low_bit = 0;
    for (int k = 0; k < n_blocks; k++) {
        const int64_t j = j0 + ZS_F * k, q = j / 16;
        if (q != q_loaded) {
            const uint16_t *at = masks + r0 * dq + (q > 0 ? q - 1 : 0);
            low_bit = q > 0 ? 16 : 0;
            for (int g = 0; g < groups; g++)
                words[g] = _mm512_mask_i32gather_epi32(
                    _mm512_setzero_si512(), zs_lanes(rc - 16 * g),
                    _mm512_add_epi32(row_words, _mm512_set1_epi32((int)(16 * g * dq))), at, 2);
            q_loaded = q;
        }
        const unsigned lanes = zs_block_lanes(j, k0, k1);
        const __m512i shift = _mm512_set1_epi32(low_bit + (int)(j % 16));
        const __m512i keep = _mm512_set1_epi32((int)lanes);
        uint8_t *row = L->row[k];
        unsigned n = 0;
        for (int g = 0; g < groups; g++) {
            const __m512i bits = _mm512_and_si512(_mm512_srlv_epi32(words[g], shift), keep);
            const __mmask16 any = _mm512_test_epi32_mask(bits, bits);
            const __m512i offsets = _mm512_maskz_compress_epi32(
                any, _mm512_add_epi32(iota, _mm512_set1_epi32(16 * g)));
            /* 16 bytes at n <= 16 g: inside the list's ZS_LIST_ROWS */
            _mm_storeu_si128((__m128i *)(row + n), _mm512_cvtepi32_epi8(offsets));
            n += (unsigned)__builtin_popcount((unsigned)any);
        }
        L->count[k] = (uint8_t)n;
        L->lanes[k] = (uint8_t)lanes;
    }
}

/* the ZS_F values x_j.. of a listed row, the features outside the block's lanes zero */
#define ZS_BROADCASTS(s, x, lanes)                                                        \
    for (int f = 0; f < ZS_F; f++)                                                        \
        s[f] = _mm512_set1_ps((lanes) == 0xFu || (((lanes) >> f) & 1u) ? (x)[f] : 0.0f)

/* Forward, one column panel of NV vectors (W, Z: the panel's first columns), the lists'
 * rows and blocks: per block its rows of W's panel in ZS_F x NV registers (28 of the 32 at
 * NV = 7; read once per panel), then per listed row i: Z_i's panel loaded, ZS_F
 * multiply-adds per vector, stored (the panel's rows stay in L2).  `first`: the panel's
 * rows start from zero (the first blocks of the product). */
FM_AVX512_INLINE void zs_nn_panel(const int NV, const zs_lists *L, int64_t rc, int64_t N,
                                  int64_t d, const float *X, const int64_t *rows,
                                  const float *W, float *Z, __mmask16 last, int first)
{
    if (first)
        for (int64_t i = L->r0; i < L->r0 + rc; i++)
            for (int v = 0; v < NV; v++) zs_store(v, NV, last, Z + i * N + 16 * v,
                                                  _mm512_setzero_ps());
    for (int k = 0; k < L->n_blocks; k++) {
        const int n = L->count[k];
        if (n == 0) continue;
        const int64_t j = L->j0 + ZS_F * k;
        const unsigned lanes = L->lanes[k];
        const uint8_t *row = L->row[k];
        __m512 w[ZS_F][8];
        for (int f = 0; f < ZS_F; f++)
            for (int v = 0; v < NV; v++)
                w[f][v] = (lanes >> f) & 1u ? zs_load(v, NV, last, W + (j + f) * N + 16 * v)
                                            : _mm512_setzero_ps();
        for (int e = 0; e < n; e++) {
            const int64_t i = L->r0 + row[e];
            const float *x = ZS_ROW(X, rows, i, d) + j;
            float *z = Z + i * N;
            __m512 s[ZS_F];
            ZS_BROADCASTS(s, x, lanes);
            for (int v = 0; v < NV; v++) {
                __m512 a = zs_load(v, NV, last, z + 16 * v);
                for (int f = 0; f < ZS_F; f++) a = _mm512_fmadd_ps(s[f], w[f][v], a);
                zs_store(v, NV, last, z + 16 * v, a);
            }
        }
    }
}

#define ZS_NN_V 7   /* vectors per forward panel */

/* first block of the features [k0, k1), and how many blocks from j0 one set of lists takes */
static inline int64_t zs_first_block(int64_t k0) { return k0 - k0 % ZS_F; }
static inline int zs_blocks_from(int64_t j0, int64_t k1)
{
    const int64_t n = (k1 - j0 + ZS_F - 1) / ZS_F;
    return n <= 0 ? 0 : n < ZS_LIST_BLOCKS ? (int)n : ZS_LIST_BLOCKS;
}

/* Z (b, N) = X[:, k0:k1] @ W[k0:k1, :] over the nonzeros (k0 >= k1: Z = 0) */
FM_AVX512 static void skip_gemm_nn_avx512(int64_t b, int64_t N, int64_t d, const float *X,
                                          const int64_t *rows, const uint16_t *masks,
                                          const float *W, float *restrict Z, int64_t k0,
                                          int64_t k1)
{
    const int64_t dq = (d + 15) / 16, jb = zs_first_block(k0);
    zs_lists L;
    for (int64_t r0 = 0; r0 < b; r0 += ZS_LIST_ROWS) {
        const int64_t rc = b - r0 < ZS_LIST_ROWS ? b - r0 : ZS_LIST_ROWS;
        int64_t j0 = jb;
        do {   /* once at least: Z's rows are written even when [k0, k1) is empty */
            const int nb = zs_blocks_from(j0, k1);
            zs_row_lists(dq, masks, r0, rc, j0, nb, k0, k1, &L);
            for (int64_t n0 = 0; n0 < N; n0 += 16 * ZS_NN_V) {
                __mmask16 last;
                const int nv = zs_panel(N, n0, ZS_NN_V, &last);
                ZS_PANEL_CASES(nv, zs_nn_panel, &L, rc, N, d, X, rows, W + n0, Z + n0, last,
                               j0 == jb)
            }
            j0 += (int64_t)ZS_F * ZS_LIST_BLOCKS;
        } while (j0 < k1);
    }
}

/* Weight gradient, one column panel of NV vectors (dZ, dW: the panel's first columns), the
 * lists' rows and blocks: per block ZS_F x NV accumulators (28 of the 32 registers at
 * NV = 7), per listed row i one load of dZ_i's panel for ZS_F multiply-adds.  `first`:
 * the lists' rows are the batch's first, and the block's rows of dW become beta dW plus
 * their sums; otherwise the sums are added to dW's rows.  The accumulators start from zero
 * and dW's rows are read once, at the end, with one scale for all cases (`keep`): loading
 * the accumulators from dW, or a branch per case there, made GCC keep them on the stack,
 * 2.3x slower (session 24). */
#define ZS_TN_V 7   /* vectors per panel */

FM_AVX512_INLINE void zs_tn_panel(const int NV, const zs_lists *L, int64_t N, int64_t d,
                                  const float *X, const int64_t *rows, const float *dZ,
                                  float beta, float *dW, __mmask16 last, int first)
{
    const float keep = first ? beta : 1.0f;   /* dW's rows become keep dW + the sums */
    for (int k = 0; k < L->n_blocks; k++) {
        const int n = L->count[k];
        if (n == 0 && !first) continue;
        const int64_t j = L->j0 + ZS_F * k;
        const unsigned lanes = L->lanes[k];
        const uint8_t *row = L->row[k];
        __m512 acc[ZS_F][8];
        for (int f = 0; f < ZS_F; f++)
            for (int v = 0; v < NV; v++) acc[f][v] = _mm512_setzero_ps();
        for (int e = 0; e < n; e++) {
            const int64_t i = L->r0 + row[e];
            const float *x = ZS_ROW(X, rows, i, d) + j;
            const float *g = dZ + i * N;
            __m512 s[ZS_F];
            ZS_BROADCASTS(s, x, lanes);
            for (int v = 0; v < NV; v++) {
                const __m512 gv = zs_load(v, NV, last, g + 16 * v);
                for (int f = 0; f < ZS_F; f++) acc[f][v] = _mm512_fmadd_ps(s[f], gv, acc[f][v]);
            }
        }
        /* a constant trip count and a test (with the lanes in the loop's bound GCC indexes
         * acc[f] at run time and keeps all of acc on the stack, a load and a store around
         * every multiply-add above: 2.5-3x slower; session 20) */
        for (int f = 0; f < ZS_F; f++) {
            if (!((lanes >> f) & 1u)) continue;
            float *w = dW + (j + f) * N;
            for (int v = 0; v < NV; v++) {
                __m512 r = acc[f][v];
                if (keep != 0)
                    r = _mm512_fmadd_ps(_mm512_set1_ps(keep), zs_load(v, NV, last, w + 16 * v),
                                        r);
                zs_store(v, NV, last, w + 16 * v, r);
            }
        }
    }
}

/* rows [k0, k1) of dW (d, N) = beta dW + X^T @ dZ over the nonzeros */
FM_AVX512 static void skip_gemm_tn_avx512(int64_t b, int64_t N, int64_t d, const float *X,
                                          const int64_t *rows, const uint16_t *masks,
                                          const float *dZ, float beta, float *restrict dW,
                                          int64_t k0, int64_t k1)
{
    const int64_t dq = (d + 15) / 16;
    zs_lists L;
    for (int64_t j0 = zs_first_block(k0); j0 < k1; j0 += (int64_t)ZS_F * ZS_LIST_BLOCKS) {
        const int nb = zs_blocks_from(j0, k1);
        int64_t r0 = 0;
        do {   /* once at least: with no rows, dW's rows become beta dW */
            const int64_t rc = b - r0 < ZS_LIST_ROWS ? b - r0 : ZS_LIST_ROWS;
            zs_row_lists(dq, masks, r0, rc, j0, nb, k0, k1, &L);
            for (int64_t n0 = 0; n0 < N; n0 += 16 * ZS_TN_V) {
                __mmask16 last;
                const int nv = zs_panel(N, n0, ZS_TN_V, &last);
                ZS_PANEL_CASES(nv, zs_tn_panel, &L, N, d, X, rows, dZ + n0, beta, dW + n0,
                               last, r0 == 0)
            }
            r0 += ZS_LIST_ROWS;
        } while (r0 < b);
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
 * These two do the same over X's nonzeros, with the rows [cuts[t], cuts[t + 1]) where
 * cuts (n_threads + 1 of them, 0 to d) is given: the engine's cuts that give the threads
 * equal shares of X's nonzeros (balanced_feature_cuts; MNIST's second half of the pixels
 * holds 11% more of them than its first). */
static inline int64_t zs_thread_rows(int64_t d, const int64_t *cuts, int n_threads, int t,
                                     int nt)
{   /* a team smaller than asked for (nt < n_threads) splits evenly */
    return fm_cut_row_split(d, nt == n_threads ? cuts : NULL, t, nt);
}

void skip_gemm_split_k_f32(int64_t b, int64_t N, int64_t d, const float *X, uint16_t *masks,
                           const float *W, const float *bias, int act, float *Z,
                           float *partial, const int64_t *cuts, int n_threads)
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
            skip_gemm_nn_avx512(b, N, d, X, NULL, masks, W, Zt,
                                zs_thread_rows(d, cuts, n_threads, t, nt),
                                zs_thread_rows(d, cuts, n_threads, t + 1, nt));
#pragma omp barrier
            split_k_sum_f32(b, N, bias, act, Z, partial, t, nt);
        }
        return;
    }
#endif
    (void)partial;
    (void)cuts;
    (void)n_threads;
    nonzero_masks_f32(b, d, X, masks);
    skip_gemm_nn_f32(b, N, d, X, masks, W, Z);
    if (act >= 0) bias_act_forward_f32(b, N, Z, bias, act, Z, 1);
}

void skip_gemm_tn_rows_f32(int64_t b, int64_t N, int64_t d, const float *X,
                           const uint16_t *masks, const float *dZ, float beta, float *dW,
                           const int64_t *cuts, int n_threads)
{
#if FM_HAVE_AVX512 && defined(_OPENMP)
    if (fm_direct_available() && n_threads > 1) {
#pragma omp parallel num_threads(n_threads)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            skip_gemm_tn_avx512(b, N, d, X, NULL, masks, dZ, beta, dW,
                                zs_thread_rows(d, cuts, n_threads, t, nt),
                                zs_thread_rows(d, cuts, n_threads, t + 1, nt));
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
