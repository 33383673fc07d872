"""Data sets for examples, tests and the ``fastmlp`` command.

* :func:`load_mnist` reads MNIST from a ``.npz`` file in the layout Keras uses
  (``x_train`` (60000, 28, 28) uint8, ``y_train``, ``x_test``, ``y_test``), found in
  this order: the ``path`` argument, the ``FASTMLP_DATA`` environment variable (a
  file, or a directory holding ``mnist.npz``), ``../shared/data/mnist.npz`` beside
  the source checkout, a copy cached by an earlier download, and finally
  scikit-learn's OpenML fetcher (``mnist_784``), whose result is cached as
  ``mnist.npz`` so that it is downloaded once.
* :func:`load_iris`, :func:`load_digits`, :func:`load_breast_cancer`,
  :func:`make_circles` and :func:`make_moons` are thin wrappers over scikit-learn's
  toy sets that return plain ``(X, y)`` arrays; :func:`load_dataset` picks one by name.

Nothing here touches the network unless :func:`load_mnist` has to download
(``download=False`` forbids that; the test suite never downloads).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "MNIST_SHA256", "MNIST_FILENAME", "find_mnist", "load_mnist", "mnist_cache_dir",
    "load_iris", "load_digits", "load_breast_cancer", "make_circles", "make_moons",
    "load_dataset", "DATASETS",
]

#: sha256 of the canonical ``mnist.npz`` (the file Keras distributes).
MNIST_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
MNIST_FILENAME = "mnist.npz"
_MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: environment variable naming an MNIST file or a directory that holds ``mnist.npz``
DATA_ENV = "FASTMLP_DATA"


# --------------------------------------------------------------------------- MNIST
def mnist_cache_dir(data_home=None) -> Path:
    """Directory where a downloaded MNIST is cached (``<data_home>/fastmlp``).

    Parameters
    ----------
    data_home : str or path-like, optional
        scikit-learn's data home; defaults to ``$SCIKIT_LEARN_DATA`` or
        ``~/scikit_learn_data`` (see :func:`sklearn.datasets.get_data_home`).

    Returns
    -------
    pathlib.Path
    """
    from sklearn.datasets import get_data_home
    return Path(get_data_home(data_home)) / "fastmlp"


def _repository_adjacent_mnist() -> Path:
    # <checkout>/fastmlp/datasets.py -> <checkout>/../shared/data/mnist.npz
    return Path(__file__).resolve().parents[2] / "shared" / "data" / MNIST_FILENAME


def _file_in(location: Path) -> Path:
    return location / MNIST_FILENAME if location.is_dir() else location


def find_mnist(path=None, *, data_home=None):
    """Locate an MNIST ``.npz`` file without downloading anything.

    Parameters
    ----------
    path : str or path-like, optional
        A file, or a directory holding ``mnist.npz``.  When given it must exist.
    data_home : str or path-like, optional
        Where a downloaded copy would be cached (see :func:`mnist_cache_dir`).

    Returns
    -------
    pathlib.Path or None
        The first existing file among ``path``, ``$FASTMLP_DATA``,
        ``../shared/data/mnist.npz`` beside the checkout and the download cache;
        None when there is none.

    Raises
    ------
    FileNotFoundError
        When ``path`` or ``$FASTMLP_DATA`` is set but names nothing that exists.
    """
    if path is not None:
        candidate = _file_in(Path(os.fspath(path)).expanduser())
        if not candidate.is_file():
            raise FileNotFoundError(f"MNIST file not found: {candidate}")
        return candidate
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        candidate = _file_in(Path(env).expanduser())
        if not candidate.is_file():
            raise FileNotFoundError(
                f"${DATA_ENV}={env!r} does not name an MNIST file or a directory "
                f"holding {MNIST_FILENAME}")
        return candidate
    for candidate in (_repository_adjacent_mnist(),
                      mnist_cache_dir(data_home) / MNIST_FILENAME):
        if candidate.is_file():
            return candidate
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_mnist_npz(path: Path) -> dict:
    """Read and validate the four arrays of an MNIST ``.npz``; ValueError if bad."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise ValueError(f"{path} is empty; expected an MNIST .npz file")
    if magic != b"PK\x03\x04":
        raise ValueError(f"{path} is not an .npz file (an .npz is a zip archive; this "
                         f"file starts with {magic!r})")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _MNIST_KEYS if k not in data.files]
            if missing:
                raise ValueError(f"{path} is not an MNIST file: keys {missing} are missing "
                                 f"(found {sorted(data.files)}; expected {list(_MNIST_KEYS)})")
            arrays = {k: data[k] for k in _MNIST_KEYS}
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable .npz file (truncated or corrupt?): "
                         f"{exc}") from exc
    except ValueError as exc:
        if "is not an MNIST file" in str(exc):
            raise
        raise ValueError(f"{path} is not a readable MNIST .npz file: {exc}") from exc
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[1:] != (28, 28)) or \
                (x.ndim == 2 and x.shape[1] != 784):
            raise ValueError(f"{path}: x_{part} has shape {x.shape}; expected "
                             "(n, 28, 28) or (n, 784)")
        if x.dtype != np.uint8:
            raise ValueError(f"{path}: x_{part} has dtype {x.dtype}; expected uint8 pixels")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{path}: y_{part} has shape {y.shape}; expected "
                             f"({x.shape[0]},) to match x_{part}")
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > 9)):
            raise ValueError(f"{path}: y_{part} must hold integer digits 0-9")
    return arrays


