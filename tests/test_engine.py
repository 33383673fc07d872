"""The engine's contract: CPU engine == NumPy reference, determinism, threads, input
handling, bad input, divergence, slices, state, schedules, device selection."""

import contextlib

import numpy as np
import pytest

import fastmlp
from fastmlp.backends import (make_network, resolve_device, validate_training_data,
                              shuffled_order)
from fastmlp.backends.base import NetworkSpec, OptimizerSpec
from fastmlp.backends.cpu import _network
from fastmlp.initializers import init_params

from conftest import engine_switch

OPTIMIZERS = [
    OptimizerSpec("sgd", 0.1),
    OptimizerSpec("sgd", 0.05, momentum=0.9),
    OptimizerSpec("sgd", 0.05, momentum=0.9, nesterov=True),
    OptimizerSpec("adam", 0.01, epsilon=1e-8),
    OptimizerSpec("adam", 0.01, epsilon=1e-3, epsilon_style="pytorch"),
    OptimizerSpec("rmsprop", 0.01),
    OptimizerSpec("adagrad", 0.1),
    OptimizerSpec("sgd", 0.1, momentum=0.5, clipnorm=0.1, schedule="exponential",
                  decay_rate=0.5, decay_steps=3),
    OptimizerSpec("adam", 0.01, schedule="inverse_time", decay_rate=0.3, decay_steps=2,
                  staircase=True),
]


def _classification(rng, n=103, d=7, k=4, dtype="float64"):
    spec = NetworkSpec((d, 16, 8, k), ("relu", "tanh", "softmax"),
                       loss="categorical_crossentropy", dtype=dtype, l2=1e-3)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, n)
    return spec, X, y


def _train(spec, opt, device, X, y, sw=None, epochs=2, n_threads=1, **kw):
    net = make_network(spec, opt, device=device, n_threads=n_threads)
    net.set_params(init_params(spec, seed=7))
    Xc, Yc, swc = validate_training_data(spec, X, y, sw)
    losses = [net.train_epoch(Xc, Yc, swc, batch_size=kw.get("batch_size", 16),
                              shuffle=kw.get("shuffle", False), seed=3, epoch=e)
              for e in range(epochs)]
    return net, losses


# ---- CPU engine == NumPy reference -------------------------------------------------------
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: f"{o.kind}-{o.schedule}")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cpu_engine_matches_numpy_reference(opt, dtype, rng):
    spec, X, y = _classification(rng, dtype=dtype)
    cpu, lc = _train(spec, opt, "cpu", X, y, epochs=1)
    ref, lr = _train(spec, opt, "numpy", X, y, epochs=1)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(cpu.get_params(), ref.get_params(), rtol=rtol,
                               atol=rtol * np.abs(ref.get_params()).max())
    assert lc[0] == pytest.approx(lr[0], rel=rtol)
    assert cpu.step == ref.step == 7
    assert cpu.current_learning_rate == pytest.approx(ref.current_learning_rate)


@pytest.mark.parametrize("loss,out,hidden", [
    ("squared_error", "identity", "gelu"), ("binary_crossentropy", "sigmoid", "elu"),
    ("poisson", "exp", "softplus"), ("squared_error", "sigmoid", "leaky_relu")])
