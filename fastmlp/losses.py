"""Keras loss and metric names, mapped onto the engine's losses.

==================================  ===============================  ==================
Keras name (``compile(loss=...)``)  engine loss, ``loss_scale``      output activation
==================================  ===============================  ==================
``"mse"``, ``"mean_squared_error"`` ``squared_error``, ``2/n_out``   any
``"binary_crossentropy"``           ``binary_crossentropy``,         ``sigmoid``
                                    ``1/n_out``
``"categorical_crossentropy"``      ``categorical_crossentropy``, 1  ``softmax``
``"sparse_categorical_crossentropy"`` the same, integer labels       ``softmax``
``"poisson"``                       ``poisson``, ``1/n_out``         ``exp``
==================================  ===============================  ==================

Every loss is averaged over the rows of a batch, sample weights multiplying each row
(Keras' ``"sum_over_batch_size"``), and over the outputs, so reported values equal
Keras' (the ``poisson`` value is shifted by the data's constant, see
:meth:`LossInfo.offset`, so it reads as Keras' ``mean(p - y log p)``).

Targets: ``categorical_crossentropy`` takes one-hot rows (or integer labels);
``sparse_categorical_crossentropy`` takes integer labels of shape ``(n,)`` or
``(n, 1)``; the others take ``(n, n_outputs)`` (or ``(n,)`` for one output).

Metrics (``compile(metrics=[...])``): ``"accuracy"`` (also ``"acc"``,
``"binary_accuracy"``, ``"categorical_accuracy"``, ``"sparse_categorical_accuracy"``):
argmax match for several outputs, threshold 0.5 for one output; ``"mse"``
(``"mean_squared_error"``) and ``"mae"`` (``"mean_absolute_error"``) averaged over
outputs.  Metrics are weighted by sample weights when given (Keras'
``weighted_metrics``).  The key in the logs is the name as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LOSSES", "METRICS", "LossInfo", "get", "metric_kind", "compute_metrics",
           "prepare_targets", "class_indices"]


@dataclass(frozen=True)
class LossInfo:
    """How a Keras loss name maps onto the engine.

    Attributes
    ----------
    name : str
        The canonical Keras name.
    engine_loss : str
        The :class:`~fastmlp.backends.base.NetworkSpec` loss.
    per_output_mean : bool
        Average over outputs (``loss_scale = factor / n_outputs``).
    factor : float
        Multiplier before the per-output mean (2 for ``mse``: the engine's squared
        error is halved).
    output_activation : str or None
        The output activation the loss needs (None: any).
    sparse : bool
        Targets are integer class labels.
    """

    name: str
    engine_loss: str
    per_output_mean: bool
    factor: float
    output_activation: object
    sparse: bool = False

    def loss_scale(self, n_outputs: int) -> float:
        """The engine ``loss_scale`` for a network with ``n_outputs`` outputs."""
        return self.factor / n_outputs if self.per_output_mean else self.factor

    def offset(self, Y, sample_weight=None) -> float:
        """Constant to subtract from the engine's loss so that it reads as Keras'.

        Only ``poisson`` has one: the engine reports the deviance
        ``y log(y/p) - y + p``; Keras reports ``p - y log p``.  The difference
        ``y log y - y`` does not depend on the weights, so it is computed once per
        data set (weighted mean over rows, mean over outputs).
        """
        if self.name != "poisson":
            return 0.0
        Y = np.asarray(Y, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
        rows = (ylogy - Y).mean(axis=1)
        if sample_weight is None:
            return float(rows.mean())
        return float((np.asarray(sample_weight, np.float64) * rows).sum() / rows.shape[0])


_MSE = LossInfo("mean_squared_error", "squared_error", True, 2.0, None)
_LOSSES = {
    "mse": _MSE,
    "mean_squared_error": _MSE,
    "binary_crossentropy": LossInfo("binary_crossentropy", "binary_crossentropy", True, 1.0,
                                    "sigmoid"),
    "categorical_crossentropy": LossInfo("categorical_crossentropy",
                                         "categorical_crossentropy", False, 1.0, "softmax"),
    "sparse_categorical_crossentropy": LossInfo("sparse_categorical_crossentropy",
                                                "categorical_crossentropy", False, 1.0,
                                                "softmax", sparse=True),
    "poisson": LossInfo("poisson", "poisson", True, 1.0, "exp"),
}
#: every loss name accepted by ``Model.compile``
LOSSES = tuple(_LOSSES)

_METRICS = {
    "accuracy": "accuracy", "acc": "accuracy", "binary_accuracy": "accuracy",
    "categorical_accuracy": "accuracy", "sparse_categorical_accuracy": "accuracy",
    "mse": "mse", "mean_squared_error": "mse",
    "mae": "mae", "mean_absolute_error": "mae",
}
#: every metric name accepted by ``Model.compile``
METRICS = tuple(_METRICS)


def get(identifier) -> LossInfo:
    """The :class:`LossInfo` of a Keras loss name (case-insensitive).

    Raises
    ------
    ValueError
        For an unknown name (custom loss functions are not supported: the engine
        computes the loss inside its epoch loop).
    TypeError
        For anything that is not a string.
    """
    if isinstance(identifier, LossInfo):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"loss must be one of the names {LOSSES}; got {identifier!r} "
                        "(custom loss functions are not supported)")
    key = identifier.strip().lower()
    if key not in _LOSSES:
        raise ValueError(f"loss={identifier!r} is not supported; expected one of {LOSSES}")
    return _LOSSES[key]


def metric_kind(name) -> str:
    """``"accuracy"``, ``"mse"`` or ``"mae"`` for a metric name; ValueError otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"metrics must be names from {METRICS}; got {name!r} (custom "
                        "metric objects are not supported)")
    key = name.strip().lower()
    if key not in _METRICS:
        raise ValueError(f"metric {name!r} is not supported; expected one of {METRICS}")
    return _METRICS[key]


