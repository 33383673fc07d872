/* exp, sigmoid and tanh written so that GCC vectorises the loops that call them.
 *
 * libm's exp and tanh are calls, one element at a time: the 784-500-500-10 network with
 * tanh layers took 12.4 ms a step at batch 512 against 7.1 ms with relu, 0.66-0.68x
 * PyTorch (which vectorises them); 7.4 ms with these (benchmarks/RESULTS.md, session
 * 14).  They are branch-free (both sides of every choice are computed and one is
 * selected), call nothing and inline, so a loop `a[j] = fm_vtanh_f32(a[j])` becomes 16
 * lanes per instruction in the AVX-512 clone, 8 in the AVX2 one and 4 in the baseline.
 *
 * Accuracy, in units in the last place of the correctly rounded result (measured over
 * every float32 in [-110, 100] and 10^7 float64 against long double; tests/test_kernels.py
 * checks the bounds 1 / 1.5 / 2.5 on every build): exp 0.99 / 0.97, tanh 1.33 / 1.31,
 * sigmoid 2.40 / 2.30 (float32 / float64) -- libm's are within 1.  Special values as libm:
 * NaN -> NaN, exp(+-inf) = inf / 0, exp overflowing to inf and underflowing through the
 * subnormals to 0, tanh(+-inf) = +-1, tanh(-0) = -0, sigmoid(+-inf) = 1 / 0.  The naive
 * reference kernels keep libm.
 *
 * The loops that call these vectorise only with -fno-trapping-math (setup.py): without it
 * GCC will not compute both sides of a select, in case one raised an FP exception.
 *
 * Method.  exp(x) = 2^k exp(r): k = round(x / ln 2), r = x - k ln 2 with ln 2 split in a
 * high part whose products with k are exact and a low part, |r| <= ln(2) / 2, and
 * exp(r) = 1 + r + r^2 P(r).  2^k is built in the exponent bits as two factors (k / 2 and
 * k - k / 2) so that results down in the subnormals (k to -149 / -1074) round once.
 * tanh(|x|) = 1 - 2 / (exp(2|x|) + 1) for |x| >= 0.625, and |x| + |x| s Q(s), s = x^2,
 * below it, where the subtraction would cancel; the sign of x is put back (tanh(-0) = -0).
 * sigmoid(x) = n / (1 + e), e = exp(-|x|) (never overflows), n = 1 for x >= 0 and e below:
 * one division.  P and Q are near-minimax polynomials (mpmath.chebyfit of
 * (exp(r) - 1 - r) / r^2 on [-ln 2 / 2, ln 2 / 2] and of (tanh(x) / x - 1) / x^2 in s on
 * [0, 0.625^2]); csrc/vmath_fit.py prints them.
 *
 * One body for both types (vmath_impl.inc, like the other kernels' templates), instantiated
 * below with each type's constants: fm_vexp_f32 / fm_vexp_f64 and so on. */
#ifndef FM_VMATH_H
#define FM_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FM_VMATH_INLINE static inline __attribute__((always_inline))

/* float: exp(88.7228394) rounds to inf (FLT_MAX ~ exp(88.72284)) and exp(-103.972084) to 0
 * (half the least subnormal); ln 2 = 0.693359375 (9 bits: exact products with k) -
 * 2.12194440e-4; P degree 5, Q degree 4 */
static const float FM_VM_P_F32[] = {1.98909809e-4f, 1.3933641e-3f, 8.33331093e-3f,
                                    4.1666465e-2f, 1.66666667e-1f, 5.00000001e-1f};
static const float FM_VM_Q_F32[] = {-6.09671417e-3f, 2.0997179e-2f, -5.38509096e-2f,
                                    1.33327697e-1f, -3.33333289e-1f};
#define REAL float
#define REAL_BITS int32_t
#define FM(name) name##_f32
#define FM_VM_EXP_HI 88.7228394f
#define FM_VM_EXP_LO -103.972084f
#define FM_VM_LOG2E 1.44269504f
#define FM_VM_LN2_HI 0.693359375f
#define FM_VM_LN2_LO -2.12194440e-4f
#define FM_VM_SHIFTER 12582912.0f           /* 1.5 * 2^23: x + it - it rounds x to integer */
#define FM_VM_MANT_BITS 23
#define FM_VM_COPYSIGN copysignf
#define FM_VM_EXP_BIAS 127
#define FM_VM_P FM_VM_P_F32
#define FM_VM_Q FM_VM_Q_F32
#include "vmath_impl.inc"   /* undefines these parameters */

/* double: the same edges for double; ln 2 in its high 32 bits + the rest; P degree 10,
 * Q degree 11 */
static const double FM_VM_P_F64[] = {
    2.0914679376583935e-9, 2.5105206373957011e-8, 2.7557273661348636e-7,
    2.7557255425746434e-6, 2.4801587325533364e-5, 1.9841269874800492e-4,
    1.3888888888883752e-3, 8.3333333333261409e-3, 4.166666666666667e-2,
    1.6666666666666671e-1, 5.0e-1};
static const double FM_VM_Q_F64[] = {
    6.4851634827931131e-6, -3.12011014257974e-5, 9.2571161295567683e-5,
    -2.375906496055562e-4, 5.8966065777570433e-4, -1.4557754120478055e-3,
    3.5921217511549623e-3, -8.8632351032408779e-3, 2.1869488519008306e-2,
    -5.3968253967896992e-2, 1.3333333333333042e-1, -3.3333333333333333e-1};
#define REAL double
#define REAL_BITS int64_t
#define FM(name) name##_f64
#define FM_VM_EXP_HI 709.782712893384
#define FM_VM_EXP_LO -745.1332191019412
#define FM_VM_LOG2E 1.4426950408889634
#define FM_VM_LN2_HI 6.93147180369123816490e-01
#define FM_VM_LN2_LO 1.90821492927058770002e-10
#define FM_VM_SHIFTER 6755399441055744.0    /* 1.5 * 2^52 */
#define FM_VM_MANT_BITS 52
#define FM_VM_COPYSIGN copysign
#define FM_VM_EXP_BIAS 1023
#define FM_VM_P FM_VM_P_F64
#define FM_VM_Q FM_VM_Q_F64
#include "vmath_impl.inc"   /* undefines these parameters */

#endif