def test_cpu_matches_reference_with_shuffle_dropout_weights(loss, out, hidden, rng):
    spec = NetworkSpec((5, 12, 6, 2), (hidden, "relu", out), loss=loss,
                       dropout=(0.3, 0.2, 0.0), l2=(0.01, 0, 0.01), l1=0.001)
    X = rng.normal(size=(61, 5))
    Y = rng.poisson(1.0, (61, 2)).astype(float) if loss == "poisson" else \
        rng.uniform(size=(61, 2))
    sw = rng.uniform(0.1, 3, 61)
    opt = OptimizerSpec("adam", 0.01)
    a, la = _train(spec, opt, "cpu", X, Y, sw, epochs=3, shuffle=True, batch_size=8)
    b, lb = _train(spec, opt, "numpy", X, Y, sw, epochs=3, shuffle=True, batch_size=8)
    np.testing.assert_allclose(a.get_params(), b.get_params(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(la, lb, rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["sgd", "sgd-momentum", "sgd-nesterov", "adam", "rmsprop",
                                  "adagrad"])
def test_denormal_state_and_weights_are_stored_as_zero_as_in_the_reference(kind, dtype, rng):
    """Inputs 0 and 1 are always 0, so their weights' gradients are L2's alone, 2 l2 w = w
    here.  W[0, 0], just above the smallest normal number, goes below it in SGD's update
    and is stored as 0.  W[0, 1]'s gradient is small enough that the squared-gradient term
    ((1 - beta_2) g^2, (1 - rho) g^2, g^2) would be a denormal number, and W[1, 0]'s that
    Adam's first-moment term (1 - beta_1) g would: each counts as 0, and the state becomes
    exactly its decayed old value.  W[1, 1]'s gradient is 4x the square term's threshold:
    its terms count.  The CPU engine and the NumPy reference agree exactly on these
    (base.py); on everything else to rounding."""
    tiny = np.finfo(dtype).tiny
    real = np.dtype(dtype).type
    g_small = 1e-19 if dtype == "float32" else 1e-155
    state_small = 1e-36 if dtype == "float32" else 1e-300
    spec = NetworkSpec((3, 2), ("identity",), loss="squared_error", dtype=dtype, l2=0.5,
                       penalty_normalization="none")
    X = np.zeros((4, 3))
    X[:, 2] = rng.normal(size=4)
    Y = rng.normal(size=(4, 2))
    opt, decay = {"sgd": (OptimizerSpec("sgd", 0.75), None),
                  "sgd-momentum": (OptimizerSpec("sgd", 0.75, momentum=0.9), None),
                  "sgd-nesterov": (OptimizerSpec("sgd", 0.5, momentum=0.9, nesterov=True),
                                   None),
                  "adam": (OptimizerSpec("adam", 1e-3), 0.999),
                  "rmsprop": (OptimizerSpec("rmsprop", 1e-3, rho=0.9), 0.9),
                  "adagrad": (OptimizerSpec("adagrad", 1e-3), 1.0)}[kind]
    c = real(1) if decay in (None, 1.0) else real(1) - real(decay)
    g_above = 4 * np.sqrt(float(tiny) / float(c))
    params = init_params(spec, seed=0)
    params[:4] = 3 * tiny, g_small, 5 * tiny, g_above   # W[0, 0], W[0, 1], W[1, 0], W[1, 1]
    Xc, Yc, _ = validate_training_data(spec, X, Y)
    after = {}
    for device in ("cpu", "numpy"):
        net = make_network(spec, opt, device=device)
        net.set_params(params)
        _, grad = net.loss_and_grad(Xc, Yc)
        np.testing.assert_array_equal(grad[:4], params.astype(dtype)[:4])   # L2's alone
        state = net.get_optimizer_state()
        if decay is not None:   # the square term's state (v, or Adagrad's a): small
            state["slots"][-1][[1, 3]] = state_small
            assert 0 < c * grad[1] * grad[1] < tiny   # the term would be denormal ...
            assert state_small + c * grad[1] * grad[1] != state_small   # ... and visible
            assert c * grad[3] * grad[3] >= tiny
        if kind == "adam":      # Adam's first moment m: small
            state["slots"][0][[2, 3]] = state_small
            assert 0 < (real(1) - real(0.9)) * grad[2] < tiny
        net.set_optimizer_state(state)
        net.train_epoch(Xc, Yc, batch_size=4)
        after[device] = net.get_params(), net.get_optimizer_state()["slots"]
    (p_cpu, s_cpu), (p_ref, s_ref) = after["cpu"], after["numpy"]
    if decay is None:
        assert p_cpu[0] == p_ref[0] == 0
    else:
        decayed = real(decay) * real(state_small)
        assert s_cpu[-1][1] == s_ref[-1][1] == decayed
        assert s_cpu[-1][3] != decayed and s_ref[-1][3] != decayed
    if kind == "adam":
        decayed = real(0.9) * real(state_small)
        assert s_cpu[0][2] == s_ref[0][2] == decayed
        assert s_cpu[0][3] != decayed and s_ref[0][3] != decayed
    # (float32: the engine computes 1 - beta_2 in float32, the reference in float64)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(p_cpu, p_ref, rtol=rtol, atol=0)
    for a, b in zip(s_cpu, s_ref):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_l2_gradient_below_the_smallest_normal_is_zero(dtype, rng):
    """Input 0 is always 0: its weights' gradient is the L2 term 2 l2 w alone, and where
    that would be a denormal number it is 0, in both backends (base.py); where it is not,
    it is 2 l2 w."""
    tiny = np.finfo(dtype).tiny
    spec = NetworkSpec((3, 2), ("identity",), loss="squared_error", dtype=dtype, l2=1e-3,
                       penalty_normalization="none")
    X = np.zeros((5, 3))
    X[:, 1:] = rng.normal(size=(5, 2))
    params = init_params(spec, seed=0)
    params[0], params[1] = 100 * tiny, 1000 * tiny    # W[0, 0]: 0.2 tiny; W[0, 1]: 2 tiny
    real = np.dtype(dtype).type
    assert 0 < real(2e-3) * real(params[0]) < tiny
    Xc, Yc, _ = validate_training_data(spec, X, rng.normal(size=(5, 2)))
    for device in ("cpu", "numpy"):
        net = make_network(spec, OptimizerSpec("sgd", 0.1), device=device)
        net.set_params(params)
        _, grad = net.loss_and_grad(Xc, Yc)
        assert grad[0] == 0, device
        assert grad[1] == real(2e-3) * real(params[1]), device


def test_metrics_and_full_batch_match_reference(rng):
    spec, X, y = _classification(rng)
    nets = []
    for device in ("cpu", "numpy"):
        net = make_network(spec, OptimizerSpec("sgd", 0.1), device=device)
        net.set_params(init_params(spec, seed=1))
        Xc, Yc, _ = validate_training_data(spec, X, y)
        net.train_epoch(Xc, Yc, batch_size=10, track_metrics=True)
        nets.append((net.epoch_metrics, net.forward(Xc), net.loss_and_grad(Xc, Yc)))
    (m1, f1, (l1, g1)), (m2, f2, (l2, g2)) = nets
    assert set(m1) == {"accuracy", "mae", "mse", "data_loss", "penalty"}
    for key in m1:
        assert m1[key] == pytest.approx(m2[key], rel=1e-10)
    np.testing.assert_allclose(f1, f2, rtol=1e-12)
    assert l1 == pytest.approx(l2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-14)


# ---- determinism and threads ----------------------------------------------------------------
def test_same_seed_same_weights(device, rng):
    spec = NetworkSpec((6, 10, 3), ("relu", "softmax"), loss="categorical_crossentropy",
                       dropout=(0.5, 0.0))
    X, y = rng.normal(size=(50, 6)), rng.integers(0, 3, 50)
    a, _ = _train(spec, OptimizerSpec("adam", 0.01), device, X, y, shuffle=True, epochs=3)
    b, _ = _train(spec, OptimizerSpec("adam", 0.01), device, X, y, shuffle=True, epochs=3)
    assert np.array_equal(a.get_params(), b.get_params())
    np.testing.assert_array_equal(init_params(spec, seed=5), init_params(spec, seed=5))
    assert not np.array_equal(init_params(spec, seed=5), init_params(spec, seed=6))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_and_two_threads_agree(dtype, rng):
    # large enough that the elementwise loops and BLAS really use two threads
    spec = NetworkSpec((64, 512, 256, 10), ("relu", "tanh", "softmax"),
                       loss="categorical_crossentropy", dtype=dtype, dropout=(0.2, 0, 0))
    X, y = rng.normal(size=(1024, 64)), rng.integers(0, 10, 1024)
    opt = OptimizerSpec("adam", 1e-3)
    a, la = _train(spec, opt, "cpu", X, y, n_threads=1, batch_size=512, epochs=1)
    b, lb = _train(spec, opt, "cpu", X, y, n_threads=2, batch_size=512, epochs=1)
    rtol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(a.get_params(), b.get_params(), rtol=rtol, atol=rtol)
    assert la[0] == pytest.approx(lb[0], rel=rtol)


def test_shuffled_order_is_a_seeded_permutation():
    a = shuffled_order(100, seed=1, epoch=0)
    assert sorted(a) == list(range(100))
    assert np.array_equal(a, shuffled_order(100, seed=1, epoch=0))
    assert not np.array_equal(a, shuffled_order(100, seed=1, epoch=1))
    assert not np.array_equal(a, shuffled_order(100, seed=2, epoch=0))


# ---- inputs ----------------------------------------------------------------------------------
def test_readonly_noncontiguous_fortran_inputs(device, rng):
    spec = NetworkSpec((4, 5, 1), ("tanh", "identity"))
    X = rng.normal(size=(30, 8))[:, ::2]            # non-contiguous view
    Xf = np.asfortranarray(X)
    Xr = np.array(X)
    Xr.setflags(write=False)
    y = rng.normal(size=30)
    y.setflags(write=False)
    results = []
    for Xin in (X, Xf, Xr):
        net = make_network(spec, OptimizerSpec("sgd", 0.1), device=device)
        net.set_params(init_params(spec, seed=0))
        Xc, Yc, _ = validate_training_data(spec, Xin, y)
        net.train_epoch(Xc, Yc, batch_size=8)
        results.append(net.get_params())
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_float32_c_contiguous_input_is_not_copied(rng):
    spec = NetworkSpec((4, 3), ("identity",), dtype="float32")
    X = rng.normal(size=(10, 4)).astype(np.float32)
    Xc, _, _ = validate_training_data(spec, X, None)
    assert Xc is X or np.shares_memory(Xc, X)


def test_float16_and_int_inputs_are_converted(rng):
    spec = NetworkSpec((3, 2), ("identity",), dtype="float32")
    X16 = rng.normal(size=(5, 3)).astype(np.float16)
    Xc, Yc, _ = validate_training_data(spec, X16, np.arange(10).reshape(5, 2))
    assert Xc.dtype == np.float32 and Yc.dtype == np.float32
    Xi, _, _ = validate_training_data(spec, np.arange(15).reshape(5, 3), None)
    assert Xi.dtype == np.float32


@pytest.mark.parametrize("bad", [np.array([["a", "b", "c"]]), np.ones((2, 3), dtype=complex),
                                 np.array([[None, 1, 2]], dtype=object)])
def test_non_numeric_inputs_are_refused(bad):
    spec = NetworkSpec((3, 1), ("identity",))
    with pytest.raises(TypeError, match="X must hold numbers"):
        validate_training_data(spec, bad, None)


@pytest.mark.parametrize("X,y,sw,match", [
    (np.ones((4, 3)), np.ones(4), None, "features per row"),
    (np.ones(4), np.ones(4), None, "2-D"),
    (np.ones((0, 2)), np.ones(0), None, "0 samples"),
    (np.array([[1.0, np.nan]] * 3), np.ones(3), None, "NaN or infinity"),
    (np.array([[1.0, np.inf]] * 3), np.ones(3), None, "NaN or infinity"),
    (np.ones((3, 2)), np.array([1.0, np.nan, 0.0]), None, "y contains NaN"),
    (np.ones((3, 2)), np.ones(4), None, "rows"),
    (np.ones((3, 2)), np.ones(3), np.ones(2), "sample_weight has shape"),
    (np.ones((3, 2)), np.ones(3), np.array([1.0, -1.0, 1.0]), "finite and >= 0"),
    (np.ones((3, 2)), np.ones(3), np.zeros(3), "zero for every sample"),
])
def test_bad_data_is_a_clear_value_error(X, y, sw, match):
    spec = NetworkSpec((2, 1), ("identity",))
    with pytest.raises(ValueError, match=match):
        validate_training_data(spec, X, y, sw)


def test_bad_labels_are_refused():
    spec = NetworkSpec((2, 3), ("softmax",), loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        validate_training_data(spec, np.ones((3, 2)), np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="whole numbers"):
        validate_training_data(spec, np.ones((3, 2)), np.array([0.5, 1, 2]))
    bce = NetworkSpec((2, 1), ("sigmoid",), loss="binary_crossentropy")
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]"):
        validate_training_data(bce, np.ones((3, 2)), np.array([0.0, 2.0, 1.0]))
    poisson = NetworkSpec((2, 1), ("exp",), loss="poisson")
    with pytest.raises(ValueError, match="y >= 0"):
        validate_training_data(poisson, np.ones((3, 2)), np.array([0.0, -2.0, 1.0]))


@pytest.mark.parametrize("batch_size,error", [(0, ValueError), (-3, ValueError),
                                              (2.5, TypeError), (True, TypeError)])
def test_bad_batch_size(device, batch_size, error):
    spec = NetworkSpec((2, 1), ("identity",))
    net = make_network(spec, device=device)
    with pytest.raises(error, match="batch_size"):
        net.train_epoch(np.ones((3, 2)), np.ones((3, 1)), batch_size=batch_size)


def test_engine_checks_shapes_and_indices_before_touching_memory(device):
    spec = NetworkSpec((2, 3), ("softmax",), loss="categorical_crossentropy")
    net = make_network(spec, device=device)
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="class labels"):
        net.train_epoch(X, np.array([0, 1, 2, 7]), batch_size=2)
    with pytest.raises(ValueError, match="order holds indices"):
        net.train_epoch(X, np.array([0, 1, 2, 1]), batch_size=2, order=np.array([0, 1, 2, 9]))
    with pytest.raises(ValueError, match="features per row"):
        net.forward(np.ones((4, 5)))
    with pytest.raises(ValueError, match="y has shape"):
        net.loss_and_grad(X, np.ones((4, 2)))
    with pytest.raises(ValueError, match="expected 9 parameters"):
        net.set_params(np.ones(3))


@pytest.mark.parametrize("kwargs,match", [
    (dict(layer_sizes=(3,), activations=()), "at least an input"),
    (dict(layer_sizes=(3, 0), activations=("relu",)), "positive integer"),
    (dict(layer_sizes=(3, 2), activations=("swish",)), "activation='swish'"),
    (dict(layer_sizes=(3, 2), activations=("relu", "relu")), "one per layer"),
    (dict(layer_sizes=(3, 2), activations=("relu",), loss="hinge"), "loss='hinge'"),
    (dict(layer_sizes=(3, 2), activations=("relu",), loss="categorical_crossentropy"),
     "needs a 'softmax' output"),
    (dict(layer_sizes=(3, 2), activations=("softmax",), dtype="float16"), "dtype"),
    (dict(layer_sizes=(3, 4, 2), activations=("relu", "identity"), dropout=(0.5, 0.5)),
     "output layer"),
    (dict(layer_sizes=(3, 4, 2), activations=("relu", "identity"), dropout=1.0), r"\[0, 1\)"),
    (dict(layer_sizes=(3, 2), activations=("relu",), l2=-1.0), "l2="),
])
def test_bad_network_spec(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NetworkSpec(**kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="lbfgs"), "optimizer 'lbfgs'"), (dict(learning_rate=0.0), "learning_rate"),
    (dict(learning_rate=float("nan")), "learning_rate"), (dict(momentum=1.5), "momentum"),
    (dict(beta_2=1.5), "beta_2"), (dict(clipnorm=0.0), "clipnorm"),
    (dict(schedule="cosine"), "schedule"), (dict(decay_steps=0), "decay_steps")])
