"""Print the polynomial coefficients of csrc/vmath.h (a development script, not part of the
package): near-minimax fits by mpmath.chebyfit, at 60 digits, rounded for the C source.

    python csrc/vmath_fit.py

P (exp):  exp(r) = 1 + r + r^2 P(r),        r in [-ln 2 / 2, ln 2 / 2]
Q (tanh): tanh(x) = x + x s Q(s), s = x^2,  |x| < 0.625
L (log):  log(1 + f) = f - f^2/2 + s (f^2/2 + z L(z)), s = f / (2 + f), z = s^2,
          1 + f in [sqrt(1/2), sqrt(2)]
B (erf):  erf(x) = x + x B(x^2),             |x| < 1
G (erfc): erfc(x) = t exp(-x^2) G(t),        t = 1 / (1 + x / 2), x >= 1
Degrees: float 5 (P), 4 (Q), 3 (L), 6 (B), 10 (G); double 10, 11, 7, 12, 22: the lowest
whose fitting error is well below half an ulp of the result.  The accuracy of the C
functions themselves is measured by tests/test_kernels.py (test_vector_math_*).
"""
import mpmath as mp

mp.mp.dps = 60
HALF_LN2 = mp.log(2) / 2
TANH_SPLIT = mp.mpf("0.625")
LOG_S_MAX = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)   # s = f / (2 + f) at 1 + f = sqrt(2)
ERF_SPLIT = mp.mpf(1)


def p_exp(r):
    return mp.mpf(1) / 2 if r == 0 else (mp.exp(r) - 1 - r) / r ** 2


def q_tanh(s):
    return -mp.mpf(1) / 3 if s == 0 else (mp.tanh(mp.sqrt(s)) / mp.sqrt(s) - 1) / s


def l_log(z):
    s = mp.sqrt(z)
    return mp.mpf(2) / 3 if z == 0 else (2 * mp.atanh(s) - 2 * s) / (s * z)


def b_erf(z):
    return (2 / mp.sqrt(mp.pi) if z == 0 else mp.erf(mp.sqrt(z)) / mp.sqrt(z)) - 1


def g_erfc(t):
    if t == 0:
        return 1 / (2 * mp.sqrt(mp.pi))
    x = 2 * (1 / t - 1)
    return mp.erfc(x) * mp.exp(x * x) / t


def fit(f, a, b, degree, scale=None):
    """Coefficients, highest degree first, and the largest error on 2001 points relative to
    scale(t) (default f(t): B crosses 0, and its error counts relative to 1 + B)."""
    coeffs = mp.chebyfit(f, [a, b], degree + 1)
    points = [a + (b - a) * mp.mpf(i) / 2000 for i in range(2001)]
    scale = scale or f
    return coeffs, max(abs((mp.polyval(coeffs, t) - f(t)) / scale(t)) for t in points)


def main():
    for name, f, a, b, degree, ctype in [
            ("P float", p_exp, -HALF_LN2, HALF_LN2, 5, "float"),
            ("P double", p_exp, -HALF_LN2, HALF_LN2, 10, "double"),
            ("Q float", q_tanh, 0, TANH_SPLIT ** 2, 4, "float"),
            ("Q double", q_tanh, 0, TANH_SPLIT ** 2, 11, "double"),
            ("L float", l_log, 0, LOG_S_MAX ** 2, 3, "float"),
            ("L double", l_log, 0, LOG_S_MAX ** 2, 7, "double"),
            ("B float", b_erf, 0, ERF_SPLIT ** 2, 6, "float"),
            ("B double", b_erf, 0, ERF_SPLIT ** 2, 12, "double"),
            ("G float", g_erfc, 0, 1 / (1 + ERF_SPLIT / 2), 10, "float"),
            ("G double", g_erfc, 0, 1 / (1 + ERF_SPLIT / 2), 22, "double")]:
        coeffs, err = fit(f, a, b, degree, (lambda t: 1 + b_erf(t)) if f is b_erf else None)
        digits, suffix = (9, "f") if ctype == "float" else (17, "")
        text = ", ".join(mp.nstr(c, digits, min_fixed=-1, max_fixed=-1) + suffix
                         for c in coeffs)
        print(f"{name} (degree {degree}, relative error {mp.nstr(err, 3)}):\n    {text}")


if __name__ == "__main__":
    main()
