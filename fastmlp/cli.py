"""The ``fastmlp`` command (also ``python -m fastmlp``).

Subcommands::

    fastmlp demo       train on digits (or MNIST when a file is found) and compare
                       accuracy and time with scikit-learn's MLPClassifier
    fastmlp train      train a network on a built-in data set, an .npz or a .csv
    fastmlp predict    apply a saved model to data; write predictions (.csv / .npy)
    fastmlp info       version, devices, threads, BLAS, OpenMP, CPU features, GPU

``main(argv)`` returns the exit status instead of exiting, so tests can call it:
0 on success, 2 for a usage or data error (a one-line message, no traceback),
130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PROG = "fastmlp"
#: data sets ``--dataset`` / a DATA argument may name
BUILTIN_DATASETS = ("iris", "digits", "breast_cancer", "circles", "moons", "mnist")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# =========================================================================== helpers
def _number_type(convert, accept, expected):
    """An argparse ``type=``: ``convert`` the text, then require ``accept(value)``."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
        return value
    parse.__name__ = expected      # argparse names the type in some messages
    return parse


_positive_int = _number_type(int, lambda v: v >= 1, "a positive integer")
_fraction = _number_type(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
_positive_float = _number_type(float, lambda v: 0.0 < v < float("inf"), "a positive number")
_seed_int = _number_type(int, lambda v: v >= 0, "an integer >= 0")


def _hidden_sizes(text):
    """``"100"``, ``"128,64"``, ``"128x64"`` or ``"none"`` (no hidden layer)."""
    cleaned = text.strip().lower()
    if cleaned in ("", "none", "0"):
        return ()
    parts = cleaned.replace("x", ",").replace(" ", ",").split(",")
    try:
        sizes = tuple(int(p) for p in parts if p)
    except ValueError:
        sizes = ()          # reported below
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected layer widths like '100' or '128,64' (or 'none'); got {text!r}")
    return sizes


def _print(*args, quiet=False, **kwargs):
    if not quiet:
        print(*args, **kwargs)
        sys.stdout.flush()


def _fmt_seconds(seconds):
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def _check_device(device):
    """Fail early, with a hint, when the requested device cannot run here."""
    from .backends import network_class, resolve_device
    try:
        resolved = resolve_device(device)
        network_class(resolved)
    except ImportError as exc:
        raise CLIError(f"device {device or 'cpu'!r} is unavailable: the compiled CPU engine "
                       f"is not built ({exc}); build it with `pip install .`, or use "
                       "--device numpy (run inside a source checkout, Python imports its "
                       "fastmlp/ folder, which has no engine, instead of the installed "
                       "package: run from another folder, or `pip install -e .`)") from exc
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CLIError(str(exc)) from exc
    return resolved


# ====================================================================== data files
def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _column_index(spec, header, n_columns, path):
    """Resolve ``--label-column`` (a name, or a 0-based / negative index)."""
    if header is not None and spec in header:
        return header.index(spec)
    try:
        index = int(spec)
    except ValueError:
        if header is None:
            raise CLIError(f"{path}: no column named {spec!r}: the file has no header "
                           f"row; give a 0-based column index (0-{n_columns - 1})") from None
        known = ", ".join(repr(h) for h in header)
        raise CLIError(f"{path}: no column named {spec!r}; the columns are {known}") \
            from None
    if not -n_columns <= index < n_columns:
        raise CLIError(f"{path}: column index {index} is out of range; the file has "
                       f"{n_columns} columns")
    return index % n_columns


def read_csv(path, label_column=None, *, require_label=True):
    """Read a numeric CSV into ``(X, y, feature_names, label_name)``.

    The first row is a header when any of its cells is not a number.  The label
    column is ``label_column`` (a name or an index); when None, a column named
    ``label``/``target``/``class``/``y`` or else the last column is used when
    ``require_label``; otherwise every column is a feature and ``y`` is None.
    Feature cells must be numbers; labels may be any text.
    """
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path} is not a text CSV file ({exc.reason})") from exc
    if not rows:
        raise CLIError(f"{path} is empty")
    header = None
    if not all(_is_number(c) for c in rows[0]):
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
    if not rows:
        raise CLIError(f"{path} has a header but no data rows")
    n_columns = len(header) if header is not None else len(rows[0])
    for line, row in enumerate(rows, start=2 if header else 1):
        if len(row) != n_columns:
            raise CLIError(f"{path}, line {line}: {len(row)} fields; expected {n_columns}")
    label_index = None
    if label_column is not None:
        label_index = _column_index(str(label_column), header, n_columns, path)
    elif require_label:
        names = [h.lower() for h in header] if header else []
        label_index = next((names.index(n) for n in ("label", "target", "class", "y")
                            if n in names), n_columns - 1)
    if label_index is not None and n_columns < 2:
        raise CLIError(f"{path} has a single column; a label column and at least one "
                       "feature column are needed")
    names = header or [f"x{j}" for j in range(n_columns)]
    feature_idx = [j for j in range(n_columns) if j != label_index]
    X = np.empty((len(rows), len(feature_idx)), dtype=np.float64)
    for i, row in enumerate(rows):
        for k, j in enumerate(feature_idx):
            cell = row[j].strip()
            try:
                X[i, k] = float(cell)
            except ValueError:
                line = i + (2 if header else 1)
                what = "is empty" if not cell else f"holds {cell!r}, which is not a number"
                hint = ("" if label_column is not None else
                        "; name the label column with --label-column")
                raise CLIError(f"{path}, line {line}: column {names[j]!r} {what}{hint}") \
                    from None
    y = None
    if label_index is not None:
        labels = [row[label_index].strip() for row in rows]
        if all(_is_number(v) for v in labels):
            values = np.array([float(v) for v in labels])
            y = values.astype(np.int64) if np.all(values == np.round(values)) else values
        else:
            y = np.array(labels)
    label_name = names[label_index] if label_index is not None else None
    return X, y, [names[j] for j in feature_idx], label_name


