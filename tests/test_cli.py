"""The `fastmlp` command: argument handling, data files, errors, and short end-to-end
runs of demo / train / predict / info (in-process through ``main(argv)``)."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import cli, datasets
from fastmlp.cli import main, read_csv, read_npz




DEVICE = "cpu"


def run(argv, capsys):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def number_after(text, marker):
    """The number printed after ``marker`` (and an optional ``...:``) in ``text``."""
    match = re.search(re.escape(marker) + r"[^:\n]*:\s*([-+0-9.eE]+)", text)
    assert match, f"{marker!r} not found in output:\n{text}"
    return float(match.group(1))


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def iris_csv(tmp_path):
    """Iris as a CSV with a text label column in the middle."""
    X, y, names = datasets.load_iris(return_class_names=True)
    rows = [[*x[:2], names[t], *x[2:]] for x, t in zip(X, y)]
    return write_csv(tmp_path / "iris.csv",
                     ["sepal_length", "sepal_width", "species", "petal_length",
                      "petal_width"], rows)


# ------------------------------------------------------------------- help, usage
@pytest.mark.parametrize("command", [[], ["demo"], ["train"], ["predict"], ["info"]])
def test_help_everywhere(command, capsys):
    status, out, _ = run(command + ["--help"], capsys)
    assert status == 0
    assert out.startswith("usage: fastmlp")
    assert "--help" in out


def test_top_level_help_lists_subcommands(capsys):
    _, out, _ = run(["--help"], capsys)
    for name in ("demo", "train", "predict", "info"):
        assert name in out


def test_version(capsys):
    status, out, _ = run(["--version"], capsys)
    assert status == 0 and out.strip() == f"fastmlp {fastmlp.__version__}"


def test_no_command_prints_help_and_fails(capsys):
    status, out, _ = run([], capsys)
    assert status == 2 and "usage: fastmlp" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "iris", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice"),
    (["train", "iris", "--epochs", "0"], "expected a positive integer"),
    (["train", "iris", "--validation-split", "1.5"], "expected a number in [0, 1)"),
    (["train", "iris", "--hidden", "ten"], "layer widths"),
    (["train", "iris", "--optimizer", "lion"], "invalid choice"),
    (["train", "iris", "--lr", "-1"], "positive number"),
    (["predict", "model.npz"], "required: data"),
])
def test_usage_errors_exit_2_without_traceback(argv, message, capsys):
    status, _, err = run(argv, capsys)
    assert status == 2
    assert message in err
    assert "Traceback" not in err


def test_hidden_sizes_parsing():
    assert cli._hidden_sizes("100") == (100,)
    assert cli._hidden_sizes("128,64") == (128, 64)
    assert cli._hidden_sizes("500x500") == (500, 500)
    assert cli._hidden_sizes("none") == ()


# --------------------------------------------------------------- errors on data
def test_train_missing_file(tmp_path, capsys):
    status, _, err = run(["train", tmp_path / "absent.csv", "--device", DEVICE], capsys)
    assert status == 2
    assert "absent.csv: no such file" in err and "built-in data sets" in err
    assert "Traceback" not in err


def test_train_unknown_label_column_lists_columns(iris_csv, capsys):
    status, _, err = run(["train", iris_csv, "--label-column", "kind",
                          "--device", DEVICE], capsys)
    assert status == 2
    assert "no column named 'kind'" in err and "'species'" in err


def test_train_label_index_out_of_range(iris_csv, capsys):
    status, _, err = run(["train", iris_csv, "--label-column", "7",
                          "--device", DEVICE], capsys)
    assert status == 2 and "out of range" in err


def test_label_name_without_header_row(tmp_path, capsys):
    path = write_csv(tmp_path / "plain.csv", None, [[1, 2, 0], [3, 4, 1]])
    status, _, err = run(["train", path, "--label-column", "label", "--device", DEVICE],
                         capsys)
    assert status == 2 and "no header row" in err and "0-2" in err


def test_train_text_feature_names_column_and_line(iris_csv, capsys):
    # the default label column is the last one, so "species" is read as a feature
    status, _, err = run(["train", iris_csv, "--device", DEVICE], capsys)
    assert status == 2
    assert "line 2" in err and "'species'" in err and "--label-column" in err


def test_train_unsupported_file_type(tmp_path, capsys):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    status, _, err = run(["train", path, "--device", DEVICE], capsys)
    assert status == 2 and "unsupported file type '.parquet'" in err


def test_train_corrupt_npz(tmp_path, capsys):
    path = tmp_path / "data.npz"
    path.write_bytes(b"garbage")
    status, _, err = run(["train", path, "--device", DEVICE], capsys)
    # (numpy's own message for a file that is no zip suggests allow_pickle)
    assert status == 2 and "is not an .npz file" in err and "pickle" not in err
    path.write_bytes(b"PK\x03\x04truncated")
    status, _, err = run(["train", path, "--device", DEVICE], capsys)
    assert status == 2 and "not a readable .npz" in err


def test_train_single_class(tmp_path, capsys):
    path = write_csv(tmp_path / "one.csv", ["a", "label"], [[1, 0], [2, 0], [3, 0]])
    status, _, err = run(["train", path, "--device", DEVICE], capsys)
    assert status == 2 and "single class" in err


def test_train_unavailable_device_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setattr(fastmlp.backends, "HAS_CUPY", False)
    status, _, err = run(["train", "iris", "--device", "cuda"], capsys)
    assert status == 2 and "cuda" in err and "Traceback" not in err


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_predict_corrupt_model(tmp_path, iris_csv, capsys, content):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    status, _, err = run(["predict", bad, iris_csv, "--device", DEVICE], capsys)
    assert status == 2 and "bad.npz" in err and "Traceback" not in err


def test_predict_missing_model(tmp_path, iris_csv, capsys):
    status, _, err = run(["predict", tmp_path / "none.npz", iris_csv], capsys)
    assert status == 2 and "no such model file" in err


# ------------------------------------------------------------------ file readers
def test_read_csv_header_label_by_name_and_text_labels(iris_csv):
    X, y, names, label = read_csv(iris_csv, "species")
    assert X.shape == (150, 4) and X.dtype == np.float64
    assert names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert label == "species" and set(y) == {"setosa", "versicolor", "virginica"}


def test_read_csv_without_header_label_by_negative_index(tmp_path):
    path = write_csv(tmp_path / "plain.csv", None, [[1.5, 2, 0], [3, 4.25, 1]])
    X, y, names, label = read_csv(path, "-1")
    np.testing.assert_array_equal(X, [[1.5, 2], [3, 4.25]])
    assert y.dtype == np.int64 and y.tolist() == [0, 1]
    assert names == ["x0", "x1"] and label == "x2"


def test_read_csv_default_label_column_named_label(tmp_path):
    path = write_csv(tmp_path / "l.csv", ["label", "a", "b"], [[1, 0.5, 2], [0, 1, 3]])
    X, y, names, label = read_csv(path)
    assert label == "label" and y.tolist() == [1, 0] and names == ["a", "b"]


def test_read_csv_float_labels_stay_float(tmp_path):
    path = write_csv(tmp_path / "r.csv", ["a", "y"], [[1, 0.5], [2, 1.25]])
    _, y, _, _ = read_csv(path)
    assert y.dtype == np.float64 and y.tolist() == [0.5, 1.25]


@pytest.mark.parametrize("rows, message", [
    ([[1, 2, 0], [3, "", 1]], "is empty"),
    ([[1, 2, 0], [3, 4]], "2 fields; expected 3"),
])
def test_read_csv_bad_rows(tmp_path, rows, message):
    path = write_csv(tmp_path / "bad.csv", ["a", "b", "label"], rows)
    with pytest.raises(cli.CLIError, match=message):
        read_csv(path)


def test_read_npz_layouts(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xy.npz", X=rng.random((5, 3)), y=np.arange(5))
    X, y, X_test, _ = read_npz(tmp_path / "xy.npz")
    assert X.shape == (5, 3) and y.tolist() == list(range(5)) and X_test is None
    np.savez(tmp_path / "keras.npz", x_train=np.zeros((4, 2, 2), np.uint8),
             y_train=np.arange(4), x_test=np.zeros((3, 2, 2), np.uint8),
             y_test=np.arange(3))
    X, y, X_test, y_test = read_npz(tmp_path / "keras.npz")
    assert X.shape == (4, 4) and X_test.shape == (3, 4) and y_test.tolist() == [0, 1, 2]
    np.savez(tmp_path / "other.npz", features=np.zeros((2, 2)))
    with pytest.raises(cli.CLIError, match=r"found arrays \['features'\]"):
        read_npz(tmp_path / "other.npz")


# --------------------------------------------------------------------------- info
def test_info_text(capsys):
    status, out, _ = run(["info"], capsys)
    assert status == 0
    assert out.startswith(f"fastmlp {fastmlp.__version__}")
    for part in ("numpy", "CPU engine:", "OpenMP:", "direct GEMM kernels:", "SIMD kernels:",
                 "threads:", "BLAS:", "CPU:", "GPU:"):
        assert part in out


def test_info_json(capsys):
    status, out, _ = run(["info", "--json"], capsys)
    info = json.loads(out)
    assert status == 0 and info["fastmlp"] == fastmlp.__version__
    assert info["threads"]["default_n_threads"] >= 1
    assert isinstance(info["blas"], list) and info["blas"], "numpy's BLAS is not listed"
    assert {"num_threads", "internal_api"} <= set(info["blas"][0])
    assert info["gpu"]["has_cupy"] == fastmlp.HAS_CUPY
    if not fastmlp.HAS_CUPY:
        assert info["gpu"]["reason"]
    from fastmlp.backends.cpu import direct_kernels_available
    assert info["direct_kernels"].startswith("AVX-512" if direct_kernels_available() else "off")
    from fastmlp.backends.cpu import simd_level
    assert info["simd"]["level"] == simd_level()
    assert "clones" in info["simd"]["build"] or "baseline" in info["simd"]["build"]


def test_info_without_threadpoolctl_or_cpu_engine(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)        # import fails
    monkeypatch.setitem(sys.modules, "fastmlp.backends.cpu", None)
    status, out, _ = run(["info"], capsys)
    assert status == 0
    assert "threadpoolctl is not installed" in out
    assert "CPU engine: not built" in out and "OpenMP: unknown" in out
    assert "direct GEMM kernels: unknown" in out
    assert "SIMD kernels: unknown (the CPU engine is not built)" in out


# ------------------------------------------------------- train / predict / demo
def test_train_and_predict_csv_with_text_labels(iris_csv, tmp_path, capsys):
    model_path = tmp_path / "species.npz"
    status, out, err = run(["train", iris_csv, "--label-column", "species",
                            "--hidden", "16", "--epochs", "40", "--batch-size", "16",
                            "--lr", "0.01",
                            "--test-size", "0.2", "--device", DEVICE, "--verbose", "0",
                            "-o", model_path], capsys)
    assert status == 0, err
    assert model_path.is_file() and "test accuracy" in out
    test_accuracy = number_after(out, "test accuracy on 30 rows")
    assert test_accuracy >= 0.85

    predictions = tmp_path / "pred.csv"
    status, out, err = run(["predict", model_path, iris_csv, "--label-column", "species",
                            "--proba", "-o", predictions, "--device", DEVICE], capsys)
    assert status == 0, err
    with open(predictions) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prediction", "proba_setosa", "proba_versicolor",
                       "proba_virginica"]
    assert len(rows) == 151
    labels = [r[0] for r in rows[1:]]
    assert set(labels) <= {"setosa", "versicolor", "virginica"}
    assert labels[0] == "setosa"
    np.testing.assert_allclose([sum(map(float, r[1:])) for r in rows[1:]], 1.0, atol=1e-4)
    accuracy = number_after(out, "accuracy against the labels")
    assert accuracy >= 0.85


def test_predict_wrong_width_suggests_label_column(iris_csv, tmp_path, capsys):
    model_path = tmp_path / "m.npz"
    assert run(["train", iris_csv, "--label-column", "species", "--epochs", "1",
                "--device", DEVICE, "-q", "-o", model_path], capsys)[0] == 0
    # the training file's label column is left out without being named again
    status, out, err = run(["predict", model_path, iris_csv, "--device", DEVICE,
                            "-o", tmp_path / "p.csv"], capsys)
    assert status == 0, err
    assert "accuracy against the labels" in out
    X, y = datasets.load_iris()
    other = write_csv(tmp_path / "other.csv", ["a", "b", "c", "d", "kind"],
                      np.column_stack([X, y]).tolist())
    status, _, err = run(["predict", model_path, other, "--device", DEVICE,
                          "-o", tmp_path / "p.csv"], capsys)
    assert status == 2
    assert "5 features; the model expects 4" in err and "--label-column" in err


def test_train_builtin_with_early_stopping_and_npy_predictions(tmp_path, capsys):
    model_path = tmp_path / "bc.npz"
    status, out, err = run(["train", "breast_cancer", "--hidden", "8",
                            "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
                            "--nesterov", "--epochs", "30", "--early-stopping", "3",
                            "--seed", "1", "--device", DEVICE, "--verbose", "2",
                            "-o", model_path], capsys)
    assert status == 0, err
    assert "holding out the last 10%" in out and "val_loss" in out
    assert number_after(out, "test accuracy on") >= 0.9

    X, y = datasets.load_breast_cancer()
    np.savez(tmp_path / "bc_data.npz", X=X)
    out_path = tmp_path / "proba.npy"
    status, _, err = run(["predict", model_path, tmp_path / "bc_data.npz", "--proba",
                          "-o", out_path, "--device", DEVICE, "-q"], capsys)
    assert status == 0, err
    proba = np.load(out_path)
    assert proba.shape == (569, 2)
    assert np.mean(np.argmax(proba, axis=1) == y) >= 0.9   # raw features: scaling folded in


def test_train_regression_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) * [1, 10, 100]
    target = X @ [1.0, 0.1, 0.01] + 0.5
    path = write_csv(tmp_path / "reg.csv", ["a", "b", "c", "target"],
                     np.column_stack([X, target]).tolist())
    model_path = tmp_path / "reg.npz"
    status, out, err = run(["train", path, "--task", "regression", "--hidden", "none",
                            "--epochs", "60", "--lr", "0.05", "--test-size", "0.2",
                            "--device", DEVICE, "--verbose", "0", "-o", model_path], capsys)
    assert status == 0, err
    assert number_after(out, "test mse on 60 rows") < 0.05
    status, _, err = run(["predict", model_path, path, "--label-column", "target",
                          "-o", tmp_path / "r.npy", "--device", DEVICE, "-q"], capsys)
    assert status == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "r.npy").ravel(), target, atol=0.5)


def test_demo_on_digits(capsys):
    status, out, err = run(["demo", "--dataset", "digits", "--epochs", "15",
                            "--device", DEVICE, "--verbose", "0"], capsys)
    assert status == 0, err
    assert "digits" in out and "test accuracy" in out
    rows = {line[:30].strip(): line[30:].split() for line in out.splitlines()
            if line.startswith(("fastmlp.Model", "fastmlp.MLPClassifier", "sklearn"))
            and "fit" not in line}
    assert "sklearn MLPClassifier" in rows and "fastmlp.Model (Keras-style)" in rows
    for name, fields in rows.items():
        assert float(fields[0]) >= 0.85, name   # test accuracy after 15 epochs


def test_demo_reads_an_mnist_file(tmp_path, capsys):
    # a tiny file in the MNIST layout: each class is one bright 7x7 block
    rng = np.random.default_rng(0)

    def images(labels):
        x = rng.integers(0, 40, (len(labels), 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 4)
            x[i, 7 * row:7 * row + 7, 7 * col:7 * col + 7] = 255
        return x
    y_train, y_test = np.arange(300) % 10, np.arange(100) % 10
    np.savez(tmp_path / "mnist.npz", x_train=images(y_train),
             y_train=y_train.astype(np.uint8),
             x_test=images(y_test), y_test=y_test.astype(np.uint8))
    status, out, err = run(["demo", "--mnist", tmp_path / "mnist.npz", "--epochs", "20",
                            "--hidden", "16", "--batch-size", "50", "--no-sklearn",
                            "--device", DEVICE, "--verbose", "0"], capsys)
    assert status == 0, err
    assert "MNIST: 300 training and 100 test rows, 784 features" in out
    assert "sklearn MLPClassifier" not in out.split("test accuracy")[1]
    line = next(text for text in out.splitlines()
                if text.startswith("fastmlp.Model (Keras"))
    assert float(line[30:].split()[0]) >= 0.9


def test_demo_mnist_missing_file_is_clear(tmp_path, capsys):
    status, _, err = run(["demo", "--dataset", "mnist", "--mnist", tmp_path / "no.npz",
                          "--device", DEVICE], capsys)
    assert status == 2 and "MNIST file not found" in err


# ----------------------------------------------------------------- python -m fastmlp
def test_python_m_fastmlp_subprocess(tmp_path):
    env = dict(os.environ)
    root = str(Path(fastmlp.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "fastmlp", "--help"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: fastmlp" in done.stdout
    done = subprocess.run([sys.executable, "-m", "fastmlp", "train",
                           str(tmp_path / "missing.csv")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "missing.csv: no such file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_predict_a_classifier_saved_by_model_save(output, tmp_path, capsys):
    """No sidecar from `fastmlp train`: the model's loss says it is a classifier, and the
    CSV has one probability column per class, for a one-output sigmoid model too (its
    header had had one column fewer than its rows)."""
    if output == "softmax":
        X, y = datasets.load_iris()
        last, loss = fastmlp.Dense(3, "softmax"), "sparse_categorical_crossentropy"
    else:
        X, y = datasets.load_dataset("moons")
        last, loss = fastmlp.Dense(1, "sigmoid"), "binary_crossentropy"
    m = fastmlp.Model([fastmlp.Dense(8, "relu", input_dim=X.shape[1]), last], seed=0)
    m.compile("adam", loss)
    m.fit(X, y, epochs=3, verbose=0)
    m.save(tmp_path / "keras.npz")
    np.save(tmp_path / "x.npy", X)
    status, _, err = run(["predict", tmp_path / "keras.npz", tmp_path / "x.npy", "--proba",
                          "--device", DEVICE, "-o", tmp_path / "p.csv"], capsys)
    assert status == 0, err
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.reader(f))
    proba = m.predict(X)
    if output == "sigmoid":
        proba = np.hstack([1.0 - proba, proba])
    assert rows[0] == ["prediction"] + [f"proba_{k}" for k in range(proba.shape[1])]
    assert {len(r) for r in rows} == {1 + proba.shape[1]}
    assert [int(r[0]) for r in rows[1:]] == proba.argmax(axis=1).tolist()
    np.testing.assert_allclose([[float(v) for v in r[1:]] for r in rows[1:]], proba,
                               rtol=1e-5)


def test_negative_seed_is_named(iris_csv, capsys):
    status, _, err = run(["train", iris_csv, "--seed", "-1", "-q"], capsys)
    assert status == 2
    assert "argument --seed: expected an integer >= 0" in err


def test_demo_options_that_do_not_apply_are_refused(capsys, tmp_path):
    status, _, err = run(["demo", "--dataset", "digits", "--mnist", tmp_path / "no.npz",
                          "--no-sklearn", "--epochs", "1", "-q"], capsys)
    assert status == 2 and "only read with --dataset mnist" in err
    status, out, err = run(["demo", "--dataset", "digits", "--hidden", "none", "--epochs",
                            "1", "--batch-size", "5000", "--no-sklearn", "--device", DEVICE,
                            "-q"], capsys)
    assert status == 0 and err == ""                 # -q: no batch-size-clipped warning
    assert "test accuracy" in out


def test_a_closed_stdout_stops_quietly():
    # `fastmlp info --json | head`: the reader may be gone before the output is written
    r, w = os.pipe()
    os.close(r)                     # every write now fails with EPIPE
    env = dict(os.environ, PYTHONPATH=str(Path(fastmlp.__file__).parent.parent))
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "info", "--json"], stdout=w,
                          stderr=subprocess.PIPE, env=env, timeout=120)
    os.close(w)
    assert proc.returncode == 1
    assert b"BrokenPipe" not in proc.stderr and b"Traceback" not in proc.stderr


def test_npz_labels_must_be_one_column(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(30, 3))
    np.savez(tmp_path / "two.npz", X=X, y=np.zeros((30, 2)))
    status, _, err = run(["train", tmp_path / "two.npz", "-q", "--epochs", "1"], capsys)
    assert status == 2 and "'y' has shape (30, 2)" in err and "1-D" in err
    np.savez(tmp_path / "col.npz", X=X, y=(X[:, :1] > 0).astype(int))   # (n, 1) is fine
    status, _, err = run(["train", tmp_path / "col.npz", "-q", "--epochs", "1", "--device",
                          DEVICE, "-o", tmp_path / "m.npz"], capsys)
    assert status == 0, err


def test_info_flags_an_unusable_fastmlp_device(monkeypatch, capsys):
    monkeypatch.setenv("FASTMLP_DEVICE", "bogus")
    status, out, _ = run(["info"], capsys)
    assert status == 0 and "default device: bogus (unusable, from $FASTMLP_DEVICE" in out
    monkeypatch.delenv("FASTMLP_DEVICE")
    status, out, _ = run(["info", "--json"], capsys)
    assert json.loads(out)["default_device_error"] is None


def test_the_documented_mnist_train_example_learns(mnist_path, monkeypatch, tmp_path, capsys):
    # `fastmlp train --help`'s MNIST example, one epoch (it had used the default batch of
    # 32, where lr 0.1 with momentum 0.9 diverges to chance accuracy)
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].epilog
    line = next(l.strip() for l in help_text.splitlines() if "train mnist" in l)
    argv = line.split()[1:] + ["--epochs", "1", "--device", DEVICE, "--verbose", "0",
                               "-o", str(tmp_path / "m.npz")]
    monkeypatch.setenv("FASTMLP_DATA", str(mnist_path))
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert number_after(out, "test accuracy") > 0.9


# ------------------------------------------------------ found by an audit (session 17)
def test_predict_with_a_model_that_holds_no_weights(tmp_path, capsys):
    m = fastmlp.Model([fastmlp.Dense(10, "relu"), fastmlp.Dense(3, "softmax")], seed=0)
    m.compile("adam", "sparse_categorical_crossentropy")
    m.save(tmp_path / "unbuilt.npz")
    status, _, err = run(["predict", tmp_path / "unbuilt.npz", "iris",
                          "-o", tmp_path / "p.csv"], capsys)
    assert status == 2 and "holds no weights" in err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("output,message", [
    ("{tmp}/", "names a folder"), ("{tmp}", "names a folder"),
    ("{tmp}/missing/m.npz", "does not exist")])
def test_train_output_is_checked_before_training(tmp_path, capsys, output, message):
    status, out, err = run(["train", "iris", "--epochs", "1", "-o",
                            output.format(tmp=tmp_path)], capsys)
    assert status == 2 and message in err and "trained" not in out
    assert not list(tmp_path.parent.glob(tmp_path.name + ".npz*"))


def test_train_divergence_is_an_error_and_saves_nothing(tmp_path, capsys):
    status, _, err = run(["train", "iris", "--epochs", "3", "--optimizer", "sgd", "--lr", "1e9",
                          "-o", tmp_path / "div.npz"], capsys)
    assert status == 2 and "training diverged" in err and "no model was saved" in err
    assert len(err.strip().splitlines()) == 1          # one line, no warning with source
    assert not (tmp_path / "div.npz").exists()


def test_train_interrupted_exits_130_and_saves_nothing(tmp_path, capsys, monkeypatch):
    import warnings
    from fastmlp.model import Model, TrainingInterruptedWarning

    def interrupted_fit(self, *args, **kwargs):      # as fit ends after a Ctrl-C
        warnings.warn("fit was interrupted (Ctrl-C)", TrainingInterruptedWarning)
    monkeypatch.setattr(Model, "fit", interrupted_fit)
    status, _, err = run(["train", "iris", "-o", tmp_path / "m.npz"], capsys)
    assert status == 130 and "interrupted; no model was saved" in err
    assert not (tmp_path / "m.npz").exists()


def test_train_refuses_features_a_float32_model_cannot_read_raw(tmp_path, capsys):
    """Standardisation is folded into the saved model, which reads raw features in its
    dtype: a float32 model cannot tell apart values 1e8 + 0.1 and 1e8 + 0.2."""
    X, y = datasets.load_iris()
    np.savez(tmp_path / "far.npz", X=X + 1e8, y=y)
    np.savez(tmp_path / "near.npz", X=X + 1e3, y=y)
    status, out, err = run(["train", tmp_path / "far.npz", "--epochs", "1",
                            "-o", tmp_path / "a.npz"], capsys)
    assert status == 2 and "use --dtype float64" in err and "trained" not in out
    for data, dtype in (("far.npz", "float64"), ("near.npz", "float32")):
        status, out, err = run(["train", tmp_path / data, "--epochs", "60", "--dtype", dtype,
                                "--hidden", "16", "--lr", "0.01", "-o", tmp_path / "m.npz"],
                               capsys)
        assert status == 0, err
        status, out, err = run(["predict", tmp_path / "m.npz", tmp_path / data,
                                "-o", tmp_path / "p.npy"], capsys)
        assert status == 0, err
        assert number_after(out, "accuracy against the labels") > 0.85, (data, out)


def test_momentum_applies_to_sgd_only(capsys, tmp_path):
    status, _, err = run(["train", "iris", "--momentum", "0.9", "-o", tmp_path / "m.npz"],
                         capsys)
    assert status == 2 and "--momentum and --nesterov apply to --optimizer sgd" in err
    status, _, err = run(["train", "iris", "--optimizer", "sgd", "--momentum", "0.9",
                          "--nesterov", "--epochs", "1", "-q", "-o", tmp_path / "m.npz"],
                         capsys)
    assert status == 0, err


def test_out_of_memory_is_one_line(capsys, monkeypatch, tmp_path):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 37.3 GiB for an array")
    monkeypatch.setattr(cli, "_build_model", no_memory)
    status, _, err = run(["train", "iris", "-o", tmp_path / "m.npz"], capsys)
    assert status == 2 and err.strip() == \
        "fastmlp train: error: MemoryError: Unable to allocate 37.3 GiB for an array"


def test_text_labels_for_regression_are_quoted_plainly(iris_csv, capsys, tmp_path):
    status, _, err = run(["train", iris_csv, "--task", "regression", "--label-column",
                          "species", "-o", tmp_path / "m.npz"], capsys)
    assert status == 2 and "got text such as 'setosa'" in err and "np.str_" not in err


def test_a_constant_feature_far_from_0_is_ignored_not_refused(tmp_path, capsys):
    """A constant column is 0 after standardising, throughout training: the saved model
    gets zero weights for it (no large products to cancel), whatever its value."""
    X, y = datasets.load_iris()
    np.savez(tmp_path / "const.npz", X=np.c_[X, np.full(len(X), 1e8)], y=y)
    status, _, err = run(["train", tmp_path / "const.npz", "--epochs", "60", "--hidden", "16",
                          "--lr", "0.01", "-q", "-o", tmp_path / "m.npz"], capsys)
    assert status == 0, err
    model = fastmlp.load_model(tmp_path / "m.npz")
    assert not model.get_weights()[0][4].any()
    other = np.c_[X, np.full(len(X), -3.0)]        # the column's value no longer matters
    np.testing.assert_array_equal(model.predict(np.c_[X, np.full(len(X), 1e8)]),
                                  model.predict(other))
    assert np.mean(model.predict(other).argmax(axis=1) == y) > 0.85


def test_train_leaves_other_warnings_of_fit_to_python(tmp_path, capsys, monkeypatch):
    """Only fit's divergence and interruption warnings become the command's errors;
    another warning keeps Python's filters (here pytest's recorder)."""
    import warnings
    from fastmlp.model import Model
    real_fit = Model.fit

    def fit(self, *args, **kwargs):
        warnings.warn("a warning of its own", UserWarning)
        return real_fit(self, *args, **kwargs)
    monkeypatch.setattr(Model, "fit", fit)
    with pytest.warns(UserWarning, match="a warning of its own"):
        status, _, err = run(["train", "iris", "--epochs", "1", "-q", "-o",
                              tmp_path / "m.npz"], capsys)
    assert status == 0, err
    assert (tmp_path / "m.npz").exists()
