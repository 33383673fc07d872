"""The Keras-style Model: construction, compile, fit arguments (Keras semantics),
evaluate/predict, summary, weights, optimizers and schedules, divergence, Ctrl-C,
progress display, and end-to-end learning."""

import io
import math
import os
import re
import signal
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Model, Sequential, optimizers, regularizers
from fastmlp import model as model_module
from fastmlp.callbacks import LambdaCallback




def _blobs(n=120, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centers[y] + rng.normal(size=(n, d))
    return X, y


def _clf(device, seed=0, d=4, k=3, hidden=8, opt="adam", metrics=("accuracy",)):
    m = Model([Dense(hidden, "relu", input_dim=d), Dense(k, "softmax")], seed=seed,
              device=device)
    m.compile(opt, "sparse_categorical_crossentropy", metrics=list(metrics))
    return m


def _weights_equal(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# ---- construction -----------------------------------------------------------------------
def test_sequential_is_model_and_defaults():
    assert Sequential is Model
    m = Model()
    assert m.dtype == "float32" and m.layers == [] and not m.built and not m.compiled
    assert fastmlp.load_model is model_module.load_model
    for mod in ("optimizers", "callbacks", "regularizers", "losses"):
        assert hasattr(fastmlp, mod)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"dtype": "int32"}, ValueError, "dtype"),
    ({"device": "tpu"}, ValueError, "device"),
    ({"n_threads": 0}, ValueError, "n_threads"),
])
def test_model_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Model(**kwargs)


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((0,), {}, ValueError, "units"),
    ((2.5,), {}, TypeError, "units"),
    ((3, "swish"), {}, ValueError, "activation"),
    ((3,), {"kernel_initializer": "ones"}, ValueError, "kernel_initializer"),
    ((3,), {"dropout": 1.0}, ValueError, "dropout"),
    ((3,), {"kernel_regularizer": "l3"}, ValueError, "kernel_regularizer"),
    ((3,), {"input_shape": (28, 28)}, ValueError, "flat"),
    ((3,), {"use_bias": "yes"}, TypeError, "use_bias"),
])
def test_dense_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Dense(*args, **kwargs)


def test_add_checks_and_layer_names():
    m = Model()
    with pytest.raises(TypeError, match="Dense"):
        m.add("dense")
    d = Dense(5, "relu", input_dim=3)
    m.add(d)
    m.add(Dense(4))
    m.add(Dense(2, "softmax", name="out"))
    assert [l.name for l in m.layers] == ["dense", "dense_1", "out"]
    with pytest.raises(ValueError, match="already belongs"):
        Model([d])
    with pytest.raises(ValueError, match="already in the model"):
        m.add(Dense(2, name="out"))
    with pytest.raises(ValueError, match="input_dim=7"):
        Model([Dense(5, input_dim=3), Dense(2, input_dim=7)])
    m.build()
    with pytest.raises(ValueError, match="built"):
        m.add(Dense(3))


def test_input_shape_alias_and_activation_functions():
    m = Model([Dense(4, fastmlp.activations.relu, input_shape=(6,)), Dense(1, "linear")],
              device="numpy")
    assert m.input_dim == 6
    assert m.layers[0].activation == "relu" and m.layers[1].activation == "identity"
    with pytest.raises(TypeError, match="custom activation"):
        Dense(3, activation=np.tanh)


# ---- summary and counts ---------------------------------------------------------------------
def test_summary_counts_mnist_mlp(device):
    m = Model([Dense(500, "relu", input_dim=784), Dense(500, "relu"), Dense(10, "softmax")],
              device=device)
    assert m.count_params() == 648_010
    lines = []
    text = m.summary(print_fn=lines.append)
    assert lines == [text]
    assert "Total params: 648,010 (2.47 MB)" in text
    assert "Trainable params: 648,010" in text
    assert "Non-trainable params: 0" in text
    for shape, count in [("(None, 500)", "392,500"), ("(None, 500)", "250,500"),
                         ("(None, 10)", "5,010")]:
        assert any(shape in row and row.rstrip().endswith(count) for row in text.splitlines())
    assert 'Model: "sequential"' in text and "dense_2 (Dense)" in text


def test_summary_prints_and_needs_input_width(capsys):
    m = Model([Dense(3, use_bias=False, input_dim=5), Dense(1)], dtype="float64")
    m.summary()
    out = capsys.readouterr().out
    assert "Total params: 19 (152.00 B)" in out
    with pytest.raises(ValueError, match="input width"):
        Model([Dense(3)]).summary()


def test_input_width_inferred_at_first_fit(device):
    X, y = _blobs(d=5)
    m = Model([Dense(6, "relu"), Dense(3, "softmax")], device=device, seed=1)
    m.compile("adam", "sparse_categorical_crossentropy")
    assert not m.built
    with pytest.raises(ValueError, match="built"):
        m.get_weights()
    m.fit(X, y, epochs=1, verbose=0)
    assert m.built and m.input_dim == 5
    assert [w.shape for w in m.get_weights()] == [(5, 6), (6,), (6, 3), (3,)]
    with pytest.raises(ValueError, match="features"):
        m.fit(X[:, :4], y, verbose=0)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :4])


def test_initialisation_is_seeded_glorot_with_zero_bias():
    a = Model([Dense(30, "relu", input_dim=20), Dense(10)], seed=3, device="numpy")
    b = Model([Dense(30, "relu", input_dim=20), Dense(10)], seed=3, device="numpy")
    c = Model([Dense(30, "relu", input_dim=20), Dense(10)], seed=4, device="numpy")
    a.build(), b.build(), c.build()
    assert _weights_equal(a.get_weights(), b.get_weights())
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    W, bias = a.get_weights()[:2]
    limit = math.sqrt(6 / (20 + 30))
    assert np.abs(W).max() <= limit and np.abs(W).max() > 0.8 * limit
    assert not bias.any()
    assert W.dtype == np.float32
    z = Model([Dense(4, input_dim=3, kernel_initializer="zeros")], device="numpy")
    z.build()
    assert not z.get_weights()[0].any()


# ---- compile -----------------------------------------------------------------------------------
def test_compile_errors():
    m = Model([Dense(4, "relu", input_dim=3), Dense(3, "relu")], device="numpy")
    with pytest.raises(ValueError, match="needs a loss"):
        m.compile("adam")
    with pytest.raises(ValueError, match="hinge"):
        m.compile("adam", "hinge")
    with pytest.raises(TypeError, match="custom loss"):
        m.compile("adam", lambda y, p: 0)
    with pytest.raises(ValueError, match="optimizer"):
        m.compile("lbfgs", "mse")
    with pytest.raises(ValueError, match="metric"):
        m.compile("adam", "mse", metrics=["f1"])
    with pytest.raises(ValueError, match="'softmax' activation on the last layer"):
        m.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="'sigmoid'"):
        m.compile("adam", "binary_crossentropy")
    assert not m.compiled
    one = Model([Dense(1, "softmax", input_dim=3)], device="numpy")
    with pytest.raises(ValueError, match="at least 2 output units"):
        one.compile("adam", "sparse_categorical_crossentropy")
    drop = Model([Dense(2, "softmax", input_dim=3, dropout=0.5)], device="numpy")
    with pytest.raises(ValueError, match="dropout"):
        drop.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="compile"):
        Model([Dense(1, input_dim=2)], device="numpy").fit(np.zeros((4, 2)), np.zeros(4))


