"""Weight penalties for :class:`fastmlp.Dense` (``kernel_regularizer=``), as in Keras.

A regularizer adds ``l1 * sum(|W|) + l2 * sum(W ** 2)`` to the loss of every batch
(Keras' convention: not divided by the batch size; biases are never penalised).
The engine applies it inside its epoch loop; these objects only carry the numbers.

Examples
--------
>>> from fastmlp import Dense, regularizers
>>> layer = Dense(64, "relu", kernel_regularizer=regularizers.l2(1e-4))
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get"]


def _check_factor(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if not (value >= 0.0) or math.isinf(value):
        raise ValueError(f"{name}={value!r} must be finite and >= 0")
    return value


class Regularizer:
    """An L1 and/or L2 penalty on a layer's weight matrix.

    Parameters
    ----------
    l1 : float, default=0.0
        Factor of ``sum(|W|)``.
    l2 : float, default=0.0
        Factor of ``sum(W ** 2)``.
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check_factor(l1, "l1")
        self.l2 = _check_factor(l2, "l2")

    def __call__(self, weights):
        """The penalty of ``weights`` (a NumPy array), as Keras' regularizers return it."""
        W = np.asarray(weights, dtype=np.float64)
        return self.l1 * float(np.abs(W).sum()) + self.l2 * float((W * W).sum())

    def get_config(self):
        """A JSON-serialisable dict that :func:`get` turns back into this regularizer."""
        return {"l1": self.l1, "l2": self.l2}

    @classmethod
    def from_config(cls, config):
        """Build a regularizer from :meth:`get_config`'s output."""
        return Regularizer(**config)

    def __eq__(self, other):
        return isinstance(other, Regularizer) and (self.l1, self.l2) == (other.l1, other.l2)

    def __repr__(self):
        parts = [f"l1={self.l1:g}"] if self.l1 else []
        parts += [f"l2={self.l2:g}"] if self.l2 or not self.l1 else []
        return f"Regularizer({', '.join(parts)})"


class L1(Regularizer):
    """``l1 * sum(|W|)`` (Keras ``L1``; default factor 0.01)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1, l2=0.0)


class L2(Regularizer):
    """``l2 * sum(W ** 2)`` (Keras ``L2``; default factor 0.01)."""

    def __init__(self, l2=0.01):
        super().__init__(l1=0.0, l2=l2)


class L1L2(Regularizer):
    """``l1 * sum(|W|) + l2 * sum(W ** 2)`` (Keras ``L1L2``; defaults 0)."""

    def __init__(self, l1=0.0, l2=0.0):
        super().__init__(l1=l1, l2=l2)


def l1(l1=0.01):  # noqa: D103 - documented below
    return L1(l1)


def l2(l2=0.01):  # noqa: D103
    return L2(l2)


def l1_l2(l1=0.01, l2=0.01):  # noqa: D103
    return L1L2(l1=l1, l2=l2)


l1.__doc__ = """An L1 penalty ``l1 * sum(|W|)``.

Parameters
----------
l1 : float, default=0.01

Returns
-------
Regularizer
"""
l2.__doc__ = """An L2 penalty ``l2 * sum(W ** 2)`` (the usual "weight decay").

Parameters
----------
l2 : float, default=0.01

Returns
-------
Regularizer
"""
l1_l2.__doc__ = """Both penalties: ``l1 * sum(|W|) + l2 * sum(W ** 2)``.

Parameters
----------
l1, l2 : float, default=0.01

Returns
-------
Regularizer
"""


def get(identifier):
    """Turn ``None``, a name ("l1", "l2", "l1_l2"), a config dict or a
    :class:`Regularizer` into a Regularizer (or None).

    Raises
    ------
    ValueError, TypeError
        For anything else.
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        makers = {"l1": l1, "l2": l2, "l1_l2": l1_l2, "l1l2": l1_l2}
        key = identifier.strip().lower()
        if key not in makers:
            raise ValueError(f"kernel_regularizer={identifier!r} is not known; expected one "
                             f"of {sorted(makers)} or a fastmlp.regularizers object")
        return makers[key]()
    if isinstance(identifier, dict):
        return Regularizer.from_config(identifier)
    raise TypeError("kernel_regularizer must be None, 'l1', 'l2', 'l1_l2' or a "
                    f"fastmlp.regularizers.Regularizer; got {identifier!r}")
