"""Shared fixtures: every backend test runs against each available backend."""
import contextlib

import numpy as np
import pytest

from fastmlp.backends import HAS_CUPY
from fastmlp.datasets import find_mnist

#: the backends every engine test runs on; "cuda" only where a GPU exists
BACKENDS = ["cpu", "numpy"] + (["cuda"] if HAS_CUPY else [])


@contextlib.contextmanager
def engine_switch(setter, value):
    """Set an engine switch (one of the CPU engine's set_* functions) for the block, then
    restore it (each returns its previous value).  Imported by the tests that compare the
    engine with a switch on and off."""
    previous = setter(value)
    try:
        yield
    finally:
        setter(previous)


@pytest.fixture(params=BACKENDS)
def device(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def mnist_path():
    """The MNIST file the tests may read, or a skip that says why there is none (tests never
    download)."""
    try:
        path = find_mnist()
    except FileNotFoundError as exc:
        pytest.skip(f"no MNIST file: {exc}")
    if path is None:
        pytest.skip("no MNIST file available (set FASTMLP_DATA to mnist.npz); "
                    "tests never download")
    return path
