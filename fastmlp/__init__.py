"""fastmlp: fast multi-layer perceptrons behind a Keras-style Model and scikit-learn
drop-in estimators, on one engine (Cython/C on the CPU, CuPy on NVIDIA GPUs)."""

__version__ = "0.1.0"

from ._threads import get_num_threads, set_num_threads  # noqa: F401
from .backends import HAS_CUPY, make_network, resolve_device  # noqa: F401
from .backends.base import NetworkSpec, OptimizerSpec  # noqa: F401
# Keras-style front (issue 3)
from . import callbacks, losses, optimizers, regularizers  # noqa: F401,E402
from .layers import Dense  # noqa: F401,E402
from .model import (Model, Sequential, TrainingDivergedWarning,  # noqa: F401,E402
                    TrainingInterruptedWarning, load_model)


def __getattr__(name):
    # scikit-learn is imported only when the drop-ins are first used: `import fastmlp`
    # (and the `fastmlp` command) stays fast.
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import sklearn as _sk
        return getattr(_sk, name)
    if name == "datasets":
        import importlib
        return importlib.import_module(".datasets", __name__)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


__all__ = ["Model", "Sequential", "Dense", "load_model", "TrainingDivergedWarning",
           "TrainingInterruptedWarning", "MLPClassifier", "MLPRegressor",
           "NetworkSpec", "OptimizerSpec", "make_network", "resolve_device", "HAS_CUPY",
           "set_num_threads", "get_num_threads", "callbacks", "losses", "optimizers",
           "regularizers", "datasets"]
