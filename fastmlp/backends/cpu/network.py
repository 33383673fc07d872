"""``CPUNetwork``: the Network interface over the Cython ``Engine``.

This layer only checks arguments, converts them once, and sets the BLAS thread count
around calls into the engine; all the work happens in ``_network.pyx`` without the GIL.

One engine has one set of workspaces, which every call into it uses (and may grow), so
the calls are serialised by a lock: one fitted model may be shared by threads (a web
server, joblib's threading backend) and each call sees the engine alone.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

from ..base import Network, OptimizerSpec, shuffled_order
from ._network import OPTIMIZER_CODES, SCHEDULE_CODES, Engine

_blas_libs = None


def _scipy_blas_controllers():
    """threadpoolctl controllers of the BLAS that scipy.linalg.cython_blas calls."""
    global _blas_libs
    if _blas_libs is None:
        try:
            import scipy.linalg  # noqa: F401  (loads scipy's BLAS)
            from threadpoolctl import ThreadpoolController
            libs = [lib for lib in ThreadpoolController().lib_controllers
                    if lib.user_api == "blas"]
            scipy_libs = [lib for lib in libs if "scipy" in (lib.filepath or "")]
            _blas_libs = scipy_libs or libs
        except Exception:  # threadpoolctl missing or failing: leave BLAS as it is
            _blas_libs = []
    return _blas_libs


@contextlib.contextmanager
def blas_threads(n_threads: int):
    """Run BLAS with ``n_threads`` threads inside the block, then restore it."""
    changed = []
    for lib in _scipy_blas_controllers():
        try:
            before = lib.num_threads
            if before != n_threads:
                lib.set_num_threads(n_threads)
                changed.append((lib, before))
        except Exception:
            pass
    try:
        yield
    finally:
        for lib, before in changed:
            lib.set_num_threads(before)


def _locked(method):
    """Run the method holding the network's lock (see the module docstring)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