def test_recompile_keeps_weights_and_resets_optimizer(device):
    X, y = _blobs()
    m = _clf(device)
    m.fit(X, y, epochs=2, verbose=0)
    before = m.get_weights()
    assert m.optimizer.iterations > 0
    m.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    assert _weights_equal(before, m.get_weights())
    assert m.optimizer.iterations == 0 and m.network.optimizer.kind == "sgd"


# ---- fit arguments ----------------------------------------------------------------------------
def test_batch_size_sets_number_of_updates(device):
    X, y = _blobs(n=100)
    m = _clf(device)
    h = m.fit(X, y, batch_size=7, epochs=2, verbose=0)
    assert m.optimizer.iterations == 2 * math.ceil(100 / 7)
    assert h.params["steps"] == 15 and h.params["batch_size"] == 7 and h.params["samples"] == 100
    m.fit(X, y, epochs=1, verbose=0)                     # default batch_size=32
    assert m.optimizer.iterations == 30 + 4
    m.fit(X, y, batch_size=1000, epochs=1, verbose=0)    # larger than n: one batch
    assert m.optimizer.iterations == 35
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(X, y, batch_size=0, verbose=0)
    with pytest.raises(TypeError, match="batch_size"):
        m.fit(X, y, batch_size=2.0, verbose=0)


def test_epochs_and_initial_epoch(device):
    X, y = _blobs(n=40)
    m = _clf(device)
    h = m.fit(X, y, epochs=5, initial_epoch=2, batch_size=40, verbose=0)
    assert h.epoch == [2, 3, 4] and len(h.history["loss"]) == 3
    assert m.optimizer.iterations == 3
    h = m.fit(X, y, epochs=2, initial_epoch=2, verbose=0)
    assert h.epoch == [] and h.history == {}
    with pytest.raises(ValueError, match="epochs"):
        m.fit(X, y, epochs=-1, verbose=0)


def test_history_keys_and_values(device):
    X, y = _blobs(n=90)
    m = _clf(device, metrics=("accuracy", "mae", "mse"))
    h = m.fit(X, y, epochs=3, validation_split=0.2, verbose=0)
    assert h is m.history
    assert set(h.history) == {"loss", "accuracy", "mae", "mse", "val_loss", "val_accuracy",
                              "val_mae", "val_mse", "lr"}
    assert all(len(v) == 3 for v in h.history.values())
    assert h.history["lr"] == pytest.approx([0.001] * 3)
    assert all(isinstance(v, float) for vals in h.history.values() for v in vals)
    assert all(0 <= a <= 1 for a in h.history["accuracy"] + h.history["val_accuracy"])
    h2 = m.fit(X, y, epochs=1, verbose=0)
    assert h2 is not h and set(h2.history) == {"loss", "accuracy", "mae", "mse", "lr"}


def test_validation_split_takes_last_rows_before_shuffling(device):
    X, y = _blobs(n=100, seed=5)
    kw = dict(epochs=3, batch_size=8, verbose=0, shuffle=True)
    a = _clf(device, seed=2)
    ha = a.fit(X, y, validation_split=0.25, **kw)
    b = _clf(device, seed=2)
    hb = b.fit(X[:75], y[:75], validation_data=(X[75:], y[75:]), **kw)
    assert _weights_equal(a.get_weights(), b.get_weights())
    assert ha.history == hb.history
    assert a.optimizer.iterations == 3 * math.ceil(75 / 8)
    # val_loss is the loss on exactly those last rows
    assert ha.history["val_loss"][-1] == pytest.approx(a.evaluate(X[75:], y[75:])["loss"],
                                                        rel=1e-5)
    # Keras floors the training part: 10 rows, 0.25 -> 7 training rows
    c = _clf(device)
    c.fit(X[:10], y[:10], validation_split=0.25, batch_size=1, epochs=1, verbose=0)
    assert c.optimizer.iterations == 7
    with pytest.raises(ValueError, match="validation_split"):
        c.fit(X, y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        c.fit(X[:1], y[:1], validation_split=0.5, verbose=0)


def test_validation_data_with_weights_and_errors(device):
    X, y = _blobs(n=60)
    m = _clf(device)
    w = np.r_[np.zeros(10), np.ones(10)]
    h = m.fit(X[:40], y[:40], epochs=1, verbose=0, validation_data=(X[40:], y[40:], w))
    expected = m.evaluate(X[40:], y[40:], sample_weight=w)
    assert h.history["val_loss"][0] == pytest.approx(expected["loss"], rel=1e-5)
    assert h.history["val_accuracy"][0] == pytest.approx(expected["accuracy"])
    with pytest.raises(ValueError, match="validation_data"):
        m.fit(X, y, validation_data=(X,), verbose=0)
    with pytest.raises(ValueError, match="validation_data"):
        m.fit(X, y, validation_data=(X[:, :2], y), verbose=0)
    with pytest.raises(ValueError, match="validation_data"):
        m.fit(X, y, validation_data=(X, np.full(len(y), 7)), verbose=0)


def test_shuffle_and_determinism(device):
    X, y = _blobs(n=64)
    kw = dict(epochs=2, batch_size=8, verbose=0)
    a, b, c = _clf(device, seed=1), _clf(device, seed=1), _clf(device, seed=1)
    a.fit(X, y, shuffle=True, **kw)
    b.fit(X, y, shuffle=True, **kw)
    c.fit(X, y, shuffle=False, **kw)
    assert _weights_equal(a.get_weights(), b.get_weights())
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    # shuffle=False follows the row order: the same as the engine run by hand
    d = _clf(device, seed=1)
    d.build()
    net = d.network
    from fastmlp.backends import validate_training_data
    Xv, Yv, _ = validate_training_data(net.spec, X, y)
    for e in range(2):
        net.train_epoch(Xv, Yv, batch_size=8, shuffle=False)
    assert _weights_equal(c.get_weights(), d.get_weights())
    with pytest.raises(ValueError, match="shuffle"):
        a.fit(X, y, shuffle="batch", verbose=0)


def test_repeated_single_epoch_fits_use_new_orders(device):
    X, y = _blobs(n=64)
    a, b = _clf(device, seed=1), _clf(device, seed=1)
    a.fit(X, y, epochs=3, batch_size=8, verbose=0)
    for _ in range(3):
        b.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert _weights_equal(a.get_weights(), b.get_weights())


def test_class_weight_multiplies_sample_weight(device):
    X, y = _blobs(n=80, k=2, seed=3)
    sw = np.linspace(0.5, 1.5, 80)
    kw = dict(epochs=2, batch_size=16, verbose=0)
    a, b = _clf(device, k=2), _clf(device, k=2)
    ha = a.fit(X, y, class_weight={0: 1.0, 1: 3.0}, sample_weight=sw, **kw)
    hb = b.fit(X, y, sample_weight=sw * np.where(y == 1, 3.0, 1.0), **kw)
    assert _weights_equal(a.get_weights(), b.get_weights())
    assert ha.history["loss"] == hb.history["loss"]
    # one-hot targets: class = argmax; a missing class keeps weight 1
    c = Model([Dense(8, "relu", input_dim=4), Dense(2, "softmax")], seed=0, device=device)
    c.compile("adam", "categorical_crossentropy")
    d = Model([Dense(8, "relu", input_dim=4), Dense(2, "softmax")], seed=0, device=device)
    d.compile("adam", "categorical_crossentropy")
    onehot = np.eye(2)[y]
    c.fit(X, onehot, class_weight={1: 0.25}, **kw)
    d.fit(X, onehot, sample_weight=np.where(y == 1, 0.25, 1.0), **kw)
    assert _weights_equal(c.get_weights(), d.get_weights())
    with pytest.raises(TypeError, match="class_weight"):
        a.fit(X, y, class_weight=[1, 2], verbose=0)
    with pytest.raises(ValueError, match="class_weight"):
        a.fit(X, y, class_weight={0: -1.0}, verbose=0)


def test_class_weight_shifts_predictions_towards_the_weighted_class():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] + 0.8 * rng.normal(size=400) > 0).astype(int)
    preds = {}
    for w in (1.0, 10.0):
        m = Model([Dense(1, "sigmoid", input_dim=2)], seed=0, device="numpy")
        m.compile(optimizers.Adam(0.05), "binary_crossentropy")
        m.fit(X, y, epochs=20, class_weight={0: 1.0, 1: w}, verbose=0)
        preds[w] = float((m.predict(X)[:, 0] > 0.5).mean())
    assert preds[10.0] > preds[1.0] + 0.15


