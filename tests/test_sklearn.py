"""Behaviour of fastmlp.MLPClassifier / MLPRegressor: scikit-learn's API and
semantics (attributes, solvers, early stopping, warm start, partial_fit, sparse,
dtypes, labels, pickling, errors) and fastmlp's extras (device, n_threads, dropout,
class_weight, per-layer activations, X_val / y_val, early_stopping_monitor)."""

import inspect
import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import neural_network as sknn
from sklearn.datasets import load_iris, make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.class_weight import compute_sample_weight

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor
from fastmlp import _sklearn_base




DEVICES = [
    "numpy",
    "cpu",
] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if fastmlp.HAS_CUPY else [])
#: device of tests that need one engine only
DEVICE = "cpu"

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = (X_IRIS - X_IRIS.mean(0)) / X_IRIS.std(0)
RNG = np.random.RandomState(0)
X_REG = RNG.randn(80, 5)
Y_REG = X_REG @ RNG.randn(5) + 0.1 * RNG.randn(80)
EXTRAS = {"device", "n_threads", "dropout", "class_weight", "early_stopping_monitor"}


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _same_weights(a, b, rtol=0.0):
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert_allclose(x, y, rtol=rtol, atol=0 if rtol == 0 else rtol * 1e-3)


# ---------------------------------------------------------------------- the API
@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, sknn.MLPClassifier),
                                          (MLPRegressor, sknn.MLPRegressor)])
def test_constructor_matches_sklearn(ours, theirs):
    mine = inspect.signature(ours.__init__).parameters
    ref = inspect.signature(theirs.__init__).parameters
    shared = [name for name in mine if name not in EXTRAS]
    assert shared == list(ref)  # same names, same order
    for name in ref:
        assert mine[name].kind == ref[name].kind
        assert mine[name].default == ref[name].default
    for name in EXTRAS & set(mine):
        assert mine[name].kind == inspect.Parameter.KEYWORD_ONLY
    assert {k: v for k, v in ours().get_params().items() if k not in EXTRAS} == \
        theirs().get_params()
    assert ours().device == "cpu" and ours().dropout == 0.0


@pytest.mark.parametrize("ours,theirs", [(MLPClassifier, sknn.MLPClassifier),
                                         (MLPRegressor, sknn.MLPRegressor)])
def test_unfitted_attributes_match_sklearn(ours, theirs):
    """Every attribute scikit-learn's estimator has before fit, with its value: the
    parameters and, for the classifier, ``loss`` (not a parameter)."""
    for name, value in vars(theirs()).items():
        assert getattr(ours(), name) == value, name
    assert "loss" not in MLPClassifier().get_params()


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_fitted_attributes_match_sklearn(solver, early_stopping):
    params = dict(solver=solver, early_stopping=early_stopping, max_iter=5,
                  hidden_layer_sizes=(4,), random_state=0)
    sk = _quiet(sknn.MLPClassifier(**params).fit, X_IRIS, Y_IRIS)
    fm = _quiet(MLPClassifier(device=DEVICE, **params).fit, X_IRIS, Y_IRIS)

    def fitted(est):
        return {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}

    assert fitted(sk) <= fitted(fm)
    assert fitted(fm) - fitted(sk) <= {"validation_loss_curve_", "best_validation_loss_"}
    for name in fitted(sk):
        a, b = getattr(sk, name), getattr(fm, name)
        assert type(a) is type(b) or (np.isscalar(a) and np.isscalar(b)), name
    assert fm.n_layers_ == 3 and fm.out_activation_ == "softmax"
    assert_array_equal(fm.classes_, [0, 1, 2])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_float64_X_beyond_float32_range_for_float32_weights_raises(Estimator, device):
    """Weights fitted in float32 compute in float32: finite float64 X too large for it is
    a ValueError in every method, never an infinity or a NaN in the outputs."""
    y = Y_IRIS if Estimator is MLPClassifier else X_IRIS[:, 0]
    est = _quiet(Estimator(hidden_layer_sizes=(5,), max_iter=3, warm_start=True,
                           device=device, random_state=0).fit, X_IRIS.astype(np.float32), y)
    X = X_IRIS.copy()
    X[3, 1] = 1e39
    methods = [est.predict, lambda X: est.score(X, y), lambda X: est.fit(X, y),
               lambda X: est.partial_fit(X, y)]
    if Estimator is MLPClassifier:
        methods.append(est.predict_proba)
    for method in methods:
        with pytest.raises(ValueError, match="too large for float32"):
            method(X)
        with pytest.raises(ValueError, match="too large for float32"):
            method(sp.csr_matrix(X))
    assert np.isfinite(est.predict(X_IRIS)).all()
    X[4, 1] = X[5, 1] = 1e308     # their sum overflows float64 too: still the ValueError
    with pytest.raises(ValueError, match="too large for float32"):
        est.predict(X)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_float32_kept_other_dtypes_float64(Estimator, solver, device):
    y = Y_IRIS if Estimator is MLPClassifier else X_IRIS[:, 0]
    for dtype, expected in [(np.float32, np.float32), (np.float64, np.float64),
                            (np.int64, np.float64)]:
        X = (X_IRIS * 3).astype(dtype)
        est = _quiet(Estimator(hidden_layer_sizes=(5,), max_iter=3, solver=solver,
                               device=device, random_state=0).fit, X, y)
        assert all(c.dtype == expected for c in est.coefs_ + est.intercepts_)
        if Estimator is MLPRegressor:
            assert est.predict(X).dtype == expected


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_equals_dense(fmt, device, monkeypatch):
    X = sp.random(60, 12, density=0.3, random_state=0, format=fmt)
    y = np.arange(60) % 3
    params = dict(hidden_layer_sizes=(6,), max_iter=4, random_state=0, device=device)
    dense = _quiet(MLPClassifier(**params).fit, X.toarray(), y)
    sparse = _quiet(MLPClassifier(**params).fit, X, y)
    _same_weights(dense, sparse)
    monkeypatch.setattr(_sklearn_base, "_SPARSE_PREDICT_ELEMENTS", 100)  # 8 row blocks
    assert_allclose(sparse.predict_proba(X), dense.predict_proba(X.toarray()),
                    rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_multilabel_and_multioutput(device):
    X, Y = make_multilabel_classification(n_samples=60, n_features=5, n_classes=3,
                                          random_state=0)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, device=device,
                               random_state=0).fit, X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    assert clf.predict(X).shape == Y.shape
    assert set(np.unique(clf.predict(X))) <= {0, 1}
    proba = clf.predict_proba(X)
    assert proba.shape == Y.shape and ((proba >= 0) & (proba <= 1)).all()
    reg = _quiet(MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, device=device,
                              random_state=0).fit, X, Y * 2.0)
    assert reg.predict(X).shape == Y.shape and reg.n_outputs_ == 3