#: seconds a silent network may stall the MNIST download before it gives up
DOWNLOAD_TIMEOUT = 60.0


def _fetch_openml_mnist(data_home=None) -> dict:
    """Download MNIST with scikit-learn's OpenML fetcher, in the npz layout; a network
    failure (or DOWNLOAD_TIMEOUT seconds of silence) is an OSError that says what to do
    instead."""
    import socket
    from sklearn.datasets import fetch_openml
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)   # scikit-learn's urlopen sets none
    try:
        bunch = fetch_openml("mnist_784", version=1, as_frame=False, parser="liac-arff",
                             data_home=data_home)
    except OSError as exc:        # URLError, timeouts, DNS failures
        raise OSError(f"could not download MNIST from OpenML ({exc}); put mnist.npz "
                      f"somewhere and set ${DATA_ENV} to it (or pass path=)") from None
    finally:
        socket.setdefaulttimeout(previous)
    X = np.asarray(bunch.data).astype(np.uint8).reshape(-1, 28, 28)
    y = np.asarray(bunch.target).astype(np.int64).astype(np.uint8)
    # mnist_784 keeps the original order: 60,000 training images, then 10,000 test
    return {"x_train": X[:60000], "y_train": y[:60000],
            "x_test": X[60000:], "y_test": y[60000:]}


