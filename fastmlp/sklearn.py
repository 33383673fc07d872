"""scikit-learn drop-ins: ``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor``.

Change one import line (``from fastmlp import MLPClassifier``) and keep every
script, Pipeline, GridSearchCV and pickle working: the constructor parameters,
defaults, fitted attributes, methods, warnings and errors are scikit-learn's
(version 1.9), and a fit with the same ``random_state`` draws the same initial
weights and visits the rows in the same order, so it gives scikit-learn's result to
rounding.  Training runs in fastmlp's engine, one whole epoch per call.

Extras, all keyword-only, whose defaults keep scikit-learn's behaviour: ``device``,
``n_threads``, ``dropout``, ``class_weight`` (classifier), per-layer and extra
activations, ``early_stopping_monitor``, and ``fit(X, y, X_val=..., y_val=...)``
with ``validation_loss_curve_``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (_check_partial_fit_first_call, type_of_target,
                                      unique_labels)
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._sklearn_base import _BaseMLP

__all__ = ["MLPClassifier", "MLPRegressor"]

# ----------------------------------------------------------------------------------
# Docstring parts shared by both estimators (numpydoc).

_PARAMS_DOC = """\
hidden_layer_sizes : array-like of shape (n_layers - 2,) or int, default=(100,)
    The ith element represents the number of neurons in the ith hidden layer.
    An empty tuple fits a network without hidden layer.

activation : {'identity', 'logistic', 'tanh', 'relu', 'leaky_relu', 'elu', \
'softplus', 'gelu'} or tuple of str, default='relu'
    Activation function of the hidden layers.

    - 'identity', no-op activation, returns f(x) = x
    - 'logistic', the logistic sigmoid, returns f(x) = 1 / (1 + exp(-x))
    - 'tanh', the hyperbolic tangent, returns f(x) = tanh(x)
    - 'relu', the rectified linear unit, returns f(x) = max(0, x)
    - 'leaky_relu' (fastmlp extra), f(x) = x for x > 0 and 0.2 x otherwise
    - 'elu' (fastmlp extra), f(x) = x for x > 0 and exp(x) - 1 otherwise
    - 'softplus' (fastmlp extra), f(x) = log(1 + exp(x))
    - 'gelu' (fastmlp extra), f(x) = x * Phi(x) with Phi the normal CDF

    A tuple gives one name per hidden layer (fastmlp extra). The initial weights
    use scikit-learn's Glorot-uniform bound: factor 2 when every hidden layer is
    'logistic', 6 otherwise.

solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
    The solver for weight optimization.

    - 'lbfgs' is an optimizer in the family of quasi-Newton methods
      (scipy's L-BFGS-B on the engine's full-batch loss and gradient).
    - 'sgd' refers to stochastic gradient descent.
    - 'adam' refers to the stochastic gradient-based optimizer of Kingma and Ba.

    'adam' works well on relatively large datasets (thousands of samples or more);
    on small datasets 'lbfgs' can converge faster and perform better.

alpha : float, default=0.0001
    Strength of the L2 regularization term. The L2 regularization term is divided
    by the sample size (the sum of the sample weights) when added to the loss.

batch_size : int or 'auto', default='auto'
    Size of minibatches for stochastic optimizers. If the solver is 'lbfgs',
    minibatches are not used. When set to 'auto', ``batch_size=min(200, n_samples)``.

learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
    Learning rate schedule for weight updates (only used when ``solver='sgd'``).

    - 'constant' is a constant learning rate given by 'learning_rate_init'.
    - 'invscaling' sets the learning rate after each epoch to
      ``learning_rate_init / (t_ + 1) ** power_t`` with ``t_`` the number of
      samples seen so far.
    - 'adaptive' keeps the learning rate at 'learning_rate_init' as long as the
      training loss keeps decreasing. Each time ``n_iter_no_change`` consecutive
      epochs fail to decrease the training loss by at least tol (or to increase the
      validation score by at least tol when 'early_stopping' is on), the learning
      rate is divided by 5.

learning_rate_init : float, default=0.001
    The initial learning rate. Only used when solver='sgd' or 'adam'.

power_t : float, default=0.5
    The exponent for the inverse scaling learning rate. Only used when
    solver='sgd' and learning_rate='invscaling'.

max_iter : int, default=200
    Maximum number of iterations. The solver iterates until convergence
    (determined by 'tol') or this number of iterations. For the stochastic solvers
    ('sgd', 'adam') this is the number of epochs, not of gradient steps.

shuffle : bool, default=True
    Whether to shuffle samples in each iteration. Only used when solver='sgd' or
    'adam'.