def test_bad_optimizer_spec(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimizerSpec(**kwargs)


# ---- divergence, slices, state ----------------------------------------------------------------
def test_divergence_is_detected_and_the_bad_update_not_applied(device, rng):
    spec = NetworkSpec((3, 8, 1), ("relu", "exp"), loss="poisson")
    net = make_network(spec, OptimizerSpec("sgd", 1e6), device=device)
    net.set_params(init_params(spec, seed=0))
    X, Y, _ = validate_training_data(spec, rng.normal(size=(64, 3)) * 10,
                                     rng.poisson(3.0, (64, 1)))
    with np.errstate(all="ignore"):
        loss = net.train_epoch(X, Y, batch_size=4)
    assert np.isnan(loss) and net.diverged
    done, n = net.epoch_progress
    assert done < n


@pytest.mark.parametrize("batch_size,split", [(4, False), (8, True)])
def test_a_diverging_batch_counts_in_no_metric(batch_size, split, rng):
    """The batch whose loss is not finite is not applied and, in the engine as in the
    reference, not counted in the epoch's accuracy / mae / mse either (the engine had
    added it before its check); on one thread and with the batch split over two."""
    spec = NetworkSpec((3, 8, 1), ("relu", "exp"), loss="poisson")
    X, Y, _ = validate_training_data(spec, rng.normal(size=(64, 3)) * 10,
                                     rng.poisson(3.0, (64, 1)))
    metrics = []
    with contextlib.ExitStack() as stack:
        if split:
            stack.enter_context(engine_switch(_network.set_shard_min_work, 0))
            stack.enter_context(engine_switch(lambda p: _network.set_shard_rule(*p), (256, 1)))
        for device, threads in (("cpu", 2 if split else 1), ("numpy", 1)):
            net = make_network(spec, OptimizerSpec("sgd", 1e6), device=device,
                               n_threads=threads)
            if device == "cpu":
                assert net._engine.will_shard(batch_size) == split
            net.set_params(init_params(spec, seed=0))
            with np.errstate(all="ignore"):
                net.train_epoch(X, Y, batch_size=batch_size, track_metrics=True)
            assert net.diverged and net.epoch_progress[0] < 64
            metrics.append((net.epoch_progress, net.epoch_metrics))
    (done_cpu, m_cpu), (done_ref, m_ref) = metrics
    assert done_cpu == done_ref and m_cpu.keys() == m_ref.keys()
    for key in ("accuracy", "mae", "mse", "data_loss"):
        assert m_cpu[key] == pytest.approx(m_ref[key], rel=1e-6), key


@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_a_later_fit_after_a_diverged_split_batch_starts_from_clean_gradients(l2, rng):
    """A batch split over two threads whose loss is not finite leaves its gradients
    unsummed and uncleared (the check comes before the update's blocks that sum and clear
    them); the next fit (from new weights, on good data) must not add to them, though the
    shards' products accumulate into gradients cleared after their last read (each
    backward pass marks its gradients not cleared until the update clears them).  With
    and without a penalty, whose gradient is added in the update's blocks too
    (update_clearing).  Plain SGD: no optimizer state that the first fit's good batch
    would have moved."""
    spec = NetworkSpec((3, 8, 1), ("relu", "exp"), loss="poisson", l2=l2)
    X, Y, _ = validate_training_data(spec, rng.normal(size=(512, 3)),
                                     rng.poisson(3.0, (512, 1)))
    X_bad = X.copy()
    X_bad[256:] *= 1e30  # the second batch's loss overflows
    p0 = init_params(spec, seed=1)
    with contextlib.ExitStack() as stack:
        stack.enter_context(engine_switch(_network.set_shard_min_work, 0))
        stack.enter_context(engine_switch(lambda p: _network.set_shard_rule(*p), (256, 1)))
        nets = [make_network(spec, OptimizerSpec("sgd", 1e-2, momentum=0.0), n_threads=2)
                for _ in range(2)]
        assert nets[0]._engine.will_shard(256)
        nets[0].set_params(p0)
        with np.errstate(all="ignore"):
            nets[0].train_epoch(X_bad, Y, batch_size=256)
        assert nets[0].diverged and nets[0].epoch_progress[0] == 256
        for net in nets:
            net.set_params(p0)
            net.train_epoch(X, Y, batch_size=256)
            assert not net.diverged
    after_divergence, fresh = (net.get_params() for net in nets)
    assert np.isfinite(after_divergence).all()
    np.testing.assert_array_equal(after_divergence, fresh)


def test_run_steps_in_slices_equals_whole_epoch(device, rng):
    spec, X, y = _classification(rng)
    Xc, Yc, _ = validate_training_data(spec, X, y)
    whole = make_network(spec, OptimizerSpec("adam", 0.01), device=device)
    whole.set_params(init_params(spec, seed=1))
    loss_whole = whole.train_epoch(Xc, Yc, batch_size=10, shuffle=True, seed=4)
    sliced = make_network(spec, OptimizerSpec("adam", 0.01), device=device)
    sliced.set_params(init_params(spec, seed=1))
    sliced.start_epoch(Xc, Yc, batch_size=10, shuffle=True, seed=4)
    counts = []
    while True:
        k = sliced.run_steps(3)
        if not k:
            break
        counts.append(k)
        assert sliced.epoch_progress[0] == min(sum(counts) * 10, 103)
    assert counts == [3, 3, 3, 2]
    assert sliced.finish_epoch() == pytest.approx(loss_whole, rel=1e-14)
    np.testing.assert_array_equal(sliced.get_params(), whole.get_params())


def test_optimizer_state_round_trip_continues_identically(device, rng):
    spec, X, y = _classification(rng)
    Xc, Yc, _ = validate_training_data(spec, X, y)
    opt = OptimizerSpec("adam", 0.01)
    straight = make_network(spec, opt, device=device)
    straight.set_params(init_params(spec, seed=2))
    for e in range(2):
        straight.train_epoch(Xc, Yc, batch_size=16, epoch=e)
    first = make_network(spec, opt, device=device)
    first.set_params(init_params(spec, seed=2))
    first.train_epoch(Xc, Yc, batch_size=16)
    resumed = make_network(spec, opt, device=device)
    resumed.set_params(first.get_params())
    resumed.set_optimizer_state(first.get_optimizer_state())
    resumed.train_epoch(Xc, Yc, batch_size=16, epoch=1)
    np.testing.assert_array_equal(resumed.get_params(), straight.get_params())
    with pytest.raises(ValueError, match="buffers"):
        resumed.set_optimizer_state({"step": 1, "slots": []})


def test_learning_rate_schedule_and_set_learning_rate(device):
    opt = OptimizerSpec("sgd", 0.1, schedule="exponential", decay_rate=0.5, decay_steps=2)
    assert opt.learning_rate_at(0) == 0.1
    assert opt.learning_rate_at(2) == pytest.approx(0.05)
    assert opt.with_changes(staircase=True).learning_rate_at(3) == pytest.approx(0.05)
    inv = OptimizerSpec("sgd", 0.1, schedule="inverse_time", decay_rate=1.0, decay_steps=1)
    assert inv.learning_rate_at(3) == pytest.approx(0.025)
    spec = NetworkSpec((2, 1), ("identity",))
    net = make_network(spec, opt, device=device)
    net.train_epoch(np.ones((8, 2)), np.ones((8, 1)), batch_size=2)
    assert net.step == 4 and net.current_learning_rate == pytest.approx(0.025)
    net.set_learning_rate(1.0)
    assert net.current_learning_rate == pytest.approx(0.25)


def test_full_batch_larger_than_the_workspace(rng):
    # 5000 rows > the chunks of a call (call_chunk_rows): the chunked loss/gradient equal
    # the reference
    spec = NetworkSpec((3, 7, 2), ("tanh", "softmax"), loss="categorical_crossentropy",
                       l2=0.01)
    X, y = rng.normal(size=(5000, 3)), rng.integers(0, 2, 5000)
    sw = rng.uniform(0.5, 2, 5000)
    out = []
    for device in ("cpu", "numpy"):
        net = make_network(spec, device=device)
        net.set_params(init_params(spec, seed=0))
        out.append((net.loss_and_grad(X, y, sw), net.forward(X)))
    (l1, g1), f1 = out[0]
    (l2, g2), f2 = out[1]
    assert l1 == pytest.approx(l2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(f1, f2, rtol=1e-12)


@pytest.mark.parametrize("n", [9000, 1200])
def test_full_batch_split_over_the_threads(n, rng):
    """A full batch split over two threads by rows (each shard its rows in chunks of the
    workspace: 9,000 rows are two chunks per shard) matches the NumPy reference and one
    thread; the shards' gradients are summed and left cleared, so training afterwards is
    what it is without the full batch."""
    spec = NetworkSpec((30, 64, 3), ("tanh", "softmax"), loss="categorical_crossentropy",
                       l2=0.01)
    X, y = rng.normal(size=(n, 30)), rng.integers(0, 3, n)
    sw = rng.uniform(0.5, 2, n)
    out = {}
    for name, device, n_threads in (("numpy", "numpy", 1), ("one", "cpu", 1),
                                    ("two", "cpu", 2)):
        kwargs = {"n_threads": n_threads} if device == "cpu" else {}
        net = make_network(spec, OptimizerSpec("sgd", 0.1), device=device, **kwargs)
        net.set_params(init_params(spec, seed=0))
        if name == "two":
            assert net._engine.will_shard_prediction(n)
        out[name] = (net.loss_and_grad(X, y, sw), net.compute_loss(X, y, sw))
    for name in ("one", "two"):
        (loss, grad), evaluated = out[name]
        assert loss == pytest.approx(out["numpy"][0][0], rel=1e-12)
        assert evaluated == pytest.approx(out["numpy"][1], rel=1e-12)
        np.testing.assert_allclose(grad, out["numpy"][0][1], rtol=1e-9, atol=1e-13)
    trained = []
    for full_batch_first in (False, True):
        net = make_network(spec, OptimizerSpec("sgd", 0.1), n_threads=2)
        net.set_params(init_params(spec, seed=0))
        if full_batch_first:
            net.loss_and_grad(X, y, sw)
        Xc, Yc, _ = validate_training_data(spec, X, y)
        net.train_epoch(Xc, Yc, batch_size=n // 2, shuffle=False)
        trained.append(net.get_params())
    np.testing.assert_array_equal(trained[0], trained[1])


def test_views_and_set_weights(device, rng):
    spec = NetworkSpec((3, 4, 2), ("relu", "identity"), use_bias=(True, False))
    net = make_network(spec, device=device)
    coefs = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    net.set_weights(coefs, [np.arange(4.0), None])
    np.testing.assert_array_equal(net.coefs[1], coefs[1])
    assert net.intercepts[1] is None
    np.testing.assert_array_equal(net.intercepts[0], np.arange(4.0))
    with pytest.raises(ValueError, match="expected"):
        net.set_weights([np.ones((3, 3)), coefs[1]], [np.zeros(4), None])


# ---- devices and threads ------------------------------------------------------------------------
def test_device_selection(monkeypatch):
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("NumPy") == "numpy"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device='tpu' is not known"):
        resolve_device("tpu")
    with pytest.raises(TypeError, match="device must be a string"):
        resolve_device(3)
    monkeypatch.setenv("FASTMLP_DEVICE", "numpy")
    assert resolve_device(None) == "numpy"
    if not fastmlp.HAS_CUPY:
        with pytest.raises(RuntimeError, match="device='cuda' is unavailable"):
            resolve_device("cuda")


def test_thread_settings(monkeypatch):
    from fastmlp._threads import available_cpus, resolve_n_threads
    assert resolve_n_threads(3) == 3
    assert resolve_n_threads(-1) == available_cpus()
    for bad in (0, -2):
        with pytest.raises(ValueError, match="n_threads"):
            resolve_n_threads(bad)
    with pytest.raises(TypeError, match="n_threads"):
        resolve_n_threads("2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    fastmlp.set_num_threads(None)
    assert fastmlp.get_num_threads() == 1
    fastmlp.set_num_threads(2)
    try:
        assert fastmlp.get_num_threads() == 2
        net = make_network(NetworkSpec((2, 1), ("identity",)), device="cpu")
        assert net.n_threads == 2
    finally:
        fastmlp.set_num_threads(None)


@pytest.mark.parametrize("dtype, n_threads, opt", [
    ("float64", 2, OptimizerSpec("adam", 1e-3)),
    ("float64", 3, OptimizerSpec("sgd", 0.05, momentum=0.9)),
    ("float64", 2, OptimizerSpec("sgd", 0.05, momentum=0.9, clipnorm=0.5)),
    ("float32", 2, OptimizerSpec("adam", 1e-3)),
], ids=["adam-2", "sgd-3-threads", "clipnorm", "float32"])
def test_batch_split_over_threads_matches_reference(dtype, n_threads, opt, rng):
    # a batch big enough to be split over the threads (data parallel, single-threaded BLAS
    # per thread, the threads' gradients then summed): dropout masks, metrics, penalties
    # and weights equal the reference's; with 3 threads the shards and the slices of the
    # sum are uneven, and clipping takes the update off the threads
    spec = NetworkSpec((40, 200, 100, 5), ("relu", "tanh", "softmax"),
                       loss="categorical_crossentropy", dropout=(0.3, 0.1, 0.0), l2=1e-3,
                       l1=1e-4, dtype=dtype)
    X, y = rng.normal(size=(600, 40)), rng.integers(0, 5, 600)
    sw = rng.uniform(0.5, 2.0, 600)
    results = []
    for device, threads in (("cpu", n_threads), ("numpy", 1)):
        net = make_network(spec, opt, device=device, n_threads=threads)
        if device == "cpu":
            assert net._engine.will_shard(256)
        net.set_params(init_params(spec, seed=3))
        Xc, Yc, swc = validate_training_data(spec, X, y, sw)
        losses = [net.train_epoch(Xc, Yc, swc, batch_size=256, shuffle=True, seed=9, epoch=e,
                                  track_metrics=True) for e in range(2)]
        results.append((net.get_params(), losses, net.epoch_metrics))
    (p1, l1, m1), (p2, l2, m2) = results
    rtol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(p1, p2, rtol=rtol, atol=rtol * np.abs(p2).max())
    np.testing.assert_allclose(l1, l2, rtol=rtol)
    for key in m2:
        assert m1[key] == pytest.approx(m2[key], rel=rtol)


@pytest.mark.parametrize("dtype, opt, l2", [
    ("float64", OptimizerSpec("sgd", 0.05, momentum=0.9), 0.0),
    ("float32", OptimizerSpec("sgd", 0.05, momentum=0.9, nesterov=True), 0.0),
    ("float64", OptimizerSpec("adam", 1e-3), 1e-3),
    ("float64", OptimizerSpec("sgd", 0.05, momentum=0.9, clipnorm=0.5), 0.0),
], ids=["sum-in-update", "float32", "penalty", "clipnorm"])
def test_gradients_cleared_after_their_last_read(dtype, opt, l2, rng):
    # the shards' gradients cleared after their last read so that the next step's BLAS
    # products accumulate into them (set_zeroed_grads): without clipping the shards are
    # summed in the update's blocks (with a penalty, its gradient is added there and its
    # value taken from each thread's slice of the weights after its shard), with clipping
    # the update is not split (shard 0 is then not cleared).  Batches of 256 are
    # split (two BLAS shards of 128 rows); the last batch of 150 is not (300 units), and
    # its products accumulate into shard 0's cleared gradients.  Weights equal those of
    # products that zero their output, bit for bit, and the NumPy reference's
    spec = NetworkSpec((40, 300, 60, 5), ("relu", "tanh", "softmax"),
                       loss="categorical_crossentropy", l2=l2, dtype=dtype)
    X, y = rng.normal(size=(662, 40)), rng.integers(0, 5, 662)
    Xc, Yc, _ = validate_training_data(spec, X, y)
    nets = {}
    # the direct kernels' rows limited to 128 (the rule before session 25): the batches of
    # 256 then split, and that of 150 goes to BLAS's threads
    with engine_switch(_network.set_direct_max_rows, (64, 128)):
        for device, cleared in (("cpu", True), ("cpu", False), ("numpy", None)):
            net = make_network(spec, opt, device=device, n_threads=2 if device == "cpu" else 1)
            net.set_params(init_params(spec, seed=5))
            if device == "cpu":
                assert net._engine.will_shard(256) and not net._engine.will_shard(150)
                switch = engine_switch(_network.set_zeroed_grads, cleared)
            else:
                switch = contextlib.nullcontext()
            with switch:
                losses = [net.train_epoch(Xc, Yc, batch_size=256, shuffle=True, seed=2,
                                          epoch=e) for e in range(3)]
            nets[cleared] = net, losses
    (on, l_on), (off, l_off), (ref, l_ref) = nets[True], nets[False], nets[None]
    np.testing.assert_array_equal(on.get_params(), off.get_params())
    assert l_on == l_off
    rtol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(on.get_params(), ref.get_params(), rtol=rtol,
                               atol=rtol * np.abs(ref.get_params()).max())
    np.testing.assert_allclose(l_on, l_ref, rtol=rtol)
    # a full-batch gradient after training (shard 0's gradients may be cleared) is that of
    # a network given the same weights
    fresh = make_network(spec, opt, device="cpu", n_threads=2)
    fresh.set_params(on.get_params())
    loss, grad = on.loss_and_grad(Xc, Yc)
    loss_fresh, grad_fresh = fresh.loss_and_grad(Xc, Yc)
    assert loss == loss_fresh
    np.testing.assert_array_equal(grad, grad_fresh)


# The ways an update is split over two threads (batch size; is the batch split?): a batch
# split into BLAS shards (their gradients cleared after the sum), into direct-kernel shards
# (AVX-512 builds; BLAS shards elsewhere), and one batch through the direct products, each
# thread updating the weight rows it wrote (AVX-512; elsewhere one BLAS batch and one update
# pass).
_SPLIT_UPDATES = {"blas-shards": ((40, 300, 60, 5), 300, True),
                  "direct-shards": ((300, 250, 10), 32, True),
                  "own-rows": ((300, 250, 10), 16, False)}


@pytest.mark.parametrize("case", list(_SPLIT_UPDATES))
def test_non_finite_penalty_with_a_finite_loss_stops_before_the_update(case, rng):
    """float64 weights of 1e160 on an input that is always 0: the data loss is finite, the
    penalty (1e320) is not.  That batch's update is not applied, as in the NumPy reference,
    wherever the update runs."""
    sizes, batch_size, sharded = _SPLIT_UPDATES[case]
    spec = NetworkSpec(sizes, ("relu",) * (len(sizes) - 2) + ("softmax",),
                       loss="categorical_crossentropy", l2=1e-4)
    X = rng.normal(size=(300, sizes[0]))
    X[:, 0] = 0.0
    Xc, Yc, _ = validate_training_data(spec, X, rng.integers(0, sizes[-1], 300))
    params = init_params(spec, seed=5)
    params[:sizes[1]] = 1e160   # row 0 of the first weight matrix: input 0's weights
    for device in ("cpu", "numpy"):
        net = make_network(spec, OptimizerSpec("sgd", 0.01), device=device,
                           n_threads=2 if device == "cpu" else 1)
        net.set_params(params)
        if device == "cpu":
            assert net._engine.will_shard(batch_size) == sharded
        with np.errstate(over="ignore"):   # the data loss alone is finite
            assert np.isfinite(net.compute_loss(Xc, Yc, include_penalty=False))
            assert not np.isfinite(net.compute_loss(Xc, Yc))
        with np.errstate(over="ignore"):
            loss = net.train_epoch(Xc, Yc, batch_size=batch_size, shuffle=True, seed=1)
        assert np.isnan(loss)
        assert net.diverged and net.epoch_progress[0] == 0
        np.testing.assert_array_equal(net.get_params(), params)


def test_small_batches_are_not_split(rng):
    spec = NetworkSpec((4, 10, 3), ("relu", "softmax"), loss="categorical_crossentropy")
    net = make_network(spec, device="cpu", n_threads=2)
    assert not net._engine.will_shard(32)
    assert not make_network(spec, device="cpu", n_threads=1)._engine.will_shard(10 ** 6)
    # a wide layer: split only with at least 128 rows per thread, and, where the CPU runs
    # the direct kernels, only past the 256 rows that they split by W's rows instead
    wide = make_network(NetworkSpec((784, 500, 10), ("relu", "softmax"),
                                    loss="categorical_crossentropy"), device="cpu", n_threads=2)
    direct = _network.direct_kernels_available()
    assert not wide._engine.will_shard(128)
    assert not wide._engine.will_shard(255)
    assert wide._engine.will_shard(256) == (not direct)
    assert wide._engine.will_shard(257)
    assert wide._engine.will_shard(512)
    # ... the same rule with the direct kernels' limit moved: a split from 256 rows on
    with engine_switch(_network.set_direct_max_rows, (64, 128)):
        assert not wide._engine.will_shard(255)
        assert wide._engine.will_shard(256)


def test_one_network_shared_by_python_threads(device, rng):
    # One fitted network used by several Python threads at once (a web server, joblib's
    # threading backend): the engine's calls release the GIL and share its workspaces,
    # which a call may grow, so without its lock the threads got each other's rows or
    # crashed on a freed workspace. Row counts vary so that calls grow the workspace.
    import threading
    spec = NetworkSpec((20, 300, 3), ("relu", "softmax"), loss="categorical_crossentropy")
    X = rng.normal(size=(700, 20))
    net = make_network(spec, device=device, n_threads=1)
    net.set_params(init_params(spec, seed=0))
    ref = net.forward(X)
    Y = np.eye(3)[rng.integers(0, 3, 700)]
    ref_loss = net.compute_loss(X, Y)
    wrong, errors = [], []

    def work(seed):
        r = np.random.default_rng(seed)
        try:
            for _ in range(25):
                lo = int(r.integers(0, 350))
                hi = lo + int(r.integers(1, 350))
                if r.random() < 0.8:
                    out = net.forward(X[lo:hi])
                    if out.shape != (hi - lo, 3) or not np.allclose(out, ref[lo:hi]):
                        wrong.append((lo, hi))
                elif not np.isclose(net.compute_loss(X, Y), ref_loss):
                    wrong.append("loss")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []


def test_prediction_split_over_threads_matches_reference(rng):
    # a prediction big enough to be split over 2 threads (rows are independent), with a
    # row count that does not divide evenly and chunks larger than the workspace
    spec = NetworkSpec((30, 64, 32, 4), ("relu", "tanh", "softmax"),
                       loss="categorical_crossentropy")
    X = rng.normal(size=(9001, 30))
    outs = []
    for device, n_threads in (("cpu", 2), ("cpu", 1), ("numpy", 1)):
        net = make_network(spec, device=device, n_threads=n_threads)
        net.set_params(init_params(spec, seed=1))
        if device == "cpu":
            assert net._engine.will_shard_prediction(9001) == (n_threads == 2)
            assert not net._engine.will_shard_prediction(3)
        outs.append(net.forward(X))
    np.testing.assert_allclose(outs[0], outs[2], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(outs[1], outs[2], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sizes, rows", [((4, 10, 10, 3), 32),      # the fused tiny pass
                                         ((20, 12, 3), 300),        # narrow (small) kernels
                                         ((30, 200, 3), 40),        # direct kernels
                                         ((30, 200, 3), 600)])      # BLAS
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_passes_nan_on(sizes, rows, dtype):
    # relu(NaN) is NaN (np.maximum(z, 0)): a NaN weight must reach the loss, where the
    # divergence check sees it, on every kernel path (the engine had returned 0 for it)
    spec = NetworkSpec(sizes, ("relu",) * (len(sizes) - 2) + ("softmax",),
                       loss="categorical_crossentropy", dtype=dtype)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, sizes[0]))
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], rows)]
    params = init_params(spec, seed=0)
    params[0] = np.nan                   # W[0, 0] of the first layer
    for device in ("cpu", "numpy"):
        for n_threads in (1, 2):
            net = make_network(spec, OptimizerSpec("sgd", 0.1), device=device,
                               n_threads=n_threads)
            net.set_params(params)
            with np.errstate(invalid="ignore"):
                out = net.forward(X)
                assert np.isnan(out).all(axis=1).any(), (device, n_threads)
                assert np.isnan(net.compute_loss(X, Y))
                Xc, Yc, _ = validate_training_data(spec, X, Y)
                assert np.isnan(net.train_epoch(Xc, Yc, batch_size=rows)) and net.diverged


