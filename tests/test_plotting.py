"""fastmlp.plotting: history curves, first-layer weight images, decision boundaries."""

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plotting needs matplotlib (the 'plot' extra)")

import matplotlib  # noqa: E402

matplotlib.use("Agg")   # tests never open windows

import matplotlib.pyplot as plt  # noqa: E402

from fastmlp import Dense, Model, plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _trained_history():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    m = Model([Dense(8, "tanh", input_dim=2), Dense(1, "sigmoid")], seed=0, device="numpy")
    m.compile("adam", "binary_crossentropy", metrics=["accuracy", "mae"])
    return m, X, y, m.fit(X, y, epochs=4, validation_split=0.25, verbose=0)


def test_plot_history_panels_and_png(tmp_path):
    m, X, y, h = _trained_history()
    path = tmp_path / "history.png"
    fig = plotting.plot_history(h, path=path)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "mae"]
    for ax, key in zip(fig.axes, ["loss", "accuracy", "mae"]):
        lines = ax.get_lines()
        assert [l.get_label() for l in lines] == ["training", "validation"]
        np.testing.assert_allclose(lines[0].get_ydata(), h.history[key])
        np.testing.assert_allclose(lines[1].get_ydata(), h.history["val_" + key])
        np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = plotting.plot_history(h.history, metrics="accuracy")
    assert len(fig.axes) == 1
    fig = plotting.plot_history({"loss": [3.0, 2.0, 1.0]})      # no validation
    assert [l.get_label() for l in fig.axes[0].get_lines()] == ["training"]
    with pytest.raises(ValueError, match="not in the history"):
        plotting.plot_history(h, metrics=["f1"])
    with pytest.raises(ValueError, match="History"):
        plotting.plot_history({})


def test_plot_weights_images(tmp_path):
    m = Model([Dense(12, "relu", input_dim=64), Dense(10, "softmax")], seed=0, device="numpy")
    m.build()
    fig = plotting.plot_weights(m, shape=(8, 8), ncols=5, path=tmp_path / "w.png")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 12 and len(fig.axes) == 15       # 3 rows of 5, 3 left empty
    W = m.get_weights()[0]
    np.testing.assert_allclose(images[4].get_array(), W[:, 4].reshape(8, 8))
    assert (tmp_path / "w.png").exists()
    fig = plotting.plot_weights(W, shape=(8, 8), max_units=4)
    assert sum(bool(ax.images) for ax in fig.axes) == 4
    fig = plotting.plot_weights(m, layer=1, shape=(3, 4))
    assert sum(bool(ax.images) for ax in fig.axes) == 10
    with pytest.raises(ValueError, match="pixels"):
        plotting.plot_weights(m, shape=(28, 28))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_plot_weights_accepts_sklearn_estimators():
    from sklearn.neural_network import MLPClassifier
    rng = np.random.default_rng(0)
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5).fit(rng.normal(size=(30, 16)),
                                                                 rng.integers(0, 2, 30))
    fig = plotting.plot_weights(est, shape=(4, 4))
    assert sum(bool(ax.images) for ax in fig.axes) == 6


def test_plot_decision_boundary(tmp_path):
    m, X, y, _ = _trained_history()
    fig = plotting.plot_decision_boundary(m, X, y, resolution=30, path=tmp_path / "b.png")
    ax = fig.axes[0]
    assert len(ax.collections) >= 3          # filled contours, the 0.5 line, the points
    assert (tmp_path / "b.png").exists()
    lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
    assert ax.get_xlim() == pytest.approx((lo[0], hi[0]))
    # several classes (softmax) and a given Axes
    k = Model([Dense(3, "softmax", input_dim=2)], seed=0, device="numpy")
    k.build()
    _, axis = plt.subplots()
    fig2 = plotting.plot_decision_boundary(k, X, np.eye(3)[y], ax=axis, resolution=20)
    assert fig2 is axis.figure
    with pytest.raises(ValueError, match=r"\(n_samples, 2\)"):
        plotting.plot_decision_boundary(m, np.zeros((5, 3)))
    with pytest.raises(TypeError, match="predict"):
        plotting.plot_decision_boundary(object(), X)


def test_plots_saved_to_a_path_are_closed_and_weights_build_on_demand(tmp_path):
    m = Model([Dense(6, "relu", input_dim=16), Dense(3, "softmax")], seed=0)
    m.compile("sgd", "sparse_categorical_crossentropy")     # not built yet: input_dim known
    before = len(plt.get_fignums())
    for i in range(3):
        plotting.plot_weights(m, shape=(4, 4), path=tmp_path / f"w{i}.png")
    assert len(plt.get_fignums()) == before                  # saved, then closed
    fig = plotting.plot_weights(m, shape=(4, 4))             # no path: left open to show
    assert len(plt.get_fignums()) == before + 1
    plt.close(fig)
    with pytest.raises(ValueError, match="max_units=0"):
        plotting.plot_weights(m, shape=(4, 4), max_units=0)
