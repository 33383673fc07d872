/* Instantiates losses_impl.inc for float (_f32) and double (_f64). */
#include "fm_internal.h"

#define REAL float
#define FM(name) name##_f32
#define REAL_EPS FLT_EPSILON
#define REAL_MIN_NORMAL FLT_MIN
#include "losses_impl.inc"
#undef REAL
#undef FM
#undef REAL_EPS
#undef REAL_MIN_NORMAL

#define REAL double
#define FM(name) name##_f64
#define REAL_EPS DBL_EPSILON
#define REAL_MIN_NORMAL DBL_MIN
#include "losses_impl.inc"
#undef REAL
#undef FM
#undef REAL_EPS
#undef REAL_MIN_NORMAL