def test_sample_weight_keras_normalisation(device):
    X, y = _blobs(n=50)
    m = _clf(device)
    m.build()
    base = m.evaluate(X, y)["loss"]
    # Keras divides by the number of rows, not by the sum of weights
    assert m.evaluate(X, y, sample_weight=np.full(50, 2.0))["loss"] == pytest.approx(2 * base,
                                                                                    rel=1e-5)
    with pytest.raises(ValueError, match="sample_weight"):
        m.fit(X, y, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        m.fit(X, y, sample_weight=-np.ones(50), verbose=0)


def test_first_epoch_loss_equals_loss_before_the_update(device):
    X, y = _blobs(n=40)
    m = Model([Dense(6, "tanh", input_dim=4, kernel_regularizer=regularizers.l2(0.01)),
               Dense(3, "softmax")], seed=0, device=device)
    m.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.build()
    before = m.evaluate(X, y)
    h = m.fit(X, y, batch_size=40, epochs=1, shuffle=False, verbose=0)
    assert h.history["loss"][0] == pytest.approx(before["loss"], rel=1e-5)
    assert h.history["accuracy"][0] == pytest.approx(before["accuracy"])


# ---- losses, metrics and regularisers with Keras' values ----------------------------------
def _manual_loss(name, P, Y):
    eps = 1e-7
    P = P.astype(np.float64)
    if name == "mse":
        return np.mean((P - Y) ** 2)
    if name == "binary_crossentropy":
        P = np.clip(P, eps, 1 - eps)
        return np.mean(-(Y * np.log(P) + (1 - Y) * np.log(1 - P)))
    if name == "categorical_crossentropy":
        return np.mean(-(Y * np.log(np.clip(P, eps, 1))).sum(axis=1))
    if name == "poisson":
        return np.mean(P - Y * np.log(P + eps))
    raise AssertionError(name)


@pytest.mark.parametrize("loss, act, k", [("mse", "linear", 3), ("mean_squared_error", "tanh", 2),
                                          ("binary_crossentropy", "sigmoid", 3),
                                          ("categorical_crossentropy", "softmax", 3),
                                          ("sparse_categorical_crossentropy", "softmax", 3),
                                          ("poisson", "exponential", 2)])
def test_loss_values_match_keras_formulas(device, loss, act, k):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 4))
    labels = rng.integers(0, k, 30)
    if loss in ("binary_crossentropy",):
        Y = rng.integers(0, 2, size=(30, k)).astype(float)
    elif "categorical" in loss:
        Y = np.eye(k)[labels]
    elif loss == "poisson":
        Y = rng.poisson(1.5, size=(30, k)).astype(float)
    else:
        Y = rng.normal(size=(30, k))
    m = Model([Dense(5, "tanh", input_dim=4), Dense(k, act)], seed=0, device=device,
              dtype="float64")
    m.compile("sgd", loss)
    y_fit = labels if loss.startswith("sparse") else Y
    result = m.evaluate(X, y_fit)
    P = m.predict(X)
    manual = _manual_loss("categorical_crossentropy" if "categorical" in loss
                          else "mse" if "squared" in loss else loss, P, Y)
    assert result["loss"] == pytest.approx(manual, rel=1e-6, abs=1e-9)


def test_metrics_match_manual_values(device):
    X, y = _blobs(n=70)
    m = _clf(device, metrics=("accuracy", "mse", "mae"))
    m.fit(X, y, epochs=2, verbose=0)
    P = m.predict(X).astype(np.float64)
    onehot = np.eye(3)[y]
    r = m.evaluate(X, y)
    assert r["accuracy"] == pytest.approx(np.mean(P.argmax(1) == y))
    assert r["mse"] == pytest.approx(np.mean((P - onehot) ** 2), rel=1e-5)
    assert r["mae"] == pytest.approx(np.mean(np.abs(P - onehot)), rel=1e-5)
    assert list(r) == ["loss", "accuracy", "mse", "mae"]


def test_binary_accuracy_threshold_for_one_output(device):
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    m = Model([Dense(1, "sigmoid", input_dim=1)], device=device, dtype="float64")
    m.compile("sgd", "binary_crossentropy", metrics=["acc"])
    m.build()
    m.set_weights([np.array([[1.0]]), np.array([-1.5])])      # p > 0.5 for x >= 2
    r = m.evaluate(X, np.array([0, 1, 1, 1]))
    assert r["acc"] == pytest.approx(0.75)