_NPZ_PAIRS = (("X", "y"), ("x", "y"), ("x_train", "y_train"), ("X_train", "y_train"),
              ("data", "target"))
_NPZ_TEST_PAIRS = (("x_test", "y_test"), ("X_test", "y_test"))


def read_npz(path, *, require_label=True):
    """Read ``(X, y, X_test, y_test)`` from an ``.npz``.

    Recognised keys: ``X``/``y``, ``x``/``y``, ``x_train``/``y_train`` (with
    optional ``x_test``/``y_test``, the Keras/MNIST layout) or ``data``/``target``.
    Images (n, h, w) are flattened to rows.  Without ``require_label`` an ``.npz``
    holding only features (``X``, ``x``, ``x_test`` ...) is accepted.
    """
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):   # a zip archive (an empty one)
        raise CLIError(f"{path} is not an .npz file (an .npz is a zip archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise CLIError(f"{path} is not a readable .npz file: {exc}") from None

    def rows(a, key):
        if a.ndim == 1:
            a = a.reshape(-1, 1)
        if a.ndim < 2 or a.dtype.kind not in "biuf":
            raise CLIError(f"{path}: array {key!r} of shape {a.shape} and dtype {a.dtype} "
                           "is not a numeric (n_samples, n_features) array")
        return a.reshape(a.shape[0], -1)

    for xk, yk in _NPZ_PAIRS:
        if xk in arrays and (yk in arrays or not require_label):
            X = rows(arrays[xk], xk)
            y = arrays.get(yk)
            if y is not None and y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y is not None and y.ndim != 1:
                raise CLIError(f"{path}: {yk!r} has shape {y.shape}; the command line takes "
                               "one label or target per row (a 1-D array)")
            if y is not None and y.shape[0] != X.shape[0]:
                raise CLIError(f"{path}: {yk!r} has {y.shape[0]} rows; {xk!r} has "
                               f"{X.shape[0]}")
            X_test = y_test = None
            for txk, tyk in _NPZ_TEST_PAIRS:
                if txk in arrays and tyk in arrays:
                    X_test, y_test = rows(arrays[txk], txk), arrays[tyk]
            return X, y, X_test, y_test
    if not require_label:
        for key in ("x_test", "X_test"):
            if key in arrays:
                return rows(arrays[key], key), arrays.get(key.replace("x", "y")
                                                          .replace("X", "y")), None, None
    wanted = " or ".join(f"{a!r}+{b!r}" for a, b in _NPZ_PAIRS)
    raise CLIError(f"{path}: found arrays {sorted(arrays)}; expected {wanted}")


def load_data(source, label_column=None, *, require_label=True):
    """Resolve a DATA argument: a built-in name, an .npz, .npy or .csv file.

    Returns a dict with ``X``, ``y``, ``X_test``, ``y_test`` (None when absent),
    ``feature_names``, ``label_name``, ``name`` and ``builtin``.
    """
    from . import datasets
    out = dict(X_test=None, y_test=None, feature_names=None, label_name=None,
               builtin=False, name=str(source))
    path = Path(source)
    key = str(source).strip().lower().replace("-", "_")
    if not path.exists() and key in BUILTIN_DATASETS:
        out["builtin"] = True
        if key == "mnist":
            try:
                (X, y), (X_test, y_test) = datasets.load_mnist()
            except (FileNotFoundError, ValueError) as exc:
                raise CLIError(str(exc)) from None
            out.update(X=X, y=y, X_test=X_test, y_test=y_test)
        else:
            out["X"], out["y"] = datasets.load_dataset(key)
        return out
    if not path.exists():
        raise CLIError(f"{source}: no such file (built-in data sets: "
                       f"{', '.join(BUILTIN_DATASETS)})")
    if path.is_dir():
        raise CLIError(f"{source} is a directory; expected a .csv, .npz or .npy file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        X, y, names, label = read_csv(path, label_column, require_label=require_label)
        out.update(X=X, y=y, feature_names=names, label_name=label)
    elif suffix == ".npz":
        if label_column is not None:
            raise CLIError("--label-column applies to .csv files only")
        X, y, X_test, y_test = read_npz(path, require_label=require_label)
        out.update(X=X, y=y, X_test=X_test, y_test=y_test)
    elif suffix == ".npy" and not require_label:
        try:
            X = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise CLIError(f"{path} is not a readable .npy file: {exc}") from None
        if X.ndim < 2 or X.dtype.kind not in "biuf":
            raise CLIError(f"{path}: expected a numeric array of shape (n_samples, "
                           f"n_features); got shape {X.shape}, dtype {X.dtype}")
        out.update(X=X.reshape(X.shape[0], -1), y=None)
    else:
        kinds = ".csv or .npz" if require_label else ".csv, .npz or .npy"
        raise CLIError(f"{source}: unsupported file type {suffix or '(none)'!r}; "
                       f"expected {kinds}")
    if out["y"] is not None and require_label and len(out["y"]) != len(out["X"]):
        raise CLIError(f"{source}: {len(out['y'])} labels for {len(out['X'])} rows")
    return out


# ================================================================ model + metadata


def _fold_standardization(model, mean, scale, constant):
    """Fold ``(x - mean) / scale`` into the first layer so the model reads raw x.  A
    constant feature was 0 throughout training: its weights are zeroed, so that the saved
    model ignores it too (instead of cancelling mean * w against x * w)."""
    weights = model.get_weights()
    W = np.asarray(weights[0], dtype=np.float64)
    W_raw = W / scale[:, None]
    W_raw[constant] = 0.0
    weights[0] = W_raw.astype(weights[0].dtype)
    if len(weights) > 1 and np.ndim(weights[1]) == 1:   # the first layer has a bias
        b = np.asarray(weights[1], dtype=np.float64) - mean @ W_raw
        weights[1] = b.astype(weights[1].dtype)
    model.set_weights(weights)


#: the largest rounding error of a raw feature, in its standard deviations, that a saved
#: model may see: the model reads raw x in its dtype (float32 keeps about 7 significant
#: digits), so a feature whose mean is far larger than its spread loses the digits that vary
_FOLD_MAX_ROUNDING = 1e-2


def _check_foldable(mean, scale, dtype, feature_names, constant):
    """Refuse, before training, standardisation that the saved model could not fold:
    a feature with |mean| / std * eps(dtype) above _FOLD_MAX_ROUNDING.  Constant features
    are fine: the model never sees them (_fold_standardization)."""
    rounding = np.where(constant, 0.0, np.abs(mean) / scale * np.finfo(dtype).eps)
    if rounding.size and rounding.max() > _FOLD_MAX_ROUNDING:
        worst = int(np.argmax(rounding))
        name = feature_names[worst] if feature_names else f"column {worst}"
        raise CLIError(
            f"feature {name!r} has mean {mean[worst]:.6g} and standard deviation "
            f"{scale[worst]:.3g}: the saved model reads raw features (the standardisation "
            f"is folded into its first layer), and {dtype} values that large keep too few "
            "of the digits that vary; use --dtype float64, or subtract the offset from the "
            "data")


def _model_output_path(output):
    """The .npz file ``fastmlp train -o`` writes (".npz" appended as Model.save does),
    checked before training: not a folder, in a folder that exists."""
    text = str(output)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise CLIError(f"--output {text}: names a folder; give a file name such as "
                       f"{path / 'model.npz'}")
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.is_dir():
        raise CLIError(f"--output {text}: {path} is a folder")
    if not path.parent.is_dir():
        raise CLIError(f"--output {text}: the folder {path.parent} does not exist")
    return path


def _metadata_path(model_path):
    return Path(str(model_path) + ".json")


def save_cli_model(model, path, metadata):
    """Save ``model`` with ``fastmlp.Model.save`` and the command's metadata
    (task, class labels, feature names) in a JSON file beside it."""
    path = _model_output_path(path)
    model.save(path)
    meta_path = _metadata_path(path)
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    tmp.write_text(json.dumps(metadata, indent=1))
    os.replace(tmp, meta_path)
    return path


def load_cli_model(path, device=None):
    """Load a model saved by ``fastmlp train`` (or any ``Model.save`` file)."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{path}: no such model file")
    from .model import load_model
    _check_device(device)
    try:
        model = load_model(path, device=device)
    except ValueError as exc:       # truncated, foreign or modified file
        raise CLIError(str(exc)) from None
    if not model.built:
        raise CLIError(f"{path}: the model holds no weights (it was saved before it was "
                       "built or trained)")
    meta = {}
    meta_path = _metadata_path(path)
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise CLIError(f"{meta_path} is not valid JSON: {exc}") from None
    return model, meta


# ============================================================================ demo
def _demo_data(name, mnist_path, seed):
    from . import datasets
    if name == "auto":
        try:
            found = datasets.find_mnist(mnist_path)
        except FileNotFoundError as exc:
            raise CLIError(str(exc)) from None
        name = "mnist" if found is not None else "digits"
    if name == "mnist":
        try:
            (X_train, y_train), (X_test, y_test) = datasets.load_mnist(
                mnist_path, scale=True)
        except (FileNotFoundError, ValueError) as exc:
            raise CLIError(str(exc)) from None
        return "MNIST", X_train, y_train.astype(np.int64), X_test, y_test.astype(np.int64)
    if mnist_path is not None:
        raise CLIError(f"--mnist {mnist_path} is only read with --dataset mnist or auto; "
                       "drop it for --dataset digits")
    from sklearn.model_selection import train_test_split
    X, y = datasets.load_digits(scale=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed)
    return "digits (8x8)", X_train, y_train, X_test, y_test


def _run_progress_bar():
    """A callback drawing ONE tqdm bar over the whole fit (all epochs), updated
    between the engine's slices, with the latest loss and accuracy."""
    from tqdm.auto import tqdm
    from .callbacks import Callback, format_logs

    class RunProgress(Callback):
        def on_train_begin(self, logs=None):
            self.steps = int(self.params.get("steps") or 1)
            self.bar = tqdm(total=int(self.params.get("epochs") or 1) * self.steps,
                            unit="step", desc="training", file=sys.stdout,
                            mininterval=0.2, dynamic_ncols=True)

        def on_epoch_progress(self, epoch, steps_done, logs=None):
            if logs:
                self.bar.set_postfix_str(f"epoch {epoch + 1} - {format_logs(logs)}",
                                         refresh=False)
            self.bar.update(epoch * self.steps + steps_done - self.bar.n)

        def on_epoch_end(self, epoch, logs=None):
            self.bar.set_postfix_str(f"epoch {epoch + 1} - {format_logs(logs or {})}",
                                     refresh=False)
            self.bar.update((epoch + 1) * self.steps - self.bar.n)

        def on_train_end(self, logs=None):
            self.bar.close()

    return RunProgress()


def cmd_demo(args):
    """Train the same network with fastmlp and with scikit-learn; print both."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier
    device = _check_device(args.device)
    label, X_train, y_train, X_test, y_test = _demo_data(args.dataset, args.mnist,
                                                         args.seed)
    from .layers import Dense
    from .model import Model
    from .sklearn import MLPClassifier
    epochs = args.epochs or (10 if label == "MNIST" else 100)
    hidden = args.hidden
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    arch = "-".join(str(s) for s in (X_train.shape[1],) + hidden + (n_classes,))
    q = args.quiet
    _print(f"data: {label}: {X_train.shape[0]} training and {X_test.shape[0]} test rows, "
           f"{X_train.shape[1]} features, {n_classes} classes", quiet=q)
    kind = "ReLU/softmax" if hidden else "softmax (no hidden layer)"
    _print(f"network: {arch} {kind}, Adam (lr 1e-3), batch {args.batch_size}, "
           f"{epochs} epochs, device {device!r} (the MLPClassifiers add scikit-learn's "
           "default L2 penalty, alpha=1e-4)", quiet=q)
    rows = []

    # -- the Keras-style Model, with its progress bar
    layers = [Dense(h, activation="relu") for h in hidden] + \
        [Dense(n_classes, activation="softmax")]
    model = Model(layers, seed=args.seed, device=device, n_threads=args.threads)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    _print("\nfastmlp.Model.fit:", quiet=q)
    start = time.perf_counter()
    one_bar = args.verbose == 1 and not q
    model.fit(X_train, y_train, batch_size=args.batch_size, epochs=epochs,
              verbose=0 if q or one_bar else args.verbose,
              callbacks=[_run_progress_bar()] if one_bar else None)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(np.argmax(model.predict(X_test), axis=1) == y_test))
    rows.append(("fastmlp.Model (Keras-style)", accuracy, seconds))

    # -- the same settings in scikit-learn's API, fastmlp's and scikit-learn's own
    params = dict(hidden_layer_sizes=hidden, solver="adam", learning_rate_init=1e-3,
                  batch_size=args.batch_size, max_iter=epochs, alpha=1e-4,
                  n_iter_no_change=epochs + 1, random_state=args.seed)
    estimators = [("fastmlp.MLPClassifier",
                   lambda: MLPClassifier(device=device, n_threads=args.threads, **params))]
    if not args.no_sklearn:
        estimators.append(("sklearn MLPClassifier", lambda: SkMLPClassifier(**params)))
    for name, make in estimators:
        _print(f"{name}.fit ...", quiet=q)
        estimator = make()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if q:   # -q prints only the results (e.g. not that batch_size was clipped)
                warnings.simplefilter("ignore", UserWarning)
            estimator.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        rows.append((name, float(estimator.score(X_test, y_test)), seconds))

    reference = rows[-1][2] if not args.no_sklearn else None
    lines = [f"\n{'':30s}{'test accuracy':>15s}{'train time':>13s}"]
    for name, accuracy, seconds in rows:
        note = ""
        if reference is not None and name != "sklearn MLPClassifier" and seconds > 0:
            ratio = reference / seconds
            note = (f"   {ratio:.1f}x faster than scikit-learn" if ratio >= 1 else
                    f"   {1 / ratio:.1f}x slower than scikit-learn")
        lines.append(f"{name:30s}{accuracy:15.4f}{_fmt_seconds(seconds):>13s}{note}")
    print("\n".join(lines))
    args._result = rows
    return 0


# =========================================================================== train
def _build_model(args, n_features, n_outputs, task, device):
    from .layers import Dense
    from .model import Model
    from . import optimizers
    layers = []
    for i, width in enumerate(args.hidden):
        kwargs = dict(input_dim=n_features) if i == 0 else {}
        layers.append(Dense(width, activation=args.activation, dropout=args.dropout,
                            **kwargs))
    if task == "classification":
        out_act = "softmax" if n_outputs > 2 else "sigmoid"
        units = n_outputs if n_outputs > 2 else 1
        loss = "sparse_categorical_crossentropy" if n_outputs > 2 else "binary_crossentropy"
        metrics = ["accuracy"]
    else:
        out_act, units, loss, metrics = None, n_outputs, "mse", ["mae"]
    layers.append(Dense(units, activation=out_act,
                        **(dict(input_dim=n_features) if not args.hidden else {})))
    model = Model(layers, seed=args.seed, dtype=args.dtype, device=device,
                  n_threads=args.threads)
    kind = args.optimizer
    lr = args.lr
    if kind != "sgd" and (args.momentum is not None or args.nesterov):
        raise CLIError(f"--momentum and --nesterov apply to --optimizer sgd (this run's "
                       f"optimizer is {kind})")
    if kind == "sgd":
        optimizer = optimizers.SGD(learning_rate=lr or 0.01, momentum=args.momentum or 0.0,
                                   nesterov=args.nesterov)
    elif kind == "adam":
        optimizer = optimizers.Adam(**({"learning_rate": lr} if lr else {}))
    elif kind == "rmsprop":
        optimizer = optimizers.RMSprop(**({"learning_rate": lr} if lr else {}))
    else:
        optimizer = optimizers.Adagrad(**({"learning_rate": lr} if lr else {}))
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def _encode_labels(y, task, source):
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise CLIError(f"{source}: regression needs numeric labels; got text such as "
                           f"{str(y[0])!r} (use --task classification)")
        return y.astype(np.float64).reshape(len(y), -1), None
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise CLIError(f"{source}: the label column holds a single class "
                       f"({classes[0].item()!r}); "
                       "at least 2 are needed")
    if len(classes) > max(100, len(y) // 2):
        raise CLIError(f"{source}: {len(classes)} distinct labels for {len(y)} rows; is "
                       "this a regression target (--task regression) or the wrong "
                       "--label-column?")
    return codes.astype(np.int64), classes


def _accuracy_or_error(model, X, y_encoded, task):
    outputs = np.asarray(model.predict(X))
    if task == "classification":
        predicted = (np.argmax(outputs, axis=1) if outputs.shape[1] > 1
                     else (outputs[:, 0] > 0.5).astype(np.int64))
        return "accuracy", float(np.mean(predicted == y_encoded))
    return "mse", float(np.mean((outputs - y_encoded) ** 2))


class _Interrupted(Exception):
    """Training was stopped by Ctrl-C: exit status 130, nothing saved."""


def _fit_or_stop(model, *args, **kwargs):
    """``model.fit``, where a divergence is an error and Ctrl-C an interruption (no model
    is saved for either): fit's two warnings for them, raised as exceptions (fit warns
    last, after it has restored the weights and ended its callbacks); other warnings keep
    Python's filters."""
    from .model import TrainingDivergedWarning, TrainingInterruptedWarning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=TrainingDivergedWarning)
        warnings.filterwarnings("error", category=TrainingInterruptedWarning)
        try:
            return model.fit(*args, **kwargs)
        except TrainingDivergedWarning as exc:
            raise CLIError(f"training diverged: {exc} Try a lower --lr; no model was "
                           "saved") from None
        except TrainingInterruptedWarning:
            raise _Interrupted() from None