def test_string_and_object_labels():
    labels = np.array(["setosa", "versicolor", "virginica"])
    y = labels[Y_IRIS]
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0,
                               learning_rate_init=0.05, device=DEVICE,
                               early_stopping=True).fit, X_IRIS, y)
    assert_array_equal(clf.classes_, labels)
    assert set(clf.predict(X_IRIS)) <= set(labels)
    assert clf.score(X_IRIS, y) > 0.6
    obj = _quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0,
                               device=DEVICE).fit, X_IRIS, y.astype(object))
    sk_obj = _quiet(sknn.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3,
                                       random_state=0).fit, X_IRIS, y.astype(object))
    assert_array_equal(obj.predict(X_IRIS), sk_obj.predict(X_IRIS))
    assert obj.predict(X_IRIS).dtype == sk_obj.predict(X_IRIS).dtype
    mixed = np.array([1 if v == 0 else "a" for v in Y_IRIS], dtype=object)
    with pytest.raises(TypeError):  # scikit-learn cannot sort them either
        sknn.MLPClassifier().fit(X_IRIS, mixed)
    with pytest.raises(TypeError):
        MLPClassifier(device=DEVICE).fit(X_IRIS, mixed)


# ------------------------------------------------------------ pickling, partial_fit
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_pickle_round_trip_and_partial_fit_after_unpickling(solver, device, tmp_path):
    params = dict(solver=solver, hidden_layer_sizes=(6,), random_state=0, batch_size=30,
                  learning_rate_init=0.01, device=device)
    straight = MLPClassifier(**params)
    for _ in range(3):
        straight.partial_fit(X_IRIS, Y_IRIS, classes=[0, 1, 2])

    est = MLPClassifier(**params).partial_fit(X_IRIS, Y_IRIS, classes=[0, 1, 2])
    blob = pickle.dumps(est)
    assert b"CPUNetwork" not in blob and b"NumpyNetwork" not in blob  # no engine inside
    est = pickle.loads(blob)
    assert_allclose(est.predict_proba(X_IRIS),
                    pickle.loads(blob).predict_proba(X_IRIS), rtol=0)
    est.partial_fit(X_IRIS, Y_IRIS)
    joblib.dump(est, tmp_path / "mlp.joblib")
    est = joblib.load(tmp_path / "mlp.joblib")
    est.partial_fit(X_IRIS, Y_IRIS)
    _same_weights(straight, est)  # the optimizer state travelled with the pickle
    assert est.t_ == straight.t_


def test_partial_fit_after_joblib_load_learns_new_target(tmp_path):
    est = _quiet(MLPRegressor(hidden_layer_sizes=(42,), random_state=42,
                              learning_rate_init=0.01, device=DEVICE).fit, [[2]], [4])
    joblib.dump(est, tmp_path / "mlp.pkl")
    est = joblib.load(tmp_path / "mlp.pkl")
    for _ in range(200):
        est.partial_fit([[2]], [1])
    assert_allclose(est.predict([[2]]), [1], rtol=1e-4)


