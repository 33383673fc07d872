"""Plots of training histories, first-layer weights and decision boundaries
(matplotlib: ``pip install matplotlib``, or the ``plot`` extra).

Without a display (a server, CI) matplotlib's non-interactive "Agg" backend is
selected before pyplot is imported, and each function can save its figure to a PNG
(``path=``).  Every function returns the matplotlib ``Figure``.
"""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["plot_history", "plot_weights", "plot_decision_boundary"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("fastmlp.plotting needs matplotlib: pip install matplotlib"
                          ) from None
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and \
            sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and \
            not os.environ.get("WAYLAND_DISPLAY") and "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, path):
    """Save the figure to ``path`` when given, and then close it in pyplot (a script that
    saves many plots would otherwise keep every figure open); the returned figure can
    still be saved again or drawn with ``fig.canvas``."""
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100, bbox_inches="tight")
        _pyplot().close(fig)
    return fig


def plot_history(history, metrics=None, *, path=None, figsize=None):
    """Loss and metrics per epoch, training against validation.

    Parameters
    ----------
    history : History or dict
        What ``Model.fit`` returned (or its ``.history`` dict).
    metrics : list of str, optional
        Quantities to plot (default: "loss" then every other non-``val_`` key except
        "lr").  Each gets its own panel with its ``val_`` twin when present.
    path : str or path, optional
        Save the figure there (PNG) and close it in pyplot.
    figsize : tuple, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = getattr(history, "history", history)
    if not isinstance(data, dict) or not data:
        raise ValueError("plot_history needs a History (from Model.fit) or its non-empty "
                         f".history dict; got {history!r}")
    if metrics is None:
        metrics = ["loss"] if "loss" in data else []
        metrics += [k for k in data if k not in ("loss", "lr") and not k.startswith("val_")]
    elif isinstance(metrics, str):
        metrics = [metrics]
    missing = [m for m in metrics if m not in data]
    if missing:
        raise ValueError(f"plot_history: {missing} not in the history; it has {sorted(data)}")
    if not metrics:
        raise ValueError("plot_history: nothing to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), squeeze=False,
                             figsize=figsize or (4.5 * len(metrics), 3.5))
    epoch_list = getattr(history, "epoch", None)
    for ax, name in zip(axes[0], metrics):
        values = np.asarray(data[name], dtype=float)
        epochs = np.asarray(epoch_list if epoch_list and len(epoch_list) == len(values)
                            else range(len(values))) + 1
        ax.plot(epochs, values, "o-" if len(values) < 30 else "-", label="training")
        if "val_" + name in data:
            val = np.asarray(data["val_" + name], dtype=float)
            ax.plot(epochs[:len(val)], val, "s--" if len(val) < 30 else "--",
                    label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _finish(fig, path)


def _first_layer_weights(model, layer):
    if hasattr(model, "get_layer") and hasattr(model, "layers"):       # fastmlp Model
        return np.asarray(model.get_layer(index=layer).get_weights()[0])
    if hasattr(model, "coefs_"):                                        # scikit-learn MLP
        return np.asarray(model.coefs_[layer])
    W = np.asarray(model)
    if W.ndim != 2:
        raise ValueError("plot_weights needs a Model, a fitted MLP estimator or a 2-D "
                         f"weight matrix; got an array of shape {W.shape}")
    return W


def plot_weights(model, layer=0, shape=(28, 28), *, max_units=100, ncols=10, path=None,
                 cmap="gray"):
    """Each unit's incoming weights drawn as an image (the course's MNIST picture).

    Parameters
    ----------
    model : Model, MLPClassifier/MLPRegressor or ndarray (fan_in, units)
    layer : int, default=0
        Which weight layer (0: the first, whose inputs are the pixels).
    shape : tuple of int, default=(28, 28)
        Image shape; its product must equal the layer's fan-in.
    max_units : int, default=100
        Draw at most this many units.
    ncols : int, default=10
    path : str or path, optional
        Save the figure there (PNG) and close it in pyplot.
    cmap : str, default="gray"

    Returns
    -------
    matplotlib.figure.Figure
    """
    W = _first_layer_weights(model, layer)
    shape = tuple(int(s) for s in shape)
    if int(np.prod(shape)) != W.shape[0]:
        raise ValueError(f"shape={shape} has {int(np.prod(shape))} pixels but the layer has "
                         f"{W.shape[0]} inputs")
    if isinstance(max_units, bool) or not isinstance(max_units, (int, np.integer)) \
            or max_units < 1:
        raise ValueError(f"max_units={max_units!r} must be an int >= 1")
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols={ncols!r} must be an int >= 1")
    n = min(W.shape[1], int(max_units))
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(1.2 * ncols, 1.2 * nrows))
    vmin, vmax = float(W[:, :n].min()), float(W[:, :n].max())
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks(())
        ax.set_yticks(())
        if i < n:
            ax.matshow(W[:, i].reshape(shape), cmap=cmap, vmin=0.5 * vmin, vmax=0.5 * vmax)
        else:
            ax.axis("off")
    return _finish(fig, path)


def _scores(model, grid):
    if hasattr(model, "predict_proba"):
        P = np.asarray(model.predict_proba(grid))
    else:
        P = np.asarray(model.predict(grid))
    if P.ndim == 1:
        P = P.reshape(-1, 1)
    if P.shape[1] == 1:
        return P[:, 0], (P[:, 0] > 0.5).astype(int), True
    return P.max(axis=1), P.argmax(axis=1), False


def plot_decision_boundary(model, X, y=None, *, ax=None, resolution=200, margin=0.5,
                           path=None, cmap="coolwarm"):
    """The classes a model predicts over the plane, with the data on top.

    Parameters
    ----------
    model : object with ``predict`` (a fastmlp Model, or any estimator; its
        ``predict_proba`` is used when it has one)
    X : array-like (n_samples, 2)
    y : array-like (n_samples,), optional
        Colours of the points (class labels or one-hot rows).
    ax : matplotlib Axes, optional
    resolution : int, default=200
        Grid points per axis.
    margin : float, default=0.5
        Added around the data's range.
    path : str or path, optional
        Save the figure there (PNG) and close it in pyplot.
    cmap : str, default="coolwarm"

    Returns
    -------
    matplotlib.figure.Figure
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"plot_decision_boundary needs X of shape (n_samples, 2); got "
                         f"{X.shape}")
    if not hasattr(model, "predict"):
        raise TypeError(f"model must have a predict method; got {model!r}")
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4.5))
    else:
        fig = ax.figure
    lo, hi = X.min(axis=0) - margin, X.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], int(resolution)),
                         np.linspace(lo[1], hi[1], int(resolution)))
    grid = np.c_[xx.ravel(), yy.ravel()]
    score, label, binary = _scores(model, grid)
    if binary:
        cs = ax.contourf(xx, yy, score.reshape(xx.shape), levels=np.linspace(0, 1, 11),
                         cmap=cmap, alpha=0.6)
        ax.contour(xx, yy, score.reshape(xx.shape), levels=[0.5], colors="k", linewidths=1)
        fig.colorbar(cs, ax=ax, label="P(class 1)")
    else:
        ax.contourf(xx, yy, label.reshape(xx.shape), alpha=0.5, cmap=cmap,
                    levels=np.arange(label.max() + 2) - 0.5)
    if y is not None:
        c = np.asarray(y)
        if c.ndim == 2:
            c = c.argmax(axis=1) if c.shape[1] > 1 else c[:, 0]
        ax.scatter(X[:, 0], X[:, 1], c=c, cmap=cmap, edgecolors="k", s=20)
    else:
        ax.scatter(X[:, 0], X[:, 1], c="k", s=10)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    return _finish(fig, path)
