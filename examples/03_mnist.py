"""MNIST with the course protocol, from logistic regression to two hidden layers.

Protocol: pixels / 255, then centred (the mean training image subtracted); every
10th training image (6,000), the last 10% of those held out for validation; SGD
with Nesterov momentum 0.9, learning rate 0.05 (logistic regression) or 0.1 (the
MLPs), batches of 50; early stopping on validation accuracy (min_delta 1e-4,
patience 5, best weights restored); test on all 10,000 test images.

Course results: logistic regression ~0.89, ReLU(50) ~0.94, ReLU(200) ~0.944,
ReLU(1000) ~0.946, ReLU(500)-ReLU(500) ~0.953.  The table printed gives parameter
counts, epochs and time per model; the training history and the first-layer
weights (as 28x28 images) are saved as PNG files.

Needs MNIST: ``fastmlp.datasets.load_mnist`` reads $FASTMLP_DATA (or, run from the
source tree, ../shared/data/mnist.npz beside the checkout), or downloads it once from
OpenML.  The plots need matplotlib (``pip install matplotlib``); without it they are
skipped.

Run:  python examples/03_mnist.py
"""

import time
from pathlib import Path

import numpy as np

from fastmlp import Dense, Model, callbacks, optimizers
from fastmlp.datasets import find_mnist, load_mnist
from fastmlp.plotting import plot_history, plot_weights

#: (name, hidden layer widths, learning rate, accuracy the course reports)
COURSE_MODELS = [
    ("logistic regression", (), 0.05, 0.89),
    ("ReLU(50)", (50,), 0.1, 0.94),
    ("ReLU(200)", (200,), 0.1, 0.944),
    ("ReLU(1000)", (1000,), 0.1, 0.946),
    ("ReLU(500)-ReLU(500)", (500, 500), 0.1, 0.953),
]


def course_data(every=10, validation_fraction=0.1):
    """The course's split: (X_train, y_train), (X_val, y_val), (X_test, y_test)."""
    (X_train, y_train), (X_test, y_test) = load_mnist()       # uint8 pixels 0-255
    X_train = X_train[::every].astype(np.float32) / 255
    y_train = y_train[::every]
    X_test = X_test.astype(np.float32) / 255
    mean_image = X_train.mean(axis=0)
    X_train, X_test = X_train - mean_image, X_test - mean_image
    n_val = int(round(len(X_train) * validation_fraction))
    return ((X_train[:-n_val], y_train[:-n_val]), (X_train[-n_val:], y_train[-n_val:]),
            (X_test, y_test))


def course_model(hidden, learning_rate, *, seed=0, device=None):
    """The course network: ReLU hidden layers, softmax output, SGD + Nesterov."""
    layers = [Dense(width, activation="relu") for width in hidden]
    layers.append(Dense(10, activation="softmax"))   # input width: inferred at fit
    model = Model(layers, seed=seed, device=device)
    model.compile(optimizer=optimizers.SGD(learning_rate=learning_rate, momentum=0.9,
                                           nesterov=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train_course_model(model, train, val, *, max_epochs=100, verbose=0):
    """Fit with the course's early stopping; return (history, seconds)."""
    stop = callbacks.EarlyStopping(monitor="val_accuracy", min_delta=1e-4, patience=5,
                                   restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(*train, batch_size=50, epochs=max_epochs, validation_data=val,
                        callbacks=[stop], verbose=verbose)
    return history, time.perf_counter() - start


def main(quick=False, output_dir=".", device=None, seed=0):
    """Train the course's models; print the table; save plots; return the rows.

    One seed gives one run: with 600 validation images early stopping is noisy,
    and the deeper models move by about +/-0.01 from seed to seed.
    """
    if quick and find_mnist() is None:
        print("skipping: no MNIST file (set FASTMLP_DATA to mnist.npz); quick mode "
              "never downloads")
        return None
    every, models, max_epochs = (30, COURSE_MODELS[:2], 6) if quick else \
        (10, COURSE_MODELS, 100)
    train, val, test = course_data(every)
    print(f"MNIST: {len(train[0])} training, {len(val[0])} validation, "
          f"{len(test[0])} test images")
    rows, histories, trained = [], {}, {}
    for name, hidden, learning_rate, course_accuracy in models:
        model = course_model(hidden, learning_rate, seed=seed, device=device)
        history, seconds = train_course_model(model, train, val, max_epochs=max_epochs)
        test_accuracy = model.evaluate(*test)["accuracy"]
        n_params = sum(int(np.size(w)) for w in model.get_weights())
        epochs = len(history.history["loss"])
        rows.append({"model": name, "params": n_params, "epochs": epochs,
                     "seconds": seconds, "val_accuracy": max(history.history["val_accuracy"]),
                     "test_accuracy": float(test_accuracy), "course": course_accuracy})
        histories[name], trained[name] = history, model
        print(f"  {name:22s} test accuracy {test_accuracy:.4f} after {epochs} epochs "
              f"({seconds:.1f} s)")

    print(f"\n{'model':22s}{'parameters':>12s}{'epochs':>8s}{'time':>9s}"
          f"{'val acc':>9s}{'test acc':>10s}{'course':>8s}")
    for r in rows:
        print(f"{r['model']:22s}{r['params']:12,d}{r['epochs']:8d}{r['seconds']:8.1f}s"
              f"{r['val_accuracy']:9.4f}{r['test_accuracy']:10.4f}{r['course']:8.3f}")

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: the plots are skipped "
              "(pip install matplotlib to get them)")
        return {"rows": rows, "plots": []}
    last = rows[-1]["model"]
    history_png = Path(output_dir) / "03_mnist_history.png"
    figure = plot_history(histories[last])
    figure.suptitle(f"training history: {last}")
    save_and_show(figure, history_png, quick)
    shown = "ReLU(50)" if "ReLU(50)" in trained else rows[0]["model"]
    weights_png = Path(output_dir) / "03_mnist_weights.png"
    figure = plot_weights(trained[shown], 0, (28, 28), max_units=10 if quick else 100)
    figure.suptitle(f"first-layer weights: {shown}")
    save_and_show(figure, weights_png, quick)
    return {"rows": rows, "plots": [history_png, weights_png]}


def save_and_show(figure, path, quick):
    """Save a PNG; also show it when a display exists (and not in quick mode)."""
    import matplotlib.pyplot as plt   # fastmlp.plotting picked "Agg" without a display
    figure.savefig(path, dpi=100)
    print(f"saved {path}")
    if not quick and plt.get_backend().lower() != "agg":
        plt.show()
    plt.close(figure)


if __name__ == "__main__":
    main()