def cmd_train(args):
    """Train a network on DATA and save it."""
    from sklearn.model_selection import train_test_split
    from . import callbacks
    device = _check_device(args.device)
    output = _model_output_path(args.output)     # checked before any training
    data = load_data(args.data, args.label_column)
    X, y = np.asarray(data["X"], dtype=np.float64), data["y"]
    if y is None:
        raise CLIError(f"{args.data}: no labels found")
    task = args.task
    if task == "auto":
        task = ("classification" if y.dtype.kind in "iubUSO" else "regression")
    y_enc, classes = _encode_labels(np.asarray(y), task, args.data)
    X_test, y_test_enc = data["X_test"], None
    if X_test is not None:
        X_test = np.asarray(X_test, dtype=np.float64)
        if X_test.shape[1] != X.shape[1]:
            raise CLIError(f"{args.data}: test rows have {X_test.shape[1]} features; "
                           f"training rows have {X.shape[1]}")
        if task == "classification":
            unknown = np.setdiff1d(np.unique(data["y_test"]), classes)
            if unknown.size:
                raise CLIError(f"{args.data}: test labels {unknown[:5].tolist()} never "
                               "occur in the training labels")
            y_test_enc = np.searchsorted(classes, data["y_test"])
        else:
            y_test_enc = np.asarray(data["y_test"], dtype=np.float64).reshape(
                len(X_test), -1)
    test_size = args.test_size
    if test_size is None:
        test_size = 0.25 if data["builtin"] and X_test is None else 0.0
    if test_size > 0:
        if X_test is not None:
            raise CLIError("--test-size: the data already has a test set (x_test/y_test)")
        stratify = y_enc if task == "classification" else None
        try:
            X, X_test, y_enc, y_test_enc = train_test_split(
                X, y_enc, test_size=test_size, stratify=stratify, random_state=args.seed)
        except ValueError as exc:
            raise CLIError(f"--test-size {test_size}: {exc}") from None
    # one seeded shuffle, so that Keras' "last fraction" validation split is a fair sample
    order = np.random.default_rng(args.seed).permutation(len(X))
    X, y_enc = X[order], y_enc[order]

    validation_split = args.validation_split
    fit_callbacks = []
    q = args.quiet
    if args.early_stopping is not None:
        if validation_split == 0.0:
            validation_split = 0.1
            _print("early stopping: holding out the last 10% of the training rows for "
                   "validation (--validation-split 0.1)", quiet=q)
        fit_callbacks.append(callbacks.EarlyStopping(
            monitor="val_loss", patience=args.early_stopping, min_delta=1e-4,
            restore_best_weights=True))
    constant = np.zeros(X.shape[1], dtype=bool)
    if args.scale == "standard":
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        constant = ~(scale > 1e-12 * (1 + np.abs(mean)))   # standardised to 0 throughout
        scale[constant] = 1.0
        _check_foldable(mean, scale, args.dtype, data["feature_names"], constant)
    else:
        mean, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
    n_outputs = len(classes) if task == "classification" else y_enc.shape[1]
    model = _build_model(args, X.shape[1], n_outputs, task, device)
    if not q and args.verbose:
        model.summary()
    start = time.perf_counter()
    history = _fit_or_stop(model, (X - mean) / scale, y_enc, batch_size=args.batch_size,
                           epochs=args.epochs, verbose=0 if q else args.verbose,
                           validation_split=validation_split, callbacks=fit_callbacks)
    seconds = time.perf_counter() - start
    _fold_standardization(model, mean, scale, constant)   # the saved model reads raw x
    epochs_run = len(history.history.get("loss", [])) or args.epochs
    n_fit = int(len(X) * (1.0 - validation_split))       # Keras' split point
    held_out = f" ({len(X) - n_fit} more for validation)" if n_fit < len(X) else ""
    summary = [f"trained {epochs_run} epochs on {n_fit} rows{held_out} in "
               f"{_fmt_seconds(seconds)}"]
    for key in ("loss", "accuracy", "mae", "val_loss", "val_accuracy", "val_mae"):
        values = history.history.get(key)
        if values:
            summary.append(f"{key} {values[-1]:.4f}")
    _print(", ".join(summary), quiet=q)
    for callback in fit_callbacks:
        if isinstance(callback, callbacks.EarlyStopping) and callback.best is not None:
            _print(f"early stopping: kept the weights of epoch {callback.best_epoch + 1} "
                   f"(val_loss {callback.best:.4f})", quiet=q)
    result = {"seconds": seconds, "epochs": epochs_run}
    if X_test is not None and len(X_test):
        name, value = _accuracy_or_error(model, np.asarray(X_test), y_test_enc, task)
        _print(f"test {name} on {len(X_test)} rows: {value:.4f}", quiet=q)
        result[f"test_{name}"] = value
    metadata = {"task": task, "n_features": int(X.shape[1]),
                "feature_names": data["feature_names"], "label_name": data["label_name"],
                "classes": None if classes is None else classes.tolist(),
                "data": str(args.data)}
    path = save_cli_model(model, output, metadata)
    _print(f"saved the model to {path}", quiet=q)
    args._result = result
    return 0


