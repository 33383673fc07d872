"""Device selection: "cpu" (the Cython engine, default), "numpy" (the pure-NumPy
reference), "cuda" (CuPy, when usable) and "auto" (cuda when usable, else cpu).

The environment variable ``FASTMLP_DEVICE`` replaces the *default* device (an explicit
``device=`` argument always wins).  ``FASTMLP_DISABLE_CUPY=1`` keeps CuPy from being
imported at all.  Whether CuPy is usable is decided once, at import, here.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .base import (ACTIVATIONS, LOSSES, OPTIMIZERS, Network, NetworkSpec,  # noqa: F401
                   OptimizerSpec, canonical_activation, shuffled_order)
from .._threads import resolve_n_threads

DEVICES = ("cpu", "numpy", "cuda", "auto")


def _probe_cupy():
    """Return (cupy module or None, reason string when unusable)."""
    if os.environ.get("FASTMLP_DISABLE_CUPY", "").strip() not in ("", "0"):
        return None, "disabled by FASTMLP_DISABLE_CUPY"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return None, ("CuPy is not installed (pip install cupy-cuda12x, or cupy-cuda13x "
                      "for CUDA 13)")
    except Exception as exc:  # installed but broken: warn, never crash
        warnings.warn(f"CuPy is installed but failed to import ({exc!r}); "
                      "device='cuda' is unavailable", RuntimeWarning, stacklevel=2)
        return None, f"CuPy failed to import: {exc!r}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy found no usable CUDA device ({exc!r})"
    if n < 1:
        return None, "CuPy found no CUDA device"
    return cupy, ""


cupy, CUPY_UNAVAILABLE_REASON = _probe_cupy()
HAS_CUPY = cupy is not None


def default_device() -> str:
    """The device that ``device=None`` picks: ``$FASTMLP_DEVICE`` when set, else "cpu"."""
    dev = os.environ.get("FASTMLP_DEVICE", "").strip().lower()
    return dev or "cpu"


def resolve_device(device=None) -> str:
    """Map a user's ``device`` argument to a concrete backend name.

    Raises ValueError for an unknown name and RuntimeError (with the reason) for
    ``"cuda"`` when no usable GPU exists.
    """
    if device is None:
        device = default_device()
    if not isinstance(device, str):
        raise TypeError(f"device must be a string, one of {DEVICES}; got {device!r}")
    dev = device.strip().lower()
    if dev not in DEVICES:
        raise ValueError(f"device={device!r} is not known; expected one of {DEVICES}")
    if dev == "auto":
        return "cuda" if HAS_CUPY else "cpu"
    if dev == "cuda" and not HAS_CUPY:
        raise RuntimeError(f"device='cuda' is unavailable: {CUPY_UNAVAILABLE_REASON}")
    return dev


def network_class(device: str):
    """The Network class of a resolved device name."""
    if device == "cpu":
        from .cpu import CPUNetwork
        return CPUNetwork
    if device == "numpy":
        from .array import NumpyNetwork
        return NumpyNetwork
    if device == "cuda":
        from .array import CupyNetwork
        return CupyNetwork
    raise ValueError(f"unknown resolved device {device!r}")


def make_network(spec: NetworkSpec, optimizer: OptimizerSpec = None, *, device=None,
                 n_threads=None) -> Network:
    """Build the Network for ``spec`` on ``device`` with ``n_threads`` threads."""
    dev = resolve_device(device)
    return network_class(dev)(spec, optimizer, n_threads=resolve_n_threads(n_threads))


def validate_training_data(spec: NetworkSpec, X, Y=None, sample_weight=None, *,
                           copy=False, xp=np, check_finite=True):
    """Check and convert arrays once per fit, before the engine sees them.

    Returns ``(X, Y, sample_weight)``: ``X`` C-contiguous in the network dtype (no
    copy when it already is, unless ``copy``), ``Y`` as (n, n_outputs) in the dtype,
    or intp labels (n,) for categorical cross-entropy with 1-D integer ``Y``, and
    ``sample_weight`` as a (n,) array in the dtype or None.  Raises ValueError or
    TypeError naming the argument for every problem.  ``check_finite=False`` skips the
    NaN/inf scan of X and Y for callers that have already made it (scikit-learn's
    ``validate_data``): a pass over the data saved per fit.
    """
    dtype = np.dtype(spec.dtype)
    X = _as_float_matrix(X, "X", dtype, xp, copy, check_finite)
    n = X.shape[0]
    if X.shape[1] != spec.n_features:
        raise ValueError(f"X has {X.shape[1]} features per row; the network expects "
                         f"{spec.n_features}")
    if Y is not None:
        Y = _as_targets(spec, Y, n, dtype, xp, check_finite)
    if sample_weight is not None:
        sw = xp.asarray(sample_weight)
        if sw.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must be numeric; got dtype {sw.dtype}")
        sw = xp.ascontiguousarray(sw, dtype=dtype)
        if sw.ndim != 1 or sw.shape[0] != n:
            raise ValueError(f"sample_weight has shape {sw.shape}; expected ({n},)")
        _check_weight_values(sw, xp)
        tiny = float(np.finfo(dtype).tiny)
        if bool(((sw > 0) & (sw < tiny)).any()):
            raise ValueError(f"sample_weight has values below the smallest normal "
                             f"{dtype.name} number ({tiny:.3g}) but above 0: the loss's "
                             "normalisation by their sum would lose them or overflow; scale "
                             "the weights up (only their ratios matter)")
        if not bool((sw > 0).any()):
            if bool((xp.asarray(sample_weight) > 0).any()):
                raise ValueError(f"sample_weight is positive but below the smallest "
                                 f"{dtype.name} number for every sample (it rounds to 0); "
                                 "scale the weights up")
            raise ValueError("sample_weight is zero for every sample")
        sample_weight = sw
    return X, Y, sample_weight


def _as_float_matrix(X, name, dtype, xp, copy, check_finite=True):
    if hasattr(X, "toarray") and not isinstance(X, np.ndarray):  # scipy.sparse
        X = X.toarray()
    X = xp.asarray(X)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples; at least 1 is required")
    if X.dtype == np.float16:
        X = X.astype(np.float32)  # float16 is widened, never computed in
    given = X
    with np.errstate(over="ignore"):    # reported below, by name
        X = xp.array(X, dtype=dtype, order="C", copy=True) if copy else \
            xp.ascontiguousarray(X, dtype=dtype)
    if check_finite and not _all_finite(X, xp):
        _raise_nonfinite(name, given, dtype, xp)
    return X


def _raise_nonfinite(name, given, dtype, xp):
    """The error for data that is not finite in ``dtype``: NaN/inf, or finite values
    that overflow it (float64 data for a float32 network)."""
    if given.dtype != dtype and _all_finite(given, xp):
        raise ValueError(f"{name} has values too large for {np.dtype(dtype).name} "
                         f"(|value| > {float(np.finfo(dtype).max):.3g}); scale the data or "
                         "train in float64")
    raise ValueError(f"{name} contains NaN or infinity")


def _check_weight_values(sample_weight, xp=np):
    """ValueError unless every sample weight is finite and >= 0 (validate_training_data;
    the scikit-learn front checks before its class weights multiply in)."""
    if not bool(xp.isfinite(sample_weight).all()) or bool((sample_weight < 0).any()):
        raise ValueError("sample_weight must be finite and >= 0")


def _all_finite(A, xp=np, chunk_rows=4096):
    """True when every element of A is finite, without an A-sized temporary: a sum in
    float64 is finite exactly when no element is NaN/inf (barring overflow of huge finite
    values, which the chunked element-wise check then settles)."""
    with np.errstate(over="ignore", invalid="ignore"):   # huge finite values: settled below
        if bool(xp.isfinite(A.sum(dtype=xp.float64))):
            return True
    flat = A.reshape(A.shape[0], -1) if A.ndim > 1 else A.reshape(-1, 1)
    return all(bool(xp.isfinite(flat[lo:lo + chunk_rows]).all())
               for lo in range(0, flat.shape[0], chunk_rows))


def _as_targets(spec, Y, n, dtype, xp, check_finite=True):
    Y = xp.asarray(Y)
    if Y.dtype.kind not in "biuf":
        raise TypeError(f"y must hold numbers (encode labels first); got dtype {Y.dtype}")
    if Y.shape[0:1] != (n,):
        raise ValueError(f"y has {Y.shape[0] if Y.ndim else 0} rows; X has {n}")
    if spec.loss == "categorical_crossentropy" and Y.ndim == 1:
        if Y.dtype.kind == "f":
            if not bool(xp.all(Y == xp.floor(Y))):
                raise ValueError("class labels in y must be whole numbers")
        Y = xp.ascontiguousarray(Y, dtype=np.intp)
        if int(Y.min()) < 0 or int(Y.max()) >= spec.n_outputs:
            raise ValueError(f"class labels in y must lie in [0, {spec.n_outputs - 1}]; "
                             f"got [{int(Y.min())}, {int(Y.max())}]")
        return Y
    if Y.ndim == 1 and spec.n_outputs == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2 or Y.shape[1] != spec.n_outputs:
        raise ValueError(f"y has shape {Y.shape}; expected ({n}, {spec.n_outputs})")
    given = Y
    with np.errstate(over="ignore"):    # reported below, by name
        Y = xp.ascontiguousarray(Y, dtype=dtype)
    narrowed = given.dtype.kind == "f" and given.dtype.itemsize > np.dtype(dtype).itemsize
    if (check_finite or narrowed) and not _all_finite(Y, xp):
        _raise_nonfinite("y", given, dtype, xp)
    if spec.loss == "poisson" and bool((Y < 0).any()):
        raise ValueError("poisson loss needs y >= 0")
    if spec.loss in ("binary_crossentropy", "categorical_crossentropy") and \
            bool(((Y < 0) | (Y > 1)).any()):
        raise ValueError(f"{spec.loss} needs targets in [0, 1]")
    return Y


def _check_engine_arrays(spec, X, Y, sample_weight, batch_size, order, *, xp=np):
    """Cheap checks every backend runs before touching memory (no O(n*d) scans):
    shapes, dtypes, contiguity, label and index ranges.  Data that fails them would
    otherwise read out of bounds.  Full validation (NaN, conversion) is
    :func:`validate_training_data`, run once per fit by the fronts."""
    dtype = np.dtype(spec.dtype)
    if not hasattr(X, "dtype") or X.ndim != 2:
        raise ValueError(f"X must be a 2-D array; got {type(X).__name__} "
                         f"{getattr(X, 'shape', '')}")
    if X.dtype != dtype or not X.flags.c_contiguous:
        X = xp.ascontiguousarray(X, dtype=dtype)
    n = X.shape[0]
    if n == 0:
        raise ValueError("X has 0 samples; at least 1 is required")
    if X.shape[1] != spec.n_features:
        raise ValueError(f"X has {X.shape[1]} features per row; the network expects "
                         f"{spec.n_features}")
    if Y is not None:
        if Y.ndim == 1 and spec.loss == "categorical_crossentropy":
            if Y.dtype.kind not in "iu":
                raise TypeError("integer class labels are required for 1-D y")
            Y = xp.ascontiguousarray(Y, dtype=np.intp)
            if Y.shape[0] != n:
                raise ValueError(f"y has {Y.shape[0]} rows; X has {n}")
            if int(Y.min()) < 0 or int(Y.max()) >= spec.n_outputs:
                raise ValueError(f"class labels must lie in [0, {spec.n_outputs - 1}]")
        else:
            if Y.ndim == 1 and spec.n_outputs == 1:
                Y = Y.reshape(-1, 1)
            if Y.shape != (n, spec.n_outputs):
                raise ValueError(f"y has shape {Y.shape}; expected ({n}, {spec.n_outputs})")
            if Y.dtype != dtype or not Y.flags.c_contiguous:
                Y = xp.ascontiguousarray(Y, dtype=dtype)
    if sample_weight is not None:
        if sample_weight.shape != (n,):
            raise ValueError(f"sample_weight has shape {sample_weight.shape}; expected ({n},)")
        if sample_weight.dtype != dtype or not sample_weight.flags.c_contiguous:
            sample_weight = xp.ascontiguousarray(sample_weight, dtype=dtype)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int; got {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    batch_size = int(min(batch_size, n))
    if order is not None:
        order = xp.ascontiguousarray(order, dtype=np.intp)
        if order.ndim != 1 or order.shape[0] != n:
            raise ValueError(f"order must be 1-D of length {n}")
        if int(order.min()) < 0 or int(order.max()) >= n:
            raise ValueError(f"order holds indices outside [0, {n - 1}]")
    return X, Y, sample_weight, batch_size, order