def test_regularizer_penalty_is_keras_convention(device):
    X, y = _blobs(n=40)
    plain = Model([Dense(6, "relu", input_dim=4), Dense(3, "softmax")], seed=0, device=device,
                  dtype="float64")
    reg = Model([Dense(6, "relu", input_dim=4, kernel_regularizer=regularizers.l1_l2(0.01, 0.1)),
                 Dense(3, "softmax", kernel_regularizer="l2")], seed=0, device=device,
                dtype="float64")
    for m in (plain, reg):
        m.compile("sgd", "sparse_categorical_crossentropy")
        m.build()
    W0, _, W1, _ = reg.get_weights()
    penalty = 0.01 * np.abs(W0).sum() + 0.1 * (W0 ** 2).sum() + 0.01 * (W1 ** 2).sum()
    diff = reg.evaluate(X, y)["loss"] - plain.evaluate(X, y)["loss"]
    assert diff == pytest.approx(penalty, rel=1e-9)
    assert regularizers.l2(0.5)(np.ones((2, 2))) == 2.0
    assert regularizers.l1()(np.ones(3)) == pytest.approx(0.03)


# ---- optimizers and schedules -------------------------------------------------------------
def test_optimizer_keras_defaults():
    s = optimizers.SGD().to_spec()
    assert (s.kind, s.learning_rate, s.momentum, s.nesterov) == ("sgd", 0.01, 0.0, False)
    a = optimizers.Adam().to_spec()
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon, a.epsilon_style) == \
        (0.001, 0.9, 0.999, 1e-7, "keras")
    r = optimizers.RMSprop().to_spec()
    assert (r.kind, r.learning_rate, r.rho, r.epsilon) == ("rmsprop", 0.001, 0.9, 1e-7)
    g = optimizers.Adagrad().to_spec()
    assert (g.kind, g.learning_rate, g.initial_accumulator, g.epsilon) == \
        ("adagrad", 0.001, 0.1, 1e-7)
    assert optimizers.get("RMSprop").kind == "rmsprop"
    m = Model([Dense(1, input_dim=2)], device="numpy")
    m.compile(loss="mse")
    assert isinstance(m.optimizer, optimizers.RMSprop)        # Keras' default


@pytest.mark.parametrize("make, exc, match", [
    (lambda: optimizers.SGD(-0.1), ValueError, "learning_rate"),
    (lambda: optimizers.SGD(momentum=1.0), ValueError, "momentum"),
    (lambda: optimizers.RMSprop(momentum=0.5), ValueError, "momentum"),
    (lambda: optimizers.RMSprop(centered=True), ValueError, "centered"),
    (lambda: optimizers.Adam(amsgrad=True), ValueError, "amsgrad"),
    (lambda: optimizers.Adam("fast"), TypeError, "learning_rate"),
    (lambda: optimizers.get(3), TypeError, "optimizer"),
    (lambda: optimizers.ExponentialDecay(0.1, 0, 0.5), ValueError, "decay_steps"),
    (lambda: optimizers.PiecewiseConstantDecay([10, 5], [1, 2, 3]), ValueError, "boundaries"),
    (lambda: optimizers.PiecewiseConstantDecay([10], [1]), ValueError, "one more"),
    (lambda: optimizers.StepDecay(0.1, epochs_per_drop=0), ValueError, "epochs_per_drop"),
])
def test_optimizer_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("opt", [optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                                 optimizers.Adam(0.01), optimizers.RMSprop(0.01),
                                 optimizers.Adagrad(0.1)], ids=lambda o: type(o).__name__)
def test_optimizer_first_step_formula(opt):
    """One full-batch update from known weights, against the Keras formula."""
    X, y = _blobs(n=20)
    m = Model([Dense(3, "softmax", input_dim=4)], seed=0, device="numpy", dtype="float64")
    m.compile(opt, "sparse_categorical_crossentropy")
    m.build()
    w0 = m.network.get_params()
    from fastmlp.backends import validate_training_data
    Xv, Yv, _ = validate_training_data(m.network.spec, X, y)
    _, g = m.network.loss_and_grad(Xv, Yv)
    m.fit(X, y, batch_size=20, epochs=1, verbose=0, shuffle=False)
    lr = opt.to_spec().learning_rate
    if isinstance(opt, optimizers.SGD):
        v = -lr * g
        expected = w0 + opt.momentum * v - lr * g
    elif isinstance(opt, optimizers.Adam):
        mom, vel = 0.1 * g, 0.001 * g * g
        expected = w0 - lr * math.sqrt(1 - 0.999) / (1 - 0.9) * mom / (np.sqrt(vel) + 1e-7)
    elif isinstance(opt, optimizers.RMSprop):
        expected = w0 - lr * g / np.sqrt(0.1 * g * g + 1e-7)
    else:
        expected = w0 - lr * g / np.sqrt(0.1 + g * g + 1e-7)
    np.testing.assert_allclose(m.network.get_params(), expected, rtol=1e-10, atol=1e-12)


def test_engine_schedules_log_the_decayed_rate(device):
    X, y = _blobs(n=40)
    sched = optimizers.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    m = _clf(device, opt=optimizers.SGD(sched))
    h = m.fit(X, y, batch_size=10, epochs=3, verbose=0)
    # lr of the last update of each epoch: steps 3, 7, 11
    assert h.history["lr"] == pytest.approx([0.1 * 0.5 ** (t / 4) for t in (3, 7, 11)])
    assert sched(4) == pytest.approx(0.05)
    inv = optimizers.InverseTimeDecay(1.0, decay_steps=2, decay_rate=1.0, staircase=True)
    assert [inv(t) for t in (0, 1, 2, 3, 4)] == pytest.approx([1, 1, 0.5, 0.5, 1 / 3])
    with pytest.raises(TypeError, match="schedule"):
        m.optimizer.learning_rate = 0.5


def test_piecewise_schedule_switches_at_the_exact_step(device):
    X, y = _blobs(n=40)
    sched = optimizers.PiecewiseConstantDecay([2, 5], [0.1, 0.05, 0.01])
    assert [sched(t) for t in range(8)] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.01, 0.01]
    a = _clf(device, seed=4, opt=optimizers.SGD(sched))
    a.fit(X, y, batch_size=5, epochs=1, shuffle=False, verbose=0)   # 8 steps, one slice
    b = _clf(device, seed=4, opt=optimizers.SGD(0.1))
    b.build()
    from fastmlp.backends import validate_training_data
    net = b.network
    Xv, Yv, _ = validate_training_data(net.spec, X, y)
    net.start_epoch(Xv, Yv, batch_size=5)
    for t in range(8):
        net.set_learning_rate(sched(t))
        assert net.run_steps(1) == 1
    net.finish_epoch()
    np.testing.assert_allclose(a.network.get_params(), net.get_params(), rtol=1e-6)


