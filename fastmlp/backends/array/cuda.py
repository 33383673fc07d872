"""``device="cuda"``: the array backend over CuPy.

The same code as the NumPy reference (:mod:`fastmlp.backends.array.network`) with
``xp = cupy``: data is moved to the GPU once per fit by the fronts
(``validate_training_data(..., xp=net.xp)``), GEMMs go to cuBLAS, shuffling uses the
shared row order uploaded once per epoch.  TF32 stays off unless the user enables it
in CuPy.

STATUS: written but NOT yet run on a GPU (none has been available to its developers so
far).  Fused RawKernels and CUDA-graph capture are not written yet.  Everything here is importable only when CuPy is usable
(``fastmlp.backends.HAS_CUPY``).
"""

from __future__ import annotations

import numpy as np

from .. import HAS_CUPY, CUPY_UNAVAILABLE_REASON
from .network import ArrayNetwork

if not HAS_CUPY:  # pragma: no cover - depends on the machine
    raise ImportError(f"device='cuda' is unavailable: {CUPY_UNAVAILABLE_REASON}")

import cupy  # noqa: E402


class CupyNetwork(ArrayNetwork):
    """The Network interface on an NVIDIA GPU through CuPy (``device="cuda"``)."""

    xp = cupy

    def get_params(self):
        return cupy.asnumpy(self._params).copy()

    def forward(self, X, batch_size=None):
        """Outputs as the same kind of array as ``X`` (NumPy in, NumPy out)."""
        host = isinstance(X, np.ndarray)
        out = super().forward(cupy.asarray(X), batch_size)
        return cupy.asnumpy(out) if host else out
