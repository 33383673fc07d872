"""Two noisy circles, one hidden sigmoid layer of 10 units, plain gradient descent on
the squared error -- the network a course writes by hand in NumPy.

fastmlp trains it, then the same network is trained again from the same initial
weights by a hand-written NumPy loop: both reach the same weights (the engine does
exactly the textbook computation) and about 0.85 training accuracy; the decision
boundary is saved as ``02_circles_boundary.png``.

Run:  python examples/02_circles.py
"""

import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from fastmlp import Dense, Model, optimizers
from fastmlp.datasets import make_circles
from fastmlp.plotting import plot_decision_boundary


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def train_by_hand(X, y, weights, learning_rate, epochs):
    """Full-batch gradient descent on mean((p - y)^2), written out in NumPy."""
    W1, b1, W2, b2 = (np.array(w, dtype=np.float64) for w in weights)
    Y = y.reshape(-1, 1)
    n = len(X)
    for _ in range(epochs):
        A1 = sigmoid(X @ W1 + b1)                   # hidden layer
        P = sigmoid(A1 @ W2 + b2)                   # output probability
        dZ2 = 2 * (P - Y) / n * P * (1 - P)         # d loss / d output pre-activation
        dZ1 = (dZ2 @ W2.T) * A1 * (1 - A1)
        W2 -= learning_rate * (A1.T @ dZ2)
        b2 -= learning_rate * dZ2.sum(axis=0)
        W1 -= learning_rate * (X.T @ dZ1)
        b1 -= learning_rate * dZ1.sum(axis=0)
    return [W1, b1, W2, b2]


def have_matplotlib():
    """True when matplotlib is installed (the 'plot' extra); else say the plot is skipped."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: the plot is skipped "
              "(pip install matplotlib to get it)")
        return False
    return True


def show_or_close(figure, quick):
    """Show the figure when a display exists (and not in quick mode); then close it."""
    import matplotlib.pyplot as plt   # fastmlp.plotting picked "Agg" without a display
    if not quick and plt.get_backend().lower() != "agg":
        plt.show()
    plt.close(figure)


def accuracy(model, X, y):
    return float(np.mean((model.predict(X)[:, 0] > 0.5) == y))


def main(quick=False, output_dir=".", device=None):
    """Train by fastmlp and by hand; plot; return the numbers reached (a dict)."""
    X, y = make_circles(500, noise=0.1, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0)
    learning_rate, epochs = (10.0, 1000) if quick else (2.0, 5000)

    model = Model([Dense(10, activation="sigmoid", input_dim=2),
                   Dense(1, activation="sigmoid")], seed=0, dtype="float64",
                  device=device)
    model.compile(optimizer=optimizers.SGD(learning_rate=learning_rate), loss="mse",
                  metrics=["accuracy"])
    initial_weights = model.get_weights()
    start = time.perf_counter()
    history = model.fit(X_train, y_train, batch_size=len(X_train), epochs=epochs,
                        shuffle=False, verbose=0)
    fastmlp_seconds = time.perf_counter() - start
    train_acc, test_acc = accuracy(model, X_train, y_train), accuracy(model, X_test, y_test)
    print(f"fastmlp: {epochs} epochs of gradient descent (lr {learning_rate}) in "
          f"{fastmlp_seconds:.2f} s; final loss {history.history['loss'][-1]:.4f}")
    print(f"  training accuracy {train_acc:.3f}, test accuracy {test_acc:.3f}")

    start = time.perf_counter()
    by_hand = train_by_hand(X_train, y_train, initial_weights, learning_rate, epochs)
    hand_seconds = time.perf_counter() - start
    difference = max(float(np.max(np.abs(a - b)))
                     for a, b in zip(model.get_weights(), by_hand))
    print(f"hand-written NumPy loop: {hand_seconds:.2f} s; largest weight difference "
          f"from fastmlp's: {difference:.2e}")

    results = {"train_accuracy": train_acc, "test_accuracy": test_acc,
               "weight_difference": difference, "fastmlp_seconds": fastmlp_seconds,
               "hand_seconds": hand_seconds, "plot": None}
    if not have_matplotlib():
        return results
    path = Path(output_dir) / "02_circles_boundary.png"
    figure = plot_decision_boundary(model, X, y)
    figure.suptitle(f"make_circles: train {train_acc:.2f}, test {test_acc:.2f}")
    figure.savefig(path, dpi=100)   # PNG always; a window too when there is a display
    print(f"saved {path}")
    show_or_close(figure, quick)
    results["plot"] = path
    return results


if __name__ == "__main__":
    main()
