"""Finite-difference gradient checks: every hidden activation x loss (with its output
activation) x depth (0, 1, 3 hidden layers), with and without L2/L1 and sample weights,
on every backend.  float64 is checked against central differences; float32 gradients
are checked against the verified float64 ones."""
import numpy as np
import pytest

from fastmlp.backends import ACTIVATIONS, make_network, validate_training_data
from fastmlp.backends.base import NetworkSpec

LOSS_OUTPUTS = [("squared_error", "identity"), ("squared_error", "sigmoid"),
                ("squared_error", "tanh"), ("squared_error", "softmax"),
                ("binary_crossentropy", "sigmoid"), ("categorical_crossentropy", "softmax"),
                ("poisson", "exp")]
HIDDEN = [a for a in ACTIVATIONS if a != "exp"]


def _problem(loss, n_in, n_out, rng, n=9, labels=False):
    X = rng.normal(size=(n, n_in))
    if loss == "categorical_crossentropy":
        y = rng.integers(0, n_out, n)
        Y = y if labels else np.eye(n_out)[y]
    elif loss == "poisson":
        Y = rng.poisson(1.5, (n, n_out)).astype(float)
    else:
        Y = rng.uniform(size=(n, n_out))
    return X, Y


def _fd_check(spec, device, X, Y, sw, rng, h=1e-6):
    net = make_network(spec, device=device, n_threads=1)
    net.set_params(rng.normal(scale=0.5, size=spec.n_params))
    X, Y, sw = validate_training_data(spec, X, Y, sw)
    loss, grad = net.loss_and_grad(X, Y, sw)
    assert np.isfinite(loss)
    assert np.isclose(loss, net.compute_loss(X, Y, sw), rtol=1e-12)
    p0 = net.get_params()
    num = np.empty_like(p0)
    for i in range(p0.size):
        p = p0.copy()
        p[i] += h
        net.set_params(p)
        up = net.compute_loss(X, Y, sw)
        p[i] -= 2 * h
        net.set_params(p)
        down = net.compute_loss(X, Y, sw)
        num[i] = (up - down) / (2 * h)
    net.set_params(p0)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)
    return net, grad


@pytest.mark.parametrize("loss,out", LOSS_OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("penalised", [False, True])
def test_gradient_one_hidden_layer(device, loss, out, hidden, penalised, rng):
    spec = NetworkSpec((3, 4, 3), (hidden, out), loss=loss, dtype="float64",
                       l2=0.05 if penalised else 0.0, l1=0.02 if penalised else 0.0)
    X, Y = _problem(loss, 3, 3, rng)
    sw = rng.uniform(0.2, 2.0, X.shape[0]) if penalised else None
    _fd_check(spec, device, X, Y, sw, rng)


@pytest.mark.parametrize("loss,out", LOSS_OUTPUTS)
def test_gradient_no_hidden_layer(device, loss, out, rng):
    spec = NetworkSpec((4, 3), (out,), loss=loss, dtype="float64", l2=0.1)
    X, Y = _problem(loss, 4, 3, rng)
    _fd_check(spec, device, X, Y, rng.uniform(0.5, 1.5, X.shape[0]), rng)


@pytest.mark.parametrize("loss,out", LOSS_OUTPUTS)
@pytest.mark.parametrize("hidden", ["relu", "tanh", "gelu", "softmax"])
@pytest.mark.parametrize("normalisation", ["sum_weights", "n_samples"])
def test_gradient_three_hidden_layers(device, loss, out, hidden, normalisation, rng):
    spec = NetworkSpec((3, 4, 3, 4, 2), (hidden, "sigmoid", hidden, out), loss=loss,
                       dtype="float64", l2=(0.01, 0.0, 0.03, 0.02), l1=(0.0, 0.01, 0.0, 0.0),
                       use_bias=(True, False, True, True), loss_scale=0.7,
                       weight_normalization=normalisation,
                       penalty_normalization="none" if normalisation == "n_samples"
                       else "per_sample")
    X, Y = _problem(loss, 3, 2, rng)
    _fd_check(spec, device, X, Y, rng.uniform(0.5, 1.5, X.shape[0]), rng)


def test_gradient_sparse_labels_equal_one_hot(device, rng):
    spec = NetworkSpec((3, 5, 4), ("tanh", "softmax"), loss="categorical_crossentropy",
                       dtype="float64", l2=0.01)
    X = rng.normal(size=(11, 3))
    y = rng.integers(0, 4, 11)
    net = make_network(spec, device=device)
    net.set_params(rng.normal(size=spec.n_params))
    l1, g1 = net.loss_and_grad(*validate_training_data(spec, X, y)[:2])
    l2, g2 = net.loss_and_grad(*validate_training_data(spec, X, np.eye(4)[y])[:2])
    assert l1 == pytest.approx(l2, rel=1e-14)
    np.testing.assert_allclose(g1, g2, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("loss,out", LOSS_OUTPUTS)
def test_float32_gradient_matches_float64(device, loss, out, rng):
    spec64 = NetworkSpec((3, 6, 5, 3), ("relu", "tanh", out), loss=loss, dtype="float64",
                         l2=0.01)
    spec32 = spec64.with_changes(dtype="float32")
    X, Y = _problem(loss, 3, 3, rng, n=20)
    params = rng.normal(scale=0.5, size=spec64.n_params)
    grads = []
    for spec in (spec64, spec32):
        net = make_network(spec, device=device)
        net.set_params(params)
        grads.append(net.loss_and_grad(*validate_training_data(spec, X, Y)[:2])[1])
    np.testing.assert_allclose(grads[1], grads[0], rtol=2e-4, atol=2e-5)