random_state : int, RandomState instance or None, default=None
    Determines the initial weights and biases, the train/validation split of
    early stopping, the shuffled order of the samples and the dropout masks. Pass
    an int for reproducible results across calls. The same value as given to
    scikit-learn's estimator gives the same initial weights, split and order.

tol : float, default=1e-4
    Tolerance for the optimization. When the loss or score is not improving by at
    least ``tol`` for ``n_iter_no_change`` consecutive iterations, unless
    ``learning_rate`` is 'adaptive', convergence is considered to be reached and
    training stops. For 'lbfgs' it is the gradient tolerance ``gtol``.

verbose : bool, default=False
    Whether to print progress messages to stdout.

warm_start : bool, default=False
    When True, reuse the solution of the previous call to fit as initialization;
    otherwise erase the previous solution.

momentum : float, default=0.9
    Momentum for gradient descent update. Should be between 0 and 1. Only used when
    solver='sgd'.

nesterovs_momentum : bool, default=True
    Whether to use Nesterov's momentum. Only used when solver='sgd' and
    momentum > 0.

early_stopping : bool, default=False
    Whether to use early stopping to terminate training when the validation score
    (or loss, see ``early_stopping_monitor``) is not improving. When True,
    ``validation_fraction`` of the training data is set aside (stratified for a
    single-output classifier, as scikit-learn splits) unless ``X_val`` / ``y_val``
    are given to fit, and training stops when the monitored value does not improve
    by at least ``tol`` for ``n_iter_no_change`` consecutive epochs; the weights of
    the best epoch are restored. Only effective when solver='sgd' or 'adam'.

validation_fraction : float, default=0.1
    The proportion of training data to set aside as validation set for early
    stopping. Must be in [0, 1). Only used if early_stopping is True.

beta_1 : float, default=0.9
    Exponential decay rate for estimates of the first moment vector in adam, in
    [0, 1). Only used when solver='adam'.

beta_2 : float, default=0.999
    Exponential decay rate for estimates of the second moment vector in adam, in
    [0, 1). Only used when solver='adam'.

epsilon : float, default=1e-8
    Value for numerical stability in adam. Only used when solver='adam'.

n_iter_no_change : int or np.inf, default=10
    Maximum number of epochs to not meet ``tol`` improvement. Only effective when
    solver='sgd' or 'adam'.

max_fun : int, default=15000
    Only used when solver='lbfgs'. Maximum number of loss function calls. The
    solver iterates until convergence (determined by 'tol'), until the number of
    iterations reaches max_iter, or until this number of loss function calls."""

_EXTRA_PARAMS_DOC = """\
device : {'cpu', 'numpy', 'cuda', 'auto'} or None, default='cpu'
    Where the engine runs (fastmlp extra): 'cpu' the compiled CPU engine, 'numpy'
    the pure-NumPy reference engine, 'cuda' an NVIDIA GPU through CuPy, 'auto' the
    GPU when one is usable and the CPU otherwise. None uses the environment
    variable ``FASTMLP_DEVICE`` or 'cpu'. The fitted model keeps its weights as
    NumPy arrays, so a model fitted on one device predicts on any other after
    ``set_params(device=...)``.

n_threads : int or None, default=None
    Threads the engine may use (fastmlp extra). None uses
    :func:`fastmlp.set_num_threads`'s value, else ``OMP_NUM_THREADS``, else the
    CPUs available to the process; -1 uses all available CPUs.

dropout : float or array-like of float, default=0.0
    Dropout rate of the hidden layers while training with 'sgd' or 'adam'
    (fastmlp extra): one rate for every hidden layer or one per hidden layer, each
    in [0, 1). Inverted dropout is used, so predictions need no rescaling. The
    masks are drawn from ``random_state``. Ignored (with a warning) by 'lbfgs'.

early_stopping_monitor : {'score', 'loss'}, default='score'
    What early stopping watches (fastmlp extra): 'score' the validation score, as
    scikit-learn does, or 'loss' the validation loss (the data loss without the L2
    term, lower is better). Either way the weights of the best epoch by that
    measure are restored."""

_ATTRS_DOC = """\
loss_ : float
    The current loss computed with the loss function (the data loss plus the L2
    term; for a multi-output squared error the data loss is averaged over
    outputs, as scikit-learn reports it).

best_loss_ : float or None
    The minimum loss reached by the solver throughout fitting. None when
    ``early_stopping=True`` (see ``best_validation_score_``). Only set by 'sgd'
    and 'adam'.