def _save_atomically(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_mnist(path=None, *, flatten=True, scale=False, verify=False, download=True,
               data_home=None):
    """Load MNIST as ``((X_train, y_train), (X_test, y_test))``, like Keras.

    Parameters
    ----------
    path : str or path-like, optional
        An ``.npz`` file (or a directory holding ``mnist.npz``) with keys
        ``x_train``, ``y_train``, ``x_test``, ``y_test``: images as uint8
        (n, 28, 28) or (n, 784), labels as integers 0-9.  When omitted, the file
        is looked for as described in :func:`find_mnist`, and downloaded from
        OpenML (``mnist_784``) as a last resort.
    flatten : bool, default=True
        Return images as rows of 784 pixels; False gives (n, 28, 28).
    scale : bool, default=False
        Return float32 pixels divided by 255 instead of uint8 0-255.
    verify : bool, default=False
        Check the file's sha256 against :data:`MNIST_SHA256` (the canonical file).
    download : bool, default=True
        Allow the OpenML download when no file is found.  With False a missing
        file raises FileNotFoundError.
    data_home : str or path-like, optional
        scikit-learn data home used for the download and its cache.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuple of tuples of ndarray
        60,000 training and 10,000 test images (uint8, or float32 when
        ``scale``) and labels (uint8).

    Raises
    ------
    FileNotFoundError
        A given path (or ``$FASTMLP_DATA``) does not exist, or no file was found
        and ``download`` is False.
    ValueError
        The file is truncated, not an ``.npz``, lacks a key, holds arrays of the
        wrong shape or type, or fails ``verify``.

    Examples
    --------
    >>> from fastmlp.datasets import load_mnist
    >>> (X_train, y_train), (X_test, y_test) = load_mnist(scale=True)  # doctest: +SKIP
    >>> X_train.shape, X_train.dtype                                   # doctest: +SKIP
    ((60000, 784), dtype('float32'))
    """
    file = find_mnist(path, data_home=data_home)
    if file is None:
        if not download:
            raise FileNotFoundError(
                f"no MNIST file found: pass path=, set ${DATA_ENV} to a file or a "
                f"directory holding {MNIST_FILENAME}, or allow download=True")
        arrays = _fetch_openml_mnist(data_home)
        _save_atomically(mnist_cache_dir(data_home) / MNIST_FILENAME, arrays)
    else:
        if verify:
            digest = _sha256(file)
            if digest != MNIST_SHA256:
                raise ValueError(f"{file}: sha256 {digest} does not match the canonical "
                                 f"MNIST file ({MNIST_SHA256})")
        arrays = _read_mnist_npz(file)

    def images(x):
        x = x.reshape(x.shape[0], 784) if flatten else x.reshape(x.shape[0], 28, 28)
        if scale:
            x = x.astype(np.float32)
            x /= np.float32(255.0)
        return x

    return ((images(arrays["x_train"]), arrays["y_train"].astype(np.uint8, copy=False)),
            (images(arrays["x_test"]), arrays["y_test"].astype(np.uint8, copy=False)))


# ---------------------------------------------------------------------- toy sets
def load_iris(*, return_class_names=False):
    """Fisher's iris: 150 flowers, 4 measurements, 3 species.

    Parameters
    ----------
    return_class_names : bool, default=False
        Also return the species names, indexed by label.

    Returns
    -------
    X : ndarray of shape (150, 4), float64
    y : ndarray of shape (150,), int64 labels 0-2
    class_names : ndarray of str, only when ``return_class_names``
    """
    from sklearn import datasets
    bunch = datasets.load_iris()
    out = (bunch.data, bunch.target.astype(np.int64))
    return out + (np.asarray(bunch.target_names),) if return_class_names else out


def load_digits(*, scale=False):
    """scikit-learn's 8x8 handwritten digits: 1,797 images, 10 classes.

    Parameters
    ----------
    scale : bool, default=False
        Divide pixels (0-16) by 16 to lie in [0, 1].

    Returns
    -------
    X : ndarray of shape (1797, 64), float64
    y : ndarray of shape (1797,), int64 labels 0-9
    """
    from sklearn import datasets
    bunch = datasets.load_digits()
    X = bunch.data / 16.0 if scale else bunch.data
    return X, bunch.target.astype(np.int64)


def load_breast_cancer():
    """Wisconsin breast cancer: 569 tumours, 30 features, 2 classes (1 = benign).

    Returns
    -------
    X : ndarray of shape (569, 30), float64
    y : ndarray of shape (569,), int64 labels 0-1
    """
    from sklearn import datasets
    bunch = datasets.load_breast_cancer()
    return bunch.data, bunch.target.astype(np.int64)


def make_circles(n_samples=500, *, noise=0.1, factor=0.8, random_state=0):
    """Two concentric noisy circles in 2-D (scikit-learn's ``make_circles``).

    Parameters
    ----------
    n_samples : int, default=500
    noise : float, default=0.1
        Standard deviation of the Gaussian noise added to the points.
    factor : float, default=0.8
        Radius of the inner circle relative to the outer one.
    random_state : int or None, default=0

    Returns
    -------
    X : ndarray of shape (n_samples, 2), float64
    y : ndarray of shape (n_samples,), int64 labels 0 (outer) and 1 (inner)
    """
    from sklearn import datasets
    X, y = datasets.make_circles(n_samples, noise=noise, factor=factor,
                                 random_state=random_state)
    return X, y.astype(np.int64)


def make_moons(n_samples=500, *, noise=0.1, random_state=0):
    """Two interleaving half circles in 2-D (scikit-learn's ``make_moons``).

    Parameters
    ----------
    n_samples : int, default=500
    noise : float, default=0.1
    random_state : int or None, default=0

    Returns
    -------
    X : ndarray of shape (n_samples, 2), float64
    y : ndarray of shape (n_samples,), int64 labels 0-1
    """
    from sklearn import datasets
    X, y = datasets.make_moons(n_samples, noise=noise, random_state=random_state)
    return X, y.astype(np.int64)


def _load_mnist_xy(**kwargs):
    (X_train, y_train), (X_test, y_test) = load_mnist(**kwargs)
    return np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test])


#: built-in data sets by name, each a callable returning ``(X, y)``
DATASETS = {
    "iris": load_iris,
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "circles": make_circles,
    "moons": make_moons,
    "mnist": _load_mnist_xy,
}


def load_dataset(name, **kwargs):
    """Load a built-in data set by name as ``(X, y)``.

    Parameters
    ----------
    name : {"iris", "digits", "breast_cancer", "circles", "moons", "mnist"}
        ``"mnist"`` returns the 60,000 training rows followed by the 10,000 test
        rows (see :func:`load_mnist` for the official split).
    **kwargs
        Passed to the loader (e.g. ``scale=True`` for digits or MNIST).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[key](**kwargs)
