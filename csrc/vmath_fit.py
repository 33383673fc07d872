"""Print the polynomial coefficients of csrc/vmath.h (a development script, not part of the
package): near-minimax fits by mpmath.chebyfit, at 60 digits, rounded for the C source.

    python csrc/vmath_fit.py

P (exp):  exp(r) = 1 + r + r^2 P(r),        r in [-ln 2 / 2, ln 2 / 2]
Q (tanh): tanh(x) = x + x s Q(s), s = x^2,  |x| < 0.625
Degrees: float 5 (P) and 4 (Q), double 10 and 11, the lowest whose fitting error is well
below half an ulp of the result.  The accuracy of the C functions themselves is measured by
tests/test_kernels.py (test_vector_math_is_within_its_ulp_bound).
"""
import mpmath as mp

mp.mp.dps = 60
HALF_LN2 = mp.log(2) / 2
TANH_SPLIT = mp.mpf("0.625")


def p_exp(r):
    return mp.mpf(1) / 2 if r == 0 else (mp.exp(r) - 1 - r) / r ** 2


def q_tanh(s):
    return -mp.mpf(1) / 3 if s == 0 else (mp.tanh(mp.sqrt(s)) / mp.sqrt(s) - 1) / s


def fit(f, a, b, degree):
    """Coefficients, highest degree first, and the largest relative error on 2001 points."""
    coeffs = mp.chebyfit(f, [a, b], degree + 1)
    points = [a + (b - a) * mp.mpf(i) / 2000 for i in range(2001)]
    return coeffs, max(abs(mp.polyval(coeffs, t) / f(t) - 1) for t in points)


def main():
    for name, f, a, b, degree, ctype in [
            ("P float", p_exp, -HALF_LN2, HALF_LN2, 5, "float"),
            ("P double", p_exp, -HALF_LN2, HALF_LN2, 10, "double"),
            ("Q float", q_tanh, 0, TANH_SPLIT ** 2, 4, "float"),
            ("Q double", q_tanh, 0, TANH_SPLIT ** 2, 11, "double")]:
        coeffs, err = fit(f, a, b, degree)
        digits, suffix = (9, "f") if ctype == "float" else (17, "")
        text = ", ".join(mp.nstr(c, digits, min_fixed=-1, max_fixed=-1) + suffix
                         for c in coeffs)
        print(f"{name} (degree {degree}, relative error {mp.nstr(err, 3)}):\n    {text}")


if __name__ == "__main__":
    main()
