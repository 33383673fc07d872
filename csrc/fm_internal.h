/* Internal helpers shared by the kernel files (not part of the public header). */
#ifndef FM_INTERNAL_H
#define FM_INTERNAL_H

#include <tgmath.h>   /* exp, log, tanh, erf... dispatch on float vs double */
#include <float.h>
#include <string.h>
#include "fastmlp.h"

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
 * the loader pick (GCC function multiversioning, x86-64 Linux only). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(FASTMLP_NO_MULTIVERSION)
/* clones for the x86-64 feature levels v4 (AVX-512) and v3 (AVX2 + FMA), chosen at load
 * time by CPU features (a CPU-model clone such as "arch=haswell" would need that model) */
#define FM_MULTIVERSION \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FM_MULTIVERSION
#endif

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