def test_partial_fit_rules():
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier(device=DEVICE).partial_fit(X_IRIS, Y_IRIS)
    clf = MLPClassifier(device=DEVICE).partial_fit(X_IRIS[:50], Y_IRIS[:50], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X_IRIS, Y_IRIS + 1)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    # scikit-learn's regressor keeps partial_fit for lbfgs (a warm-started lbfgs fit)
    reg = _quiet(MLPRegressor(solver="lbfgs", max_iter=5, device=DEVICE).partial_fit,
                 X_REG, Y_REG)
    assert reg.n_iter_ >= 1
    es = MLPClassifier(early_stopping=True, random_state=0, max_iter=5, device=DEVICE)
    _quiet(es.fit, X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        es.partial_fit(X_IRIS, Y_IRIS)


def test_predict_between_partial_fits_reuses_the_engine():
    est = MLPRegressor(hidden_layer_sizes=(4,), alpha=0.1, dropout=0.2, device=DEVICE,
                       random_state=0).partial_fit(X_REG, Y_REG)
    net = est._net
    est.predict(X_REG)
    est.partial_fit(X_REG, Y_REG)
    assert est._net is net


# ------------------------------------------------------------ stopping, warm start
def test_n_iter_no_change_and_tol():
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=500, tol=0.5, n_iter_no_change=2,
                       device=DEVICE, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X_REG, Y_REG)
    # the first epoch improves on inf, the next ones not by 0.5: stop when the count
    # of such epochs exceeds n_iter_no_change, as scikit-learn does
    assert est.n_iter_ == 4
    sk = sknn.MLPRegressor(hidden_layer_sizes=(4,), max_iter=500, tol=0.5,
                           n_iter_no_change=2, random_state=0).fit(X_REG, Y_REG)
    assert sk.n_iter_ == est.n_iter_
    est.set_params(n_iter_no_change=np.inf, max_iter=7)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        est.fit(X_REG, Y_REG)
    assert est.n_iter_ == 7 and len(est.loss_curve_) == 7
    assert est.best_loss_ == min(est.loss_curve_)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_warm_start_counts_iterations_per_call(Estimator, solver):
    y = Y_IRIS if Estimator is MLPClassifier else X_IRIS[:, 0]
    est = Estimator(solver=solver, warm_start=True, max_iter=10, n_iter_no_change=np.inf,
                    random_state=0, device=DEVICE)
    with pytest.warns(ConvergenceWarning):
        est.fit(X_IRIS, y)
    assert est.n_iter_ == 10
    before = [c.copy() for c in est.coefs_]
    est.set_params(max_iter=20)
    with pytest.warns(ConvergenceWarning):
        est.fit(X_IRIS, y)
    assert est.n_iter_ == 20
    assert not np.allclose(before[0], est.coefs_[0])
    if solver != "lbfgs":
        assert est.t_ == 30 * len(y) and len(est.loss_curve_) == 30


def test_warm_start_errors():
    clf = _quiet(MLPClassifier(warm_start=True, max_iter=2, device=DEVICE).fit,
                 X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        clf.fit(X_IRIS[:100], Y_IRIS[:100])
    clf.set_params(hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match="refit with warm_start=False"):
        clf.fit(X_IRIS, Y_IRIS)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_warm_start_with_early_stopping_continues(Estimator):
    y = Y_IRIS if Estimator is MLPClassifier else X_IRIS[:, 0]
    est = Estimator(max_iter=10, random_state=0, warm_start=True, early_stopping=True,
                    device=DEVICE)
    _quiet(est.fit, X_IRIS, y)
    n = len(est.validation_scores_)
    est.set_params(max_iter=20)
    _quiet(est.fit, X_IRIS, y)
    assert len(est.validation_scores_) > n


def test_early_stopping_split_rules():
    with pytest.raises(ValueError, match="least populated classes"):  # stratified
        MLPClassifier(early_stopping=True, device=DEVICE).fit(
            [[1, 2], [2, 3], [3, 4], [4, 5]], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="The validation set is too small"):
        MLPRegressor(early_stopping=True, device=DEVICE).fit(X_REG[:2], Y_REG[:2])


@pytest.mark.parametrize("monitor", ["score", "loss"])
def test_early_stopping_restores_best_weights(monitor):
    X_tr, y_tr, X_va, y_va = X_IRIS[::2], Y_IRIS[::2], X_IRIS[1::2], Y_IRIS[1::2]
    clf = MLPClassifier(hidden_layer_sizes=(10,), solver="sgd", learning_rate_init=0.3,
                        early_stopping=True, early_stopping_monitor=monitor,
                        n_iter_no_change=5, max_iter=200, random_state=0, alpha=0.0,
                        device=DEVICE)
    clf.fit(X_tr, y_tr, X_val=X_va, y_val=y_va)
    assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.t_ == clf.n_iter_ * len(X_tr)  # X_val replaced the internal split
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_validation_loss_ == min(clf.validation_loss_curve_)
    if monitor == "score":
        assert clf.score(X_va, y_va) == clf.best_validation_score_
    else:
        assert log_loss(y_va, clf.predict_proba(X_va)) == pytest.approx(
            clf.best_validation_loss_, rel=1e-9)
    assert clf.n_iter_ < 200


def test_validation_data_without_early_stopping():
    reg = _quiet(MLPRegressor(hidden_layer_sizes=(5,), max_iter=8, device=DEVICE,
                              random_state=0).fit, X_REG[:60], Y_REG[:60],
                 X_val=X_REG[60:], y_val=Y_REG[60:])
    assert len(reg.validation_loss_curve_) == len(reg.validation_scores_) == 8
    assert reg.best_loss_ == min(reg.loss_curve_)  # stopping still on training loss
    # the recorded loss is half the mean squared error of the final weights
    last = 0.5 * np.mean((reg.predict(X_REG[60:]) - Y_REG[60:]) ** 2)
    assert reg.validation_loss_curve_[-1] == pytest.approx(last, rel=1e-9)
    lb = _quiet(MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=8,
                             device=DEVICE, random_state=0).fit, X_REG[:60], Y_REG[:60],
                X_val=X_REG[60:], y_val=Y_REG[60:])
    assert len(lb.validation_loss_curve_) == lb.n_iter_
    plain = _quiet(MLPRegressor(max_iter=2, device=DEVICE).fit, X_REG, Y_REG)
    assert plain.validation_loss_curve_ is None and plain.validation_scores_ is None


