"""Shared machinery of the scikit-learn drop-ins (``fastmlp.MLPClassifier`` and
``fastmlp.MLPRegressor``): parameter checks, the epoch loop and the L-BFGS driver.

Layering: this module decides *what* runs once per fit and once per epoch
(validation, the early-stopping split, the shuffled row order, learning-rate
schedules, stopping rules, warnings) exactly as scikit-learn's
``sklearn/neural_network/_multilayer_perceptron.py`` does; everything inside an
epoch runs in the engine (:mod:`fastmlp.backends`), never batch by batch here.

How scikit-learn's semantics map onto the engine:

* the L2 term ``alpha / 2 * ||W||^2 / sum(sample_weight)`` is
  ``NetworkSpec(l2=alpha / 2, penalty_normalization="per_sample",
  weight_normalization="sum_weights")``;
* the output layer and loss are identity + squared_error, exp + poisson,
  softmax + categorical cross-entropy (integer labels) or logistic + binary
  cross-entropy, whose gradient with respect to the output pre-activation is
  ``p - y`` as in scikit-learn;
* scikit-learn's multi-output squared-error *value* is a mean over outputs while
  its gradient is not divided by the number of outputs: ``loss_`` is reported as
  ``data_loss / n_outputs + penalty`` with the engine trained on the sum;
* SGD (momentum, Nesterov) and Adam (epsilon outside the bias correction) are the
  engine's ``sgd`` and ``adam`` with ``epsilon_style="keras"``; the invscaling and
  adaptive schedules are applied per epoch with ``Network.set_learning_rate``;
* a shuffled epoch visits rows in scikit-learn's own order, drawn from the
  estimator's ``RandomState`` with :func:`sklearn.utils.shuffle`, and the initial
  weights are drawn by :func:`fastmlp.initializers.sklearn_glorot_uniform`, so a
  fit reproduces scikit-learn's to rounding.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils import shuffle as sklearn_shuffle
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, validate_data

from .backends import (DEVICES, _check_weight_values, _raise_nonfinite, make_network,
                       resolve_device, validate_training_data)
from .backends.base import NetworkSpec, OptimizerSpec
from ._threads import resolve_n_threads
from .initializers import sklearn_glorot_uniform

try:  # private helper; scipy >= 1.15 dropped ``iprint``
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # pragma: no cover - other scikit-learn versions
    def _get_additional_lbfgs_options_dict(key, value):
        return {}

_STOCHASTIC_SOLVERS = ("sgd", "adam")

#: scikit-learn's hidden activations
SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
#: hidden activations fastmlp adds (engine activations; see fastmlp.backends.base)
EXTRA_ACTIVATIONS = ("leaky_relu", "elu", "softplus", "gelu")
HIDDEN_ACTIVATIONS = SKLEARN_ACTIVATIONS + EXTRA_ACTIVATIONS

NONFINITE_WEIGHTS_MSG = (
    "Solver produced non-finite parameter weights. The input data may"
    " contain large values and need to be preprocessed."
)

#: elements (rows x features) of a sparse matrix densified at once when predicting
#: (bounded memory)
_SPARSE_PREDICT_ELEMENTS = 1 << 22


def _validate_validation_set(net, X_val, Y_val, sw_val, *, user_given):
    """validate_training_data for a validation set; a user-given one (X_val, y_val) is
    named in the error."""
    try:
        return validate_training_data(net.spec, X_val, Y_val, sw_val, xp=_array_module(net))
    except (ValueError, TypeError) as exc:
        if user_given:
            raise type(exc)(f"X_val/y_val: {exc}") from None
        raise


def _to_host(a):
    """A NumPy array from a NumPy or CuPy array."""
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return get() if get is not None else np.asarray(a)


def _array_module(net):
    """The array module a network computes with (CuPy for device="cuda"): data is
    moved to it once per fit, not once per epoch."""
    return getattr(net, "xp", np)


def _densify(X):
    """Dense C-ordered copy of a scipy.sparse matrix or array; other input as is."""
    if sp.issparse(X):
        return X.toarray(order="C")
    return X


def _cast_finite(X, dtype):
    """Finite (validated) host X in the weights' dtype (a dense X C-contiguous, a
    scipy.sparse one still sparse); values beyond that dtype's range (float64 data for
    weights fitted in float32) raise the ValueError the fronts give for them instead of
    becoming infinities."""
    try:
        with np.errstate(over="raise"):
            return X.astype(dtype) if sp.issparse(X) else np.ascontiguousarray(X, dtype=dtype)
    except FloatingPointError:
        pass
    _raise_nonfinite("X", X.data if sp.issparse(X) else X, dtype, np)   # (no errstate)


class _BaseMLP(BaseEstimator):
    """Base class of fastmlp's MLPClassifier and MLPRegressor (not public).

    Subclasses define ``__init__`` (scikit-learn's signature plus keyword-only
    extras), ``_validate_input``, ``_output_layer``, ``_out_activation_name``,
    ``_score_function``, ``_scoring_targets``, ``_predictions_from_outputs`` and
    ``_validation_targets``.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS)), tuple, list],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        # fastmlp extras
        "device": [StrOptions(set(DEVICES)), None],
        "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1}),
                      None],
        "early_stopping_monitor": [StrOptions({"score", "loss"})],
    }

    # ------------------------------------------------------------------ params
    def _hidden_layer_sizes(self):
        """``hidden_layer_sizes`` as a list of positive ints (ValueError otherwise)."""
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        for s in sizes:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (Real, np.number)) \
                    or not np.isfinite(s) or not float(s).is_integer():
                raise ValueError(f"hidden_layer_sizes must hold whole numbers (units per "
                                 f"hidden layer, e.g. (100,) or (64, 32)); got {sizes}")
        if any(s <= 0 for s in sizes):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % sizes)
        return [int(s) for s in sizes]

    def _hidden_activations(self, n_hidden):
        """One engine-understood activation name per hidden layer."""
        act = self.activation
        if isinstance(act, str):
            return [act] * n_hidden
        acts = list(act)
        if len(acts) != n_hidden:
            raise ValueError(
                f"activation has {len(acts)} entries but there are {n_hidden} hidden "
                "layers; give one activation name per entry of hidden_layer_sizes, or "
                "a single name")
        for a in acts:
            if a not in HIDDEN_ACTIVATIONS:
                raise ValueError(f"activation entry {a!r} is not supported; expected one "
                                 f"of {HIDDEN_ACTIVATIONS}")
        return acts

    def _init_activation_name(self):
        """The activation that picks the Glorot bound factor (2 for logistic, 6 else)."""
        act = self.activation
        if isinstance(act, str):
            return act
        return "logistic" if act and all(a == "logistic" for a in act) else "relu"

    def _dropout_rates(self, n_hidden):
        """Dropout rate per weight layer (the output layer never drops)."""
        rate = self.dropout
        if np.ndim(rate) == 0:
            rate = float(rate)
            if not (0.0 <= rate < 1.0):
                raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")
            if rate > 0 and n_hidden == 0:
                raise ValueError("dropout > 0 needs at least one hidden layer")
            return [rate] * n_hidden + [0.0]
        rates = [float(r) for r in np.asarray(rate, dtype=float).ravel()]
        if len(rates) != n_hidden:
            raise ValueError(f"dropout has {len(rates)} entries; expected one per hidden "
                             f"layer ({n_hidden}) or a single float")
        for r in rates:
            if not (0.0 <= r < 1.0):
                raise ValueError(f"dropout={self.dropout!r}: each rate must be in [0, 1)")
        return rates + [0.0]

    # ----------------------------------------------------------------- engine
    def _network_spec(self, layer_units, dtype, hidden_acts, dropout):
        loss, out_act = self._output_layer()
        return NetworkSpec(
            layer_sizes=tuple(layer_units),
            activations=tuple(hidden_acts) + (out_act,),
            loss=loss,
            dtype=str(np.dtype(dtype)),
            dropout=tuple(dropout),
            l2=float(self.alpha) / 2.0,
            loss_scale=1.0,
            weight_normalization="sum_weights",
            penalty_normalization="per_sample",
        )

    def _get_network(self, spec):
        """The engine for ``spec`` on the current device / thread count (cached).

        When the cached engine does not fit any more (another spec, device or
        thread count) it is replaced; the optimizer state of an unfinished
        ``partial_fit`` sequence moves with it.
        """
        key = (spec, resolve_device(self.device), resolve_n_threads(self.n_threads))
        net = getattr(self, "_net", None)
        if net is not None and getattr(self, "_net_key", None) == key:
            return net
        self._release_network()
        net = make_network(spec, device=key[1], n_threads=key[2])
        opt = getattr(self, "_optimizer", None)
        if opt is not None:
            net.set_optimizer(opt["spec"], reset_state=True)
            state = opt.pop("engine_state", None)
            if state is not None:
                try:
                    net.set_optimizer_state(state)
                except ValueError:  # another parameter layout: state cannot carry over
                    pass
        self._net, self._net_key = net, key
        return net

    def _release_network(self):
        """Drop the cached engine, keeping its optimizer state as NumPy arrays."""
        net = getattr(self, "_net", None)
        opt = getattr(self, "_optimizer", None)
        if net is not None and opt is not None and "engine_state" not in opt:
            opt["engine_state"] = net.get_optimizer_state()
        self._net = None
        self._net_key = None

    def _push_weights(self, net):
        net.set_weights(self.coefs_, self.intercepts_)

    def _pull_weights(self, net):
        """Copy the engine's parameters into ``coefs_`` / ``intercepts_``."""
        coefs, intercepts = self._unflatten(net.get_params(), net.spec)
        self.coefs_, self.intercepts_ = coefs, intercepts

    @staticmethod
    def _unflatten(flat, spec):
        coefs, intercepts = [], []
        for w, b, fi, fo in spec.layer_offsets():
            coefs.append(np.array(flat[w:w + fi * fo]).reshape(fi, fo))
            intercepts.append(np.array(flat[b:b + fo]))
        return coefs, intercepts

    _LOSS_OF_OUTPUT = {"identity": "squared_error", "exp": "poisson",
                       "softmax": "categorical_crossentropy",
                       "logistic": "binary_crossentropy"}

    def _forward_spec(self):
        """The network that ``coefs_``, ``activation`` and ``out_activation_`` describe
        now (scikit-learn also reads ``activation`` at prediction time)."""
        sizes = [self.coefs_[0].shape[0]] + [c.shape[1] for c in self.coefs_]
        hidden = self._hidden_activations(len(self.coefs_) - 1)
        out = self.out_activation_
        dtype = "float32" if self.coefs_[0].dtype == np.float32 else "float64"
        return NetworkSpec(layer_sizes=tuple(sizes),
                           activations=tuple(hidden) + ("sigmoid" if out == "logistic"
                                                        else out,),
                           loss=self._LOSS_OF_OUTPUT[out], dtype=dtype)

    def _prediction_network(self):
        """The engine loaded with the current ``coefs_`` / ``intercepts_``.

        The training engine is reused when it computes the same forward pass
        (its penalty, dropout or loss do not matter for predictions), so that
        alternating ``partial_fit`` and ``predict`` never rebuilds it.
        """
        spec = self._forward_spec()
        net = getattr(self, "_net", None)
        same_place = (net is not None and self._net_key is not None and self._net_key[1:]
                      == (resolve_device(self.device), resolve_n_threads(self.n_threads)))
        if not (same_place and net.spec.layer_sizes == spec.layer_sizes
                and net.spec.activations == spec.activations
                and net.spec.dtype == spec.dtype and all(net.spec.use_bias)):
            net = self._get_network(spec)
        self._push_weights(net)
        return net

    def __getstate__(self):
        state = dict(super().__getstate__())
        net = state.pop("_net", None)
        state["_net_key"] = None
        opt = state.get("_optimizer")
        if opt is not None:
            opt = dict(opt)
            if net is not None and "engine_state" not in opt:
                opt["engine_state"] = net.get_optimizer_state()
            state["_optimizer"] = opt
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._net = None
        self._net_key = None

    # ------------------------------------------------------------------ forward
    def _forward(self, X, check_input=True):
        """Outputs of the last layer for ``X`` (2-D NumPy array)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        net = self._prediction_network()
        dtype = np.dtype(net.spec.dtype)
        xp = _array_module(net)
        # computed in the weights' dtype, returned in the dtype scikit-learn's products
        # give (float64 for float64 or integer X with float32 weights)
        out_dtype = np.result_type(X.dtype, dtype)
        if sp.issparse(X):
            X = X.tocsr()
            step = max(1, _SPARSE_PREDICT_ELEMENTS // max(1, X.shape[1]))
            parts = [self._forward_dense(net, X[lo:lo + step].toarray(), dtype, xp)
                     for lo in range(0, X.shape[0], step)]
            return np.concatenate(parts, axis=0).astype(out_dtype, copy=False)
        return self._forward_dense(net, X, dtype, xp).astype(out_dtype, copy=False)

    @staticmethod
    def _forward_dense(net, X, dtype, xp):
        return _to_host(net.forward(xp.asarray(_cast_finite(X, dtype))))

    # ----------------------------------------------------------------------- fit
    def _initialize(self, y, layer_units, dtype, has_validation):
        """Fresh attributes and initial weights (scikit-learn's ``_initialize``)."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation_name()
        self.coefs_, self.intercepts_ = sklearn_glorot_uniform(
            layer_units, self._init_activation_name(), self._random_state, dtype)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        self.validation_loss_curve_ = [] if has_validation else None
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
            self.best_validation_loss_ = np.inf if has_validation else None

    def _fit(self, X, y, sample_weight=None, incremental=False, X_val=None, y_val=None):
        hidden = self._hidden_layer_sizes()
        hidden_acts = self._hidden_activations(len(hidden))
        dropout = self._dropout_rates(len(hidden))
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together (or neither)")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        X, y, y_raw = self._validate_input(X, y, incremental, reset=first_pass)
        if not first_pass and X.dtype != self.coefs_[0].dtype:
            # as scikit-learn, later passes (warm_start, partial_fit) keep the weights'
            # dtype from the first one: X of another dtype is converted, not the weights
            X = _cast_finite(X, self.coefs_[0].dtype)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
            # checked before class weights multiply in (a class whose weights are all
            # negative would get a 'balanced' weight of 0 and pass as -0.0)
            _check_weight_values(sample_weight)
        sample_weight = self._class_weighted(sample_weight, y_raw, incremental)

        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features] + hidden + [self.n_outputs_]

        self._random_state = check_random_state(self.random_state)
        has_validation = X_val is not None or (
            self.early_stopping and self.solver in _STOCHASTIC_SOLVERS)
        if first_pass:
            self._initialize(y, layer_units, X.dtype, has_validation)
        else:
            self._check_warm_shapes(layer_units)
        if has_validation and getattr(self, "validation_loss_curve_", None) is None:
            self.validation_loss_curve_ = []

        spec = self._network_spec(layer_units, X.dtype, hidden_acts, dropout)
        net = self._get_network(spec)
        self._push_weights(net)

        val = None
        if X_val is not None:
            val = self._user_validation_set(X_val, y_val, X.dtype)

        X = _densify(X)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(net, X, y, sample_weight, incremental, val)
        else:
            if any(r > 0 for r in dropout):
                warnings.warn("dropout is not used by solver='lbfgs' (full-batch, "
                              "deterministic); use solver='adam' or 'sgd' for dropout",
                              UserWarning, stacklevel=4)
            self._fit_lbfgs(net, X, y, sample_weight, val)

        weights = list(self.coefs_) + list(self.intercepts_)
        if not all(np.isfinite(w).all() for w in weights):
            raise ValueError(NONFINITE_WEIGHTS_MSG)
        return self

    def _check_warm_shapes(self, layer_units):
        shapes = [c.shape for c in self.coefs_]
        want = list(zip(layer_units[:-1], layer_units[1:], strict=True))
        if shapes != want:
            raise ValueError(
                f"the fitted weights have shapes {shapes} but the data and "
                f"hidden_layer_sizes need {want}; refit with warm_start=False (for "
                "partial_fit: start from a new estimator, sklearn.base.clone)")

    def _class_weighted(self, sample_weight, y_raw, incremental):
        return sample_weight  # the classifier overrides this

    def _user_validation_set(self, X_val, y_val, dtype):
        """``(X_val, Y_val_engine, y_val_for_scores, sample_weight_val=None)`` of a
        user-given validation set, validated against the fitted model."""
        try:
            X_val = validate_data(self, X_val, accept_sparse=["csr", "csc"], reset=False,
                                  dtype=dtype)
        except ValueError as exc:   # scikit-learn's messages say "X"
            raise ValueError(f"X_val: {exc}") from None
        X_val = _densify(X_val)
        Y_val, y_score = self._validation_targets(y_val)
        if Y_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"y_val has {Y_val.shape[0]} rows; X_val has {X_val.shape[0]}")
        return X_val, Y_val, y_score, None

    def _engine_targets(self, y2d):
        """Targets as the engine wants them: integer labels for a softmax output."""
        if self.out_activation_ == "softmax":
            return np.ascontiguousarray(np.argmax(y2d, axis=1), dtype=np.intp)
        return y2d

    def _loss_divisor(self):
        """scikit-learn reports the squared error averaged over outputs."""
        loss, _ = self._output_layer()
        return self.n_outputs_ if loss == "squared_error" and self.n_outputs_ > 1 else 1

    # --------------------------------------------------------------- stochastic
    def _new_optimizer(self):
        if self.solver == "sgd":
            spec = OptimizerSpec(kind="sgd", learning_rate=float(self.learning_rate_init),
                                 momentum=float(self.momentum),
                                 nesterov=bool(self.nesterovs_momentum))
            return {"spec": spec, "schedule": self.learning_rate,
                    "learning_rate_init": float(self.learning_rate_init),
                    "power_t": float(self.power_t)}
        spec = OptimizerSpec(kind="adam", learning_rate=float(self.learning_rate_init),
                             beta_1=float(self.beta_1), beta_2=float(self.beta_2),
                             epsilon=float(self.epsilon), epsilon_style="keras")
        return {"spec": spec, "schedule": "constant",
                "learning_rate_init": float(self.learning_rate_init), "power_t": 0.0}

    def _set_optimizer_lr(self, net, lr):
        opt = self._optimizer
        opt["spec"] = opt["spec"].with_changes(learning_rate=float(lr))
        net.set_learning_rate(float(lr))

    def _trigger_stopping(self, net, msg):
        """scikit-learn's ``trigger_stopping``: stop, or divide an adaptive lr by 5."""
        opt = self._optimizer
        if opt["spec"].kind != "sgd" or opt["schedule"] != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        lr = opt["spec"].learning_rate
        if lr <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        lr /= 5.0
        self._set_optimizer_lr(net, lr)
        if self.verbose:
            print(msg + " Setting learning rate to %f" % lr)
        return False

    def _ensure_stochastic_state(self):
        """Epoch bookkeeping for a warm start from an 'lbfgs' fit (which keeps none;
        scikit-learn fails there with AttributeError)."""
        if not hasattr(self, "loss_curve_"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.best_loss_ = None if self.early_stopping else np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self.best_validation_loss_ = None
        if not self.early_stopping and getattr(self, "best_loss_", None) is None:
            # early stopping switched off between fits (it keeps best_loss_ at None;
            # scikit-learn then fails with a TypeError): go on from the best loss so far
            finite = [v for v in self.loss_curve_ if np.isfinite(v)]
            self.best_loss_ = min(finite) if finite else np.inf

    def _fit_stochastic(self, net, X, y, sample_weight, incremental, val):
        self._ensure_stochastic_state()
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = self._new_optimizer()
            net.set_optimizer(self._optimizer["spec"], reset_state=True)
        elif net.optimizer != self._optimizer["spec"]:
            net.set_optimizer(self._optimizer["spec"], reset_state=False)

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        monitor_loss = self.early_stopping_monitor == "loss"

        if early_stopping and val is None:
            # scikit-learn stratifies on the binarized y for single-output classifiers
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            idx_train, idx_val = train_test_split(
                np.arange(X.shape[0]), random_state=self._random_state,
                test_size=self.validation_fraction,
                stratify=y if should_stratify else None)
            if idx_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset.")
            X_train, y_train = X[idx_train], y[idx_train]
            X_val, y_val2d = X[idx_val], y[idx_val]
            sw_train = None if sample_weight is None else sample_weight[idx_train]
            sw_val = None if sample_weight is None else sample_weight[idx_val]
            y_score = self._scoring_targets(y_val2d)
            Y_val = self._engine_targets(y_val2d)
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            if val is not None:
                X_val, Y_val, y_score, sw_val = val
                if early_stopping and X_val.shape[0] < 2:
                    # as for the internal split: a score of one row (R^2) is undefined,
                    # so no epoch would count as an improvement
                    raise ValueError(f"The validation set is too small: X_val has "
                                     f"{X_val.shape[0]} row; early stopping needs at "
                                     "least 2.")
            else:
                X_val = Y_val = y_score = sw_val = None

        has_val = X_val is not None
        if has_val:
            X_val, Y_val, sw_val = _validate_validation_set(net, X_val, Y_val, sw_val,
                                                            user_given=val is not None)
            if self.validation_scores_ is None:
                self.validation_scores_ = []
            if self.best_validation_score_ is None:
                self.best_validation_score_ = -np.inf
            if getattr(self, "best_validation_loss_", None) is None:
                self.best_validation_loss_ = np.inf

        X_train, Y_train, sw_train = validate_training_data(
            net.spec, X_train, self._engine_targets(y_train), sw_train,
            xp=_array_module(net), check_finite=False)  # validate_data checked X and y
        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)

        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than "
                    "sample size. It is going to be clipped", stacklevel=5)
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        dropout_seed = 0
        if any(r > 0 for r in net.spec.dropout):
            dropout_seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        divisor = self._loss_divisor()
        diverged = False

        try:
            self.n_iter_ = 0
            for it in range(self.max_iter):
                if self.shuffle:
                    sample_idx = sklearn_shuffle(sample_idx, random_state=self._random_state)
                if not diverged:
                    loss = net.train_epoch(
                        X_train, Y_train, sw_train, batch_size=batch_size,
                        order=sample_idx if self.shuffle else None, seed=dropout_seed,
                        epoch=it, track_metrics=divisor != 1)
                    diverged = bool(net.diverged) or not math.isfinite(loss)
                    if diverged and not (early_stopping and has_val):
                        # scikit-learn would go on with non-finite weights and fail
                        # after the loop with this error; the engine stopped at the
                        # first non-finite batch, so fail now.
                        raise ValueError(NONFINITE_WEIGHTS_MSG)
                    if not diverged and divisor != 1:
                        m = net.epoch_metrics
                        loss = m["data_loss"] / divisor + m["penalty"]
                if diverged:
                    loss = float("nan")

                self.n_iter_ += 1
                self.loss_ = float(loss)
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                if has_val:
                    self._validate_epoch(net, X_val, Y_val, y_score, sw_val, diverged,
                                         divisor)
                self._update_no_improvement_count(early_stopping, monitor_loss, net,
                                                  has_val)

                opt = self._optimizer
                if opt["spec"].kind == "sgd" and opt["schedule"] == "invscaling":
                    self._set_optimizer_lr(
                        net, opt["learning_rate_init"] / (self.t_ + 1) ** opt["power_t"])

                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        what = "loss" if monitor_loss else "score"
                        msg = (
                            "Validation %s did not improve more than "
                            "tol=%f for %d consecutive epochs."
                            % (what, self.tol, self.n_iter_no_change)
                        )
                    else:
                        msg = (
                            "Training loss did not improve more than tol=%f"
                            " for %d consecutive epochs."
                            % (self.tol, self.n_iter_no_change)
                        )
                    if self._trigger_stopping(net, msg):
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break

                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) "
                        "reached and the optimization hasn't converged yet."
                        % self.max_iter,
                        ConvergenceWarning,
                        stacklevel=5,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=5)

        self._pull_weights(net)
        if early_stopping:
            # restore best weights
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _validate_epoch(self, net, X_val, Y_val, y_score, sw_val, diverged, divisor):
        """Record the validation score and loss of the weights after an epoch."""
        if diverged:
            score = loss = float("nan")
        else:
            outputs = _to_host(net.forward(X_val))
            y_pred = self._predictions_from_outputs(outputs)
            if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
                score = float("nan")
            else:
                score = float(self._score_function(
                    y_score, y_pred, sample_weight=None if sw_val is None
                    else _to_host(sw_val)))
            loss = float(net.compute_loss(X_val, Y_val, sw_val, include_penalty=False))
            loss /= divisor
        self.validation_scores_.append(score)
        self.validation_loss_curve_.append(loss)
        if self.verbose:
            print("Validation score: %f" % score)

    def _update_no_improvement_count(self, early_stopping, monitor_loss, net, has_val):
        """scikit-learn's stopping rule, plus the bests of the validation curves."""
        if early_stopping:
            if monitor_loss:
                last = self.validation_loss_curve_[-1]
                if last > self.best_validation_loss_ - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                improved = last < self.best_validation_loss_
            else:
                last = self.validation_scores_[-1]
                if last < (self.best_validation_score_ + self.tol):
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                improved = last > self.best_validation_score_
            if improved:
                self._best_coefs, self._best_intercepts = self._unflatten(
                    net.get_params(), net.spec)
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
        if has_val:  # nan never counts as better
            if self.validation_scores_[-1] > self.best_validation_score_:
                self.best_validation_score_ = self.validation_scores_[-1]
            if self.validation_loss_curve_[-1] < self.best_validation_loss_:
                self.best_validation_loss_ = self.validation_loss_curve_[-1]

    # -------------------------------------------------------------------- lbfgs
    def _fit_lbfgs(self, net, X, y, sample_weight, val):
        X, Y, sw = validate_training_data(net.spec, X, self._engine_targets(y),
                                          sample_weight, xp=_array_module(net),
                                          check_finite=False)  # validate_data checked X and y
        divisor = self._loss_divisor()
        sw_sum = float(X.shape[0] if sw is None else _to_host(sw).sum())
        offsets = net.spec.layer_offsets()
        half_alpha = 0.5 * float(self.alpha)

        def loss_grad(packed):
            net.set_params(packed)
            loss, grad = net.loss_and_grad(X, Y, sw)
            loss = float(loss)
            if divisor != 1:
                # scikit-learn's value averages the squared error over outputs while
                # its gradient does not: reproduce that pair exactly.
                penalty = half_alpha * sum(
                    float(np.dot(packed[w:w + fi * fo], packed[w:w + fi * fo]))
                    for w, b, fi, fo in offsets) / sw_sum
                loss = (loss - penalty) / divisor + penalty
            return loss, np.asarray(_to_host(grad), dtype=np.float64)

        callback = None
        if val is not None:
            X_val, Y_val, _, sw_val = val
            X_val, Y_val, sw_val = _validate_validation_set(net, X_val, Y_val, sw_val,
                                                            user_given=True)

            def callback(xk):
                net.set_params(xk)
                self.validation_loss_curve_.append(
                    float(net.compute_loss(X_val, Y_val, sw_val, include_penalty=False))
                    / divisor)

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        packed = np.asarray(net.get_params(), dtype=np.float64)
        opt_res = scipy.optimize.minimize(
            loss_grad,
            packed,
            method="L-BFGS-B",
            jac=True,
            callback=callback,
            options={
                "maxfun": self.max_fun,
                "maxiter": self.max_iter,
                "gtol": self.tol,
                **_get_additional_lbfgs_options_dict("iprint", iprint),
            },
        )
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = float(opt_res.fun)
        net.set_params(opt_res.x)
        self._pull_weights(net)

    # --------------------------------------------------------------- interface
    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic"
                " optimizers. %s is not stochastic." % self.solver
            )
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
