/* Instantiates gemm_small_impl.inc for float (_f32) and double (_f64), and decides once
 * whether its narrow kernels run here (fm_narrow_available). */
#include "fm_internal.h"

/* The narrow kernels hold rows in 32-byte vectors, native registers only in the
 * x86-64-v3/v4 clones.  Elsewhere (the baseline clone, SSE2; builds without clones, e.g.
 * aarch64's NEON) GCC keeps such vectors in memory, loading and storing every accumulator
 * on every multiply-add: the iris-sized step measured 21.8 us there against 3.0 us in the
 * v3 clone.  There the plain loops below them run instead (auto-vectorised at the native
 * width). */
static int narrow_enabled = -1; /* -1: not decided yet */

int fm_narrow_available(void)
{
    if (narrow_enabled < 0) narrow_enabled = fm_simd_level() >= 3;
    return narrow_enabled;
}

int fm_narrow_set_enabled(int enabled)
{
    const int previous = fm_narrow_available();
    narrow_enabled = enabled < 0 ? -1 : enabled != 0;
    return previous;
}

#define REAL float
#define REAL_INT int32_t
#define FM(name) name##_f32
#include "gemm_small_impl.inc"
#undef REAL
#undef REAL_INT
#undef FM

#define REAL double
#define REAL_INT int64_t
#define FM(name) name##_f64
#include "gemm_small_impl.inc"
#undef REAL
#undef REAL_INT
#undef FM
