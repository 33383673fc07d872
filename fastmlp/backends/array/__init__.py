"""Array-module backends: the NumPy reference (``device="numpy"``) and, when CuPy is
usable, the same code on the GPU (``device="cuda"``)."""

from .network import ArrayNetwork, NumpyNetwork  # noqa: F401


def __getattr__(name):
    if name == "CupyNetwork":
        from .cuda import CupyNetwork
        return CupyNetwork
    raise AttributeError(name)
