/* Counter-based random numbers for dropout: deterministic, thread-safe, no state; the
 * epoch permutation; and what the build compiled (OpenMP, the SIMD levels). */
#include "fm_internal.h"

#define FM_GOLDEN 0x9E3779B97F4A7C15ULL

uint64_t fm_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t fm_dropout_stream(uint64_t seed, uint64_t step, uint64_t layer)
{
    return fm_mix64(seed + FM_GOLDEN * (step * 64u + layer + 1u));
}

double fm_uniform(uint64_t stream, uint64_t e)
{
    return (double)(fm_mix64(stream + e * FM_GOLDEN) >> 11) * (1.0 / 9007199254740992.0);
}

int fm_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

void fm_thread_barrier(void)
{
#ifdef _OPENMP
#pragma omp barrier
#endif
}

/* Shared counters of a parallel region's work (the feature split's pieces of each thread's
 * features, _network.pyx): fm_claim returns *counter and adds 1, as one atomic step (so each
 * value goes to one thread); fm_count_done adds 1 after a flush (what the caller wrote
 * before it is visible to a thread that reads the new count); fm_count_read reads it, then
 * flushes (the writes it counts are then visible here).  OpenMP 2.0 (MSVC) has no atomic
 * capture or read: a critical section and a volatile read there. */
int64_t fm_claim(int64_t *counter)
{
    int64_t v;
#if defined(_OPENMP) && _OPENMP >= 201107
#pragma omp atomic capture
    { v = *counter; *counter += 1; }
#elif defined(_OPENMP)
#pragma omp critical(fm_claim)
    { v = *counter; *counter += 1; }
#else
    v = (*counter)++;
#endif
    return v;
}

void fm_count_done(int64_t *counter)
{
#ifdef _OPENMP
#pragma omp flush
#pragma omp atomic
    *counter += 1;
#else
    *counter += 1;
#endif
}

int64_t fm_count_read(int64_t *counter)
{
    int64_t v;
#if defined(_OPENMP) && _OPENMP >= 201107
#pragma omp atomic read
    v = *counter;
#else
    v = *(volatile int64_t *)counter;
#endif
#ifdef _OPENMP
#pragma omp flush
#endif
    return v;
}

int fm_team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

int fm_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The x86-64 feature level whose clones of the FM_MULTIVERSION kernels run here, as the
 * loader chose it (4, 3, 0, or -1 if the resolved address is no clone's): fm_simd_probe is
 * multiversioned like every kernel, and the address its ifunc resolved to is compared with
 * the address of each clone (named by the symbols GCC gives clones; they are local to this
 * file, so this works in a stripped library too).  0 is the "default" clone (baseline,
 * SSE2), and the only code of a build without clones. */
int fm_simd_probe(int x);
FM_MULTIVERSION int fm_simd_probe(int x) { return x + 1; }

#if FM_SIMD_CLONES >= 3
extern int fm_simd_probe_default(int) __asm__("fm_simd_probe.default");
extern int fm_simd_probe_v3(int) __asm__("fm_simd_probe.arch_x86_64_v3");
#endif
#if FM_SIMD_CLONES >= 4
extern int fm_simd_probe_v4(int) __asm__("fm_simd_probe.arch_x86_64_v4");
#endif

int fm_simd_level(void)
{
    int (*volatile resolved)(int) = fm_simd_probe;
#if FM_SIMD_CLONES >= 4
    if (resolved == fm_simd_probe_v4) return 4;
#endif
#if FM_SIMD_CLONES >= 3
    if (resolved == fm_simd_probe_v3) return 3;
    if (resolved != fm_simd_probe_default) return -1;
#endif
    (void)resolved;
    return 0;
}

/* The highest level compiled into this build (4, 3 or 0; see fm_internal.h). */
int fm_simd_clones(void)
{
    return FM_SIMD_CLONES;
}

/* Row order of a shuffled epoch: Fisher-Yates driven by splitmix64 keyed by
 * (seed, epoch); j is drawn uniformly in [0, i] by Lemire's multiply-shift with rejection.
 * Every backend uses this one function, so all of them visit rows in the same order. */
void fm_permutation(int64_t n, uint64_t seed, uint64_t epoch, int64_t *out)
{
    uint64_t state = fm_mix64(seed ^ fm_mix64(epoch + FM_GOLDEN));
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        const uint64_t range = (uint64_t)i + 1;
        state += FM_GOLDEN;
        __uint128_t m = (__uint128_t)fm_mix64(state) * range;
        if ((uint64_t)m < range) { /* rare: reject the biased low end (one division) */
            const uint64_t threshold = (uint64_t)(-range) % range;
            while ((uint64_t)m < threshold) {
                state += FM_GOLDEN;
                m = (__uint128_t)fm_mix64(state) * range;
            }
        }
        const int64_t j = (int64_t)(m >> 64);
        const int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}