def test_validation_data_errors():
    with pytest.raises(ValueError, match="together"):
        MLPRegressor(device=DEVICE).fit(X_REG, Y_REG, X_val=X_REG)
    with pytest.raises(ValueError, match="classes not seen"):
        MLPClassifier(device=DEVICE).fit(X_IRIS, Y_IRIS, X_val=X_IRIS, y_val=Y_IRIS + 5)
    with pytest.raises(ValueError, match="features"):
        MLPRegressor(device=DEVICE).fit(X_REG, Y_REG, X_val=X_REG[:, :3], y_val=Y_REG)


def test_divergence():
    X = np.finfo(np.float64).max * RNG.uniform(size=(10, 2))
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPRegressor(device=DEVICE).fit(X, RNG.randn(10))
    reg = MLPRegressor(hidden_layer_sizes=100, activation="identity", solver="sgd",
                       learning_rate_init=1, max_iter=20, early_stopping=True,
                       random_state=0, device=DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X_IRIS, Y_IRIS)
    assert np.isnan(reg.validation_scores_[-1]) and isinstance(reg.validation_scores_[-1],
                                                               float)
    assert reg.n_iter_ == 20
    assert all(np.isfinite(c).all() for c in reg.coefs_)  # the best weights are back


def test_verbose_prints_progress(capsys):
    _quiet(MLPRegressor(solver="sgd", max_iter=2, verbose=True, device=DEVICE).fit,
           X_REG, Y_REG)
    assert "Iteration 1, loss =" in capsys.readouterr().out


# --------------------------------------------------------------- sample weights
@pytest.mark.parametrize("device", DEVICES)
def test_sample_weight_zero_and_integer_equivalence_lbfgs(device):
    sw = RNG.randint(0, 3, len(X_REG))
    params = dict(solver="lbfgs", hidden_layer_sizes=(4,), max_iter=30, random_state=0,
                  device=device)
    weighted = _quiet(MLPRegressor(**params).fit, X_REG, Y_REG, sample_weight=sw)
    repeated = _quiet(MLPRegressor(**params).fit, np.repeat(X_REG, sw, axis=0),
                      np.repeat(Y_REG, sw))
    assert_allclose(weighted.predict(X_REG), repeated.predict(X_REG), rtol=1e-6)


def test_sample_weight_ones_with_early_stopping_equals_none():
    params = dict(hidden_layer_sizes=10, early_stopping=True, tol=1e-2,
                  learning_rate_init=0.01, batch_size=10, random_state=42, device=DEVICE)
    m1 = MLPRegressor(**params).fit(X_REG, Y_REG, sample_weight=np.ones(len(Y_REG)))
    m2 = MLPRegressor(**params).fit(X_REG, Y_REG)
    assert_allclose(m1.predict(X_REG), m2.predict(X_REG))


def test_negative_sample_weight_is_rejected():
    sw = np.ones(len(Y_REG))
    sw[3] = -1
    with pytest.raises(ValueError, match="sample_weight"):
        MLPRegressor(device=DEVICE).fit(X_REG, Y_REG, sample_weight=sw)
    # also where 'balanced' class weights would weigh the class of the negative rows by 0
    y = np.arange(len(Y_IRIS)) % 3
    sw = np.where(y == 2, -1.0, 1.0)
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        MLPClassifier(class_weight="balanced", device=DEVICE).fit(X_IRIS, y, sample_weight=sw)