class CPUNetwork(Network):
    """The fast CPU backend (``device="cpu"``); see :class:`fastmlp.backends.base.Network`."""

    def __init__(self, spec, optimizer=None, n_threads=1):
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        self._lock = threading.RLock()
        self._engine = Engine(spec.layer_sizes, spec.activations, spec.use_bias, spec.dropout,
                              spec.l2, spec.l1, spec.loss, float(spec.loss_scale),
                              spec.weight_normalization == "sum_weights",
                              spec.penalty_normalization == "per_sample", spec.dtype,
                              int(n_threads))
        self.optimizer = None
        self.diverged = False
        self._epoch_open = False
        self._last_state = (0, 0, 0.0, False, (0.0,) * 6)
        self.set_optimizer(optimizer if optimizer is not None else OptimizerSpec())

    # ---- parameters ------------------------------------------------------------------
    @property
    def params(self):
        return self._engine.params

    @_locked
    def set_params(self, flat):
        flat = np.asarray(flat)
        if flat.size != self.spec.n_params:
            raise ValueError(f"expected {self.spec.n_params} parameters; got {flat.size}")
        self._engine.params[...] = flat.ravel()

    @property
    def n_threads(self):
        return self._engine.n_threads

    @n_threads.setter
    def n_threads(self, value):
        from ..._threads import resolve_n_threads
        self._engine.n_threads = resolve_n_threads(value)

    @property
    def step(self):
        return self._engine.step

    @step.setter
    def step(self, value):
        self._engine.step = int(value)

    @property
    def workspace_nbytes(self):
        """Bytes of the reusable workspaces (activations, deltas, batch buffers)."""
        return self._engine.workspace_nbytes

    # ---- optimizer -----------------------------------------------------------------------
    @_locked
    def set_optimizer(self, optimizer, reset_state=True):
        if not isinstance(optimizer, OptimizerSpec):
            raise TypeError(f"optimizer must be an OptimizerSpec; got {type(optimizer)}")
        same = (self.optimizer is not None and optimizer.kind == self.optimizer.kind
                and optimizer.n_slots == self.optimizer.n_slots)
        o = optimizer
        self._engine.set_optimizer(
            OPTIMIZER_CODES[o.kind], o.learning_rate, o.momentum, o.nesterov, o.beta_1,
            o.beta_2, o.epsilon, o.epsilon_style == "pytorch", o.rho,
            o.clipnorm if o.clipnorm is not None else 0.0, SCHEDULE_CODES[o.schedule],
            o.decay_rate, o.decay_steps, o.staircase)
        self.optimizer = optimizer
        if reset_state or not same:
            fill = o.initial_accumulator if o.kind == "adagrad" else 0.0
            self._engine.set_slots([np.full(self.spec.n_params, fill, dtype=self.dtype)
                                    for _ in range(o.n_slots)])
            self._engine.step = 0

    def set_learning_rate(self, lr):
        self.optimizer = self.optimizer.with_changes(learning_rate=float(lr))
        self._engine.set_learning_rate(self.optimizer.learning_rate)

    @_locked
    def get_optimizer_state(self):
        return {"step": int(self._engine.step),
                "slots": [s.copy() for s in self._engine.slots]}

    @_locked
    def state_finite(self):
        # in place: no copies of the parameters and slots
        return bool(np.isfinite(self._engine.params).all()) and \
            all(bool(np.isfinite(slot).all()) for slot in self._engine.slots)

    @_locked
    def set_optimizer_state(self, state):
        slots = list(state["slots"])
        if len(slots) != len(self._engine.slots):
            raise ValueError(f"optimizer state has {len(slots)} buffers; "
                             f"{self.optimizer.kind} needs {len(self._engine.slots)}")
        for dst, src in zip(self._engine.slots, slots):
            src = np.asarray(src, dtype=self.dtype).ravel()
            if src.shape != dst.shape:
                raise ValueError("optimizer state buffer has the wrong length")
            dst[...] = src
        self._engine.step = int(state["step"])

    # ---- epochs ------------------------------------------------------------------------------
    def _split_targets(self, Y):
        """(Y or None, labels or None) as the engine wants them."""
        if Y is not None and Y.ndim == 1:
            return None, np.ascontiguousarray(Y, dtype=np.int64)
        return Y, None

    @_locked
    def start_epoch(self, X, Y, sample_weight=None, *, batch_size, shuffle=False, seed=0,
                    epoch=0, order=None, track_metrics=False):
        from .. import _check_engine_arrays
        X, Y, sw, batch_size, order = _check_engine_arrays(
            self.spec, X, Y, sample_weight, batch_size, order)
        if Y is None:
            raise ValueError("y is required for training")
        if order is None and shuffle:
            order = shuffled_order(X.shape[0], seed, epoch)
        if order is not None:
            order = np.ascontiguousarray(order, dtype=np.int64)
        Y, labels = self._split_targets(Y)
        self.diverged = False
        self._engine.start_epoch(X, Y, labels, sw, order, int(batch_size),
                                 int(seed) & 0xFFFFFFFFFFFFFFFF, bool(track_metrics))
        # a batch split over the threads calls BLAS single-threaded in each thread
        self._blas_threads = 1 if self._engine.will_shard(int(batch_size)) else \
            self._engine.n_threads
        self._epoch_open = True
        self._last_state = self._engine.epoch_state

    @_locked
    def run_steps(self, max_steps=None):
        if not self._epoch_open:
            raise RuntimeError("run_steps() called before start_epoch()")
        if max_steps is not None and max_steps < 0:
            raise ValueError("max_steps must be >= 0 or None")
        with blas_threads(self._blas_threads):
            steps = self._engine.run_steps(-1 if max_steps is None else int(max_steps))
        self._last_state = self._engine.epoch_state
        self.diverged = self._last_state[3]
        return steps

    @property
    def epoch_progress(self):
        done, n = self._last_state[:2]
        return done, n

    @_locked
    def finish_epoch(self):
        if not self._epoch_open:
            raise RuntimeError("finish_epoch() called before start_epoch()")
        self._last_state = self._engine.epoch_state
        self._engine.end_epoch()
        self._epoch_open = False
        done, n, loss_sum, diverged, _ = self._last_state
        self.diverged = diverged
        return float("nan") if diverged else loss_sum / max(done, 1)

    @property
    def epoch_metrics(self):
        done, n, loss_sum, diverged, m = self._last_state
        if done == 0 or m[3] == 0:
            return {}
        return {"accuracy": m[0] / m[3], "mae": m[1] / m[3], "mse": m[2] / m[3],
                "data_loss": m[4] / done, "penalty": m[5] / done}

    # ---- full batch --------------------------------------------------------------------------
    @_locked
    def forward(self, X, batch_size=None):
        from .. import _check_engine_arrays
        X = _check_engine_arrays(self.spec, X, None, None, 1, None)[0]
        out = np.empty((X.shape[0], self.spec.n_outputs), dtype=self.dtype)
        # rows split over the threads call BLAS single-threaded in each thread
        sharded = self._engine.will_shard_prediction(X.shape[0])
        with blas_threads(1 if sharded else self._engine.n_threads):
            self._engine.predict(X, out)
        return out

    @_locked
    def _full_batch(self, X, Y, sample_weight, want_grad, include_penalty):
        from .. import _check_engine_arrays
        X, Y, sw, _, _ = _check_engine_arrays(self.spec, X, Y, sample_weight, 1, None)
        if Y is None:
            raise ValueError("y is required")
        Y, labels = self._split_targets(Y)
        # rows split over the threads call BLAS single-threaded in each thread
        sharded = self._engine.will_shard_prediction(X.shape[0])
        with blas_threads(1 if sharded else self._engine.n_threads):
            return self._engine.full_batch(X, Y, labels, sw, want_grad, include_penalty)

    @_locked
    def loss_and_grad(self, X, Y, sample_weight=None):
        loss = self._full_batch(X, Y, sample_weight, True, True)
        return loss, self._engine.grads.copy()

    def compute_loss(self, X, Y, sample_weight=None, include_penalty=True):
        return self._full_batch(X, Y, sample_weight, False, include_penalty)
