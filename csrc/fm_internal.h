/* Internal helpers shared by the kernel files (not part of the public header). */
#ifndef FM_INTERNAL_H
#define FM_INTERNAL_H

#include <tgmath.h>   /* exp, log, tanh, erf... dispatch on float vs double */
#include <float.h>
#include <string.h>
#include "fastmlp.h"
#include "vmath.h"   /* exp, tanh, sigmoid, expm1, log1p, erf, Phi that vectorise */

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elementwise loops go parallel only above this many elements.  Below it the thread
 * start-up costs more than the loop (tiny networks must stay single-threaded), and --
 * measured on 2 cores -- OpenMP workers spin-waiting after a region compete with BLAS's
 * own threads in the next matrix product (2 threads were up to 20x slower than 1 with a
 * 65536 threshold on a loaded machine).  At MLP sizes the elementwise work is a few per
 * cent of a step, so BLAS keeps the cores. */
#define FM_PARALLEL_MIN_ELEMENTS (1 << 20)

/* Wider SIMD without -march=native: compile hot loops for several targets and let
 * the loader pick (GCC function multiversioning, x86-64 Linux only).
 *
 * FM_SIMD_CLONES is the highest x86-64 feature level compiled: 4 = clones for v4
 * (AVX-512) and v3 (AVX2 + FMA) beside the baseline "default" (a CPU-model clone such as
 * "arch=haswell" would need that model), plus the AVX-512 direct products of
 * gemm_direct.c; 3 = the v3 clone and the baseline only, no AVX-512 code at all; 0 = the
 * baseline only.  Builds for users keep 4 (the loader picks what the CPU runs); 3 and 0
 * (setup.py: FASTMLP_SIMD=x86-64-v3 / baseline) make THIS machine run the code an AVX2-only
 * or a pre-AVX2 CPU would, so that CI tests those paths.  Other compilers and platforms
 * get 0, as does FASTMLP_NO_MULTIVERSION. */
#ifndef FASTMLP_SIMD_CLONES
#define FASTMLP_SIMD_CLONES 4
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(FASTMLP_NO_MULTIVERSION)
#define FM_SIMD_CLONES FASTMLP_SIMD_CLONES
#else
#define FM_SIMD_CLONES 0
#endif
#if FM_SIMD_CLONES >= 4
#define FM_MULTIVERSION \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif FM_SIMD_CLONES == 3
#define FM_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#elif FM_SIMD_CLONES == 0
#define FM_MULTIVERSION
#else
#error "FASTMLP_SIMD_CLONES must be 4, 3 or 0"
#endif

/* FM_HAVE_AVX512: the explicit AVX-512 kernels (gemm_direct.c, zero_skip.c) are compiled,
 * each function with the target attribute FM_AVX512 and called only where
 * fm_direct_available() says the CPU runs them (runtime dispatch, no -march flags). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(FASTMLP_NO_MULTIVERSION) && FASTMLP_SIMD_CLONES >= 4
#define FM_HAVE_AVX512 1
#include <immintrin.h>
#define FM_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#define FM_AVX512_INLINE static inline __attribute__((always_inline)) FM_AVX512
/* gemm_direct_impl.inc: the sum of a split-K forward's partial products (and its bias and
 * activation) over thread t's rows, inside the product's parallel region */
void split_k_sum_f32(int64_t M, int64_t N, const float *bias, int act, float *C,
                     const float *partial, int t, int nt);
void split_k_sum_f64(int64_t M, int64_t N, const double *bias, int act, double *C,
                     const double *partial, int t, int nt);
#else
#define FM_HAVE_AVX512 0
#endif

/* Denormal numbers (backends/base.py): each template that uses these defines REAL and
 * REAL_MIN_NORMAL (FLT_MIN / DBL_MIN).  FM_ZERO_BELOW(x, t): x, or 0 when |x| < t
 * (branch-free, vectorises; NaN and inf pass through).  FM_NORMAL_OVER(c): the smallest
 * normal number over c > 0, computed in double and rounded to REAL: a term c x is denormal
 * (or 0) where |x| is below it. */
#define FM_ZERO_BELOW(x, t) (fabs(x) < (t) ? (REAL)0 : (x))
#define FM_NORMAL_OVER(c) ((REAL)((double)REAL_MIN_NORMAL / (double)(c)))

#define FM_USE_THREADS(n_threads, work) ((n_threads) > 1 && (work) >= FM_PARALLEL_MIN_ELEMENTS)

/* FM_FOR_RANGE(n_threads, work, total, lo, hi, CALL): run CALL once over [lo, hi) =
 * [0, total) on this thread, or, when `work` (elements touched) is large enough, once per
 * thread over a contiguous static chunk.  Small work never enters an OpenMP region
 * (entering one costs even with a false if-clause, which the tiny networks would feel on
 * every step). */
#ifdef _OPENMP
#define FM_FOR_RANGE(n_threads, work, total, lo, hi, CALL)                              \
    do {                                                                                \
        const int64_t fm_total_ = (total);                                              \
        if (FM_USE_THREADS(n_threads, (work))) {                                        \
            _Pragma("omp parallel num_threads(n_threads)")                              \
            {                                                                           \
                const int64_t fm_nt_ = omp_get_num_threads();                           \
                const int64_t fm_t_ = omp_get_thread_num();                             \
                const int64_t lo = fm_total_ * fm_t_ / fm_nt_;                          \
                const int64_t hi = fm_total_ * (fm_t_ + 1) / fm_nt_;                    \
                CALL;                                                                   \
            }                                                                           \
        } else {                                                                        \
            const int64_t lo = 0, hi = fm_total_;                                       \
            CALL;                                                                       \
        }                                                                               \
    } while (0)
#else
#define FM_FOR_RANGE(n_threads, work, total, lo, hi, CALL)                              \
    do {                                                                                \
        const int64_t lo = 0, hi = (total);                                             \
        (void)(n_threads);                                                              \
        CALL;                                                                           \
    } while (0)
#endif

#endif