# ----------------------------------------------------------------- fastmlp extras
def test_class_weight():
    y = np.r_[np.zeros(120, int), np.ones(30, int)]
    params = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0, device=DEVICE)
    balanced = _quiet(MLPClassifier(class_weight="balanced", **params).fit, X_IRIS, y)
    manual = _quiet(MLPClassifier(**params).fit, X_IRIS, y,
                    sample_weight=compute_sample_weight("balanced", y))
    _same_weights(balanced, manual)
    sw = RNG.uniform(0.5, 1.5, len(y))
    as_dict = _quiet(MLPClassifier(class_weight={0: 1.0, 1: 4.0}, **params).fit,
                     X_IRIS, y, sample_weight=sw)
    manual = _quiet(MLPClassifier(**params).fit, X_IRIS, y,
                    sample_weight=sw * np.where(y == 1, 4.0, 1.0))
    _same_weights(as_dict, manual)
    # with sample weights, 'balanced' weighs each class by its total sample weight, as
    # scikit-learn's compute_class_weight(..., sample_weight=) and its classifiers do; a
    # class whose rows all weigh 0 keeps them at 0
    sw[:10] = 0.0
    balanced = _quiet(MLPClassifier(class_weight="balanced", **params).fit, X_IRIS, y,
                      sample_weight=sw)
    totals = np.array([sw[y == 0].sum(), sw[y == 1].sum()])
    manual = _quiet(MLPClassifier(**params).fit, X_IRIS, y,
                    sample_weight=sw * (totals.sum() / (2 * totals))[y])
    _same_weights(balanced, manual)
    y3 = y.copy()
    y3[:5] = 2  # class 2 only on rows of weight 0
    balanced = _quiet(MLPClassifier(class_weight="balanced", **params).fit, X_IRIS, y3,
                      sample_weight=sw)
    totals = np.array([sw[y3 == c].sum() for c in range(3)])
    manual = _quiet(MLPClassifier(**params).fit, X_IRIS, y3,
                    sample_weight=sw * np.r_[totals[:2].sum() / (3 * totals[:2]), 0.0][y3])
    _same_weights(balanced, manual)
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        MLPClassifier(class_weight="balanced", device=DEVICE).partial_fit(
            X_IRIS, y, classes=[0, 1])
    MLPClassifier(class_weight={0: 2.0}, device=DEVICE).partial_fit(X_IRIS, y,
                                                                    classes=[0, 1])
    X, Y = make_multilabel_classification(n_samples=40, n_classes=3, random_state=0)
    _quiet(MLPClassifier(class_weight="balanced", **params).fit, X, Y)
    with pytest.raises(InvalidParameterError):
        MLPClassifier(class_weight="bogus").fit(X_IRIS, y)


@pytest.mark.parametrize("device", DEVICES)
def test_dropout(device):
    params = dict(hidden_layer_sizes=(16, 8), max_iter=5, random_state=0, device=device)
    plain = _quiet(MLPClassifier(**params).fit, X_IRIS, Y_IRIS)
    drop = _quiet(MLPClassifier(dropout=0.3, **params).fit, X_IRIS, Y_IRIS)
    again = _quiet(MLPClassifier(dropout=0.3, **params).fit, X_IRIS, Y_IRIS)
    per_layer = _quiet(MLPClassifier(dropout=[0.3, 0.0], **params).fit, X_IRIS, Y_IRIS)
    _same_weights(drop, again)  # seeded by random_state
    assert not np.allclose(plain.coefs_[0], drop.coefs_[0])
    assert not np.allclose(per_layer.coefs_[1], drop.coefs_[1])
    assert_array_equal(drop.predict_proba(X_IRIS), drop.predict_proba(X_IRIS))
    with pytest.raises(ValueError, match="one per hidden"):
        MLPClassifier(dropout=[0.1], hidden_layer_sizes=(4, 4), device=device).fit(
            X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="hidden layer"):
        MLPClassifier(dropout=0.1, hidden_layer_sizes=(), device=device).fit(X_IRIS, Y_IRIS)
    with pytest.raises(InvalidParameterError):
        MLPClassifier(dropout=1.0).fit(X_IRIS, Y_IRIS)
    with pytest.warns(UserWarning, match="dropout is not used"):
        _quiet(MLPClassifier(dropout=0.2, solver="lbfgs", max_iter=3, device=device).fit,
               X_IRIS, Y_IRIS)


@pytest.mark.parametrize("activation", ["leaky_relu", "elu", "softplus", "gelu",
                                        ("tanh", "relu"), ["logistic", "gelu"]])
def test_extra_and_per_layer_activations(activation):
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(12, 6), activation=activation,
                               solver="lbfgs", max_iter=100, random_state=0,
                               device=DEVICE).fit, X_IRIS, Y_IRIS)
    assert clf.score(X_IRIS, Y_IRIS) > 0.9


def test_activation_errors():
    with pytest.raises(ValueError, match="one activation name per entry"):
        MLPClassifier(hidden_layer_sizes=(4, 4), activation=("tanh",)).fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="not supported"):
        MLPClassifier(hidden_layer_sizes=(4,), activation=("swish",)).fit(X_IRIS, Y_IRIS)
    with pytest.raises(InvalidParameterError):
        MLPClassifier(activation="swish").fit(X_IRIS, Y_IRIS)