def test_per_epoch_schedules(device):
    X, y = _blobs(n=40)
    m = _clf(device, opt=optimizers.SGD(optimizers.StepDecay(0.1, drop=0.5, epochs_per_drop=2)))
    h = m.fit(X, y, epochs=5, verbose=0)
    assert h.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    m2 = _clf(device, opt=optimizers.Adam(lambda epoch: 0.01 / (1 + epoch)))
    h2 = m2.fit(X, y, epochs=3, verbose=0)
    assert h2.history["lr"] == pytest.approx([0.01, 0.005, 0.01 / 3])
    m3 = _clf(device, opt=optimizers.Adam(lambda epoch: "fast"))
    with pytest.raises(TypeError, match="must return a number"):
        m3.fit(X, y, epochs=1, verbose=0)


def test_optimizer_learning_rate_is_live(device):
    X, y = _blobs(n=40)
    m = _clf(device, opt=optimizers.SGD(0.1))
    m.fit(X, y, epochs=1, verbose=0)
    assert m.optimizer.learning_rate == pytest.approx(0.1)
    m.optimizer.learning_rate = 0.02
    h = m.fit(X, y, epochs=1, verbose=0)
    assert h.history["lr"] == pytest.approx([0.02])
    assert m.network.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="learning_rate"):
        m.optimizer.learning_rate = 0.0


# ---- evaluate / predict / weights ---------------------------------------------------------
def test_predict_and_evaluate(device):
    X, y = _blobs(n=50)
    m = _clf(device)
    m.fit(X, y, epochs=2, verbose=0)
    P = m.predict(X)
    assert P.shape == (50, 3) and P.dtype == np.float32
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(m.predict(X, batch_size=7, verbose=0), P, rtol=1e-6)
    np.testing.assert_allclose(m.predict(X.tolist()), P, rtol=1e-6)
    r = m.evaluate(X, y, batch_size=8)
    assert set(r) == {"loss", "accuracy"}
    assert r == pytest.approx(m.evaluate(X, y))
    with pytest.raises(ValueError, match="2-D"):
        m.predict(X[0])
    with pytest.raises(TypeError, match="numbers"):
        m.predict(np.array([["a"] * 4]))
    with pytest.raises(ValueError, match="NaN"):
        m.predict(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="rows"):
        m.evaluate(X, y[:10])
    with pytest.raises(ValueError, match="class labels"):
        m.evaluate(X, np.eye(3)[y])        # one-hot given to a sparse loss


@pytest.mark.parametrize("loss, act", [("mse", "tanh"), ("binary_crossentropy", "sigmoid"),
                                       ("categorical_crossentropy", "softmax"),
                                       ("sparse_categorical_crossentropy", "softmax"),
                                       ("poisson", "exp")])
