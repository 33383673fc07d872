"""The fast CPU engine: Cython + C kernels + BLAS, a whole epoch without the GIL."""

from ._network import (direct_kernels_available, openmp_enabled,  # noqa: F401
                       simd_build, simd_level)
from .network import CPUNetwork, blas_threads  # noqa: F401