loss_curve_ : list of shape (`n_iter_`,)
    The loss at the end of each epoch. Only set by 'sgd' and 'adam'.

validation_scores_ : list of shape (`n_iter_`,) or None
    The score ({score}) on the validation set after each epoch, when there is
    validation data (early stopping, or ``X_val`` given to fit); otherwise None.
    Only set by 'sgd' and 'adam'.

best_validation_score_ : float or None
    The best validation score, or None without validation data. Only set by 'sgd'
    and 'adam'.

validation_loss_curve_ : list or None
    fastmlp extra: the validation data loss (without the L2 term) after each epoch
    ('sgd', 'adam') or each L-BFGS iteration, whenever there is validation data
    (early stopping, or ``X_val`` given to fit); otherwise None.

best_validation_loss_ : float or None
    fastmlp extra: the lowest entry of ``validation_loss_curve_`` (None without
    validation data). Only set by 'sgd' and 'adam'.

t_ : int
    The number of training samples seen by the solver during fitting, used by
    the 'invscaling' learning-rate schedule.

coefs_ : list of shape (n_layers - 1,)
    The ith element is the weight matrix of layer i, shape (fan_in, fan_out), a
    NumPy array of the training dtype (float32 for float32 X, else float64).

intercepts_ : list of shape (n_layers - 1,)
    The ith element is the bias vector of layer i + 1.

n_features_in_ : int
    Number of features seen during :term:`fit`.

feature_names_in_ : ndarray of shape (`n_features_in_`,)
    Names of features seen during :term:`fit`. Defined only when `X` has feature
    names that are all strings.

n_iter_ : int
    The number of iterations the solver has run (in the last call to fit).

n_layers_ : int
    Number of layers (input, hidden and output).

n_outputs_ : int
    Number of outputs.

out_activation_ : str
    Name of the output activation function."""

_NOTES_DOC = """\
Notes
-----
Training runs in fastmlp's engine, one whole epoch per call with no per-batch
Python; the update formulas, the L2 scaling, the sample weights and the stopping
rules are scikit-learn's. With the same ``random_state`` the initial weights, the
early-stopping split and the shuffled order of every epoch are drawn exactly as
scikit-learn draws them, so fitting reproduces scikit-learn's result to rounding
(in float64).

Sparse input (CSR or CSC) is accepted but densified before training (the engine
trains on dense arrays); prediction densifies bounded blocks of rows at a time.
float32 input trains in float32 (``coefs_`` are float32, also with 'lbfgs');
any other numeric input trains in float64.

Divergence: when a batch produces a non-finite loss the engine stops before
applying it. Without early stopping a ValueError is raised (scikit-learn raises
the same error after finishing its iterations with non-finite weights); with
early stopping the remaining epochs record ``nan`` and the best weights are
restored, as in scikit-learn.

Negative sample weights are rejected with a ValueError (scikit-learn silently
accepts them).

