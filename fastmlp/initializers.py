"""Seeded weight initialisers, shared by every backend (run once per fit, in NumPy).

``sklearn_glorot_uniform`` reproduces scikit-learn's MLP initialisation exactly
(draw order, bound factor 2 for a logistic network, 6 otherwise, uniform biases);
the Keras names draw weights with the named distribution and zero biases.
"""

from __future__ import annotations

import numpy as np

INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                "lecun_uniform", "lecun_normal", "zeros")


def _check_random_state(seed):
    from sklearn.utils import check_random_state
    return check_random_state(seed)


def draw_layer(name, fan_in, fan_out, rng, dtype):
    """One ``(fan_in, fan_out)`` weight matrix from initialiser ``name``."""
    if name == "zeros":
        return np.zeros((fan_in, fan_out), dtype=dtype)
    if name in ("glorot_uniform", "glorot_normal"):
        scale = 2.0 / (fan_in + fan_out)
    elif name in ("he_uniform", "he_normal"):
        scale = 2.0 / fan_in
    elif name in ("lecun_uniform", "lecun_normal"):
        scale = 1.0 / fan_in
    else:
        raise ValueError(f"kernel_initializer={name!r} is not known; expected one of "
                         f"{INITIALIZERS}")
    if name.endswith("uniform"):
        limit = np.sqrt(3.0 * scale)
        W = rng.uniform(-limit, limit, (fan_in, fan_out))
    else:  # truncated normal at 2 std, as Keras draws "*_normal" (stddev corrected)
        std = np.sqrt(scale) / 0.87962566103423978
        W = rng.normal(0.0, std, (fan_in, fan_out))
        bad = np.abs(W) > 2 * std
        while bad.any():
            W[bad] = rng.normal(0.0, std, int(bad.sum()))
            bad = np.abs(W) > 2 * std
    return W.astype(dtype, copy=False)


def sklearn_glorot_uniform(layer_sizes, activation, random_state, dtype):
    """``(coefs, intercepts)`` drawn exactly as scikit-learn's ``_init_coef`` does.

    ``random_state`` is a RandomState (consumed in scikit-learn's order).
    """
    coefs, intercepts = [], []
    factor = 2.0 if activation == "logistic" else 6.0
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        W = random_state.uniform(-bound, bound, (fan_in, fan_out))
        b = random_state.uniform(-bound, bound, fan_out)
        coefs.append(W.astype(dtype, copy=False))
        intercepts.append(b.astype(dtype, copy=False))
    return coefs, intercepts


def init_params(spec, kernel_initializers="glorot_uniform", seed=None):
    """A flat parameter vector for ``spec``: weights from the named initialiser(s)
    (one name, or one per layer), zero biases; seeded by ``seed``."""
    rng = _check_random_state(seed)
    n = spec.n_layers
    names = [kernel_initializers] * n if isinstance(kernel_initializers, str) \
        else list(kernel_initializers)
    if len(names) != n:
        raise ValueError(f"expected {n} kernel initialisers; got {len(names)}")
    flat = np.zeros(spec.n_params, dtype=spec.dtype)
    for (w, b, fi, fo), name in zip(spec.layer_offsets(), names):
        flat[w:w + fi * fo] = draw_layer(name, fi, fo, rng, spec.dtype).ravel()
    return flat