def test_all_zero_weights_are_normalised_by_the_row_count(device, rng):
    # weight_normalization="sum_weights" (scikit-learn's): a batch whose weights sum to 0
    # has no data loss and the penalty per row, in training and in full-batch calls alike
    spec, X, y = _classification(rng, n=12)
    Y = np.eye(spec.n_outputs)[y]
    net = make_network(spec, OptimizerSpec("sgd", 0.1), device=device)
    net.set_params(init_params(spec, seed=0))
    zero = np.zeros(len(X))
    loss, grad = net.loss_and_grad(X, Y, zero)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(net.compute_loss(X, Y, zero))
    assert net.compute_loss(X, Y, zero, include_penalty=False) == 0.0
    ones_loss, _ = net.loss_and_grad(X, Y, np.ones(len(X)))
    assert 0 < loss < ones_loss          # the penalty alone


@pytest.mark.parametrize("switches", [
    {"small": 0},                              # every product through BLAS
    {"small": 1 << 40},                        # every product through the small kernels
    {"small": 1 << 40, "narrow": False},       # ... their plain loops, no narrow kernels
    {"small": 1 << 40, "narrow": True},        # ... the narrow kernels where they fit
    # a short batch of a wide net split anyway (not through the direct kernels' split)
    {"shard_min": 0, "rule": (256, 1), "direct": (64, 0)},
], ids=["no-small-kernels", "all-small-kernels", "small-plain-loops", "small-narrow",
        "forced-split"])
