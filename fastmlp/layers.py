"""Layers: descriptions of a network's parts, compiled by :class:`fastmlp.Model` into
one engine network.  A layer holds no compute; once its model is built it reads and
writes its weights in the model's engine (``get_weights`` / ``set_weights``).
"""

from __future__ import annotations

import math

import numpy as np

from . import activations as _activations
from . import regularizers as _regularizers
from .initializers import INITIALIZERS

__all__ = ["Layer", "Dense", "get"]

#: kernel initialisers a Dense layer accepts (biases always start at zero)
KERNEL_INITIALIZERS = INITIALIZERS


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be >= {minimum}")
    return int(value)


class Layer:
    """Base class of fastmlp layers."""

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string; got {name!r}")
        self.name = name
        self._model = None
        self._index = None   # index among the model's weight layers

    def get_config(self) -> dict:
        """JSON-serialisable constructor arguments."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        """Build the layer from :meth:`get_config`'s output."""
        return cls(**config)


class Dense(Layer):
    """A fully connected layer: ``output = activation(input @ W + b)``.

    Parameters
    ----------
    units : int
        Number of outputs of the layer.
    activation : str, None or a function of :mod:`fastmlp.activations`, default=None
        ``None`` means linear.  See :mod:`fastmlp.activations` for the names.
    input_dim : int, optional
        Width of the input; needed on the first layer unless the model infers it
        from the data at the first ``fit``.
    input_shape : tuple of one int, optional
        Keras spelling of ``input_dim``: ``input_shape=(784,)``.
    use_bias : bool, default=True
    kernel_initializer : str, default="glorot_uniform"
        One of :data:`KERNEL_INITIALIZERS`; seeded by the model's ``seed``.
    kernel_regularizer : Regularizer, str or None
        An L1/L2 penalty on ``W`` (see :mod:`fastmlp.regularizers`).
    dropout : float in [0, 1), default=0.0
        Inverted dropout on this layer's output while training (hidden layers only).
    name : str, optional
        Unique name within the model (default ``"dense"``, ``"dense_1"``, ...).

    Examples
    --------
    >>> from fastmlp import Dense
    >>> Dense(500, "relu", input_dim=784)
    Dense(500, activation='relu', input_dim=784)
    """

    def __init__(self, units, activation=None, *, input_dim=None, input_shape=None,
                 use_bias=True, kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 dropout=0.0, name=None):
        super().__init__(name)
        self.units = _check_int(units, "units", 1)
        self.activation = _activations.get(activation)
        if input_shape is not None:
            shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) \
                else (input_shape,)
            if len(shape) != 1:
                raise ValueError(f"input_shape={input_shape!r}: Dense layers take flat "
                                 "inputs, so give one width such as (784,); flatten images "
                                 "first (X.reshape(len(X), -1))")
            shape = (_check_int(shape[0], "input_shape[0]", 1),)
            if input_dim is not None and _check_int(input_dim, "input_dim", 1) != shape[0]:
                raise ValueError(f"input_dim={input_dim!r} and input_shape={input_shape!r} "
                                 "disagree")
            input_dim = shape[0]
        self.input_dim = None if input_dim is None else _check_int(input_dim, "input_dim", 1)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"use_bias must be True or False; got {use_bias!r}")
        self.use_bias = bool(use_bias)
        if not isinstance(kernel_initializer, str) or \
                kernel_initializer.strip().lower() not in KERNEL_INITIALIZERS:
            raise ValueError(f"kernel_initializer={kernel_initializer!r} is not supported; "
                             f"expected one of {KERNEL_INITIALIZERS}")
        self.kernel_initializer = kernel_initializer.strip().lower()
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer,
                                                                 np.floating)):
            raise TypeError(f"dropout must be a number in [0, 1); got {dropout!r}")
        if not (0.0 <= float(dropout) < 1.0) or math.isnan(float(dropout)):
            raise ValueError(f"dropout={dropout!r} must be in [0, 1)")
        self.dropout = float(dropout)

    # ---- weights (through the model's engine) -------------------------------------
    def _require_model(self):
        model = self._model
        if model is not None and not model.built and model.input_dim is not None:
            model.build()           # as Model.get_weights: the input width is known
        if model is None or not model.built:
            raise ValueError(f"layer {self.name or 'Dense'!r} has no weights yet: add it to a "
                             "Model and build it (give input_dim, or fit once)")
        start = sum(1 + l.use_bias for l in model.layers[:self._index])
        return model, start, start + 1 + self.use_bias

    def get_weights(self):
        """``[W, b]`` (copies; ``[W]`` without bias), ``W`` of shape (fan_in, units)."""
        model, lo, hi = self._require_model()
        return model.get_weights()[lo:hi]

    def set_weights(self, weights):
        """Set ``[W, b]`` (``[W]`` without bias); shapes must match."""
        model, lo, hi = self._require_model()
        current = model.get_weights()
        weights = list(weights)
        expected = [w.shape for w in current[lo:hi]]
        shapes = [np.shape(w) for w in weights]
        if shapes != expected:
            raise ValueError(f"layer {self.name!r} expects weights of shapes {expected}; got "
                             f"{shapes}")
        current[lo:hi] = weights
        model.set_weights(current)

    @property
    def kernel(self):
        """The weight matrix ``W`` (a copy)."""
        return self.get_weights()[0]

    @property
    def bias(self):
        """The bias vector (a copy), or None without bias."""
        w = self.get_weights()
        return w[1] if len(w) == 2 else None

    def count_params(self, input_dim=None) -> int:
        """Number of weights for an input of width ``input_dim`` (default: the layer's)."""
        d = input_dim if input_dim is not None else self.input_dim
        if d is None:
            raise ValueError(f"layer {self.name!r}: the input width is not known yet")
        return int(d) * self.units + (self.units if self.use_bias else 0)

    # ---- serialisation ------------------------------------------------------------------
    def get_config(self):
        reg = self.kernel_regularizer
        return {"units": self.units, "activation": self.activation,
                "input_dim": self.input_dim, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "kernel_regularizer": None if reg is None else reg.get_config(),
                "dropout": self.dropout, "name": self.name}

    def __repr__(self):
        parts = [str(self.units), f"activation={self.activation!r}"]
        if self.input_dim is not None:
            parts.append(f"input_dim={self.input_dim}")
        if not self.use_bias:
            parts.append("use_bias=False")
        if self.kernel_initializer != "glorot_uniform":
            parts.append(f"kernel_initializer={self.kernel_initializer!r}")
        if self.kernel_regularizer is not None:
            parts.append(f"kernel_regularizer={self.kernel_regularizer!r}")
        if self.dropout:
            parts.append(f"dropout={self.dropout:g}")
        return f"Dense({', '.join(parts)})"


_LAYERS = {"Dense": Dense}


def get(identifier):
    """A layer class from its name (``"Dense"``) or the class itself."""
    if isinstance(identifier, type) and issubclass(identifier, Layer):
        return identifier
    if isinstance(identifier, str) and identifier in _LAYERS:
        return _LAYERS[identifier]
    raise ValueError(f"unknown layer {identifier!r}; expected one of {sorted(_LAYERS)}")
