"""Shared fixtures: every backend test runs against each available backend."""
import numpy as np
import pytest

from fastmlp.backends import HAS_CUPY

#: the backends every engine test runs on; "cuda" only where a GPU exists
BACKENDS = ["cpu", "numpy"] + (["cuda"] if HAS_CUPY else [])


@pytest.fixture(params=BACKENDS)
def device(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