# ========================================================================= predict
def cmd_predict(args):
    """Apply a saved model to DATA; write predictions to a .csv or .npy file."""
    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".npy"):
        raise CLIError(f"--output {out}: expected a .csv or .npy file name")
    model, meta = load_cli_model(args.model, device=args.device)
    label_column = args.label_column
    if label_column is None and meta.get("label_name") and \
            str(args.data).lower().endswith(".csv") and Path(args.data).is_file():
        # a CSV shaped like the training file: leave its label column out
        with open(args.data, newline="") as f:
            header = next(csv.reader(f), [])
        if meta["label_name"] in [h.strip() for h in header]:
            label_column = meta["label_name"]
    data = load_data(args.data, label_column, require_label=False)
    X = np.asarray(data["X"], dtype=np.float64)
    n_features = meta.get("n_features")
    if n_features is None:
        try:
            n_features = int(np.asarray(model.get_weights()[0]).shape[0])
        except Exception:
            n_features = X.shape[1]
    if X.shape[1] != n_features:
        hint = (" (does the file include the label column? name it with --label-column)"
                if X.shape[1] == n_features + 1 else "")
        raise CLIError(f"{args.data}: rows have {X.shape[1]} features; the model expects "
                       f"{n_features}{hint}")
    outputs = np.asarray(model.predict(X), dtype=np.float64)
    classes = meta.get("classes")
    task = meta.get("task")
    if task is None:   # a model saved by Model.save has no sidecar: its loss tells
        task = "classification" if classes or getattr(model, "loss", None) in _CLASSIFIER_LOSSES \
            else "regression"
    if task == "classification":
        if outputs.shape[1] == 1:
            proba = np.hstack([1.0 - outputs, outputs])
        else:
            proba = outputs
        codes = np.argmax(proba, axis=1)
        labels = np.asarray(classes)[codes] if classes else codes
    else:
        proba, labels = None, outputs[:, 0] if outputs.shape[1] == 1 else outputs
    if suffix == ".npy":
        np.save(out, proba if args.proba and proba is not None else np.asarray(labels))
    else:
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            header = ["prediction"] if np.ndim(labels) == 1 else \
                [f"output_{k}" for k in range(outputs.shape[1])]
            if args.proba and proba is not None:
                names = classes if classes else list(range(proba.shape[1]))
                header += [f"proba_{c}" for c in names[:proba.shape[1]]]
            writer.writerow(header)
            for i in range(len(X)):
                row = [labels[i].item() if hasattr(labels[i], "item") else labels[i]] \
                    if np.ndim(labels) == 1 else [f"{v:.6g}" for v in labels[i]]
                if args.proba and proba is not None:
                    row += [f"{p:.6g}" for p in proba[i]]
                writer.writerow(row)
    _print(f"wrote {len(X)} predictions to {out}", quiet=args.quiet)
    y = data["y"]
    if y is not None and task == "classification" and classes:
        y_text = np.asarray(y).astype(str)
        accuracy = float(np.mean(y_text == np.asarray(labels).astype(str)))
        _print(f"accuracy against the labels in {args.data}: {accuracy:.4f}",
               quiet=args.quiet)
    args._result = {"labels": labels, "proba": proba}
    return 0