def test_device_and_threads():
    est = _quiet(MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, device="numpy",
                              n_threads=1, random_state=0).fit, X_REG, Y_REG)
    expected = est.predict(X_REG)
    est.set_params(device=DEVICE, n_threads=None)
    assert_allclose(est.predict(X_REG), expected, rtol=1e-12)
    _quiet(MLPRegressor(max_iter=2, device="auto", n_threads=-1).fit, X_REG, Y_REG)
    with pytest.raises(InvalidParameterError):
        MLPRegressor(device="tpu").fit(X_REG, Y_REG)
    with pytest.raises(InvalidParameterError):
        MLPRegressor(n_threads=0).fit(X_REG, Y_REG)
    if not fastmlp.HAS_CUPY:
        with pytest.raises(RuntimeError, match="cuda"):
            MLPRegressor(device="cuda").fit(X_REG, Y_REG)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_momentum_one_trains_like_scikit_learn():
    # scikit-learn accepts momentum in [0, 1]; so do we, with the same result
    from sklearn.neural_network import MLPRegressor as SkMLPRegressor
    kw = dict(solver="sgd", momentum=1.0, max_iter=3, shuffle=False, random_state=0,
              learning_rate_init=1e-3)
    ours = MLPRegressor(device=DEVICE, **kw).fit(X_REG, Y_REG)
    ref = SkMLPRegressor(**kw).fit(X_REG, Y_REG)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-9)


def test_feature_names_kept_with_early_stopping():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(RNG.randn(10, 2), columns=["a", "b"])
    for Estimator in (MLPClassifier, MLPRegressor):
        model = Estimator(early_stopping=True, validation_fraction=0.2, device=DEVICE)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            _quiet(model.fit, X, pd.Series(np.full(10, 1)))
        assert_array_equal(model.feature_names_in_, ["a", "b"])


# -------------------------------------------------------------- ecosystem
def test_pipeline_grid_search_cross_val_score():
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier(max_iter=30, learning_rate_init=0.05,
                                           random_state=0, device=DEVICE))])
    grid = GridSearchCV(pipe, {"mlp__hidden_layer_sizes": [(5,), (10,)],
                               "mlp__alpha": [1e-4, 1e-2]}, cv=3, n_jobs=2)
    _quiet(grid.fit, X_IRIS, Y_IRIS)
    assert grid.best_score_ > 0.8
    assert set(grid.best_params_) == {"mlp__hidden_layer_sizes", "mlp__alpha"}
    scores = _quiet(cross_val_score, MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs",
                                                  random_state=0, device=DEVICE),
                    X_REG, Y_REG, cv=3)
    assert scores.mean() > 0.9


# -------------------------------------------------------------- bad inputs
def _bad_cases():
    X, y = X_IRIS[:20], Y_IRIS[:20] // 1
    Xnan = X.copy()
    Xnan[0, 0] = np.nan
    fit = lambda **p: ("fit", p, (X, y), {})  # noqa: E731
    cases = {
        "hidden_zero": fit(hidden_layer_sizes=0),
        "hidden_tuple_zero": fit(hidden_layer_sizes=(3, 0)),
        "activation": fit(activation="bad"),
        "solver": fit(solver="newton"),
        "alpha": fit(alpha=-1.0),
        "batch_size": fit(batch_size=0),
        "learning_rate": fit(learning_rate="cyclic"),
        "learning_rate_init": fit(learning_rate_init=0.0),
        "max_iter": fit(max_iter=0),
        "momentum": fit(momentum=1.5),
        "validation_fraction": fit(validation_fraction=1.0),
        "beta_1": fit(beta_1=1.0),
        "epsilon": fit(epsilon=0.0),
        "n_iter_no_change": fit(n_iter_no_change=0),
        "max_fun": fit(max_fun=0),
        "tol": fit(tol=-1.0),
        "shuffle": fit(shuffle="yes"),
        "nan": ("fit", {}, (Xnan, y), {}),
        "inf": ("fit", {}, (X * np.inf, y), {}),
        "1d": ("fit", {}, (X[:, 0], y), {}),
        "3d": ("fit", {}, (X[:, :, None], y), {}),
        "complex": ("fit", {}, (X + 1j, y), {}),
        "strings": ("fit", {}, (np.full(X.shape, "a"), y), {}),
        "empty": ("fit", {}, (X[:0], y[:0]), {}),
        "y_none": ("fit", {}, (X, None), {}),
        "y_length": ("fit", {}, (X, y[:-1]), {}),
        "sw_length": ("fit", {}, (X, y), {"sample_weight": np.ones(3)}),
        "sw_2d": ("fit", {}, (X, y), {"sample_weight": np.ones((20, 2))}),
        "predict_unfitted": ("predict", {}, (X,), {}),
        "predict_features": ("fit_predict_other", {}, (X, y), {}),
        "partial_no_classes": ("partial_fit", {}, (X, y), {}),
    }
    return cases


@pytest.mark.parametrize("which, case", [
    (which, case) for which in ("classifier", "regressor") for case in _bad_cases()
    # the regressor's partial_fit needs no classes
    if not (which == "regressor" and case == "partial_no_classes")])
