"""K-fold cross-validation of a Keras-style Model, and a network built from a spec
list of ``(layer class, [args], {kwargs})`` tuples as in the course material.

Each fold standardises with statistics of its own training rows, builds a fresh
network from the same spec, trains it and scores the held-out fold; the mean and
spread of the fold accuracies estimate how well the architecture generalises.

Run:  python examples/05_kfold_and_spec.py
"""

import time

import numpy as np
from sklearn.model_selection import StratifiedKFold

from fastmlp import Dense, Model
from fastmlp.datasets import load_breast_cancer

#: the network as data: (layer class, positional args, keyword args)
SPEC = [
    (Dense, [16], {"activation": "relu", "input_dim": 30}),
    (Dense, [8], {"activation": "relu"}),
    (Dense, [1], {"activation": "sigmoid"}),
]


def build_model(seed, device=None):
    """A compiled binary classifier built from :data:`SPEC`."""
    model = Model.from_spec(SPEC, seed=seed, device=device)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def main(quick=False, device=None):
    """Cross-validate; print per-fold and mean accuracy; return them (a dict)."""
    X, y = load_breast_cancer()
    n_splits, epochs = (3, 15) if quick else (5, 60)
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=0)
    print("network built from the spec list:")
    build_model(0, device).summary()
    scores = []
    start = time.perf_counter()
    for fold, (train, test) in enumerate(folds.split(X, y)):
        mean, std = X[train].mean(axis=0), X[train].std(axis=0)
        model = build_model(seed=fold, device=device)
        model.fit((X[train] - mean) / std, y[train], batch_size=32, epochs=epochs,
                  verbose=0)
        accuracy = model.evaluate((X[test] - mean) / std, y[test])["accuracy"]
        scores.append(float(accuracy))
        print(f"fold {fold + 1}/{n_splits}: accuracy {accuracy:.4f}")
    seconds = time.perf_counter() - start
    scores = np.array(scores)
    print(f"\n{n_splits}-fold accuracy {scores.mean():.4f} +/- {scores.std():.4f} "
          f"({epochs} epochs per fold, {seconds:.2f} s in all)")
    return {"fold_accuracies": scores, "mean_accuracy": float(scores.mean()),
            "seconds": seconds}


if __name__ == "__main__":
    main()