# losses whose outputs are class probabilities (fastmlp.losses)
_CLASSIFIER_LOSSES = ("binary_crossentropy", "categorical_crossentropy",
                      "sparse_categorical_crossentropy")


# ============================================================================ info
def _cpu_features():
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # pragma: no cover - older/newer numpy layouts
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return []
    interesting = ("SSE42", "AVX", "FMA3", "AVX2", "AVX512F", "AVX512_SKX", "AVX512_SPR",
                   "NEON", "ASIMD", "SVE", "VSX", "VX")
    return [name for name in interesting if features.get(name)]


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_SIMD_BUILDS = {4: "x86-64-v4, x86-64-v3 and baseline clones",
                3: "x86-64-v3 and baseline clones only: FASTMLP_SIMD=x86-64-v3",
                0: "baseline code only: FASTMLP_SIMD=baseline, or no multiversioning here"}


def collect_info():
    """Everything ``fastmlp info`` reports, as a JSON-serialisable dict."""
    import scipy
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so threadpoolctl sees it)
    import sklearn
    import fastmlp
    from . import backends
    from ._threads import available_cpus, get_num_threads
    try:
        backends.resolve_device(None)
        device_problem = None
    except (ValueError, RuntimeError) as exc:     # e.g. FASTMLP_DEVICE=bogus
        device_problem = str(exc)
    info = {
        "fastmlp": fastmlp.__version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
        "default_device": backends.default_device(),
        "default_device_error": device_problem,
        "threads": {"default_n_threads": get_num_threads(),
                    "available_cpus": available_cpus(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
    }
    try:
        from .backends import cpu as cpu_backend
        from .backends.cpu import CPUNetwork  # noqa: F401  (fails until it is compiled)
        openmp = getattr(cpu_backend, "openmp_enabled", None)
        info["cpu_engine"] = "built"
        info["openmp"] = (("enabled" if openmp() else "disabled (built without OpenMP)")
                          if callable(openmp) else "unknown")
        info["direct_kernels"] = (
            "AVX-512 (batches of <= 64 rows, 128 on several threads, skip BLAS's packing)"
            if cpu_backend.direct_kernels_available()
            else "off (no AVX-512: BLAS for every product)")
        info["simd"] = {"level": cpu_backend.simd_level(),
                        "build": _SIMD_BUILDS.get(cpu_backend.simd_build(), "unknown")}
    except ImportError as exc:
        info["cpu_engine"] = f"not built ({exc})"
        info["openmp"] = "unknown (the CPU engine is not built)"
        info["direct_kernels"] = "unknown (the CPU engine is not built)"
        info["simd"] = {"level": "unknown", "build": "the CPU engine is not built"}
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: lib.get(k) for k in ("internal_api", "version", "num_threads",
                                                   "threading_layer", "architecture",
                                                   "filepath")}
                        for lib in threadpool_info() if lib.get("user_api") == "blas"]
        info["openmp_runtimes"] = [{k: lib.get(k) for k in ("internal_api", "version",
                                                             "num_threads", "filepath")}
                                   for lib in threadpool_info()
                                   if lib.get("user_api") == "openmp"]
    except ImportError:
        info["blas"] = "unknown (threadpoolctl is not installed)"
    info["cpu"] = {"model": _cpu_model(), "machine": platform.machine(),
                   "features": _cpu_features()}
    gpu = {"has_cupy": bool(backends.HAS_CUPY)}
    if backends.HAS_CUPY:
        try:
            cupy = backends.cupy
            gpu["cupy"] = cupy.__version__
            gpu["devices"] = []
            for i in range(cupy.cuda.runtime.getDeviceCount()):
                props = cupy.cuda.runtime.getDeviceProperties(i)
                name = props["name"]
                gpu["devices"].append(name.decode() if isinstance(name, bytes) else name)
            gpu["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        except Exception as exc:  # pragma: no cover - GPU only
            gpu["error"] = repr(exc)
    else:
        gpu["reason"] = backends.CUPY_UNAVAILABLE_REASON
    info["gpu"] = gpu
    return info


def cmd_info(args):
    """Print versions, devices, threads, BLAS, OpenMP, CPU features and GPU."""
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        args._result = info
        return 0
    threads = info["threads"]
    lines = [
        f"fastmlp {info['fastmlp']}",
        f"python {info['python']} on {info['platform']}",
        f"numpy {info['numpy']}, scipy {info['scipy']}, scikit-learn {info['scikit-learn']}",
        f"default device: {info['default_device']}"
        + (f" (unusable, from $FASTMLP_DEVICE: {info['default_device_error']})"
           if info.get("default_device_error") else ""),
        f"CPU engine: {info['cpu_engine']}",
        f"OpenMP: {info['openmp']}",
        f"direct GEMM kernels: {info['direct_kernels']}",
        f"SIMD kernels: {info['simd']['level']} ({info['simd']['build']})",
        f"threads: {threads['default_n_threads']} by default "
        f"({threads['available_cpus']} CPUs available"
        + (f", OMP_NUM_THREADS={threads['OMP_NUM_THREADS']}"
           if threads["OMP_NUM_THREADS"] else "") + ")",
    ]
    if isinstance(info["blas"], list):
        if not info["blas"]:
            lines.append("BLAS: none found by threadpoolctl")
        for lib in info["blas"]:
            lines.append(f"BLAS: {lib['internal_api']} {lib['version']}, "
                         f"{lib['num_threads']} threads ({lib['threading_layer']}, "
                         f"{lib['architecture']}) {lib['filepath']}")
        for lib in info.get("openmp_runtimes", []):
            lines.append(f"OpenMP runtime: {lib['internal_api']} {lib['version'] or ''}".rstrip()
                         + ", "
                         f"{lib['num_threads']} threads {lib['filepath']}")
    else:
        lines.append(f"BLAS: {info['blas']}")
    cpu = info["cpu"]
    lines.append(f"CPU: {cpu['model']} ({cpu['machine']}); features: "
                 f"{' '.join(cpu['features']) or 'unknown'}")
    gpu = info["gpu"]
    if gpu["has_cupy"]:
        lines.append(f"GPU: CuPy {gpu.get('cupy')}, devices {gpu.get('devices')}")
    else:
        lines.append(f"GPU: unavailable ({gpu['reason']})")
    print("\n".join(lines))
    args._result = info
    return 0


# ========================================================================== parser
def _add_device_options(p, *, seed=True):
    p.add_argument("--device", default=None, choices=("cpu", "numpy", "cuda", "auto"),
                   help="where to compute (default: cpu, or $FASTMLP_DEVICE)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads (default: the CPUs available, or $OMP_NUM_THREADS)")
    if seed:
        p.add_argument("--seed", type=_seed_int, default=0,
                       help="random seed for initialisation, shuffling and splits "
                            "(default: 0)")


def _add_demo_parser(sub):
    p = sub.add_parser(
        "demo", help="train on digits or MNIST and compare with scikit-learn",
        description="Train a ReLU network with fastmlp (Keras-style Model and the "
                    "scikit-learn drop-in) and with scikit-learn's MLPClassifier on the "
                    "same data; print test accuracy and training time side by side.")
    p.add_argument("--dataset", choices=("auto", "digits", "mnist"), default="auto",
                   help="auto: MNIST when a file is found (--mnist, $FASTMLP_DATA or, "
                        "from the source tree, ../shared/data/mnist.npz), else "
                        "scikit-learn's digits")
    p.add_argument("--mnist", default=None, metavar="PATH",
                   help="MNIST .npz file (keys x_train, y_train, x_test, y_test)")
    p.add_argument("--hidden", type=_hidden_sizes, default=(100,), metavar="SIZES",
                   help="hidden layer widths, e.g. 100 or 256,128 (default: 100)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (default: 10 on MNIST, 100 on digits)")
    p.add_argument("--batch-size", type=_positive_int, default=200,
                   help="minibatch size (default: 200, scikit-learn's)")
    p.add_argument("--no-sklearn", action="store_true",
                   help="skip scikit-learn's (slow) MLPClassifier")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0 silent, 1 one progress bar for the run (default), 2 one line "
                        "per epoch")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the results")
    _add_device_options(p)
    p.set_defaults(func=cmd_demo)