def test_evaluate_equals_engine_loss_and_chunks(loss, act, monkeypatch):
    """evaluate computes the loss from one forward pass (poisson: by the engine, in
    chunks); both agree with the engine's full-batch loss, penalties included."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 4))
    labels = rng.integers(0, 3, 50)
    Y = {"mse": rng.normal(size=(50, 3)), "binary_crossentropy": rng.integers(0, 2, (50, 3)),
         "categorical_crossentropy": np.eye(3)[labels],
         "sparse_categorical_crossentropy": labels,
         "poisson": rng.poisson(2.0, (50, 3))}[loss]
    w = np.linspace(0, 2, 50)
    m = Model([Dense(6, "relu", input_dim=4, kernel_regularizer=regularizers.l1_l2(0.01, 0.1)),
               Dense(3, act)], seed=0, device="numpy", dtype="float64")
    m.compile("adam", loss, metrics=["mae"])
    m.build()
    from fastmlp.backends import validate_training_data
    Xv, Yv, wv = validate_training_data(m.network.spec, X, Y, w)
    offset = m._loss_info.offset(Yv, wv)
    engine = m.network.compute_loss(Xv, Yv, wv) - offset
    assert m.evaluate(X, Y, sample_weight=w)["loss"] == pytest.approx(engine, rel=1e-10)
    monkeypatch.setattr(model_module, "EVAL_CHUNK_ROWS", 7)
    chunked = m.evaluate(X, Y, sample_weight=w)
    assert chunked["loss"] == pytest.approx(engine, rel=1e-10)


def test_float64_model(device):
    X, y = _blobs(n=30)
    m = Model([Dense(4, "tanh", input_dim=4), Dense(3, "softmax")], dtype="float64",
              device=device, seed=0)
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(X, y, epochs=1, verbose=0)
    assert m.predict(X).dtype == np.float64 and m.get_weights()[0].dtype == np.float64


def test_get_set_weights_and_get_layer(device):
    m = Model([Dense(5, "relu", input_dim=3), Dense(2, use_bias=False, name="head")],
              device=device, seed=0)
    m.build()
    w = m.get_weights()
    assert [a.shape for a in w] == [(3, 5), (5,), (5, 2)]
    w[0] += 1.0
    assert not np.array_equal(m.get_weights()[0], w[0])         # copies, not views
    m.set_weights(w)
    assert _weights_equal(m.get_weights(), w)
    with pytest.raises(ValueError, match="shapes"):
        m.set_weights(w[:2])
    with pytest.raises(ValueError, match="NaN"):
        m.set_weights([np.full((3, 5), np.nan), w[1], w[2]])
    head = m.get_layer(name="head")
    assert head is m.get_layer(index=-1) is m.layers[1]
    assert len(head.get_weights()) == 1 and head.bias is None
    np.testing.assert_array_equal(m.get_layer(index=0).kernel, w[0])
    head.set_weights([np.ones((5, 2))])
    assert np.array_equal(m.get_weights()[2], np.ones((5, 2)))
    with pytest.raises(ValueError, match="shapes"):
        head.set_weights([np.ones((2, 5))])
    with pytest.raises(ValueError, match="exactly one"):
        m.get_layer()
    with pytest.raises(ValueError, match="no layer named"):
        m.get_layer(name="nope")
    with pytest.raises(ValueError, match="2 layers"):
        m.get_layer(index=5)
    with pytest.raises(ValueError, match="no weights"):
        Dense(3).get_weights()


def test_from_spec():
    spec = [(Dense, [50], {"activation": "relu", "input_dim": 784}),
            ("Dense", [10], {"activation": "softmax"})]
    m = Model.from_spec(spec, seed=0, device="numpy")
    assert m.count_params() == 784 * 50 + 50 + 510
    assert [l.activation for l in m.layers] == ["relu", "softmax"]
    m2 = Model.from_spec([(Dense, {"units": 3, "input_dim": 2}), Dense(1)])
    assert [l.units for l in m2.layers] == [3, 1]
    with pytest.raises(ValueError, match=r"spec\[0\]"):
        Model.from_spec([("Conv2D", [3])])
    with pytest.raises(TypeError, match=r"spec\[1\]"):
        Model.from_spec([(Dense, [3]), (Dense, [3], {"bogus": 1})])
    with pytest.raises(TypeError, match="spec"):
        Model.from_spec("Dense")


def test_fit_input_errors(device):
    X, y = _blobs(n=20)
    m = _clf(device)
    with pytest.raises(ValueError, match="2-D"):
        m.fit(X.reshape(20, 2, 2), y, verbose=0)
    with pytest.raises(ValueError, match="NaN"):
        m.fit(np.where(X > 2, np.nan, X), y, verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        m.fit(X, y + 5, verbose=0)
    with pytest.raises(ValueError, match="whole-number"):
        m.fit(X, y + 0.5, verbose=0)
    with pytest.raises(TypeError, match="numbers"):
        m.fit(X, y.astype(str), verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        m.fit(X, y, verbose=3)
    with pytest.raises(TypeError, match="callbacks"):
        m.fit(X, y, verbose=0, callbacks=[print])


# ---- divergence, Ctrl-C, progress --------------------------------------------------------------
def test_divergence_stops_and_restores_last_finite_weights(device):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)) * 100
    Y = X @ rng.normal(size=(3, 2)) * 1e3
    m = Model([Dense(8, "relu", input_dim=3), Dense(2)], seed=0, device=device)
    m.compile(optimizers.SGD(10.0), "mse")
    starts = []
    cb = LambdaCallback(on_epoch_begin=lambda e, logs: starts.append(m.get_weights()))
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        h = m.fit(X, Y, epochs=20, batch_size=8, verbose=0, callbacks=[cb])
    assert len(h.history["loss"]) < 20
    assert math.isnan(h.history["loss"][-1])
    assert all(math.isfinite(v) for v in h.history["loss"][:-1])
    assert len(h.history["loss"]) == len(starts) == len(h.history["lr"])
    assert _weights_equal(m.get_weights(), starts[-1])
    assert all(np.isfinite(w).all() for w in m.get_weights())


def _overflowing_fit(device, loss, Y):
    """fit with a huge learning rate on 60 rows; returns (model, history, weights at the
    start of each epoch, the divergence warning's text)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    out = Y.shape[1] if Y.ndim == 2 else 3
    m = Model([Dense(8, "relu", input_dim=4),
               Dense(out, "sigmoid" if loss == "binary_crossentropy" else "softmax")],
              seed=0, device=device)
    m.compile(optimizers.SGD(1e6), loss)
    starts = []
    cb = LambdaCallback(on_epoch_begin=lambda e, logs: starts.append(m.get_weights()))
    with pytest.warns(RuntimeWarning, match="NaN or infinite") as rec:
        with np.errstate(over="ignore", invalid="ignore"):
            h = m.fit(X, Y(X) if callable(Y) else Y, epochs=10, verbose=0,
                      validation_split=0.2, callbacks=[cb])
    return m, X, h, starts, str(rec[-1].message)


def test_divergence_in_an_epochs_last_update_is_caught_on_the_weights(device):
    # The engine checks each batch's loss before its update; here the last update of an
    # epoch makes the weights non-finite while every loss of that epoch was finite
    # (before the fix: 'restored' weights with NaN, NaN predictions).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    Y = (X[:, :1] > 0).astype(np.float32)
    m, X, h, starts, msg = _overflowing_fit(device, "binary_crossentropy", Y)
    n = len(h.history["loss"])
    assert n < 10 and math.isnan(h.history["loss"][-1])
    assert all(math.isfinite(v) for v in h.history["loss"][:-1] + h.history["val_loss"][:-1])
    assert all(np.isfinite(w).all() for w in m.get_weights())
    restored = int(re.search(r"start of epoch (\d+)\.", msg).group(1))
    assert restored in (n - 1, n)   # n - 1 where the epoch's first batch diverged
    assert _weights_equal(m.get_weights(), starts[restored - 1])
    assert np.isfinite(m.predict(X)).all()
    assert math.isfinite(m.evaluate(X, Y)["loss"])


def test_divergence_at_an_epochs_first_batch_restores_the_previous_epochs_start(device):
    # Finite but huge weights from an epoch's last update give the next epoch's first
    # batch a non-finite loss: the weights at that epoch's start are the bad ones, so fit
    # goes back to the start of the epoch before.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = ((X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)) % 3
    m, X, h, starts, msg = _overflowing_fit(device, "sparse_categorical_crossentropy", y)
    n = len(h.history["loss"])
    assert n >= 2 and math.isnan(h.history["loss"][-1])
    assert f"start of epoch {n - 1}." in msg
    assert _weights_equal(m.get_weights(), starts[-2])
    assert np.isfinite(m.predict(X)).all()
    assert math.isfinite(m.evaluate(X, y)["loss"])


class _InterruptingNetwork:
    """Wraps an engine network; interrupts during the ``at``-th call of run_steps."""

    def __init__(self, net, at, how):
        self._net, self.at, self.how, self.calls = net, at, how, 0

    def __getattr__(self, name):
        return getattr(self._net, name)

    def run_steps(self, max_steps=None):
        self.calls += 1
        ran = self._net.run_steps(max_steps)
        if self.calls == self.at:
            if self.how == "signal":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt
        return ran


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_ctrl_c_stops_cleanly_and_leaves_a_usable_model(device, how):
    X, y = _blobs(n=400)
    m = _clf(device)
    m.build()
    m._network = _InterruptingNetwork(m.network, at=2, how=how)
    with pytest.warns(UserWarning, match="interrupted"):
        h = m.fit(X, y, epochs=50, batch_size=2, verbose=0)
    assert h.history == {}                     # interrupted inside the first epoch
    assert m._network.calls == 2
    assert 0 < m.optimizer.iterations < 200    # stopped mid-epoch, between slices
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    m._network = m._network._net
    P = m.predict(X)
    assert np.isfinite(P).all()
    h2 = m.fit(X, y, epochs=1, verbose=0)      # and it trains on
    assert len(h2.history["loss"]) == 1


def test_slice_sizer_targets_seconds():
    s = model_module._SliceSizer(0.25)
    assert s.steps == 1
    s.record(1, 0.001)          # 1 ms per step: wants 250, growth capped at x8
    assert s.steps == 8
    s.record(8, 0.008)
    assert s.steps == 64
    s.record(64, 0.064)
    assert s.steps == 250
    s.record(250, 2.5)          # slower than thought: shrink at once
    assert s.steps == 25
    s.record(0, 0.0)
    assert s.steps == 25
    s.record(5, 10.0)
    assert s.steps == 1


def test_progress_callbacks_get_slice_updates(device, monkeypatch):
    monkeypatch.setattr(model_module, "SLICE_SECONDS_DISPLAY", 1e-12)   # one step per slice
    X, y = _blobs(n=50)
    m = _clf(device)
    seen = []
    cb = LambdaCallback(on_epoch_progress=lambda e, steps, logs: seen.append((e, steps,
                                                                             sorted(logs))))
    m.fit(X, y, batch_size=10, epochs=2, verbose=0, callbacks=[cb])
    assert [s for e, s, _ in seen if e == 0] == [1, 2, 3, 4, 5]
    assert [s for e, s, _ in seen if e == 1] == [1, 2, 3, 4, 5]
    assert all(keys == ["accuracy", "loss"] for _, _, keys in seen)


def test_verbose_modes(device, capsys):
    X, y = _blobs(n=40)
    m = _clf(device)
    m.fit(X, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    m.fit(X, y, epochs=3, verbose=2, validation_split=0.25)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Epoch 1/3 - ")
    assert "loss: " in lines[0] and "val_accuracy: " in lines[0] and "lr" not in lines[0]
    m.fit(X, y, epochs=2, verbose="auto")          # captured stdout is not a terminal -> 2
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    m.fit(X, y, epochs=2, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "loss=" not in out
    assert "2/2" in out and "loss: " in out and "accuracy: " in out


def test_progress_bar_overhead_is_small(monkeypatch):
    """fit with a live bar spends almost all its time inside the engine's slices."""
    import time
    X, y = _blobs(n=12000, d=20)
    m = Model([Dense(64, "relu", input_dim=20), Dense(3, "softmax")], seed=0, device="numpy")
    m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    m.build()
    net = m.network
    inside, calls = [0.0], []

    def timed_run_steps(max_steps=None):
        t0 = time.perf_counter()
        ran = type(net).run_steps(net, max_steps)
        inside[0] += time.perf_counter() - t0
        calls.append(max_steps)
        return ran
    monkeypatch.setattr(net, "run_steps", timed_run_steps)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    m.fit(X[:100], y[:100], epochs=1, verbose=1)    # warm-up (imports tqdm)
    inside[0], calls[:] = 0.0, []
    t0 = time.perf_counter()
    m.fit(X, y, epochs=2, batch_size=32, verbose=1)
    total = time.perf_counter() - t0
    assert "Epoch 2/2" in sys.stdout.getvalue()
    assert len(calls) >= 4                      # several slices per epoch
    assert max(calls) > 8                       # the slice length adapts
    assert total - inside[0] < 0.1 * total          # < 2% on a quiet machine; shared here


# ---- end to end ---------------------------------------------------------------------------
def test_iris_reaches_093(device):
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0,
                                                        stratify=y)
    # the course protocol: repeat the training data 20 times, 10 epochs of batch 32
    X_rep, y_rep = np.repeat(X_train, 20, axis=0), np.repeat(y_train, 20)
    model = Model([Dense(10, "relu", input_dim=4), Dense(10, "relu"), Dense(3, "softmax")],
                  seed=0, device=device)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X_rep, y_rep, epochs=10, batch_size=32, verbose=0)
    assert model.evaluate(X_test, y_test)["accuracy"] >= 0.93
    assert np.mean(model.predict(X_test).argmax(axis=1) == y_test) >= 0.93


def test_circles_reaches_080(device):
    from sklearn.datasets import make_circles
    X, y = make_circles(500, noise=0.1, random_state=0)
    X_test, y_test = make_circles(2000, noise=0.1, random_state=1)   # fresh data, same law
    model = Sequential(seed=0, device=device)
    model.add(Dense(10, activation="sigmoid", input_dim=2))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    h = model.fit(X, y, epochs=150, batch_size=64, verbose=0)
    assert h.history["accuracy"][-1] >= 0.80
    assert model.evaluate(X_test, y_test)["accuracy"] >= 0.80


# ---- bad input found by the robustness audit (session 12) --------------------------------------
def test_a_model_without_layers_says_so():
    m = Model()
    m.compile("adam", "mse")
    X = np.zeros((4, 2))
    for call in (lambda: m.fit(X, X, verbose=0), lambda: m.evaluate(X, X)):
        with pytest.raises(ValueError, match="no layers"):
            call()
    with pytest.raises(ValueError, match="empty shape"):
        Model([Dense(2)]).build(())


def test_class_weight_with_a_huge_label_is_rejected_without_allocating_by_label():
    # the class-weight table was indexed by label: a stray label of 1e11 asked for 745 GiB
    X, y = _blobs(n=30)
    m = _clf("cpu")
    y = y.copy()
    y[3] = 10 ** 11
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        m.fit(X, y, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    h = _clf("cpu").fit(X, _blobs(n=30)[1], class_weight={0: 1.0, 10 ** 11: 3.0}, verbose=0)
    assert math.isfinite(h.history["loss"][0])


def test_class_weight_multiplies_the_weights_of_its_classes(device):
    X, y = _blobs(n=40)
    a, b = _clf(device), _clf(device)
    a.fit(X, y, class_weight={1: 3.0}, epochs=2, verbose=0, shuffle=False)
    b.fit(X, y, sample_weight=np.where(y == 1, 3.0, 1.0), epochs=2, verbose=0, shuffle=False)
    assert _weights_equal(a.get_weights(), b.get_weights())


def test_a_rejected_fit_does_not_build_the_model():
    X, y = _blobs(n=30)
    m = Model([Dense(8, "relu"), Dense(3, "softmax")], seed=0)
    m.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        m.fit(np.hstack([X, y[:, None]]), y + 1, verbose=0)   # label column left in x
    assert not m.built and m.input_dim is None
    m.fit(X, y, verbose=0)                                  # the right data is accepted
    assert m.built and m.input_dim == 4
    with pytest.raises(ValueError, match=r"^validation_data: "):
        m.fit(X, y, validation_data=(X, y + 5), verbose=0)


def test_one_optimizer_instance_drives_one_model():
    opt = optimizers.SGD(0.1)
    a = Model([Dense(3, "softmax", input_dim=4)])
    a.compile(opt, "sparse_categorical_crossentropy")
    b = Model([Dense(3, "softmax", input_dim=4)])
    with pytest.raises(ValueError, match="already used by another model"):
        b.compile(opt, "sparse_categorical_crossentropy")
    a.compile(opt, "sparse_categorical_crossentropy")      # recompiling its own model: fine
    a.compile("adam", "sparse_categorical_crossentropy")   # a releases it ...
    b.compile(opt, "sparse_categorical_crossentropy")      # ... and b may take it
    c = Model([Dense(3, "softmax", input_dim=4)])
    del b                                                  # a dropped model does not hold it
    c.compile(opt, "sparse_categorical_crossentropy")
    X, y = _blobs(n=20)
    c.fit(X, y, epochs=2, batch_size=5, verbose=0)
    assert opt.iterations == 8


def test_an_overflowing_optimizer_state_counts_as_divergence():
    # |x| ~ 1e25 in float32: Adam's squared gradient overflows to inf while every loss is
    # finite, and the affected weights would never move again
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32) * 1e25
    y = (X[:, 0] > 0).astype(int)
    m = Model([Dense(8, "relu", input_dim=4), Dense(2, "softmax")], seed=0)
    m.compile("adam", "sparse_categorical_crossentropy")
    with pytest.warns(RuntimeWarning, match="optimizer state became NaN or infinite"):
        with np.errstate(over="ignore", invalid="ignore"):
            m.fit(X, y, epochs=3, verbose=0)
    slots = m.network.get_optimizer_state()["slots"]
    assert all(np.isfinite(s).all() for s in slots)


def test_small_argument_checks_name_the_argument():
    with pytest.raises(TypeError, match="dtype=None"):
        Model(dtype=None)                 # np.dtype(None) is float64, not the default
    with pytest.raises(ValueError, match="equally long rows"):
        _clf("cpu").fit([[1, 2, 3, 4], [1, 2]], [0, 1], verbose=0)
    with pytest.raises(TypeError, match="input_dim must be an int"):
        Dense(3, input_dim="x", input_shape=(4,))
    with pytest.raises(ValueError, match="epochs_per_drop=None"):
        optimizers.StepDecay(0.1, 0.5, None)
    with pytest.raises(ValueError, match="boundaries"):
        optimizers.PiecewiseConstantDecay(["a"], [0.1, 0.01])
    assert optimizers.PiecewiseConstantDecay([2.0], [0.1, 0.01]).boundaries == [2]


def test_float64_data_beyond_float32_is_named_as_overflow():
    X, y = _blobs(n=20)
    X = X.copy()
    X[0, 0] = 1e300
    with pytest.raises(ValueError, match="X has values too large for float32"):
        _clf("cpu").fit(X, y, verbose=0)
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        _clf("cpu").fit(X, y, verbose=0)
    m = Model([Dense(1, input_dim=4)], seed=0)
    m.compile("sgd", "mse")
    with pytest.raises(ValueError, match="y has values too large for float32"):
        m.fit(_blobs(n=20)[0], np.full(20, 1e300), verbose=0)


def test_binary_accuracy_needs_one_output():
    m = Model([Dense(4, "relu", input_dim=3), Dense(3, "sigmoid")])
    with pytest.raises(ValueError, match="binary_accuracy.*3 outputs"):
        m.compile("adam", "binary_crossentropy", metrics=["binary_accuracy"])
    m.compile("adam", "binary_crossentropy", metrics=["accuracy"])   # argmax rule: allowed
    one = Model([Dense(4, "relu", input_dim=3), Dense(1, "sigmoid")])
    one.compile("adam", "binary_crossentropy", metrics=["binary_accuracy"])
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = (X[:, 0] > 0).astype(float)
    one.fit(X, y, epochs=2, verbose=0)
    want = np.mean((one.predict(X)[:, 0] > 0.5) == (y > 0.5))
    assert one.evaluate(X, y)["binary_accuracy"] == pytest.approx(want)


def test_evaluate_return_dict_false_gives_keras_values():
    X, y = _blobs(n=30)
    m = _clf("cpu", metrics=("accuracy", "mae"))
    d = m.evaluate(X, y)
    assert m.evaluate(X, y, return_dict=False) == [d["loss"], d["accuracy"], d["mae"]]
    bare = _clf("cpu", metrics=())
    assert bare.evaluate(X, y, return_dict=False) == bare.evaluate(X, y)["loss"]
    with pytest.raises(TypeError, match="return_dict"):
        m.evaluate(X, y, return_dict="no")


def test_ctrl_c_in_an_epochs_last_slice_keeps_that_epoch():
    # the slice that was running when Ctrl-C came finished the epoch: it is logged as a
    # complete epoch (history, callbacks), and on_train_end gets its logs (as Keras)
    X, y = _blobs(n=400)
    m = _clf("cpu")
    m.build()
    m._network = _InterruptingNetwork(m.network, at=2, how="signal")   # 1 step, then 1
    ends = []
    cb = LambdaCallback(on_train_end=lambda logs: ends.append(logs))
    with pytest.warns(UserWarning, match="interrupted.*after epoch 1;"):
        h = m.fit(X, y, epochs=5, batch_size=200, verbose=0, callbacks=[cb])
    m._network = m._network._net
    assert len(h.history["loss"]) == 1 and m.optimizer.iterations == 2
    assert ends == [{k: v[-1] for k, v in h.history.items()}]


def test_on_train_end_gets_the_last_epochs_logs():
    X, y = _blobs(n=60)
    m = _clf("cpu")
    ends = []
    h = m.fit(X, y, epochs=3, verbose=0, validation_split=0.2,
              callbacks=[LambdaCallback(on_train_end=lambda logs: ends.append(logs))])
    assert ends == [{k: v[-1] for k, v in h.history.items()}]


def test_config_keeps_the_built_input_width():
    X, y = _blobs(n=40)
    m = Model([Dense(8, "relu"), Dense(3, "softmax")], seed=0)
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(X, y, verbose=0)
    m2 = Model.from_config(m.get_config())
    assert m2.built and m2.input_dim == 4 and m2.count_params() == m.count_params()
    assert m2.get_config() == m.get_config()
    assert not Model.from_config(Model([Dense(3)]).get_config()).built


def test_setting_device_or_threads_moves_a_built_model():
    X, y = _blobs(n=80)
    m = _clf("cpu")
    m.fit(X, y, epochs=2, batch_size=16, verbose=0)
    ref = _clf("cpu")
    ref.fit(X, y, epochs=2, batch_size=16, verbose=0)
    m.device, m.n_threads = "numpy", 1           # applies at once, weights and state kept
    assert type(m.network).__name__ == "NumpyNetwork" and m.get_config()["device"] == "numpy"
    assert _weights_equal(m.get_weights(), ref.get_weights())
    m.fit(X, y, epochs=1, batch_size=16, verbose=0)
    ref.fit(X, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert m.optimizer.iterations == ref.optimizer.iterations == 15
    with pytest.raises(ValueError, match="device='bogus'"):
        m.device = "bogus"
    with pytest.raises(ValueError, match="n_threads"):
        m.n_threads = 0
    assert m.device == "numpy" and m.n_threads == 1