def test_bad_input_raises_same_error_type_as_sklearn(case, which):
    method, params, args, kwargs = _bad_cases()[case]
    pair = ((sknn.MLPClassifier, MLPClassifier) if which == "classifier"
            else (sknn.MLPRegressor, MLPRegressor))
    errors = []
    for Estimator, extra in zip(pair, ({}, {"device": DEVICE}), strict=True):
        est = Estimator(**{"max_iter": 2, **extra, **params})
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if method == "fit_predict_other":
                    est.fit(*args).predict(args[0][:, :2])
                else:
                    getattr(est, method)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the type is what is compared
            errors.append(type(exc))
        else:
            errors.append(None)
    assert errors[0] is not None, "scikit-learn accepted this input"
    assert errors[1] is errors[0]


def test_classifier_specific_bad_inputs_match_sklearn():
    y_cont = np.linspace(0, 1, len(X_IRIS))
    y_multi = np.c_[Y_IRIS, Y_IRIS]  # multiclass-multioutput
    for y in (y_cont, y_multi):
        with pytest.raises(ValueError):
            sknn.MLPClassifier().fit(X_IRIS, y)
        with pytest.raises(ValueError):
            MLPClassifier(device=DEVICE).fit(X_IRIS, y)
    with pytest.raises(NotFittedError):
        MLPClassifier().predict_proba(X_IRIS)
    with pytest.raises(ValueError):
        MLPRegressor(loss="poisson", device=DEVICE).fit(X_REG, Y_REG)  # y < 0
    # a pickle made of a fitted estimator still refuses wrong feature counts
    est = pickle.loads(pickle.dumps(_quiet(MLPRegressor(max_iter=2, device=DEVICE).fit,
                                           X_REG, Y_REG)))
    with pytest.raises(ValueError, match="features"):
        est.predict(X_REG[:, :2])


def test_warm_start_from_lbfgs_to_adam():
    est = _quiet(MLPRegressor(solver="lbfgs", max_iter=5, warm_start=True,
                              device=DEVICE, random_state=0).fit, X_REG, Y_REG)
    est.set_params(solver="adam", max_iter=3)
    _quiet(est.fit, X_REG, Y_REG)
    assert len(est.loss_curve_) == 3 and est.n_iter_ == 3


# ---- found by the robustness audit (session 12) -----------------------------------------------
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_early_stopping_switched_off_between_fits(how):
    # scikit-learn fails here with a TypeError (best_loss_ stays None); we go on from the
    # best training loss so far
    rng = np.random.RandomState(0)
    X, y = rng.randn(40, 3), np.arange(40) % 3
    m = fastmlp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0,
                              early_stopping=True, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m.fit(X, y)
        assert m.best_loss_ is None
        m.set_params(early_stopping=False)
        m.fit(X, y) if how == "warm_start" else m.partial_fit(X, y)
    assert m.best_loss_ == min(m.loss_curve_)
    assert len(m.loss_curve_) == (6 if how == "warm_start" else 4)


@pytest.mark.parametrize("Est", [fastmlp.MLPClassifier, fastmlp.MLPRegressor])
def test_dtypes_follow_scikit_learn(Est):
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    y = np.arange(40) % 3 if Est is fastmlp.MLPClassifier else X @ [1.0, 2.0, -1.0]
    ref = {fastmlp.MLPClassifier: sknn.MLPClassifier,
           fastmlp.MLPRegressor: sknn.MLPRegressor}[Est]
    out = "predict_proba" if Est is fastmlp.MLPClassifier else "predict"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for E in (Est, ref):
            m = E(hidden_layer_sizes=(5,), max_iter=3, random_state=0, warm_start=True)
            m.fit(X.astype(np.float32), y)
            # outputs in the dtype of X @ coefs_: float64 for float64 or integer X
            got = [getattr(m, out)(Xq).dtype for Xq in
                   (X.astype(np.float32), X, X.astype(int), sp.csr_matrix(X))]
            m.fit(X, y)        # a warm pass keeps the weights' dtype
            p = E(hidden_layer_sizes=(5,), random_state=0)
            p.partial_fit(X, y, **({"classes": [0, 1, 2]} if out == "predict_proba" else {}))
            p.partial_fit(X.astype(np.float32), y)
            got += [m.coefs_[0].dtype, p.coefs_[0].dtype]
            if E is Est:
                ours = got
        assert ours == got == [np.float32, np.float64, np.float64, np.float64,
                               np.float32, np.float64]


@pytest.mark.parametrize("Est", [fastmlp.MLPClassifier, fastmlp.MLPRegressor])
def test_changed_hidden_layer_sizes_on_fitted_weights_raises(Est):
    """A warm-started fit or a partial_fit whose hidden_layer_sizes no longer match the
    fitted weights raises (scikit-learn silently keeps the old layers); a cold fit refits."""
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    y = np.arange(40) % 2 if Est is fastmlp.MLPClassifier else X[:, 0]
    m = _quiet(Est(hidden_layer_sizes=(5,), max_iter=3, warm_start=True).fit, X, y)
    m.set_params(hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match=r"shapes \[\(3, 5\), \(5, 1\)\].*warm_start=False"):
        m.fit(X, y)
    with pytest.raises(ValueError, match="partial_fit: start from a new estimator"):
        m.partial_fit(X, y)
    m.set_params(warm_start=False)
    assert _quiet(m.fit, X, y).coefs_[0].shape == (3, 7)