Pickling keeps the weights, the optimizer state (``partial_fit`` continues after
unpickling) and the parameters, never the engine object, which is rebuilt on the
next call."""


def _sklearn_clf_score_doc():
    return _ATTRS_DOC.replace("{score}", "accuracy")


# ----------------------------------------------------------------------------------
class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = f"""Multi-layer Perceptron classifier (drop-in for scikit-learn's).

This model optimizes the log-loss function using LBFGS or stochastic gradient
descent, with scikit-learn's parameters, attributes and results, trained by
fastmlp's engine.

Parameters
----------
{_PARAMS_DOC}

{_EXTRA_PARAMS_DOC}

class_weight : dict, list of dict, 'balanced' or None, default=None
    Weights associated with classes (fastmlp extra), multiplied into
    ``sample_weight``: a dict ``{{class_label: weight}}``, 'balanced' for
    ``n_samples / (n_classes * np.bincount(y))`` (given ``sample_weight``, each
    class's total sample weight in place of its count, as scikit-learn's classifiers
    weigh it), or for multi-label y a list of dicts (one per output) or 'balanced'
    (from row counts). None gives every class weight one.
    'balanced' is refused by partial_fit (it needs all of y at once).

Attributes
----------
classes_ : ndarray or list of ndarray of shape (n_classes,)
    Class labels for each output.

{_sklearn_clf_score_doc()}

See Also
--------
MLPRegressor : Multi-layer Perceptron regressor.
sklearn.neural_network.MLPClassifier : The scikit-learn estimator this replaces.

{_NOTES_DOC}

Examples
--------
>>> from fastmlp import MLPClassifier
>>> from sklearn.datasets import make_classification
>>> X, y = make_classification(n_samples=100, random_state=1)
>>> clf = MLPClassifier(random_state=1, max_iter=300).fit(X, y)
>>> clf.predict(X[:3]).shape
(3,)
"""

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, list, StrOptions({"balanced"}), None],
    }

    # scikit-learn's MLPClassifier has this attribute (not a parameter): the loss it
    # minimises.  A class attribute, so that __init__ sets parameters only.
    loss = "log_loss"

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="cpu",
        n_threads=None,
        dropout=0.0,
        class_weight=None,
        early_stopping_monitor="score",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device
        self.n_threads = n_threads
        self.dropout = dropout
        self.class_weight = class_weight
        self.early_stopping_monitor = early_stopping_monitor

    # ------------------------------------------------------------- internals
    def _output_layer(self):
        if self._label_binarizer.y_type_ == "multiclass":
            return "categorical_crossentropy", "softmax"
        return "binary_crossentropy", "sigmoid"

    def _out_activation_name(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _score_function(self, y_true, y_pred, sample_weight=None):
        return accuracy_score(y_true, y_pred, sample_weight=sample_weight)

    def _predictions_from_outputs(self, outputs):
        if self.n_outputs_ == 1:
            outputs = outputs.ravel()
        return self._label_binarizer.inverse_transform(outputs)

    def _scoring_targets(self, y2d):
        return self._label_binarizer.inverse_transform(y2d)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)

        # See scikit-learn's MLPClassifier._validate_input for the table of cases.
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        y_raw = y
        # bool keeps float32 data from being upcast
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y, y_raw

    def _class_weighted(self, sample_weight, y_raw, incremental):
        """Multiply ``class_weight`` into the sample weights."""
        if self.class_weight is None:
            return sample_weight
        if incremental and isinstance(self.class_weight, str):
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: it needs "
                "the class frequencies of all the data. Compute the weights once "
                "(sklearn.utils.class_weight.compute_class_weight) and pass them as a "
                "dict.")
        if np.ndim(y_raw) == 2:  # multi-label indicator matrix
            cw = self.class_weight
            if not (isinstance(cw, str) or (isinstance(cw, list) and len(cw) == y_raw.shape[1]
                                            and all(isinstance(d, dict) for d in cw))):
                raise ValueError(
                    f"class_weight={cw!r}: for multi-label y give 'balanced' or a list of "
                    f"{y_raw.shape[1]} dicts, one per label column ({{0: w0, 1: w1}})")
            weights = compute_sample_weight(cw, y_raw)
        else:
            if isinstance(self.class_weight, list):
                raise ValueError("class_weight as a list of dicts is only for multi-label "
                                 "y; give a dict or 'balanced'")
            y_index = np.searchsorted(self.classes_, y_raw)
            if self.class_weight == "balanced" and sample_weight is not None:
                # the classes' weighted frequencies, as scikit-learn's
                # compute_class_weight(..., sample_weight=) (1.9) and its other
                # classifiers weigh them; a class whose rows all weigh 0 keeps them at 0
                counts = np.bincount(y_index, weights=sample_weight,
                                     minlength=len(self.classes_))
                per_class = np.where(counts > 0, counts.sum() / (
                    len(self.classes_) * np.where(counts > 0, counts, 1)), 0.0)
            else:
                per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                                 y=y_raw)
            weights = per_class[y_index]
        weights = np.asarray(weights, dtype=np.float64)
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f"class_weight={self.class_weight!r} must give every class a "
                             "finite weight >= 0")
        if not weights.any():
            raise ValueError(f"class_weight={self.class_weight!r} gives every sample of y a "
                             "weight of 0; at least one class needs a positive weight")
        if sample_weight is None:
            return weights
        return sample_weight * weights

    def _validation_targets(self, y_val):
        y_val = check_array(y_val, ensure_2d=False, dtype=None, input_name="y_val")
        if getattr(self._label_binarizer, "y_type_", None) == "multilabel-indicator" and (
                y_val.ndim != 2 or y_val.shape[1] != len(self.classes_)):
            raise ValueError(
                f"y_val has shape {y_val.shape}; y is a multi-label indicator matrix with "
                f"{len(self.classes_)} columns, so y_val needs ({y_val.shape[0]}, "
                f"{len(self.classes_)})")
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        unknown = np.setdiff1d(unique_labels(y_val), self.classes_)
        if len(unknown):
            raise ValueError(f"y_val has classes not seen in y: {unknown}; the classes "
                             f"are {self.classes_}")
        y2d = self._label_binarizer.transform(y_val).astype(bool)
        if y2d.ndim == 1:
            y2d = y2d.reshape(-1, 1)
        return self._engine_targets(y2d), y_val

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input=check_input)
        return self._predictions_from_outputs(y_pred)

    # -------------------------------------------------------------- public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data. Sparse input is densified for training.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target class labels (or a label-indicator matrix for multi-label
            classification).

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights (non-negative). Multiplied by ``class_weight``.

        X_val : {array-like, sparse matrix} of shape (n_val, n_features), default=None
            fastmlp extra: a validation set. With ``early_stopping=True`` it
            replaces the internal split; in any case the validation score and
            loss are recorded after each epoch.

        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Labels of ``X_val``; must be classes seen in ``y``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False,
                         X_val=X_val, y_val=y_val)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : array-like of shape (n_samples,)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required for the first call
            and may be omitted in later calls. y need not contain every class.

        Returns
        -------
        self : object
            The trained estimator.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        check_is_fitted(self)
        return self._predict(X)

    def predict_log_proba(self, X):
        """Return the log of probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The predicted log-probability of the sample for each class in the
            model, in the order of ``classes_``. Equivalent to
            ``log(predict_proba(X))``.
        """
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            The predicted probability of the sample for each class in the model,
            in the order of ``classes_``.
        """
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


# ----------------------------------------------------------------------------------
class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = f"""Multi-layer Perceptron regressor (drop-in for scikit-learn's).

This model optimizes the squared error (or the Poisson deviance) using LBFGS or
stochastic gradient descent, with scikit-learn's parameters, attributes and
results, trained by fastmlp's engine.

Parameters
----------
loss : {{'squared_error', 'poisson'}}, default='squared_error'
    The loss function: half the squared error, or half the Poisson deviance with
    a log link (exponential output activation; requires ``y >= 0``).

{_PARAMS_DOC}

{_EXTRA_PARAMS_DOC}

Attributes
----------
{_ATTRS_DOC.replace("{score}", "R2")}

See Also
--------
MLPClassifier : Multi-layer Perceptron classifier.
sklearn.neural_network.MLPRegressor : The scikit-learn estimator this replaces.

{_NOTES_DOC}

Examples
--------
>>> from fastmlp import MLPRegressor
>>> from sklearn.datasets import make_regression
>>> X, y = make_regression(n_samples=200, n_features=20, random_state=1)
>>> regr = MLPRegressor(random_state=1, max_iter=50).fit(X, y)
>>> regr.predict(X[:2]).shape
(2,)
"""

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="cpu",
        n_threads=None,
        dropout=0.0,
        early_stopping_monitor="score",
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device
        self.n_threads = n_threads
        self.dropout = dropout
        self.early_stopping_monitor = early_stopping_monitor

    # ------------------------------------------------------------- internals
    def _output_layer(self):
        if self.loss == "poisson":
            return "poisson", "exp"
        return "squared_error", "identity"

    def _out_activation_name(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _score_function(self, y_true, y_pred, sample_weight=None):
        return r2_score(y_true, y_pred, sample_weight=sample_weight)

    def _predictions_from_outputs(self, outputs):
        if outputs.shape[1] == 1:
            return outputs.ravel()
        return outputs

    def _scoring_targets(self, y2d):
        return y2d

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y, y

    def _validation_targets(self, y_val):
        y_val = check_array(y_val, ensure_2d=False, dtype="numeric", input_name="y_val")
        y2d = y_val.reshape(-1, 1) if y_val.ndim == 1 else y_val
        if y2d.ndim != 2 or y2d.shape[1] != self.n_outputs_:
            raise ValueError(f"y_val has shape {y_val.shape}; the model has "
                             f"{self.n_outputs_} output(s)")
        return y2d, y2d

    def _predict(self, X, check_input=True):
        return self._predictions_from_outputs(self._forward(X, check_input=check_input))

    # -------------------------------------------------------------- public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data. Sparse input is densified for training.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights (non-negative).

        X_val : {array-like, sparse matrix} of shape (n_val, n_features), default=None
            fastmlp extra: a validation set. With ``early_stopping=True`` it
            replaces the internal split; in any case the validation score and
            loss are recorded after each epoch.

        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Targets of ``X_val``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False,
                         X_val=X_val, y_val=y_val)

    # scikit-learn's regressor exposes partial_fit for every solver (with 'lbfgs'
    # it runs a warm-started L-BFGS fit); kept as is for drop-in compatibility.
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            The trained estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        check_is_fitted(self)
        return self._predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags
