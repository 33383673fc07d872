/* exp, sigmoid and tanh written so that GCC vectorises the loops that call them.
 *
 * libm's exp and tanh are calls, one element at a time: the 784-500-500-10 network with
 * tanh layers took 12.2 ms a step at batch 512 against 7.0 ms with relu, 0.65x PyTorch
 * (which vectorises them); 8.2 ms with these (benchmarks/RESULTS.md, session 14).  They
 * are branch-free (both sides of every choice are computed and one is selected), call
 * nothing and inline, so a loop `a[j] = fm_vtanh_f32(a[j])` becomes 16 lanes per
 * instruction in the AVX-512 clone, 8 in the AVX2 one and 4 in the baseline.
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
 * one division.  P and Q are near-minimax
 * polynomials (mpmath.chebyfit of (exp(r) - 1 - r) / r^2 on [-ln 2 / 2, ln 2 / 2] and of
 * (tanh(x) / x - 1) / x^2 in s on [0, 0.625^2]); csrc/vmath_fit.py prints them. */
#ifndef FM_VMATH_H
#define FM_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FM_VMATH_INLINE static inline __attribute__((always_inline))

/* ---- float ---------------------------------------------------------------------------- */

/* 2^k for k in [-126, 127], from the exponent bits */
FM_VMATH_INLINE float fm_pow2i_f32(int32_t k)
{
    const int32_t bits = (k + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

FM_VMATH_INLINE float fm_vexp_f32(float x)
{
    const float hi = 88.7228394f;     /* exp(hi) rounds to inf (FLT_MAX ~ exp(88.72284)) */
    const float lo = -103.972084f;    /* exp(lo) rounds to 0 (half the least subnormal) */
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    xc = x == x ? xc : 0.0f;          /* a NaN computes on 0 and is put back at the end */
    const float shifter = 12582912.0f;                    /* 1.5 * 2^23: rounds to integer */
    const float kf = (xc * 1.44269504f + shifter) - shifter;  /* round(x / ln 2) */
    const int32_t k = (int32_t)kf;
    float r = xc - kf * 0.693359375f;                     /* ln 2 = 0.693359375 ... */
    r = r - kf * -2.12194440e-4f;                         /* ... - 2.12194440e-4 */
    float p = 1.98909809e-4f;
    p = p * r + 1.3933641e-3f;
    p = p * r + 8.33331093e-3f;
    p = p * r + 4.1666465e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 5.00000001e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t k1 = k / 2;
    float y = p * fm_pow2i_f32(k1) * fm_pow2i_f32(k - k1);
    y = x > hi ? (float)INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x == x ? y : x;
}

FM_VMATH_INLINE float fm_vsigmoid_f32(float x)
{
    const float e = fm_vexp_f32(x < 0 ? x : -x);   /* exp(-|x|), in (0, 1] */
    const float num = x >= 0 ? 1.0f : (x < 0 ? e : x);   /* the last: NaN */
    return num / (1.0f + e);
}

FM_VMATH_INLINE float fm_vtanh_f32(float x)
{
    const float ax = x < 0 ? -x : x;
    const float s = ax * ax;
    float q = -6.09671417e-3f;
    q = q * s + 2.0997179e-2f;
    q = q * s + -5.38509096e-2f;
    q = q * s + 1.33327697e-1f;
    q = q * s + -3.33333289e-1f;
    const float small = ax + ax * s * q;
    const float large = 1.0f - 2.0f / (fm_vexp_f32(2.0f * ax) + 1.0f);
    return copysignf(ax < 0.625f ? small : large, x);  /* a NaN: large, which is NaN */
}

/* ---- double --------------------------------------------------------------------------- */

/* 2^k for k in [-1022, 1023] */
FM_VMATH_INLINE double fm_pow2i_f64(int32_t k)
{
    const int64_t bits = (int64_t)(k + 1023) << 52;
    double f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

FM_VMATH_INLINE double fm_vexp_f64(double x)
{
    const double hi = 709.782712893384;     /* exp(hi) rounds to inf */
    const double lo = -745.1332191019412;   /* exp(lo) rounds to 0 */
    double xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    xc = x == x ? xc : 0.0;
    const double shifter = 6755399441055744.0;             /* 1.5 * 2^52 */
    const double kf = (xc * 1.4426950408889634 + shifter) - shifter;
    const int32_t k = (int32_t)kf;
    double r = xc - kf * 6.93147180369123816490e-01;      /* ln 2, high 32 bits */
    r = r - kf * 1.90821492927058770002e-10;              /* ln 2, the rest */
    double p = 2.0914679376583935e-9;
    p = p * r + 2.5105206373957011e-8;
    p = p * r + 2.7557273661348636e-7;
    p = p * r + 2.7557255425746434e-6;
    p = p * r + 2.4801587325533364e-5;
    p = p * r + 1.9841269874800492e-4;
    p = p * r + 1.3888888888883752e-3;
    p = p * r + 8.3333333333261409e-3;
    p = p * r + 4.166666666666667e-2;
    p = p * r + 1.6666666666666671e-1;
    p = p * r + 5.0e-1;
    p = p * (r * r) + r + 1.0;
    const int32_t k1 = k / 2;
    double y = p * fm_pow2i_f64(k1) * fm_pow2i_f64(k - k1);
    y = x > hi ? (double)INFINITY : y;
    y = x < lo ? 0.0 : y;
    return x == x ? y : x;
}

FM_VMATH_INLINE double fm_vsigmoid_f64(double x)
{
    const double e = fm_vexp_f64(x < 0 ? x : -x);
    const double num = x >= 0 ? 1.0 : (x < 0 ? e : x);   /* the last: NaN */
    return num / (1.0 + e);
}

FM_VMATH_INLINE double fm_vtanh_f64(double x)
{
    const double ax = x < 0 ? -x : x;
    const double s = ax * ax;
    double q = 6.4851634827931131e-6;
    q = q * s + -3.12011014257974e-5;
    q = q * s + 9.2571161295567683e-5;
    q = q * s + -2.375906496055562e-4;
    q = q * s + 5.8966065777570433e-4;
    q = q * s + -1.4557754120478055e-3;
    q = q * s + 3.5921217511549623e-3;
    q = q * s + -8.8632351032408779e-3;
    q = q * s + 2.1869488519008306e-2;
    q = q * s + -5.3968253967896992e-2;
    q = q * s + 1.3333333333333042e-1;
    q = q * s + -3.3333333333333333e-1;
    const double small = ax + ax * s * q;
    const double large = 1.0 - 2.0 / (fm_vexp_f64(2.0 * ax) + 1.0);
    return copysign(ax < 0.625 ? small : large, x);
}

#endif
