"""Activation names accepted by :class:`fastmlp.Dense` (and the scikit-learn fronts).

The engine computes activations itself; this module maps the names users write to
the engine's canonical names and offers NumPy versions of each function (handy to
check a result by hand, or to pass as ``activation=fastmlp.activations.relu``).

=================  ==========================================  =====================
canonical name     formula                                     also accepted
=================  ==========================================  =====================
``identity``       ``z``                                       ``linear``, ``None``
``relu``           ``max(z, 0)``
``sigmoid``        ``1 / (1 + exp(-z))``                       ``logistic``
``tanh``           ``tanh(z)``
``softmax``        ``exp(z_k) / sum_j exp(z_j)`` (per row)
``leaky_relu``     ``z if z > 0 else 0.2 z``
``elu``            ``z if z > 0 else exp(z) - 1``
``softplus``       ``log(1 + exp(z))``
``gelu``           ``z * Phi(z)`` (exact, with ``erf``)
``exp``            ``exp(z)`` (Poisson outputs)                ``exponential``
=================  ==========================================  =====================

Names are case-insensitive.  ``softmax`` is meant for the output layer.

``Phi`` is the standard normal distribution function, ``(1 + erf(z / sqrt 2)) / 2``,
computed as ``erfc(-z / sqrt 2) / 2`` so that gelu keeps its relative accuracy for negative
``z`` too.  On the CPU every activation runs vectorised (``csrc/vmath.h``: tanh, sigmoid,
exp, elu, softplus and gelu within a few ulps of the correctly rounded result; the README
and ``benchmarks/RESULTS.md`` give the bounds and the speed).
"""

from __future__ import annotations

import numpy as np

from .backends.base import ACTIVATION_ALIASES, ACTIVATIONS, canonical_activation

__all__ = ["ACTIVATIONS", "ALIASES", "get", "serialize"] + list(ACTIVATIONS)

#: every spelling accepted, mapped to its canonical name
ALIASES = dict({a: a for a in ACTIVATIONS}, **{k: v for k, v in ACTIVATION_ALIASES.items()
                                               if k is not None})


def _numpy_activation(name):
    def activation(z):
        from .backends.array.network import activation_forward
        z = np.asarray(z, dtype=np.result_type(np.asarray(z).dtype, np.float32))
        return activation_forward(np, name, np.atleast_2d(z) if name == "softmax" else z)

    activation.__name__ = activation.__qualname__ = name
    activation.__doc__ = f"The ``{name}`` activation, in NumPy (softmax works per row)."
    return activation


identity = _numpy_activation("identity")
relu = _numpy_activation("relu")
sigmoid = _numpy_activation("sigmoid")
tanh = _numpy_activation("tanh")
softmax = _numpy_activation("softmax")
leaky_relu = _numpy_activation("leaky_relu")
elu = _numpy_activation("elu")
softplus = _numpy_activation("softplus")
gelu = _numpy_activation("gelu")
exp = _numpy_activation("exp")
linear = identity
logistic = sigmoid
exponential = exp

_FUNCTIONS = {f: name for name, f in (
    (n, globals()[n]) for n in ACTIVATIONS)}


def get(identifier) -> str:
    """The canonical activation name for ``identifier``.

    Parameters
    ----------
    identifier : str, None or one of this module's functions
        ``None`` means linear (identity), as in Keras.

    Returns
    -------
    str
        One of :data:`ACTIVATIONS`.

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For a callable that is not one of this module's functions (the engine
        cannot run arbitrary Python functions).
    """
    if callable(identifier):
        if identifier in _FUNCTIONS:
            return _FUNCTIONS[identifier]
        raise TypeError(f"activation={identifier!r}: custom activation functions are not "
                        "supported; use a name such as 'relu' or one of "
                        "fastmlp.activations' functions")
    if identifier is not None and not isinstance(identifier, str):
        raise TypeError(f"activation must be a string or None; got {identifier!r}")
    return canonical_activation(identifier)


def serialize(identifier) -> str:
    """Alias of :func:`get` (Keras spelling): the name stored in a saved model."""
    return get(identifier)
