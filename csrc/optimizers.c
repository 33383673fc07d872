/* Instantiates optimizers_impl.inc for float (_f32) and double (_f64). */
#include "fm_internal.h"

#define REAL float
#define FM(name) name##_f32
#define REAL_MIN_NORMAL FLT_MIN
#include "optimizers_impl.inc"
#undef REAL
#undef FM
#undef REAL_MIN_NORMAL

#define REAL double
#define FM(name) name##_f64
#define REAL_MIN_NORMAL DBL_MIN
#include "optimizers_impl.inc"
#undef REAL
#undef FM
#undef REAL_MIN_NORMAL
