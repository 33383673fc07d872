"""scikit-learn's own estimator checks on fastmlp.MLPClassifier / MLPRegressor.

The default configurations and a few non-default ones (other solvers, Poisson loss,
fastmlp's extras, early stopping).  max_iter is kept small so the suite stays quick;
ConvergenceWarning is therefore silenced.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmlp import MLPClassifier, MLPRegressor


# Every configuration runs on the default engine ("cpu"); the NumPy reference engine
# gets the two default configurations as well.
MAIN_DEVICE = "cpu"

# Checks that fail for a reason that is part of the configuration's contract, not a
# bug.  Each entry says why; scikit-learn's own MLP fails the same ones in the same
# configuration.
_PARTIAL_FIT_REFUSES_EARLY_STOPPING = (
    "partial_fit raises ValueError with early_stopping=True, as scikit-learn's MLP does")
_TOO_SMALL_TO_SPLIT = (
    "the check fits on a handful of rows: the early-stopping validation split is too "
    "small (ValueError), as with scikit-learn's MLP")
_STOCHASTIC_SPLIT_WEIGHTS = (
    "with early stopping the train/validation split of the repeated data differs from "
    "the split of the weighted data, so weights and repetitions cannot agree")
_BALANCED_PARTIAL_FIT = (
    "class_weight='balanced' is refused by partial_fit (it needs all of y), as "
    "scikit-learn's SGDClassifier refuses it")
_DROPOUT_WEIGHTS = (
    "dropout masks are drawn per row, so a repeated row gets other masks than a "
    "weighted one")
_POISSON_NEGATIVE_Y = (
    "check_regressor_multioutput draws negative targets and ignores the positive_only "
    "tag; the Poisson loss needs y >= 0, so fit raises ValueError")

_EARLY_STOPPING_XFAILS = {
    "check_fit_score_takes_y": _PARTIAL_FIT_REFUSES_EARLY_STOPPING,
    "check_n_features_in_after_fitting": _PARTIAL_FIT_REFUSES_EARLY_STOPPING,
    "check_estimators_partial_fit_n_features": _PARTIAL_FIT_REFUSES_EARLY_STOPPING,
    "check_estimators_nan_inf": _TOO_SMALL_TO_SPLIT,
    "check_regressors_no_decision_function": _TOO_SMALL_TO_SPLIT,
    "check_fit2d_1feature": _TOO_SMALL_TO_SPLIT,
    "check_sample_weight_equivalence_on_dense_data": _STOCHASTIC_SPLIT_WEIGHTS,
    "check_sample_weight_equivalence_on_sparse_data": _STOCHASTIC_SPLIT_WEIGHTS,
}


def _estimators(device):
    return [
        MLPClassifier(max_iter=100, device=device),
        MLPRegressor(max_iter=100, device=device),
        MLPClassifier(solver="lbfgs", max_iter=50, device=device),
        MLPRegressor(loss="poisson", learning_rate_init=0.01, max_iter=100,
                     device=device),
        # fastmlp extras: per-layer and extra activations, dropout, class weights
        MLPClassifier(hidden_layer_sizes=(20, 10), activation=("tanh", "gelu"),
                      solver="sgd", learning_rate_init=0.05, dropout=0.1,
                      class_weight="balanced", max_iter=50, device=device),
        # class weights from the classes' total sample weight, without dropout (its
        # sample-weight checks pass)
        MLPClassifier(class_weight="balanced", max_iter=100, device=device),
        # sgd with a schedule, no hidden layer
        MLPClassifier(hidden_layer_sizes=(), solver="sgd", learning_rate="adaptive",
                      learning_rate_init=0.05, max_iter=50, device=device),
        # early stopping monitored on the validation loss
        MLPRegressor(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05,
                     activation="elu", early_stopping=True,
                     early_stopping_monitor="loss", max_iter=50, device=device),
    ]


def _expected_failed_checks(estimator):
    failures = {}
    if estimator.early_stopping:
        failures.update(_EARLY_STOPPING_XFAILS)
    if getattr(estimator, "class_weight", None) == "balanced":
        for name in ("check_fit_score_takes_y", "check_n_features_in_after_fitting",
                     "check_estimators_partial_fit_n_features"):
            failures[name] = _BALANCED_PARTIAL_FIT
    if getattr(estimator, "dropout", 0):
        for name in ("check_sample_weight_equivalence_on_dense_data",
                     "check_sample_weight_equivalence_on_sparse_data"):
            failures[name] = _DROPOUT_WEIGHTS
    if getattr(estimator, "loss", None) == "poisson":
        failures["check_regressor_multioutput"] = _POISSON_NEGATIVE_Y
    return failures


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow in diverging fits
@parametrize_with_checks(
    _estimators(MAIN_DEVICE) + ([] if MAIN_DEVICE == "numpy" else _estimators("numpy")[:2]),
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
