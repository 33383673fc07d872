/* Instantiates gemm_direct_impl.inc for float (_f32) and double (_f64), and decides once
 * whether its AVX-512 kernels can run here (fm_direct_available).
 *
 * Runtime dispatch rather than -march flags: the AVX-512 kernels are compiled with a
 * target attribute (intrinsics, masked tails) and called only when the CPU reports
 * AVX-512F/DQ/VL; elsewhere the engine keeps BLAS for these products and the naive
 * references stand in when the kernels are called directly (tests). */
#include "fm_internal.h"


/* How many rows of B ahead the panel kernel prefetches (B's rows lie N elements apart:
 * too far apart for the hardware prefetcher, which the first row block of each panel
 * would otherwise wait on; measured at b32: 762 -> 540 us on one thread, 275 -> 184 us on
 * two, for 784x500).  A prefetch past B's end never faults. */
#define FM_DIRECT_PREFETCH 16

/* Register blocks of the panel kernels: up to FM_DIRECT_MR rows x 2 vectors of
 * accumulators (24 of the 32 vector registers).  K is taken in chunks of FM_DIRECT_KC:
 * a chunk of a panel of B (FM_DIRECT_KC x 2V, 16 KB for float) stays in L1 across the row
 * blocks, and the weight gradient's packed A' block (FM_DIRECT_MR x FM_DIRECT_KC, on the
 * stack) is 6 KB for float.  (The weight-gradient kernel's measurements: beside
 * gemm_rows_aligned in gemm_direct_impl.inc.) */
#define FM_DIRECT_MR 12
#define FM_DIRECT_KC 128

static int direct_enabled = -1; /* -1: not decided yet */

int fm_direct_available(void)
{
#if FM_HAVE_AVX512
    if (direct_enabled < 0) {
        __builtin_cpu_init();
        direct_enabled = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
                         && __builtin_cpu_supports("avx512vl");
    }
    return direct_enabled;
#else
    return 0;
#endif
}

int fm_direct_set_enabled(int enabled)
{
    const int previous = fm_direct_available();
#if FM_HAVE_AVX512
    if (enabled) {
        direct_enabled = -1; /* back to what the CPU supports */
        fm_direct_available();
    } else {
        direct_enabled = 0;
    }
#else
    (void)enabled;
#endif
    return previous;
}

int64_t fm_direct_row_split(int64_t M, int t, int nt)
{
    const int64_t blocks = (M + 7) / 8, row = 8 * (blocks * t / nt);
    return row < M ? row : M;
}

int64_t fm_cut_row_split(int64_t M, const int64_t *cuts, int t, int nt)
{
    return cuts != NULL ? cuts[t] : fm_direct_row_split(M, t, nt);
}

#if FM_HAVE_AVX512
/* C[r * ldc + s] = the sum of the 16 lanes of acc[r * stride + s] for r < 4 and s < NS
 * (4 or 2; the dX kernel's block, gemm_nt_block): a tree of lane shuffles over all the
 * block's vectors at once, each step adding two vectors' halves into one, instead of a
 * horizontal reduction per sum (4 shuffles and 4 adds each, the shuffles all on one port).
 * For each column s the first steps fold each row's 16 lanes to 4 partial sums and pack
 * the four rows' partials into the 128-bit quarters of one vector (row r in quarter r);
 * the last steps add each quarter's partials, leaving row r's NS sums C[r, 0:NS] in
 * quarter r.  The additions pair the lanes as _mm512_reduce_add_ps does (j + 8, then
 * j + 4, then (0 + 2) + (1 + 3)), so a sum is the same, bit for bit, whichever way its
 * block was reduced. */
FM_AVX512_INLINE void fm_reduce_4xn_f32(const int NS, const __m512 *acc, int stride,
                                        float *C, int64_t ldc)
{
    __m512 col[4];
    for (int s = 0; s < NS; s++) {
        const __m512 r0 = acc[s], r1 = acc[stride + s];
        const __m512 r2 = acc[2 * stride + s], r3 = acc[3 * stride + s];
        /* rows 0, 1 -> 256-bit halves; rows 2, 3 likewise; then quarter r = row r */
        const __m512 a01 = _mm512_add_ps(_mm512_shuffle_f32x4(r0, r1, 0x44),
                                         _mm512_shuffle_f32x4(r0, r1, 0xEE));
        const __m512 a23 = _mm512_add_ps(_mm512_shuffle_f32x4(r2, r3, 0x44),
                                         _mm512_shuffle_f32x4(r2, r3, 0xEE));
        col[s] = _mm512_add_ps(_mm512_shuffle_f32x4(a01, a23, 0x88),
                               _mm512_shuffle_f32x4(a01, a23, 0xDD));
    }
    /* in each quarter: columns' 4 partials -> their sums, in column order */
    const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(col[0], col[1]),
                                    _mm512_unpackhi_ps(col[0], col[1]));
    if (NS == 4) {
        const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(col[2], col[3]),
                                        _mm512_unpackhi_ps(col[2], col[3]));
        const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, 0x44),
                                          _mm512_shuffle_ps(t0, t1, 0xEE));
        _mm_storeu_ps(C, _mm512_castps512_ps128(sums));
        _mm_storeu_ps(C + ldc, _mm512_extractf32x4_ps(sums, 1));
        _mm_storeu_ps(C + 2 * ldc, _mm512_extractf32x4_ps(sums, 2));
        _mm_storeu_ps(C + 3 * ldc, _mm512_extractf32x4_ps(sums, 3));
    } else { /* NS == 2: t0 = [c0', c1', c0'', c1''], plus [c0'', c1'', c0', c1'] */
        const __m512 sums = _mm512_add_ps(t0, _mm512_shuffle_ps(t0, t0, 0x4E));
        _mm_storel_pi((__m64 *)C, _mm512_castps512_ps128(sums));
        _mm_storel_pi((__m64 *)(C + ldc), _mm512_extractf32x4_ps(sums, 1));
        _mm_storel_pi((__m64 *)(C + 2 * ldc), _mm512_extractf32x4_ps(sums, 2));
        _mm_storel_pi((__m64 *)(C + 3 * ldc), _mm512_extractf32x4_ps(sums, 3));
    }
}
#endif

#define REAL float
#define FM(name) name##_f32
#if FM_HAVE_AVX512
#define VEC_T __m512
#define VEC_MASK __mmask16
#define VEC_LANES 16
#define VEC_INDEX __m512i
#define VEC_INDEX_STRIDE(s) _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, \
                                               9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)(s)))
#define VEC_ZERO() _mm512_setzero_ps()
#define VEC_LOAD(p) _mm512_loadu_ps(p)
#define VEC_STORE(p, v) _mm512_storeu_ps((p), (v))
#define VEC_MLOAD(m, p) _mm512_maskz_loadu_ps((m), (p))
#define VEC_MSTORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define VEC_SET1(x) _mm512_set1_ps(x)
#define VEC_FMADD(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VEC_REDUCE_ADD(v) _mm512_reduce_add_ps(v)
#define VEC_REDUCE_4XN(ns, acc, stride, C, ldc) fm_reduce_4xn_f32((ns), (acc), (stride), (C), (ldc))
#define VEC_MGATHER(m, idx, p) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), (m), (idx), (p), 4)
#endif
#include "gemm_direct_impl.inc"
#undef REAL
#undef FM
#if FM_HAVE_AVX512
#undef VEC_T
#undef VEC_MASK
#undef VEC_LANES
#undef VEC_INDEX
#undef VEC_INDEX_STRIDE
#undef VEC_ZERO
#undef VEC_LOAD
#undef VEC_STORE
#undef VEC_MLOAD
#undef VEC_MSTORE
#undef VEC_SET1
#undef VEC_FMADD
#undef VEC_REDUCE_ADD
#undef VEC_REDUCE_4XN
#undef VEC_MGATHER
#endif

#define REAL double
#define FM(name) name##_f64
#if FM_HAVE_AVX512
#define VEC_T __m512d
#define VEC_MASK __mmask8
#define VEC_LANES 8
#define VEC_INDEX __m256i
#define VEC_INDEX_STRIDE(s) _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), \
                                               _mm256_set1_epi32((int)(s)))
#define VEC_ZERO() _mm512_setzero_pd()
#define VEC_LOAD(p) _mm512_loadu_pd(p)
#define VEC_STORE(p, v) _mm512_storeu_pd((p), (v))
#define VEC_MLOAD(m, p) _mm512_maskz_loadu_pd((m), (p))
#define VEC_MSTORE(p, m, v) _mm512_mask_storeu_pd((p), (m), (v))
#define VEC_SET1(x) _mm512_set1_pd(x)
#define VEC_FMADD(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define VEC_REDUCE_ADD(v) _mm512_reduce_add_pd(v)
#define VEC_MGATHER(m, idx, p) _mm512_mask_i32gather_pd(_mm512_setzero_pd(), (m), (idx), (p), 8)
#endif
#include "gemm_direct_impl.inc"
#undef REAL
#undef FM
