/* Instantiates gather_impl.inc for float (_f32) and double (_f64). */
#include "fm_internal.h"

#define REAL float
#define FM(name) name##_f32
#include "gather_impl.inc"
#undef REAL
#undef FM

#define REAL double
#define FM(name) name##_f64
#include "gather_impl.inc"
#undef REAL
#undef FM