def compute_metrics(P, Y, sample_weight=None, kinds=("accuracy", "mse", "mae")) -> dict:
    """Metrics of predictions ``P`` (n, k) against targets ``Y``, as the engine
    computes them during training.

    ``Y`` is (n, k), or integer labels (n,).  Accuracy is the argmax match for
    several outputs and the 0.5-threshold match for one output; mse/mae are averaged
    over outputs; every mean over rows is weighted by ``sample_weight`` when given.
    """
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y)
    if Y.ndim == 1 and P.shape[1] > 1:
        labels = Y.astype(np.intp)
        correct = P.argmax(axis=1) == labels
        Yd = np.zeros_like(P)
        Yd[np.arange(P.shape[0]), labels] = 1.0
    else:
        Yd = Y.reshape(P.shape).astype(np.float64)
        if P.shape[1] == 1:
            correct = (P[:, 0] > 0.5) == (Yd[:, 0] > 0.5)
        else:
            correct = P.argmax(axis=1) == Yd.argmax(axis=1)
    w = np.ones(P.shape[0]) if sample_weight is None else np.asarray(sample_weight, np.float64)
    total = w.sum()
    R = P - Yd
    values = {"accuracy": lambda: (w * correct).sum() / total,
              "mse": lambda: (w * (R * R).mean(axis=1)).sum() / total,
              "mae": lambda: (w * np.abs(R).mean(axis=1)).sum() / total}
    return {k: float(values[k]()) for k in kinds}


def data_loss_from_predictions(info: LossInfo, P, Y, sample_weight=None):
    """The data loss of predictions ``P`` (n, k) -- what the engine's
    ``compute_loss(include_penalty=False)`` returns, computed from the outputs so that
    one forward pass serves both the loss and the metrics.

    Probabilities are clipped to ``[eps, 1 - eps]`` (``eps`` of P's dtype) before the
    logarithm, as Keras does.  Returns None for ``poisson`` (use the engine).
    """
    if info.engine_loss == "poisson":
        return None
    eps = float(np.finfo(np.asarray(P).dtype).eps)
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y)
    n, k = P.shape
    if Y.ndim == 1 and info.engine_loss == "categorical_crossentropy":
        rows = -np.log(np.clip(P[np.arange(n), Y.astype(np.intp)], eps, 1 - eps))
    else:
        Y = Y.reshape(P.shape).astype(np.float64)
        if info.engine_loss == "squared_error":
            rows = 0.5 * ((P - Y) ** 2).sum(axis=1)
        elif info.engine_loss == "binary_crossentropy":
            Pc = np.clip(P, eps, 1 - eps)
            rows = -(Y * np.log(Pc) + (1 - Y) * np.log(1 - Pc)).sum(axis=1)
        else:
            rows = -(Y * np.log(np.clip(P, eps, 1 - eps))).sum(axis=1)
    if sample_weight is not None:
        rows = rows * np.asarray(sample_weight, dtype=np.float64)
    return info.loss_scale(k) * float(rows.sum()) / n


def prepare_targets(info: LossInfo, y, n_outputs: int, name: str = "y"):
    """Bring ``y`` into the shape the engine expects for loss ``info``.

    Sparse losses get 1-D integer labels (``(n, 1)`` is flattened, whole floats
    accepted); one output accepts ``(n,)``.  Shapes, ranges and NaN are checked
    afterwards by :func:`fastmlp.backends.validate_training_data`.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers (encode labels as integers first); got "
                        f"dtype {y.dtype}")
    if info.sparse:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"loss={info.name!r} expects integer class labels of shape "
                             f"(n_samples,); {name} has shape {y.shape}. For one-hot "
                             "targets use loss='categorical_crossentropy'")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.floor(y)):
                raise ValueError(f"{name} must hold whole-number class labels for "
                                 f"loss={info.name!r}")
        return y.astype(np.intp)
    if info.engine_loss == "categorical_crossentropy" and y.ndim == 1:
        if y.dtype.kind == "f" and not np.all(y == np.floor(y)):
            raise ValueError(f"{name} is 1-D, so it must hold integer class labels for "
                             f"loss={info.name!r}; pass one-hot rows of shape "
                             f"(n_samples, {n_outputs}) otherwise")
        return y.astype(np.intp)
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    return y


def class_indices(y) -> np.ndarray:
    """The class of each row, as Keras derives it for ``class_weight``: the argmax of
    one-hot rows, else the rounded value."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return np.rint(y.reshape(-1)).astype(np.int64)
