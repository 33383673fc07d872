"""fastmlp's MLPClassifier / MLPRegressor against scikit-learn's own estimators.

Same initial weights (loaded into both with warm start) and the same data: one
epoch of sgd or adam gives the same parameters to ~1e-9 relative in float64,
lbfgs the same loss, predictions agree on the same weights, and shuffled
multi-epoch fits with the same random_state (the same initial draw, split and
row order) agree too.  Then accuracy against scikit-learn on standard data sets.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import neural_network as sknn
from sklearn.datasets import (load_breast_cancer, load_digits, load_iris,
                              make_multilabel_classification, make_regression)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import mean_poisson_deviance
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastmlp




DEVICES = [
    "numpy",
    "cpu",
] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if fastmlp.HAS_CUPY else [])

#: the device of the heavier accuracy tests
FAST = "cpu"

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.RandomState(0)
X_SMALL = RNG.randn(57, 6)  # 57 rows: batches of 20 leave a partial last batch


def _targets(task):
    rng = np.random.RandomState(1)
    z = X_SMALL @ rng.randn(6, 3)
    if task == "binary":
        return (z[:, 0] > 0).astype(int)
    if task == "multiclass":
        return np.array(["ant", "bee", "cat"])[np.argmax(z, axis=1)]
    if task == "multilabel":
        return (z > 0).astype(int)
    if task == "regression":
        return z[:, 0] + 0.1 * rng.randn(len(z))
    if task == "multioutput":
        return z[:, :2]
    if task == "poisson":
        return rng.poisson(np.exp(0.3 * z[:, 0]))
    raise ValueError(task)


def _classes(task):
    if task in ("binary", "multiclass", "multilabel"):
        return sknn.MLPClassifier, fastmlp.MLPClassifier, {}
    loss = "poisson" if task == "poisson" else "squared_error"
    return sknn.MLPRegressor, fastmlp.MLPRegressor, {"loss": loss}


def _fit_both_from_same_weights(task, device, sample_weight=None, **params):
    """Fit scikit-learn's and fastmlp's estimator for one epoch from the same
    (random, not Glorot) initial weights loaded through warm start."""
    SK, FM, extra = _classes(task)
    params = {**extra, **params}
    X, y = X_SMALL, _targets(task)
    sk, fm = SK(max_iter=1, **params), FM(max_iter=1, device=device, **params)
    sk.fit(X, y)
    fm.fit(X, y)
    rng = np.random.RandomState(7)
    coefs = [rng.uniform(-0.5, 0.5, c.shape) for c in sk.coefs_]
    intercepts = [rng.uniform(-0.5, 0.5, c.shape) for c in sk.intercepts_]
    for est in (sk, fm):
        est.coefs_ = [c.copy() for c in coefs]
        est.intercepts_ = [c.copy() for c in intercepts]
        est.set_params(warm_start=True)
        est.fit(X, y, sample_weight=sample_weight)
    return sk, fm


def _assert_same_weights(sk, fm, rtol):
    for a, b in zip(sk.coefs_ + sk.intercepts_, fm.coefs_ + fm.intercepts_, strict=True):
        assert a.dtype == b.dtype
        assert_allclose(b, a, rtol=rtol, atol=rtol * 1e-3)


TASKS = ["binary", "multiclass", "multilabel", "regression", "multioutput", "poisson"]
SOLVERS = [
    dict(solver="adam", learning_rate_init=0.01),
    dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=True),
    dict(solver="sgd", learning_rate_init=0.05, momentum=0.5, nesterovs_momentum=False),
    dict(solver="sgd", learning_rate_init=0.05, momentum=0.0),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("solver", SOLVERS, ids=lambda d: "-".join(map(str, d.values())))
def test_one_epoch_without_shuffling_matches_sklearn(task, solver, device):
    sk, fm = _fit_both_from_same_weights(
        task, device, hidden_layer_sizes=(7, 5), activation="tanh", alpha=0.01,
        batch_size=20, shuffle=False, **solver)
    _assert_same_weights(sk, fm, rtol=1e-9)
    assert fm.loss_ == pytest.approx(sk.loss_, rel=1e-9)
    assert fm.n_iter_ == sk.n_iter_ == 1
    assert fm.t_ == sk.t_


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["identity", "logistic", "relu"])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_one_epoch_with_sample_weight_and_activations(task, activation, device):
    sw = np.random.RandomState(3).uniform(0.1, 3.0, len(X_SMALL))
    sk, fm = _fit_both_from_same_weights(
        task, device, sample_weight=sw, hidden_layer_sizes=(8,), activation=activation,
        alpha=0.1, batch_size=16, shuffle=False, solver="adam", learning_rate_init=0.01)
    _assert_same_weights(sk, fm, rtol=1e-9)
    assert fm.loss_ == pytest.approx(sk.loss_, rel=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task", ["binary", "multiclass", "multioutput", "poisson"])
def test_lbfgs_reaches_sklearn_loss(task, device):
    SK, FM, extra = _classes(task)
    params = dict(solver="lbfgs", hidden_layer_sizes=(6,), activation="tanh", alpha=1e-3,
                  max_iter=60, random_state=0, **extra)
    X, y = X_SMALL, _targets(task)
    sk = SK(**params).fit(X, y)
    fm = FM(device=device, **params).fit(X, y)
    assert fm.loss_ == pytest.approx(sk.loss_, rel=1e-6)
    assert fm.n_iter_ == sk.n_iter_
    assert not hasattr(fm, "loss_curve_")


@pytest.mark.parametrize("device", DEVICES)
def test_lbfgs_honours_max_fun(device):
    X, y = X_SMALL, _targets("regression")
    params = dict(solver="lbfgs", hidden_layer_sizes=(6,), max_fun=5, random_state=0)
    with pytest.warns(ConvergenceWarning):
        sk = sknn.MLPRegressor(**params).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        fm = fastmlp.MLPRegressor(device=device, **params).fit(X, y)
    assert fm.n_iter_ == sk.n_iter_
    assert fm.loss_ == pytest.approx(sk.loss_, rel=1e-9)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_predictions_agree_on_the_same_weights(task, device):
    X, y = X_SMALL, _targets(task)
    params = dict(hidden_layer_sizes=(9, 4), activation="logistic", max_iter=30,
                  random_state=0)
    sk = sknn.MLPClassifier(**params).fit(X, y)
    fm = fastmlp.MLPClassifier(device=device, **params).fit(X, y)
    fm.coefs_ = [c.copy() for c in sk.coefs_]
    fm.intercepts_ = [c.copy() for c in sk.intercepts_]
    X_new = np.random.RandomState(5).randn(31, 6)
    assert_array_equal(fm.predict(X_new), sk.predict(X_new))
    assert_allclose(fm.predict_proba(X_new), sk.predict_proba(X_new), rtol=1e-12,
                    atol=1e-15)
    assert_allclose(fm.predict_log_proba(X_new), sk.predict_log_proba(X_new), rtol=1e-12)
    assert fm.score(X, y) == sk.score(X, y)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task", ["regression", "multioutput", "poisson"])
def test_regressor_predictions_agree_on_the_same_weights(task, device):
    SK, FM, extra = _classes(task)
    X, y = X_SMALL, _targets(task)
    sk = SK(hidden_layer_sizes=(5,), max_iter=20, random_state=0, **extra).fit(X, y)
    fm = FM(hidden_layer_sizes=(5,), max_iter=1, random_state=0, device=device,
            **extra).fit(X, y)
    fm.coefs_, fm.intercepts_ = sk.coefs_, sk.intercepts_
    assert_allclose(fm.predict(X), sk.predict(X), rtol=1e-12)
    assert fm.score(X, y) == pytest.approx(sk.score(X, y), rel=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "multioutput"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_shuffled_epochs_match_sklearn(task, solver, early_stopping, device):
    """Same random_state: the same initial weights, split and row order."""
    SK, FM, extra = _classes(task)
    params = dict(solver=solver, hidden_layer_sizes=(8,), batch_size=10, max_iter=6,
                  learning_rate_init=0.02, random_state=3, early_stopping=early_stopping,
                  validation_fraction=0.2, n_iter_no_change=3, **extra)
    X, y = X_SMALL, _targets(task)
    sk = SK(**params).fit(X, y)
    fm = FM(device=device, **params).fit(X, y)
    _assert_same_weights(sk, fm, rtol=1e-8)
    assert fm.n_iter_ == sk.n_iter_
    assert fm.t_ == sk.t_
    assert_allclose(fm.loss_curve_, sk.loss_curve_, rtol=1e-9)
    if early_stopping:
        assert_allclose(fm.validation_scores_, sk.validation_scores_, rtol=1e-9)
        assert fm.best_validation_score_ == pytest.approx(sk.best_validation_score_)
        assert fm.best_loss_ is None and sk.best_loss_ is None
        assert len(fm.validation_loss_curve_) == fm.n_iter_
    else:
        assert fm.best_loss_ == pytest.approx(sk.best_loss_, rel=1e-9)
        assert fm.validation_scores_ is None and fm.validation_loss_curve_ is None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_sgd_learning_rate_schedules_match_sklearn(schedule, device):
    # tol=1 makes every epoch "not improving": the adaptive schedule divides the
    # learning rate by 5 after n_iter_no_change + 1 epochs, several times.
    params = dict(solver="sgd", learning_rate=schedule, learning_rate_init=0.1,
                  power_t=0.4, hidden_layer_sizes=(6,), batch_size=15, max_iter=9,
                  random_state=2, tol=1.0 if schedule == "adaptive" else 1e-4,
                  n_iter_no_change=1)
    X, y = X_SMALL, _targets("multiclass")
    sk = sknn.MLPClassifier(**params).fit(X, y)
    fm = fastmlp.MLPClassifier(device=device, **params).fit(X, y)
    _assert_same_weights(sk, fm, rtol=1e-8)
    assert fm.n_iter_ == sk.n_iter_
    assert fm._optimizer["spec"].learning_rate == pytest.approx(
        sk._optimizer.learning_rate, rel=1e-12)
    if schedule == "adaptive":
        assert sk._optimizer.learning_rate < 0.1 / 5  # the schedule really acted


@pytest.mark.filterwarnings("ignore:Got `batch_size`:UserWarning")  # 25 > 20 rows
@pytest.mark.parametrize("device", DEVICES)
def test_partial_fit_sequence_matches_sklearn(device):
    X, y = X_SMALL, _targets("multiclass")
    params = dict(solver="adam", hidden_layer_sizes=(8,), random_state=0, batch_size=25,
                  learning_rate_init=0.01)
    sk = sknn.MLPClassifier(**params)
    fm = fastmlp.MLPClassifier(device=device, **params)
    classes = np.unique(y)
    for lo in (0, 20, 40, 0):
        sk.partial_fit(X[lo:lo + 20], y[lo:lo + 20], classes=classes)
        fm.partial_fit(X[lo:lo + 20], y[lo:lo + 20], classes=classes)
    _assert_same_weights(sk, fm, rtol=1e-9)
    assert fm.t_ == sk.t_


@pytest.mark.parametrize("device", DEVICES)
def test_float32_training_stays_float32_and_close_to_sklearn(device):
    X, y = X_SMALL.astype(np.float32), _targets("multiclass")
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, batch_size=20,
                  learning_rate_init=0.01)
    sk = sknn.MLPClassifier(**params).fit(X, y)
    fm = fastmlp.MLPClassifier(device=device, **params).fit(X, y)
    assert all(c.dtype == np.float32 for c in fm.coefs_ + fm.intercepts_)
    assert fm.predict_proba(X).dtype == np.float32
    _assert_same_weights(sk, fm, rtol=2e-4)


# ---------------------------------------------------------------------------------
# Accuracy against scikit-learn (same settings, 5-fold cross-validation).

def _cv_both(SK, FM, X, y, cv=5, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = cross_val_score(make_pipeline(StandardScaler(), SK(**params)), X, y, cv=cv)
        fm = cross_val_score(make_pipeline(StandardScaler(), FM(device=FAST, **params)),
                             X, y, cv=cv)
    return sk.mean(), fm.mean()


@pytest.mark.parametrize("loader, params, floor", [
    (load_iris, dict(hidden_layer_sizes=(20,), solver="lbfgs", max_iter=200), 0.93),
    (load_breast_cancer, dict(hidden_layer_sizes=(30,), max_iter=60,
                              learning_rate_init=0.01), 0.95),
    (load_digits, dict(hidden_layer_sizes=(40,), max_iter=25, learning_rate_init=0.01,
                       batch_size=100), 0.90),
], ids=["iris", "breast_cancer", "digits"])
def test_classification_accuracy_matches_sklearn(loader, params, floor):
    X, y = loader(return_X_y=True)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    sk, fm = _cv_both(sknn.MLPClassifier, fastmlp.MLPClassifier, X, y, cv=cv,
                      random_state=0, **params)
    assert fm > floor
    assert abs(fm - sk) < 0.02


def test_regression_r2_matches_sklearn():
    X, y = make_regression(n_samples=300, n_features=10, noise=10.0, random_state=0)
    y = y / y.std()
    for params in (dict(solver="lbfgs", max_iter=50),
                   dict(solver="adam", max_iter=50, learning_rate_init=0.01)):
        sk, fm = _cv_both(sknn.MLPRegressor, fastmlp.MLPRegressor, X, y,
                          hidden_layer_sizes=(20,), random_state=0, **params)
        assert fm > 0.9
        assert abs(fm - sk) < 0.02


def test_multilabel_accuracy_matches_sklearn():
    X, Y = make_multilabel_classification(n_samples=200, n_features=10, n_classes=4,
                                          random_state=0)
    sk, fm = _cv_both(sknn.MLPClassifier, fastmlp.MLPClassifier, X, Y, cv=3,
                      hidden_layer_sizes=(20,), solver="lbfgs", max_iter=100,
                      random_state=0)
    assert fm > 0.25  # subset accuracy
    assert abs(fm - sk) < 0.03


def test_poisson_regression_matches_sklearn_and_glm():
    from sklearn.linear_model import PoissonRegressor
    rng = np.random.RandomState(0)
    n = 200
    X = rng.uniform(0, 1, (n, 1))
    y = rng.poisson(np.exp(X[:, 0] + 1))
    glm = PoissonRegressor(alpha=0, tol=1e-7).fit(X, y)
    params = dict(loss="poisson", hidden_layer_sizes=(1,), activation="identity",
                  alpha=0, solver="lbfgs", tol=1e-7, random_state=1)
    fm = fastmlp.MLPRegressor(device=FAST, **params).fit(X, y)
    sk = sknn.MLPRegressor(**params).fit(X, y)
    assert fm.out_activation_ == "exp"
    assert_allclose(fm.predict(X), glm.predict(X), rtol=1e-4)
    assert_allclose(fm.predict(X), sk.predict(X), rtol=1e-6)
    # a hidden layer with adam: same deviance as scikit-learn
    params = dict(loss="poisson", hidden_layer_sizes=(10,), max_iter=60,
                  learning_rate_init=0.01, random_state=0)
    fm = fastmlp.MLPRegressor(device=FAST, **params).fit(X, y)
    sk = sknn.MLPRegressor(**params).fit(X, y)
    dev_fm = mean_poisson_deviance(y, fm.predict(X))
    dev_sk = mean_poisson_deviance(y, sk.predict(X))
    assert dev_fm == pytest.approx(dev_sk, rel=1e-6)
    assert dev_fm < mean_poisson_deviance(y, np.full(n, y.mean()))