def test_bad_class_weights_layer_sizes_and_y_val_name_the_argument():
    rng = np.random.RandomState(0)
    X, y = rng.randn(30, 3), np.arange(30) % 3
    Yml = np.c_[y == 0, y == 1].astype(int)
    Xv, yv = rng.randn(10, 3), np.arange(10) % 3
    cases = [
        (dict(class_weight={0: -2}), X, y, {}, r"class_weight=\{0: -2\} must give every"),
        (dict(class_weight={0: np.nan}), X, y, {}, "finite weight >= 0"),
        (dict(class_weight={0: 0, 1: 0, 2: 0}), X, y, {}, "weight of 0"),
        (dict(class_weight=[1, 2]), X, Yml, {}, "list of 2 dicts"),
        ({}, X, Yml, dict(X_val=Xv, y_val=(yv == 0).astype(int)), r"y_val has shape \(10,\)"),
        ({}, X, Yml, dict(X_val=Xv, y_val=np.eye(3, dtype=int)[yv]), r"needs \(10, 2\)"),
        (dict(hidden_layer_sizes=("5",)), X, y, {}, "hidden_layer_sizes must hold whole"),
        (dict(hidden_layer_sizes=(None,)), X, y, {}, "hidden_layer_sizes must hold whole"),
        (dict(hidden_layer_sizes=([5],)), X, y, {}, "hidden_layer_sizes must hold whole"),
    ]
    for params, Xf, yf, fit_kw, match in cases:
        with pytest.raises(ValueError, match=match):
            MLPClassifier(max_iter=2, **params).fit(Xf, yf, **fit_kw)


def test_targets_beyond_float32_are_named_for_float32_data():
    rng = np.random.RandomState(0)
    X = rng.randn(20, 3).astype(np.float32)
    with pytest.raises(ValueError, match="y has values too large for float32"):
        MLPRegressor(max_iter=2).fit(X, np.full(20, 1e39))


def test_sample_weights_that_underflow_float32_are_named():
    rng = np.random.RandomState(0)
    X, y = rng.randn(20, 3).astype(np.float32), np.arange(20) % 2
    with pytest.raises(ValueError, match="rounds to 0"):
        MLPClassifier(max_iter=2).fit(X, y, sample_weight=np.full(20, 1e-50))
    with pytest.raises(ValueError, match="at least one non-zero"):   # scikit-learn's check
        MLPClassifier(max_iter=2).fit(X, y, sample_weight=np.zeros(20))


def test_minibatches_whose_weights_are_all_zero_train_on():
    # scikit-learn fails on such a batch (ZeroDivisionError: its loss is normalised by the
    # batch's weight sum); fastmlp normalises it by its row count: no data loss, the
    # penalty alone, on both engines alike (it had stopped as 'non-finite weights')
    rng = np.random.RandomState(0)
    X, y = rng.randn(40, 3), np.arange(40) % 2
    sw = np.ones(40)
    sw[:10] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fits = [MLPClassifier(hidden_layer_sizes=(5,), batch_size=5, max_iter=3,
                              shuffle=False, random_state=0, device=d).fit(
                                  X, y, sample_weight=sw) for d in ("cpu", "numpy")]
    assert all(np.isfinite(f.loss_curve_).all() for f in fits)
    assert_allclose(fits[0].loss_curve_, fits[1].loss_curve_, rtol=1e-12)
    for a, b in zip(fits[0].coefs_, fits[1].coefs_):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_user_validation_sets_are_checked_and_named():
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 3), rng.randn(60)
    Xv, yv = rng.randn(10, 3), rng.randn(10)
    # one row: its R^2 is undefined, no epoch would improve, and the initial weights came
    # back silently; refused as scikit-learn refuses a too-small internal split
    with pytest.raises(ValueError, match="X_val has 1 row"):
        MLPRegressor(early_stopping=True, max_iter=5).fit(X, y, X_val=Xv[:1], y_val=yv[:1])
    with pytest.raises(ValueError, match="^X_val: X has 2 features"):
        MLPRegressor(max_iter=2).fit(X, y, X_val=Xv[:, :2], y_val=yv)
    with pytest.raises(ValueError, match="^X_val: Input X contains NaN"):
        MLPRegressor(max_iter=2).fit(X, y, X_val=np.where(Xv > 1, np.nan, Xv), y_val=yv)
    with pytest.raises(ValueError, match=r"^X_val/y_val: poisson loss needs y >= 0"):
        MLPRegressor(loss="poisson", max_iter=2).fit(X, np.abs(y), X_val=Xv, y_val=-np.abs(yv))
