"""fastmlp.datasets: MNIST file lookup, validation and caching (never downloads), and
the toy-set helpers."""

import numpy as np
import pytest

from fastmlp import datasets
from fastmlp.datasets import find_mnist, load_dataset, load_mnist

_real_fetch = datasets._fetch_openml_mnist    # before any fixture replaces it


def write_fake_mnist(path, n_train=6, n_test=4, **overrides):
    """A tiny file in the MNIST layout; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays


@pytest.fixture
def no_default_mnist(monkeypatch, tmp_path):
    """Hide every default MNIST location (env, checkout-adjacent file, cache)."""
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setattr(datasets, "_repository_adjacent_mnist",
                        lambda: tmp_path / "nowhere" / "mnist.npz")
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sklearn_home"))

    def refuse_download(data_home=None):
        raise AssertionError("tests must never download MNIST")
    monkeypatch.setattr(datasets, "_fetch_openml_mnist", refuse_download)
    return tmp_path


# ---------------------------------------------------------------- MNIST from a file
def test_load_mnist_from_path_flattened_uint8(tmp_path):
    arrays = write_fake_mnist(tmp_path / "m.npz")
    (X_train, y_train), (X_test, y_test) = load_mnist(tmp_path / "m.npz")
    assert X_train.shape == (6, 784) and X_test.shape == (4, 784)
    assert X_train.dtype == np.uint8 and y_train.dtype == np.uint8
    np.testing.assert_array_equal(X_train, arrays["x_train"].reshape(6, 784))
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_load_mnist_images_and_scaling(tmp_path):
    arrays = write_fake_mnist(tmp_path / "m.npz")
    (X_train, _), _ = load_mnist(str(tmp_path / "m.npz"), flatten=False, scale=True)
    assert X_train.shape == (6, 28, 28) and X_train.dtype == np.float32
    np.testing.assert_allclose(X_train, arrays["x_train"] / 255.0, rtol=1e-6)
    assert 0.0 <= X_train.min() and X_train.max() <= 1.0


def test_load_mnist_accepts_flat_784_layout(tmp_path):
    rng = np.random.default_rng(1)
    write_fake_mnist(tmp_path / "flat.npz",
                     x_train=rng.integers(0, 256, (6, 784), dtype=np.uint8))
    (X_train, _), _ = load_mnist(tmp_path / "flat.npz", flatten=False)
    assert X_train.shape == (6, 28, 28)


def test_load_mnist_directory_path(tmp_path):
    write_fake_mnist(tmp_path / "mnist.npz")
    (X_train, _), _ = load_mnist(tmp_path)
    assert X_train.shape == (6, 784)


def test_env_variable_file_and_directory(no_default_mnist, monkeypatch, tmp_path):
    write_fake_mnist(tmp_path / "mnist.npz", n_train=3)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path))
    assert find_mnist() == tmp_path / "mnist.npz"
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "mnist.npz"))
    (X_train, _), _ = load_mnist(download=False)
    assert X_train.shape == (3, 784)


def test_path_argument_wins_over_env(no_default_mnist, monkeypatch, tmp_path):
    write_fake_mnist(tmp_path / "a.npz", n_train=2)
    write_fake_mnist(tmp_path / "b.npz", n_train=5)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "a.npz"))
    (X_train, _), _ = load_mnist(tmp_path / "b.npz")
    assert X_train.shape[0] == 5


def test_env_variable_naming_nothing_is_an_error(no_default_mnist, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="FASTMLP_DATA"):
        load_mnist()


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_mnist(tmp_path / "absent.npz")


def test_no_file_and_no_download(no_default_mnist):
    assert find_mnist() is None
    with pytest.raises(FileNotFoundError, match="FASTMLP_DATA"):
        load_mnist(download=False)


def test_download_is_cached_once(no_default_mnist, monkeypatch, tmp_path):
    calls = []
    rng = np.random.default_rng(2)
    fetched = {"x_train": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
               "y_train": np.arange(7, dtype=np.uint8),
               "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
               "y_test": np.array([3, 4], dtype=np.uint8)}

    def fake_fetch(data_home=None):
        calls.append(data_home)
        return fetched
    monkeypatch.setattr(datasets, "_fetch_openml_mnist", fake_fetch)
    home = tmp_path / "home"
    (X1, y1), _ = load_mnist(data_home=home)
    (X2, y2), (_, yt) = load_mnist(data_home=home)      # served from the cache
    assert len(calls) == 1
    assert (home / "fastmlp" / "mnist.npz").is_file()
    assert find_mnist(data_home=home) == home / "fastmlp" / "mnist.npz"
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y2, np.arange(7))
    np.testing.assert_array_equal(yt, [3, 4])


@pytest.mark.parametrize("content", [b"", b"this is not a zip file",
                                     b"PK\x03\x04 truncated zip header"])
def test_corrupt_file_is_a_clear_value_error(tmp_path, content):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="bad.npz"):
        load_mnist(bad)


def test_truncated_real_npz(tmp_path):
    write_fake_mnist(tmp_path / "m.npz", n_train=50)
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        load_mnist(tmp_path / "cut.npz")


def test_missing_key_is_named(tmp_path):
    write_fake_mnist(tmp_path / "m.npz", y_test=None)
    with pytest.raises(ValueError, match="y_test"):
        load_mnist(tmp_path / "m.npz")


@pytest.mark.parametrize("overrides, message", [
    ({"x_train": np.zeros((6, 28, 28), dtype=np.float32)}, "uint8"),
    ({"x_train": np.zeros((6, 27, 28), dtype=np.uint8)}, "shape"),
    ({"y_train": np.zeros(5, dtype=np.uint8)}, "y_train"),
    ({"y_test": np.full(4, 11, dtype=np.int64)}, "0-9"),
])
def test_wrong_arrays_are_rejected(tmp_path, overrides, message):
    write_fake_mnist(tmp_path / "m.npz", **overrides)
    with pytest.raises(ValueError, match=message):
        load_mnist(tmp_path / "m.npz")


def test_verify_rejects_a_non_canonical_file(tmp_path):
    write_fake_mnist(tmp_path / "m.npz")
    load_mnist(tmp_path / "m.npz", verify=False)
    with pytest.raises(ValueError, match="sha256"):
        load_mnist(tmp_path / "m.npz", verify=True)


# -------------------------------------------------------------------- real MNIST
def test_real_mnist_file(mnist_path):
    (X_train, y_train), (X_test, y_test) = load_mnist(mnist_path, verify=True)
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X_train.dtype == np.uint8 and X_train.max() == 255
    assert set(np.unique(y_train)) == set(range(10))
    # the classic class balance of the test set: 980 zeros, 1135 ones
    assert np.bincount(y_test)[:2].tolist() == [980, 1135]


# ----------------------------------------------------------------------- toy sets
@pytest.mark.parametrize("name, shape, n_classes", [
    ("iris", (150, 4), 3), ("digits", (1797, 64), 10), ("breast_cancer", (569, 30), 2),
    ("circles", (500, 2), 2), ("moons", (500, 2), 2),
])
def test_toy_sets(name, shape, n_classes):
    X, y = load_dataset(name)
    assert X.shape == shape and y.shape == (shape[0],)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert np.unique(y).tolist() == list(range(n_classes))


def test_toy_set_options():
    X, _ = datasets.load_digits(scale=True)
    assert X.max() == 1.0 and X.min() == 0.0
    X, y, names = datasets.load_iris(return_class_names=True)
    assert list(names) == ["setosa", "versicolor", "virginica"]
    Xa, _ = datasets.make_circles(100, noise=0.0, random_state=0)
    radii = np.sort(np.unique(np.round(np.hypot(Xa[:, 0], Xa[:, 1]), 6)))
    np.testing.assert_allclose(radii, [0.8, 1.0])   # scikit-learn's default factor
    X1, _ = datasets.make_moons(50, random_state=3)
    X2, _ = datasets.make_moons(50, random_state=3)
    np.testing.assert_array_equal(X1, X2)
    assert load_dataset("Breast-Cancer")[0].shape == (569, 30)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="expected one of"):
        load_dataset("cifar10")


def test_a_failed_download_says_what_to_do(no_default_mnist, monkeypatch, tmp_path):
    # no network (here: a DNS failure from scikit-learn's fetcher): one clear OSError
    # naming MNIST and $FASTMLP_DATA instead of a raw urllib traceback, and the socket
    # timeout that bounds a silent network is put back afterwards
    import socket
    import urllib.error

    import sklearn.datasets
    monkeypatch.setattr(datasets, "_fetch_openml_mnist", _real_fetch)   # the fixture's refusal off
    seen = []

    def offline(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(sklearn.datasets, "fetch_openml", offline)
    before = socket.getdefaulttimeout()
    with pytest.raises(OSError, match=r"could not download MNIST.*FASTMLP_DATA"):
        load_mnist(data_home=tmp_path / "home")
    assert seen == [datasets.DOWNLOAD_TIMEOUT] and socket.getdefaulttimeout() == before