def test_path_switches_keep_the_reference_results(switches, rng):
    # the tuning switches used by benchmarks (set_small_gemm_work, set_shard_min_work,
    # set_shard_rule) move work between kernels; the results must stay the reference's
    setters = {"small": _network.set_small_gemm_work,
               "shard_min": _network.set_shard_min_work,
               "rule": lambda pair: _network.set_shard_rule(*pair),
               "narrow": _network.set_narrow_kernels,
               "direct": _network.set_direct_max_rows}
    spec = NetworkSpec((20, 300, 3), ("relu", "softmax"), loss="categorical_crossentropy",
                       l2=1e-3)
    X, y = rng.normal(size=(256, 20)), rng.integers(0, 3, 256)
    results = []
    with contextlib.ExitStack() as stack:
        for key, value in switches.items():
            stack.enter_context(engine_switch(setters[key], value))
        for device, threads in (("cpu", 2), ("numpy", 1)):
            net = make_network(spec, OptimizerSpec("adam", 1e-2), device=device,
                               n_threads=threads)
            if device == "cpu":
                assert net._engine.will_shard(64) == ("rule" in switches)
            net.set_params(init_params(spec, seed=0))
            Xc, Yc, _ = validate_training_data(spec, X, y)
            loss = net.train_epoch(Xc, Yc, batch_size=64, shuffle=True, seed=1)
            results.append((loss, net.get_params(), net.forward(X)))
    (l1, p1, o1), (l2, p2, o2) = results
    assert l1 == pytest.approx(l2, rel=1e-11)
    np.testing.assert_allclose(p1, p2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(o1, o2, rtol=1e-10, atol=1e-12)


def test_workspace_grows_with_the_batch_and_threads_can_change(rng):
    spec = NetworkSpec((30, 64, 4), ("relu", "softmax"), loss="categorical_crossentropy")
    X, y = rng.normal(size=(600, 30)), rng.integers(0, 4, 600)
    net = make_network(spec, OptimizerSpec("sgd", 0.1), n_threads=1)
    net.set_params(init_params(spec, seed=0))
    Xc, Yc, _ = validate_training_data(spec, X, y)
    net.train_epoch(Xc, Yc, batch_size=32)
    small = net.workspace_nbytes
    assert net._engine.workspace_rows == 32 and small > 32 * (30 + 64 + 4) * 8
    net.train_epoch(Xc, Yc, batch_size=512)
    assert net._engine.workspace_rows == 512 and net.workspace_nbytes > 8 * small
    net.n_threads = 2
    assert net.n_threads == 2 and net._engine.n_threads == 2
    ref = make_network(spec, OptimizerSpec("sgd", 0.1), device="numpy")
    ref.set_params(net.get_params())
    for n in (net, ref):
        n.train_epoch(Xc, Yc, batch_size=300)
    np.testing.assert_allclose(net.get_params(), ref.get_params(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_threads, batch_size", [(2, 301), (3, 256), (3, 258), (5, 301)])
def test_each_shard_workspace_holds_its_share_of_the_rows(n_threads, batch_size, rng):
    """Shard 0's workspace holds the whole batch (and the gathered rows), each other
    shard's only ceil(rows / threads), the most it is given.  Batches, predictions and full
    batches split unevenly (the last shard one row more or less) equal the reference's."""
    spec = NetworkSpec((40, 200, 100, 5), ("relu", "tanh", "softmax"),
                       loss="categorical_crossentropy", dropout=(0.3, 0.1, 0.0), l2=1e-3)
    X, y = rng.normal(size=(600, 40)), rng.integers(0, 5, 600)
    Xc, Yc, _ = validate_training_data(spec, X, y)
    nets = [make_network(spec, OptimizerSpec("sgd", 0.05, momentum=0.9), n_threads=n_threads),
            make_network(spec, OptimizerSpec("sgd", 0.05, momentum=0.9), device="numpy")]
    for net in nets:
        net.set_params(init_params(spec, seed=3))
        net.train_epoch(Xc, Yc, batch_size=batch_size, shuffle=True, seed=9)
    engine = nets[0]._engine
    assert engine.will_shard(batch_size)
    share = -(-batch_size // n_threads)
    assert engine.shard_workspace_rows == (batch_size,) + (share,) * (n_threads - 1)
    np.testing.assert_allclose(nets[0].get_params(), nets[1].get_params(), rtol=1e-10,
                               atol=1e-12)
    # a prediction of more rows grows the workspace to a call's chunk (call_chunk_rows):
    # the other shards run theirs in chunks of ceil(chunk / threads), the last shorter
    chunk = max(_network.call_chunk_rows(), batch_size)
    n = 4 * chunk + 1
    Xp = rng.normal(size=(n, 40))
    np.testing.assert_allclose(nets[0].forward(Xp), nets[1].forward(Xp), rtol=1e-10,
                               atol=1e-13)
    assert engine.shard_workspace_rows == (chunk,) + (-(-chunk // n_threads),) * (n_threads - 1)
    Xf, Yf, _ = validate_training_data(spec, Xp, rng.integers(0, 5, n))
    (loss, grad), (ref_loss, ref_grad) = [net.loss_and_grad(Xf, Yf) for net in nets]
    assert loss == pytest.approx(ref_loss, rel=1e-11)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-13)


def test_shard_workspaces_do_not_grow_with_the_threads_as_whole_copies(rng):
    """The workspaces of 4 threads hold the batch about once over (shard 0 the whole batch,
    the others a quarter each), not four times: under 2.5x one thread's, where four whole
    copies were over 4x."""
    spec = NetworkSpec((784, 500, 500, 10), ("relu", "relu", "softmax"),
                       loss="categorical_crossentropy", dtype="float32")
    X = rng.normal(size=(1024, 784)).astype(np.float32)
    Xc, Yc, _ = validate_training_data(spec, X, rng.integers(0, 10, 1024))
    sizes = {}
    for n_threads in (1, 4):
        net = make_network(spec, OptimizerSpec("sgd", 0.01), n_threads=n_threads)
        net.set_params(init_params(spec, seed=0))
        net.train_epoch(Xc, Yc, batch_size=512)
        # the other threads' gradient buffers and the split forward's partial products
        # scale with the threads by design; the workspaces are what is compared here
        per_thread = ((n_threads - 1) * net.get_params().size * 4
                      + (n_threads - 1) * min(512, 256) * 500 * 4 * (n_threads > 1))
        sizes[n_threads] = net.workspace_nbytes - per_thread
    assert sizes[1] > 512 * (784 + 2 * (500 + 500)) * 4
    assert sizes[4] < 2.5 * sizes[1]


def test_other_threads_gradient_buffers_come_with_the_first_split(rng):
    """The other threads' gradient buffers (one per extra thread, the parameters' size) are
    made only when a batch or a full batch with its gradient is first split over the
    threads: batches that are not split (the direct kernels, or BLAS's threads) and
    predictions never need them.  Every result equals the reference's."""
    spec = NetworkSpec((100, 300, 4), ("relu", "softmax"), loss="categorical_crossentropy")
    X, y = rng.normal(size=(2000, 100)), rng.integers(0, 4, 2000)
    Xc, Yc, _ = validate_training_data(spec, X, y)
    net = make_network(spec, OptimizerSpec("sgd", 0.05, momentum=0.9), n_threads=2)
    ref = make_network(spec, OptimizerSpec("sgd", 0.05, momentum=0.9), device="numpy")
    for n in (net, ref):
        n.set_params(init_params(spec, seed=1))
    grads_nbytes = spec.n_params * 8
    assert not net._engine.will_shard(128) and net._engine.will_shard(512)
    assert net._engine.will_shard_prediction(2000)
    for n in (net, ref):
        n.train_epoch(Xc, Yc, batch_size=128, shuffle=True, seed=0)
        n.forward(X)
    before = net.workspace_nbytes
    (loss, grad), (ref_loss, ref_grad) = [n.loss_and_grad(Xc, Yc) for n in (net, ref)]
    assert net.workspace_nbytes == before + grads_nbytes
    assert loss == pytest.approx(ref_loss, rel=1e-11)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-13)
    for n in (net, ref):
        n.train_epoch(Xc, Yc, batch_size=512, shuffle=True, seed=1, epoch=1)
    assert net.workspace_nbytes == before + grads_nbytes
    np.testing.assert_allclose(net.get_params(), ref.get_params(), rtol=1e-10, atol=1e-12)
    # a fresh network whose first split is a training batch
    fresh = make_network(spec, OptimizerSpec("sgd", 0.05), n_threads=2)
    fresh.set_params(init_params(spec, seed=1))
    fresh.train_epoch(Xc, Yc, batch_size=128)
    alone = fresh.workspace_nbytes
    fresh.train_epoch(Xc, Yc, batch_size=512)
    assert fresh.workspace_nbytes >= alone + grads_nbytes


def test_a_dropped_inf_activation_is_nan_as_in_the_reference():
    # inverted dropout multiplies by the mask: a dropped inf gives NaN (inf * 0), the
    # batch's loss is NaN and its update is refused on both engines (the CPU engine had
    # written 0, kept a finite loss and applied a NaN gradient)
    spec = NetworkSpec((1, 2, 1), ("exp", "identity"), dropout=(0.5, 0.0), use_bias=False)
    X, Y = np.array([[800.0]]), np.array([[0.0]])
    params = np.array([1.0, 0.0, 1.0, 1.0])     # unit 0: exp(800) = inf, unit 1: exp(0)
    for seed in range(20):
        got = []
        for device in ("cpu", "numpy"):
            net = make_network(spec, OptimizerSpec("sgd", 0.01), device=device)
            net.set_params(params)
            Xc, Yc, _ = validate_training_data(spec, X, Y)
            with np.errstate(all="ignore"):
                net.train_epoch(Xc, Yc, batch_size=1, seed=seed)
            got.append((net.diverged, np.isfinite(net.get_params()).all()))
        assert got[0] == got[1] == (True, True), seed   # refused, weights untouched


def test_extreme_sample_weights_and_logits_in_float32(rng):
    # the reference sums weights and weighted losses in float64, as the CPU engine does
    # (float32 sums of 64 weights of 1e37 overflowed to inf), computes log-softmax without
    # cancelling large logits, and denormal weights are refused by validation
    spec = NetworkSpec((2, 1), ("sigmoid",), loss="binary_crossentropy", dtype="float32")
    X, Y = rng.normal(size=(64, 2)), (rng.random((64, 1)) > 0.5).astype(float)
    for norm in ("sum_weights", "n_samples"):
        s = spec.with_changes(weight_normalization=norm)
        losses = []
        for device in ("cpu", "numpy"):
            net = make_network(s, OptimizerSpec("sgd", 0.1), device=device)
            net.set_params(np.zeros(s.n_params))
            loss, grad = net.loss_and_grad(X, Y, np.full(64, 1e37))
            assert np.isfinite(loss) and np.isfinite(grad).all(), (norm, device)
            losses.append(loss)
        assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    with pytest.raises(ValueError, match="below the smallest normal float32"):
        validate_training_data(spec, X, Y, np.full(64, 1e-40))
    with pytest.raises(ValueError, match="below the smallest normal float64"):
        validate_training_data(spec.with_changes(dtype="float64"), X, Y, np.full(64, 1e-320))
    soft = NetworkSpec((3, 3), ("softmax",), loss="categorical_crossentropy", dtype="float32")
    ref = make_network(soft, OptimizerSpec("sgd", 0.1), device="numpy")
    ref.set_params(np.concatenate([np.zeros(9), [0.5, 1000.0, 999.5]]).astype(np.float32))
    loss = ref.compute_loss(np.zeros((1, 3)), np.array([[0.0, 1.0, 0.0]]))
    exact = np.log1p(np.exp(-999.5) + np.exp(-0.5))                    # -log p(class 1)
    assert loss == pytest.approx(exact, abs=1e-6)    # 1.7e-5 off before
