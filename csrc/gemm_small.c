/* Instantiates gemm_small_impl.inc for float (_f32) and double (_f64). */
#include "fm_internal.h"

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
