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

/* Elementwise loops go parallel only above this many elements: below it the thread
 * start-up costs more than the loop (tiny networks must stay single-threaded). */
#define FM_PARALLEL_MIN_ELEMENTS 65536

/* Wider SIMD without -march=native: compile hot loops for several targets and let
 * the loader pick (GCC function multiversioning, x86-64 Linux only). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(FASTMLP_NO_MULTIVERSION)
#define FM_MULTIVERSION __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define FM_MULTIVERSION
#endif

#define FM_USE_THREADS(n_threads, work) ((n_threads) > 1 && (work) >= FM_PARALLEL_MIN_ELEMENTS)

#endif
