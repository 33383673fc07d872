/* exp, sigmoid, tanh, expm1, log1p, erf and the normal distribution written so that GCC
 * vectorises the loops that call them.
 *
 * libm's functions are calls, one element at a time: the 784-500-500-10 network with tanh
 * layers took 12.4 ms a step at batch 512 against 7.1 ms with relu, 0.66-0.68x PyTorch
 * (which vectorises them); 7.4 ms with these (benchmarks/RESULTS.md, session 14); gelu,
 * softplus and elu layers ran at 0.53-0.57x, 0.54-0.76x and 0.74-0.94x PyTorch, and
 * 1.04x, 1.09x and 1.14x with them (session 15).  They are branch-free (both sides of every
 * choice are computed and one is selected), call nothing and inline, so a loop
 * `a[j] = fm_vtanh_f32(a[j])` becomes 16 lanes per instruction in the AVX-512 clone, 8 in
 * the AVX2 one and 4 in the baseline.
 *
 * Accuracy, in units in the last place of the correctly rounded result (float32: measured
 * over every float32 of the functions' ranges against float64; float64: 10^7 values against
 * long double, or 18,000 against mpmath; tests/test_kernels.py checks the bounds on every
 * build): exp 0.99 / 0.97, tanh 1.33 / 1.31, sigmoid 2.40 / 2.30, expm1 1.44 / 1.09,
 * log1p 0.86 / 0.75, erf 1.33 / 0.99, the normal distribution function Phi 6.14 / 4.24 and
 * exp(-z^2 / 2) 1.14 / 0.98 (float32 / float64; with FMA contraction, as the AVX2 and
 * AVX-512 clones compile them: the baseline clone's float32 Phi reaches 6.65, simulated)
 * -- libm's are within 1.  Special values as libm: NaN -> NaN, exp(+-inf) = inf / 0, exp
 * overflowing to inf and underflowing through the subnormals to 0, tanh(+-inf) = +-1,
 * tanh(-0) = -0, sigmoid(+-inf) = 1 / 0, expm1(-inf) = -1, log1p(-1) = -inf and below it
 * NaN, erf(+-inf) = +-1, and -0 kept by the odd ones.  The naive reference kernels keep
 * libm.
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
 * one division.  expm1 reuses exp's reduction and P, adding 2^k - 1 (exact) first;
 * log1p is fdlibm's method (L below); erf is x + x B(x^2) below 1 and 1 - erfc above,
 * erfc(x) = t exp(-x^2) G(t), t = 1 / (1 + x / 2), with exp(-x^2) from an exact split of x^2;
 * Phi(z) takes erfc in its lower tail, where (1 + erf) / 2 cancels.  P, Q, L, B and G are
 * near-minimax polynomials (mpmath.chebyfit; csrc/vmath_fit.py prints them and their ranges).
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
/* L degree 3 (log), B degree 6 (erf below 1), G degree 10 (erfc from 1) */
static const float FM_VM_L_F32[] = {2.33304672e-1f, 2.85508208e-1f, 4.00001218e-1f,
                                    6.66666666e-1f};
static const float FM_VM_B_F32[] = {7.87587506e-5f, -8.01686429e-4f, 5.18908742e-3f,
                                    -2.6854212e-2f, 1.12835947e-1f, -3.76126267e-1f,
                                    1.28379166e-1f};
static const float FM_VM_G_F32[] = {-1.15414566e-2f, -4.09103817e-2f, 2.01692413e-1f,
                                    -2.11350169e-1f, 9.43370365e-3f, -2.10136227e-2f,
                                    8.62518483e-2f, 1.76093401e-1f, 2.46842353e-1f,
                                    2.82094633e-1f, 2.82094792e-1f};
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
#define FM_VM_L FM_VM_L_F32
#define FM_VM_B FM_VM_B_F32
#define FM_VM_G FM_VM_G_F32
#define FM_VM_EXPM1_HI 16.0f             /* k <= 23: 2^k - 1 exact; e^16 > 2^23 */
#define FM_VM_EXPM1_LO -18.0f            /* expm1 rounds to -1 below -17.33 */
#define FM_VM_SQRTH_BITS 0x3f3504f3      /* sqrt(1/2) */
#define FM_VM_SQUARE_SPLIT_MASK 0xfff    /* 12 significant bits left: h^2 exact */
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
/* L degree 7, B degree 12, G degree 22 */
static const double FM_VM_L_F64[] = {
    1.3086626147840102e-1, 1.3268773138656885e-1, 1.5386239702814658e-1,
    1.8181795640132906e-1, 2.2222222391713917e-1, 2.8571428570803612e-1,
    4.0000000000000877e-1, 6.6666666666666666e-1};
static const double FM_VM_B_F64[] = {
    5.9571761477489114e-11, -1.1372848856791674e-9, 1.4659775274047436e-8,
    -1.6350312701054695e-7, 1.6461000484121368e-6, -1.4925595266831182e-5,
    1.2055331111642711e-4, -8.5483269808337899e-4, 5.2239776248180145e-3,
    -2.6866170645076793e-2, 1.1283791670954879e-1, -3.7612638903183748e-1,
    1.2837916709551257e-1};
static const double FM_VM_G_F64[] = {
    3.0017985460766349e-1, -1.9516308027552798, 5.4667222313345667,
    -8.1847946441484645, 5.8774101914173806, 1.0626581151237917,
    -6.7328341860738709, 7.0867746189286718, -4.2108920106994053,
    1.8102785683419979, -7.0217369046557969e-1, 1.4852413340403471e-1,
    2.3317660570193318e-2, 5.4265945793881815e-2, -4.3186744198255224e-3,
    -5.3397827233334451e-2, -5.6752445288383011e-2, -4.4076014142100146e-3,
    8.3746887452452451e-2, 1.7630924492869856e-1, 2.468329428014712e-1,
    2.820947917738807e-1, 2.8209479177387814e-1};
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
#define FM_VM_L FM_VM_L_F64
#define FM_VM_B FM_VM_B_F64
#define FM_VM_G FM_VM_G_F64
#define FM_VM_EXPM1_HI 36.0              /* k <= 52; above, exp(x) - 1 (e^36 ~ 4.3e15) */
#define FM_VM_EXPM1_LO -38.0             /* expm1 rounds to -1 below -37.43 */
#define FM_VM_SQRTH_BITS 0x3fe6a09e667f3bcdLL
#define FM_VM_SQUARE_SPLIT_MASK 0x7ffffffLL   /* 26 significant bits left */
#include "vmath_impl.inc"   /* undefines these parameters */

#endif
