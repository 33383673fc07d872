/* Counter-based random numbers for dropout: deterministic, thread-safe, no state. */
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