def _add_train_parser(sub):
    p = sub.add_parser(
        "train", help="train a network and save it",
        description="Train a dense network on DATA and save it as a .npz model file "
                    "(weights folded to read raw features, plus a .json with the class "
                    "labels).",
        epilog="examples:\n"
               "  fastmlp train iris --hidden 10,10 --epochs 50\n"
               "  fastmlp train data.csv --label-column species -o species.npz\n"
               "  fastmlp train mnist --hidden 500,500 --optimizer sgd --lr 0.1 "
               "--momentum 0.9 --batch-size 128 --early-stopping 5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help=f"a built-in data set ({', '.join(BUILTIN_DATASETS)}), "
                                "an .npz (X/y or x_train/y_train[/x_test/y_test]) or a .csv")
    p.add_argument("--label-column", default=None, metavar="COL",
                   help="CSV label column, by name or 0-based index (default: a column "
                        "named label/target/class/y, else the last one)")
    p.add_argument("--task", choices=("auto", "classification", "regression"),
                   default="auto", help="auto: classification for integer or text labels")
    p.add_argument("--hidden", type=_hidden_sizes, default=(100,), metavar="SIZES",
                   help="hidden layer widths, e.g. 100 or 128,64; 'none' for a linear "
                        "model (default: 100)")
    p.add_argument("--activation", default="relu",
                   help="hidden activation: relu, tanh, sigmoid, elu, gelu, ... "
                        "(default: relu)")
    p.add_argument("--dropout", type=_fraction, default=0.0,
                   help="dropout rate after each hidden layer (default: 0)")
    p.add_argument("--optimizer", choices=("sgd", "adam", "rmsprop", "adagrad"),
                   default="adam", help="default: adam")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: the optimizer's, 0.01 for sgd)")
    p.add_argument("--momentum", type=_fraction, default=None,
                   help="SGD momentum (default: 0; --optimizer sgd only)")
    p.add_argument("--nesterov", action="store_true",
                   help="Nesterov momentum (--optimizer sgd only)")
    p.add_argument("--epochs", type=_positive_int, default=20, help="default: 20")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="default: 32")
    p.add_argument("--validation-split", type=_fraction, default=0.0,
                   help="fraction of the (shuffled) training rows held out for "
                        "validation (default: 0)")
    p.add_argument("--early-stopping", type=_positive_int, nargs="?", const=5,
                   default=None, metavar="PATIENCE",
                   help="stop when val_loss has not improved for PATIENCE epochs "
                        "(default 5) and keep the best weights")
    p.add_argument("--test-size", type=_fraction, default=None,
                   help="fraction held out for a final test (default: 0.25 for built-in "
                        "sets without a test split, else 0)")
    p.add_argument("--scale", choices=("standard", "none"), default="standard",
                   help="standardise features while training (folded into the saved "
                        "weights; default: standard)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("-o", "--output", default="model.npz", metavar="PATH",
                   help="model file to write (default: model.npz)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                   help="0 silent, 1 progress bar, 2 one line per epoch (default)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    _add_device_options(p)
    p.set_defaults(func=cmd_train)


def _add_predict_parser(sub):
    p = sub.add_parser(
        "predict", help="predict with a saved model",
        description="Apply a model saved by `fastmlp train` (or Model.save) to DATA and "
                    "write the predictions.")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("data", help="a .csv, .npz (X, x or x_test) or .npy file, or a "
                                "built-in data set name (for a set or .npz with a "
                                "train/test split, such as mnist: its training rows)")
    p.add_argument("-o", "--output", default="predictions.csv", metavar="PATH",
                   help="predictions file: .csv (with a header) or .npy "
                        "(default: predictions.csv)")
    p.add_argument("--proba", action="store_true",
                   help="also write class probabilities (.npy: only them)")
    p.add_argument("--label-column", default=None, metavar="COL",
                   help="a CSV column to leave out of the features (labels), by name or "
                        "index; accuracy against it is printed (default: the training "
                        "file's label column when the header has it)")
    p.add_argument("--device", default=None, choices=("cpu", "numpy", "cuda", "auto"),
                   help="where to compute (default: cpu, or $FASTMLP_DEVICE)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=cmd_predict)


def _add_info_parser(sub):
    p = sub.add_parser(
        "info", help="show versions, devices, threads, BLAS, OpenMP, CPU, GPU",
        description="Show what fastmlp will run on: versions, the CPU engine, threads, "
                    "BLAS libraries (threadpoolctl), OpenMP, CPU features and CuPy/GPU.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)


#: subcommand registrars, in help order (each a function taking the subparsers object).
#: The benchmark report is not one of them: it needs the source checkout's benchmarks/
#: (``python -m benchmarks.report``, see benchmarks/RESULTS.md).
SUBCOMMANDS = [_add_demo_parser, _add_train_parser, _add_predict_parser, _add_info_parser]


def build_parser():
    """The ``argparse`` parser of the ``fastmlp`` command."""
    from . import __version__
    parser = argparse.ArgumentParser(
        prog=PROG, description="fastmlp: fast multi-layer perceptrons "
                               "(Keras-style Model and scikit-learn drop-ins).")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback of an error (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv=None):
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help, --version, or a usage error (status 2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (KeyboardInterrupt, _Interrupted):
        print(f"{PROG}: interrupted" + ("; no model was saved" if args.command == "train"
                                        else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`fastmlp info --json | head`): stop quietly, with
        # stdout pointed at devnull so that the flush at exit cannot fail again
        # (the recipe of Python's signal module documentation)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (CLIError, FileNotFoundError, PermissionError, IsADirectoryError, ValueError,
            TypeError, RuntimeError, ImportError, OSError, MemoryError) as exc:
        if args.traceback:
            raise
        message = str(exc) if isinstance(exc, CLIError) else f"{type(exc).__name__}: {exc}"
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
