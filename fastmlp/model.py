"""The Keras-style front: ``Model`` (alias ``Sequential``) with ``add``, ``compile``,
``fit``, ``evaluate``, ``predict``, ``summary``, weights access and save/load.

A Model is a list of layer descriptions.  When the input width is known it builds
ONE engine network (:func:`fastmlp.backends.make_network`) and from then on every
number lives in that network: ``fit`` drives it epoch by epoch -- in slices of
minibatches so that a progress bar can update and Ctrl-C can stop between slices --
and never runs Python per batch.

Keras conventions: losses are averaged over the rows of a batch (sample weights
multiply rows, the divisor is the batch size), regularisation penalties are added
per batch undivided, ``validation_split`` takes the last fraction of the data before
shuffling, ``class_weight`` multiplies sample weights.

Saved models are ONE ``.npz`` file: a JSON config, the flat weights and the
optimizer state, plus a SHA-256 digest; loading never needs pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import stat
import sys
import tempfile
import threading
import time
import warnings
import zipfile
import zlib

import numpy as np

from . import losses as _losses
from . import optimizers as _optimizers
from .backends import make_network, resolve_device, validate_training_data
from .backends.base import NetworkSpec, OptimizerSpec
from .callbacks import (CallbackList, EpochLogger, History, ProgressBar, _check_callbacks,
                        format_logs)
from .initializers import init_params
from .layers import Layer, _check_int
from .layers import get as _get_layer_class

__all__ = ["Model", "Sequential", "load_model", "TrainingDivergedWarning",
           "TrainingInterruptedWarning"]

FILE_FORMAT = "fastmlp.model"
FILE_FORMAT_VERSION = 1
_CONFIG_KEY = "fastmlp_config"
_DIGEST_KEY = "fastmlp_sha256"

#: seconds an engine slice should last: the progress bar updates about this often
SLICE_SECONDS_DISPLAY = 0.25
#: slice length when nothing is displayed (Ctrl-C still answers within this)
SLICE_SECONDS_SILENT = 0.5
#: rows per chunk when a loss is computed over a whole data set
EVAL_CHUNK_ROWS = 8192


def _to_numpy(a):
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):        # CuPy array
        return a.get()
    return np.asarray(a)


def _check_verbose(verbose):
    if isinstance(verbose, str):
        if verbose != "auto":
            raise ValueError(f"verbose={verbose!r}: expected 'auto', 0, 1 or 2")
        try:
            return 1 if sys.stdout.isatty() else 2
        except (AttributeError, ValueError):
            return 2
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose={verbose!r}: expected 'auto', 0, 1 or 2")
    return int(verbose)


def _as_matrix(x, name):
    """Light conversion of an input to a 2-D NumPy array (full checks come later)."""
    if x is None:
        raise ValueError(f"{name} is required")
    if hasattr(x, "toarray") and not isinstance(x, np.ndarray):   # scipy.sparse
        x = x.toarray()
    try:
        x = np.asarray(x)
    except ValueError as exc:       # ragged nested lists
        raise ValueError(f"{name} must be a 2-D array or a list of equally long rows; "
                         f"numpy could not convert it: {exc}") from None
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got dtype {x.dtype}")
    if x.ndim != 2:
        hint = " (flatten images first: x.reshape(len(x), -1))" if x.ndim > 2 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape "
                         f"{x.shape}{hint}")
    return x


class _SliceSizer:
    """Chooses how many minibatch steps one engine slice runs so that a slice lasts
    about ``target`` seconds (the slice overhead then stays far below 1%)."""

    def __init__(self, target):
        self.target = float(target)
        self.steps = 1

    def record(self, steps_ran, seconds):
        if steps_ran <= 0:
            return
        per_step = seconds / steps_ran
        want = self.steps * 8 if per_step <= 0 else int(self.target / per_step)
        self.steps = max(1, min(want, self.steps * 8))


class TrainingDivergedWarning(RuntimeWarning):
    """:meth:`Model.fit` stopped because the loss, the weights or the optimizer state
    became NaN or infinite (the weights are restored to the last sound ones)."""


class TrainingInterruptedWarning(UserWarning):
    """:meth:`Model.fit` stopped early because of Ctrl-C (the model keeps the weights
    reached so far)."""


class _SigintCatcher:
    """During fit: the first Ctrl-C only sets a flag (fit stops after the current
    engine slice); a second one interrupts at once."""

    def __init__(self):
        self.caught = False
        self._old = None

    def __enter__(self):
        self.caught = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            try:
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    self._old = signal.signal(signal.SIGINT, self._handle)
            except (ValueError, OSError):   # not the main interpreter thread
                self._old = None
        return self

    def _handle(self, signum, frame):
        if self.caught:
            raise KeyboardInterrupt
        self.caught = True
        try:
            sys.stderr.write("\nfastmlp: interrupt received; stopping after the current "
                             "slice (press Ctrl-C again to abort at once)\n")
        except Exception:  # pragma: no cover - stderr closed
            pass

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        return False


class Model:
    """A feed-forward network of Dense layers with Keras' API.

    Parameters
    ----------
    layers : list of Dense, optional
        Layers in order (more can be added with :meth:`add`).
    seed : int, optional
        Fixes the initial weights, the shuffling and dropout: same seed, device and
        thread count give identical results.  None draws a seed.
    dtype : {"float32", "float64"}, default="float32"
    device : {"cpu", "numpy", "cuda", "auto"} or None, default="cpu"
        Where the engine runs ("auto": the GPU when CuPy can use one, else "cpu");
        None picks the default device ("cpu", or ``$FASTMLP_DEVICE`` when set).
    n_threads : int, optional
        Threads of the CPU engine (None: ``fastmlp.set_num_threads``' value when set,
        else ``$OMP_NUM_THREADS``, else the CPUs this process may use).
    name : str, optional
        Shown by :meth:`summary` (default "sequential").

    Attributes
    ----------
    layers : list of Layer
    optimizer : fastmlp.optimizers.Optimizer or None
        Set by :meth:`compile`; ``model.optimizer.learning_rate`` reads and sets the
        current rate.
    history : fastmlp.callbacks.History or None
        Of the last :meth:`fit`.
    stop_training : bool
        Set it (e.g. from a callback) to stop fit after the current epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import Model, Dense
    >>> model = Model([Dense(10, "relu", input_dim=4), Dense(3, "softmax")], seed=0,
    ...               device="numpy")
    >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> X = np.random.default_rng(0).normal(size=(60, 4)); y = (X[:, 0] > 0).astype(int)
    >>> history = model.fit(X, y, epochs=3, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'loss', 'lr']
    """

    def __init__(self, layers=None, *, seed=None, dtype="float32", device="cpu",
                 n_threads=None, name=None):
        if seed is not None:
            seed = _check_int(seed, "seed", 0)
            if seed >= 2 ** 32:
                raise ValueError(f"seed={seed} must be < 2**32")
        self.seed = seed
        self._seed = seed if seed is not None else \
            int(np.random.SeedSequence().generate_state(1)[0])
        if dtype is None:               # np.dtype(None) would be float64
            raise TypeError("dtype=None: expected 'float32' or 'float64'")
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype={dtype!r}: expected 'float32' or 'float64'") from None
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype={dtype!r}: expected 'float32' or 'float64'")
        self.dtype = str(dt)
        self._network = None
        self.device = device            # validated by the properties below
        self.n_threads = n_threads
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string; got {name!r}")
        self.name = name or "sequential"
        self._layers = []
        self._input_dim = None
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self._loss_info = None
        self._metric_kinds = []
        self._epochs_run = 0
        self.stop_training = False
        self.history = None
        if layers is not None:
            if isinstance(layers, Layer):
                layers = [layers]
            for layer in layers:
                self.add(layer)

    # ---- structure ---------------------------------------------------------------------
    @property
    def layers(self):
        """The layers, in order (a copy of the list)."""
        return list(self._layers)

    @property
    def built(self) -> bool:
        """Whether the engine network (and so the weights) exists."""
        return self._network is not None

    @property
    def network(self):
        """The engine :class:`~fastmlp.backends.base.Network` (None before build)."""
        return self._network

    @property
    def input_dim(self):
        """Width of the input (None until known)."""
        if self._input_dim is not None:
            return self._input_dim
        return self._layers[0].input_dim if self._layers else None

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile` was called."""
        return self._loss_info is not None

    def add(self, layer):
        """Append a layer.

        Parameters
        ----------
        layer : Dense
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"Model.add expects a fastmlp layer such as Dense(...); got "
                            f"{layer!r}")
        if self.built:
            raise ValueError("cannot add layers to a built model (its weights exist); build a "
                             "new Model with all the layers")
        if layer._model is not None:
            raise ValueError(f"layer {layer.name!r} already belongs to a model; create a new "
                             "layer (layers cannot be shared)")
        if self._layers and layer.input_dim is not None and \
                layer.input_dim != self._layers[-1].units:
            raise ValueError(f"layer {layer!r} has input_dim={layer.input_dim} but the previous "
                             f"layer has {self._layers[-1].units} units")
        names = {l.name for l in self._layers}
        if layer.name is None:
            base = type(layer).__name__.lower()
            i, name = 0, base
            while name in names:
                i += 1
                name = f"{base}_{i}"
            layer.name = name
        elif layer.name in names:
            raise ValueError(f"a layer named {layer.name!r} is already in the model; names "
                             "must be unique")
        layer._model = self
        layer._index = len(self._layers)
        self._layers.append(layer)

    def _make_spec(self, input_dim, info, metrics=None):
        if not self._layers:
            raise ValueError("the model has no layers; add Dense layers first")
        last = self._layers[-1]
        metrics = self.metrics if metrics is None else metrics
        binary = [m for m in metrics if m.strip().lower() == "binary_accuracy"]
        if binary and last.units > 1:
            raise ValueError(
                f"metric {binary[0]!r} with {last.units} outputs would threshold each output "
                "at 0.5, which fastmlp does not compute; use it with one sigmoid output, or "
                "'accuracy' (the argmax match, Keras 3's rule for several outputs)")
        acts = [l.activation for l in self._layers]
        if info is None:
            loss, scale = "squared_error", 1.0
        else:
            need = info.output_activation
            if need is not None and acts[-1] != need:
                raise ValueError(
                    f"loss={self.loss!r} needs a {need!r} activation on the last layer; the "
                    f"last layer {last.name!r} has activation {acts[-1]!r} (e.g. use "
                    f"Dense({last.units}, activation={need!r}))")
            if info.engine_loss == "categorical_crossentropy" and last.units < 2:
                raise ValueError(f"loss={self.loss!r} needs at least 2 output units; the last "
                                 f"layer {last.name!r} has {last.units} (for two classes use 1 "
                                 "sigmoid unit with 'binary_crossentropy')")
            loss, scale = info.engine_loss, info.loss_scale(last.units)
        regs = [l.kernel_regularizer for l in self._layers]
        try:
            return NetworkSpec(
                layer_sizes=(int(input_dim),) + tuple(l.units for l in self._layers),
                activations=acts, loss=loss, dtype=self.dtype,
                use_bias=[l.use_bias for l in self._layers],
                dropout=[l.dropout for l in self._layers],
                l2=[0.0 if r is None else r.l2 for r in regs],
                l1=[0.0 if r is None else r.l1 for r in regs],
                loss_scale=scale, weight_normalization="n_samples",
                penalty_normalization="none")
        except ValueError as exc:
            if "dropout on the output layer" in str(exc):
                raise ValueError(f"the last layer {last.name!r} has dropout={last.dropout:g}; "
                                 "dropout is only supported on hidden layers") from None
            raise

    def _optimizer_spec(self, epoch=0):
        if self.optimizer is None:
            return OptimizerSpec()
        return self.optimizer.to_spec(epoch)

    def build(self, input_dim=None):
        """Create the weights for inputs of width ``input_dim``.

        Parameters
        ----------
        input_dim : int or tuple, optional
            Width of the input (``(None, d)`` and ``(d,)`` are accepted too); by
            default the first layer's ``input_dim``.  Building an already built model
            with the same width does nothing.
        """
        if isinstance(input_dim, (tuple, list)):
            if not input_dim:
                raise ValueError("build(input_dim): an empty shape has no input width; give "
                                 "an int d or a shape (None, d)")
            input_dim = input_dim[-1]
        if input_dim is None:
            input_dim = self.input_dim
        if input_dim is None:
            raise ValueError("the input width is unknown: give input_dim to the first Dense "
                             "layer, call build(input_dim), or fit once")
        input_dim = self._check_input_width(input_dim)
        if self.built:
            if input_dim != self._input_dim:
                raise ValueError(f"the model is built for inputs of width {self._input_dim}; "
                                 f"got {input_dim}")
            return
        spec = self._make_spec(input_dim, self._loss_info)
        net = make_network(spec, self._optimizer_spec(), device=self.device,
                           n_threads=self.n_threads)
        net.set_params(init_params(spec, [l.kernel_initializer for l in self._layers],
                                   seed=self._seed))
        self._attach(net, input_dim)

    @property
    def device(self):
        """Where the engine runs (see the class docstring).  Setting it on a built model
        moves the model there at once, with its weights and optimizer state."""
        return self._device

    @device.setter
    def device(self, value):
        self._check_not_in_epoch("device")
        if value is not None:
            resolve_device(value)       # validates the name now (ValueError/RuntimeError)
        if getattr(self, "_fit_phase", None) is not None:    # (a fit has a built model)
            moves = {resolve_device(self._device), resolve_device(value)}
            if len(moves) == 2 and "cuda" in moves:
                raise RuntimeError("device cannot move between the GPU and the CPU during "
                                   "fit (the data of the running fit lives on one of them); "
                                   "change it between fits")
        self._device = value
        self._move_network()

    @property
    def n_threads(self):
        """Threads of the CPU engine (see the class docstring).  Setting it on a built
        model applies at once, keeping the weights and optimizer state."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value):
        self._check_not_in_epoch("n_threads")
        if value is not None:
            from ._threads import resolve_n_threads
            resolve_n_threads(value)    # validates now
            value = int(value)          # a NumPy integer too: it goes into saved JSON
        self._n_threads = value
        self._move_network()

    def _check_not_in_epoch(self, what):
        """device and n_threads may change between epochs of a fit (from on_epoch_end,
        say: the next epoch runs on the new engine), not inside one."""
        if getattr(self, "_fit_phase", None) == "epoch":
            raise RuntimeError(f"{what} cannot change in the middle of an epoch (from a "
                               "callback's on_epoch_progress); change it in on_epoch_end "
                               "or between fits")

    def _move_network(self):
        """Rebuild a built model's engine for the current device and thread count."""
        old = getattr(self, "_network", None)
        if old is None:
            return
        net = make_network(old.spec, old.optimizer, device=self.device,
                           n_threads=self.n_threads)
        net.set_params(_to_numpy(old.get_params()))
        net.set_optimizer_state(old.get_optimizer_state())
        self._attach(net, self._input_dim)

    def _check_input_width(self, input_dim):
        """``input_dim`` as an int >= 1 that agrees with the first layer's, if given."""
        input_dim = _check_int(input_dim, "input_dim", 1)
        if self._layers and self._layers[0].input_dim not in (None, input_dim):
            raise ValueError(f"input_dim={input_dim} disagrees with the first layer's "
                             f"input_dim={self._layers[0].input_dim}")
        return input_dim

    def _attach(self, net, input_dim):
        self._network = net
        self._input_dim = int(input_dim)
        if self.optimizer is not None:
            self.optimizer._bind(net)

    def _ensure_built(self, input_dim=None):
        if not self.built:
            self.build(input_dim)
        elif input_dim is not None and input_dim != self._input_dim:
            raise ValueError(f"x has {input_dim} features per row; the model expects "
                             f"{self._input_dim}")

    def _require_built(self, what):
        if not self.built:
            if self.input_dim is not None:
                self.build()
            else:
                raise ValueError(f"{what} needs a built model: give input_dim to the first "
                                 "Dense layer, call build(input_dim), or fit first")
        return self._network

    # ---- compile -----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose the optimizer, loss and metrics.

        Parameters
        ----------
        optimizer : str or fastmlp.optimizers.Optimizer, default="rmsprop"
            "sgd", "adam", "rmsprop", "adagrad" (Keras defaults) or an instance.
        loss : str
            One of :data:`fastmlp.losses.LOSSES`.
        metrics : list of str, optional
            Names from :data:`fastmlp.losses.METRICS` (e.g. ``["accuracy"]``).
            Accuracy is the 0.5-threshold match for one output and the argmax match for
            several (Keras 3's rule); ``"binary_accuracy"`` needs one output.

        Compiling a built model keeps its weights and starts a fresh optimizer state.
        An optimizer instance belongs to the one model compiled with it.  Not during
        :meth:`fit` (from a callback): RuntimeError.
        """
        if getattr(self, "_fit_phase", None) is not None:
            raise RuntimeError("compile() was called during fit() (from a callback?); the "
                               "data of a running fit is prepared for its loss: compile "
                               "before or after fit")
        if loss is None:
            raise ValueError(f"compile() needs a loss; one of {_losses.LOSSES}")
        info = _losses.get(loss)
        opt = _optimizers.get(optimizer)
        opt._check_free_for(self)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str):
            metrics = [metrics]
        elif isinstance(metrics, dict):
            raise TypeError("metrics must be a list of names such as ['accuracy']")
        metrics = list(metrics)
        kinds = [_losses.metric_kind(m) for m in metrics]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics={metrics!r} lists a name twice")
        old = (self.loss, self._loss_info)
        self.loss, self._loss_info = loss, info
        new_net = None
        try:
            if self._layers:    # checks the output layer (and the metrics) now
                self._make_spec(self.input_dim or 1, info, metrics)
            if self.built:
                new_net = make_network(self._make_spec(self._input_dim, info, metrics),
                                       opt.to_spec(0),
                                       device=self.device, n_threads=self.n_threads)
                new_net.set_params(self._network.get_params())
        except Exception:
            self.loss, self._loss_info = old
            raise
        if self.optimizer is not None and self.optimizer is not opt:
            self.optimizer._bind(None)
            self.optimizer._claim(None)
        self.optimizer = opt
        opt._claim(self)
        if new_net is not None:
            self._attach(new_net, self._input_dim)
        self.metrics = metrics
        self._metric_kinds = kinds

    def _require_compiled(self, what):
        if not self.compiled:
            raise ValueError(f"{what} needs a compiled model: call model.compile(optimizer, "
                             "loss, metrics) first")

    # ---- data preparation ------------------------------------------------------------
    def _prepare_xy(self, x, y, sample_weight, what):
        """Light conversion; returns (X, Y, sw) as NumPy arrays before validation."""
        X = _as_matrix(x, f"{what}x" if what else "x")
        if not self._layers:
            raise ValueError("the model has no layers; add Dense layers first")
        if y is None:
            raise ValueError(f"{what}y is required")
        Y = _losses.prepare_targets(self._loss_info, y, self._layers[-1].units,
                                    name=f"{what}y")
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"{what}x has {X.shape[0]} rows but {what}y has {Y.shape[0]}")
        sw = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight)
            if sw.ndim != 1 or sw.shape[0] != X.shape[0]:
                raise ValueError(f"{what}sample_weight has shape {sw.shape}; expected "
                                 f"({X.shape[0]},)")
        return X, Y, sw

    def _validate(self, X, Y, sw, what):
        try:
            if self.built:
                self._ensure_built(X.shape[1])
                return validate_training_data(self._network.spec, X, Y, sw)
            # checked against the spec this data would build, and built only once the data
            # passed (a rejected fit must not fix the model's input width)
            width = self._check_input_width(X.shape[1])
            checked = validate_training_data(self._make_spec(width, self._loss_info), X, Y, sw)
            self.build(width)
            return checked
        except (ValueError, TypeError) as exc:
            if what:
                raise type(exc)(f"{what.rstrip()}: {exc}") from None
            raise

    def _on_device(self, *arrays):
        """Move validated arrays to the engine's memory once per fit (GPU engines)."""
        xp = getattr(self._network, "xp", np)
        if xp is np:
            return arrays
        return tuple(None if a is None else xp.asarray(a) for a in arrays)

    @staticmethod
    def _class_weighted(class_weight, Y, sw):
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight must be a dict {{class_index: weight}}; got "
                            f"{class_weight!r}")
        if not class_weight:
            return sw
        table = {}
        for k, v in class_weight.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise ValueError(f"class_weight keys must be class indices (ints >= 0); got "
                                 f"{k!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not (float(v) >= 0) or not math.isfinite(float(v)):
                raise ValueError(f"class_weight[{k}]={v!r} must be a finite number >= 0")
            table[int(k)] = float(v)
        classes = _losses.class_indices(Y)
        # by the classes present (a table indexed by label would be as long as the largest
        # label, and a stray huge label is only rejected later, by validation)
        present, where = np.unique(classes, return_inverse=True)
        cw = np.array([table.get(int(c), 1.0) for c in present])[where.ravel()]
        return cw if sw is None else cw * np.asarray(sw, dtype=np.float64)

    # ---- training ------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0):
        """Train for ``epochs - initial_epoch`` epochs.

        Parameters
        ----------
        x : array-like (n_samples, n_features)
        y : array-like
            Targets in the form the loss expects (see :mod:`fastmlp.losses`).
        batch_size : int, default=32
        epochs : int, default=1
            Index of the last epoch (training runs ``initial_epoch .. epochs - 1``).
        verbose : {"auto", 0, 1, 2}, default="auto"
            0 silent, 1 a live progress bar per epoch, 2 one line per epoch; "auto"
            is 1 on a terminal and 2 otherwise.
        callbacks : list of fastmlp.callbacks.Callback, optional
        validation_split : float in [0, 1), default=0.0
            Fraction of the data held out for validation: the LAST rows, taken
            before any shuffling (Keras' rule).
        validation_data : tuple ``(x_val, y_val)`` or ``(x_val, y_val, w_val)``, optional
            Overrides ``validation_split``.
        shuffle : bool, default=True
            Shuffle the training rows before every epoch.
        class_weight : dict, optional
            ``{class_index: weight}``: multiplies the sample weight of each row of
            that class (class = argmax of one-hot rows, else the label).
        sample_weight : array-like (n_samples,), optional
        initial_epoch : int, default=0
            Epoch to start from (to resume a previous run).

        Returns
        -------
        History
            ``history.history`` maps "loss", each metric, "val_*" and "lr" to one
            value per epoch.

        Notes
        -----
        A loss, weights or optimizer state that become NaN/inf stop training with a
        warning and restore the weights at the start of the last epoch that began from
        sound ones (that epoch, or the one before when its first batch already failed).
        Ctrl-C stops training at the next slice
        boundary (well under a second), leaving a usable model, with a warning.  The
        warnings' categories, :class:`TrainingDivergedWarning` (a RuntimeWarning) and
        :class:`TrainingInterruptedWarning` (a UserWarning), tell the two apart.
        """
        self._require_compiled("fit")
        verbose = _check_verbose(verbose)
        batch_size = 32 if batch_size is None else _check_int(batch_size, "batch_size", 1)
        epochs = _check_int(epochs, "epochs", 0)
        initial_epoch = _check_int(initial_epoch, "initial_epoch", 0)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise ValueError(f"shuffle={shuffle!r}: expected True or False")
        if isinstance(validation_split, bool) or not isinstance(
                validation_split, (int, float, np.integer, np.floating)) or \
                not (0.0 <= float(validation_split) < 1.0):
            raise ValueError(f"validation_split={validation_split!r} must be a float in [0, 1)")
        user_callbacks = _check_callbacks(callbacks)

        X, Y, sw = self._prepare_xy(x, y, sample_weight, "")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or \
                    len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val) or "
                                 "(x_val, y_val, sample_weight_val)")
            val = self._prepare_xy(validation_data[0], validation_data[1],
                                   validation_data[2] if len(validation_data) == 3 else None,
                                   "validation_data ")
        elif validation_split > 0:
            n = X.shape[0]
            split = int(math.floor(n * (1.0 - float(validation_split))))
            if split < 1 or split >= n:
                raise ValueError(f"validation_split={validation_split} leaves {split} training "
                                 f"and {n - split} validation rows out of {n}; both need at "
                                 "least one")
            val = (X[split:], Y[split:], None if sw is None else sw[split:])
            X, Y, sw = X[:split], Y[:split], None if sw is None else sw[:split]
        if class_weight is not None:
            sw = self._class_weighted(class_weight, Y, sw)

        X, Y, sw = self._validate(X, Y, sw, "")
        offset = self._loss_info.offset(Y, sw)
        X, Y, sw = self._on_device(X, Y, sw)
        if val is not None:
            Xv, Yv, swv = self._validate(*val, "validation_data ")
            val = (*self._on_device(Xv, Yv, swv), self._loss_info.offset(Yv, swv))

        n_train = X.shape[0]
        steps = -(-n_train // min(batch_size, n_train))
        history = next((cb for cb in user_callbacks if isinstance(cb, History)), None)
        cbs = list(user_callbacks)
        if history is None:
            history = History()
            cbs.append(history)
        if verbose == 1:
            cbs.append(ProgressBar())
        elif verbose == 2:
            cbs.append(EpochLogger())
        params = {"epochs": epochs, "steps": steps, "samples": n_train,
                  "batch_size": batch_size, "verbose": verbose,
                  "do_validation": val is not None}
        cl = CallbackList(cbs, self, params)
        self.history = history
        self.stop_training = False
        sizer = _SliceSizer(SLICE_SECONDS_DISPLAY if cl.wants_progress
                            else SLICE_SECONDS_SILENT)
        net = self._network
        self._fit_phase = "between epochs"   # "epoch" while one runs (see _check_not_in_epoch)
        try:
            return self._fit_epochs(net, cl, sizer, history, X, Y, sw, val, offset, steps,
                                    batch_size, epochs, initial_epoch, shuffle)
        finally:
            self._fit_phase = None

    def _fit_epochs(self, net, cl, sizer, history, X, Y, sw, val, offset, steps, batch_size,
                    epochs, initial_epoch, shuffle):
        """fit's loop over epochs, callbacks and its warnings; returns the History."""
        interrupted = None     # (epoch, steps_done) when Ctrl-C stopped training
        diverged = None        # (epoch whose loss or weights became non-finite, epoch restored)
        previous = None        # the snapshot taken at the start of the previous epoch
        last_logs = {}         # the last epoch's logs, for on_train_end (as Keras)
        with _SigintCatcher() as sigint:
            cl.on_train_begin({})
            epoch = initial_epoch
            try:
                for epoch in range(initial_epoch, epochs):
                    if self.stop_training:
                        break
                    self._apply_epoch_schedule(epoch)
                    cl.on_epoch_begin(epoch, {})
                    # the engine as it is now: a callback may have moved the model to
                    # another device or thread count between epochs
                    net = self._network
                    snapshot = (net.get_params(), net.get_optimizer_state())
                    self._fit_phase = "epoch"
                    net.start_epoch(X, Y, sw, batch_size=batch_size, shuffle=bool(shuffle),
                                    seed=self._seed, epoch=self._epochs_run,
                                    track_metrics=True)
                    with np.errstate(over="ignore", invalid="ignore"):  # fit reports it
                        steps_done = self._run_slices(net, epoch, sizer, cl, sigint, offset)
                    done, total = net.epoch_progress
                    loss = net.finish_epoch()
                    self._fit_phase = "between epochs"
                    self._epochs_run += 1
                    # (the optimizer state too: an overflowing squared gradient leaves
                    # Adam's second moment at inf, freezing weights with every loss finite)
                    if net.diverged or not math.isfinite(loss) or not net.state_finite():
                        # The engine checks each batch's loss before that batch's update,
                        # so the epoch's last update is checked here, on the weights. A
                        # first batch whose loss is already non-finite means the weights at
                        # the start of this epoch came from such an unchecked update: go
                        # back to the start of the previous epoch.
                        restored = epoch
                        if net.diverged and steps_done == 0 and previous is not None:
                            snapshot, restored = previous, epoch - 1
                        net.set_params(_to_numpy(snapshot[0]))   # (maybe another device's)
                        net.set_optimizer_state(snapshot[1])
                        diverged = (epoch, restored)
                        cl.on_epoch_end(epoch, self._diverged_logs(val is not None))
                        break
                    previous = snapshot
                    if sigint.caught and done < total:
                        interrupted = (epoch, steps_done)
                        break
                    # (an epoch whose steps all ran before Ctrl-C is logged as complete)
                    logs = self._epoch_logs(net, loss - offset, val)
                    cl.on_epoch_end(epoch, logs)
                    last_logs = logs
                    if sigint.caught:
                        interrupted = (epoch, None)
                        break
            except KeyboardInterrupt:
                self._fit_phase = "between epochs"    # the epoch is finished just below
                done = net.epoch_progress[0]
                try:
                    net.finish_epoch()
                except Exception:  # pragma: no cover - nothing started
                    pass
                interrupted = (epoch, -(-done // batch_size))
            cl.on_train_end(dict(last_logs))
        if diverged is not None:
            ep, restored = diverged
            warnings.warn(
                f"fit stopped at epoch {ep + 1}: the training loss, the weights or the "
                "optimizer state became NaN or infinite (learning rate too high, or unscaled "
                "inputs/targets?). The weights were restored to those at the start of epoch "
                f"{restored + 1}.",
                TrainingDivergedWarning, stacklevel=3)
        if interrupted is not None:
            ep, st = interrupted
            where = f"after epoch {ep + 1}" if st is None else \
                f"during epoch {ep + 1} after {st}/{steps} steps"
            warnings.warn(f"fit was interrupted (Ctrl-C) {where}; the model keeps the "
                          "weights reached so far (unless a callback such as EarlyStopping("
                          "restore_best_weights=True) restored others at the end of training) "
                          "and can be used or trained further.", TrainingInterruptedWarning,
                          stacklevel=3)
        return history

    def _apply_epoch_schedule(self, epoch):
        sched = self.optimizer.schedule
        if sched is not None and sched.kind == "epoch":
            self._network.set_learning_rate(sched.at_epoch(epoch))

    def _run_slices(self, net, epoch, sizer, cl, sigint, offset):
        """Run the started epoch in slices; return the steps run."""
        sched = self.optimizer.schedule
        per_step = sched if sched is not None and sched.kind == "step" else None
        show = cl.wants_progress
        steps_done = 0
        while True:
            k = sizer.steps
            if per_step is not None:
                net.set_learning_rate(per_step(net.step))
                left = per_step.steps_until_change(net.step)
                if left is not None:
                    k = max(1, min(k, left))
            t0 = time.perf_counter()
            ran = net.run_steps(k)
            sizer.record(ran, time.perf_counter() - t0)
            steps_done += ran
            if ran == 0 or net.diverged:
                return steps_done
            if show:
                cl.on_epoch_progress(epoch, steps_done, self._running_logs(net, offset))
            done, total = net.epoch_progress
            if done >= total or sigint.caught:
                return steps_done

    def _running_logs(self, net, offset):
        m = net.epoch_metrics
        if not m:
            return {}
        logs = {"loss": m["data_loss"] + m["penalty"] - offset}
        for name, kind in zip(self.metrics, self._metric_kinds):
            logs[name] = m[kind]
        return logs

    def _last_lr(self, net):
        return float(net.optimizer.learning_rate_at(max(net.step - 1, 0)))

    def _epoch_logs(self, net, loss, val):
        logs = {"loss": float(loss)}
        m = net.epoch_metrics
        for name, kind in zip(self.metrics, self._metric_kinds):
            logs[name] = float(m[kind])
        if val is not None:
            Xv, Yv, swv, voffset = val
            for k, v in self._evaluate_arrays(Xv, Yv, swv, voffset).items():
                logs["val_" + k] = v
        logs["lr"] = self._last_lr(net)
        return logs

    def _diverged_logs(self, with_val):
        keys = ["loss"] + list(self.metrics)
        if with_val:
            keys += ["val_" + k for k in ["loss"] + list(self.metrics)]
        logs = {k: float("nan") for k in keys}
        logs["lr"] = self._last_lr(self._network)
        return logs

    # ---- evaluation ------------------------------------------------------------------
    def _dataset_loss(self, X, Y, sw, chunk):
        """Loss over all rows with the engine (in chunks of ``chunk`` rows)."""
        net = self._network
        n = X.shape[0]
        if n <= chunk:
            return float(net.compute_loss(X, Y, sw))
        data = 0.0
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            part = net.compute_loss(X[lo:hi], Y[lo:hi], None if sw is None else sw[lo:hi],
                                    include_penalty=False)
            data += float(part) * (hi - lo)
        return data / n + self._penalty()

    def _penalty(self):
        """The regularisation penalty of the current weights (Keras: not divided)."""
        spec, total = self._network.spec, 0.0
        if not (any(spec.l2) or any(spec.l1)):
            return total
        for l, W in enumerate(self._network.coefs):
            if spec.l2[l] or spec.l1[l]:
                W = _to_numpy(W)
                total += spec.l2[l] * float(np.square(W, dtype=np.float64).sum())
                total += spec.l1[l] * float(np.abs(W).sum(dtype=np.float64))
        return total

    def _evaluate_arrays(self, X, Y, sw, offset, batch_size=None):
        """Loss and metrics over a validated data set, from ONE forward pass (the
        engine computes the loss itself only for poisson)."""
        net = self._network
        chunk = max(int(batch_size or 0), EVAL_CHUNK_ROWS)
        P = _to_numpy(net.forward(X, batch_size or chunk))
        Yh, swh = _to_numpy(Y), None if sw is None else _to_numpy(sw)
        data = _losses.data_loss_from_predictions(self._loss_info, P, Yh, swh)
        if data is None:
            loss = self._dataset_loss(X, Y, sw, chunk)
        else:
            loss = data + self._penalty()
        result = {"loss": loss - offset}
        if self._metric_kinds:
            values = _losses.compute_metrics(P, Yh, swh, kinds=tuple(set(self._metric_kinds)))
            for name, kind in zip(self.metrics, self._metric_kinds):
                result[name] = values[kind]
        return result

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, verbose=0,
                 return_dict=True):
        """Loss and metrics on ``(x, y)``, without dropout.

        Parameters
        ----------
        x, y : array-like
        batch_size : int, optional
            Rows per engine call on the array backends (numpy, cuda; only affects
            memory and speed); the CPU engine works through its own workspace in
            chunks of up to 4,096 rows whatever is given.
        sample_weight : array-like (n_samples,), optional
        verbose : int, default=0
            Print the result when non-zero.
        return_dict : bool, default=True
            False returns what Keras returns by default: the loss alone without metrics,
            else the list ``[loss, metric, ...]`` in compile's order (so that Keras code
            such as ``loss, acc = model.evaluate(...)`` ports with ``return_dict=False``).

        Returns
        -------
        dict, float or list
            ``{"loss": ..., "<metric>": ...}`` (return_dict=True).
        """
        self._require_compiled("evaluate")
        if batch_size is not None:
            batch_size = _check_int(batch_size, "batch_size", 1)
        if not isinstance(return_dict, (bool, np.bool_)):
            raise TypeError(f"return_dict must be True or False; got {return_dict!r}")
        X, Y, sw = self._prepare_xy(x, y, sample_weight, "")
        X, Y, sw = self._validate(X, Y, sw, "")
        result = self._evaluate_arrays(X, Y, sw, self._loss_info.offset(Y, sw), batch_size)
        if verbose:
            print(format_logs(result))
        if return_dict:
            return result
        values = [result["loss"]] + [result[m] for m in self.metrics]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose=0):
        """Outputs of the last layer (probabilities for softmax/sigmoid outputs).

        Parameters
        ----------
        x : array-like (n_samples, n_features)
        batch_size : int, optional
            Rows per engine call on the array backends (numpy, cuda; only affects
            memory and speed); the CPU engine works through its own workspace in
            chunks of up to 4,096 rows whatever is given.
        verbose : int, default=0
            Ignored (accepted for Keras code).

        Returns
        -------
        ndarray (n_samples, n_outputs) in the model's dtype
        """
        X = _as_matrix(x, "x")
        if batch_size is not None:
            batch_size = _check_int(batch_size, "batch_size", 1)
        if not self.built:
            self.build(X.shape[1])
        if X.shape[1] != self._input_dim:
            raise ValueError(f"x has {X.shape[1]} features per row; the model expects "
                             f"{self._input_dim}")
        X, _, _ = validate_training_data(self._network.spec, X)
        return _to_numpy(self._network.forward(X, batch_size))

    # ---- inspection ----------------------------------------------------------------------
    def count_params(self) -> int:
        """Number of weights and biases."""
        d = self.input_dim
        if d is None:
            raise ValueError("count_params() needs the input width: give input_dim to the "
                             "first Dense layer, build(input_dim), or fit first")
        total = 0
        for layer in self._layers:
            total += layer.count_params(d)
            d = layer.units
        return total

    def summary(self, print_fn=None):
        """Print (and return) a table of layers, output shapes and parameter counts.

        Parameters
        ----------
        print_fn : callable, optional
            Called with the text instead of ``print``.

        Returns
        -------
        str
        """
        d = self.input_dim
        if d is None:
            raise ValueError("summary() needs the input width: give input_dim to the first "
                             "Dense layer, call build(input_dim), or fit first")
        rows = []
        for layer in self._layers:
            act = layer.activation + (f" + dropout {layer.dropout:g}" if layer.dropout else "")
            rows.append((f"{layer.name} ({type(layer).__name__})", f"(None, {layer.units})",
                         act, f"{layer.count_params(d):,}"))
            d = layer.units
        head = ("Layer (type)", "Output Shape", "Activation", "Param #")
        widths = [max(len(r[i]) for r in rows + [head]) + 3 for i in range(4)]
        widths[0] = max(widths[0], 29)
        widths[1] = max(widths[1], 20)
        width = sum(widths)

        def line(cols):
            return " " + "".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()

        total = self.count_params()
        nbytes = total * np.dtype(self.dtype).itemsize
        out = [f'Model: "{self.name}"', "_" * width, line(head), "=" * width]
        for i, r in enumerate(rows):
            out.append(line(r))
            if i < len(rows) - 1:
                out.append(" " + "-" * (width - 1))
        out += ["=" * width,
                f"Total params: {total:,} ({_readable_size(nbytes)})",
                f"Trainable params: {total:,} ({_readable_size(nbytes)})",
                "Non-trainable params: 0 (0.00 B)", "_" * width]
        text = "\n".join(out)
        (print_fn or print)(text)
        return text

    def get_layer(self, index=None, name=None):
        """A layer by position or by name (exactly one of them)."""
        if (index is None) == (name is None):
            raise ValueError("get_layer needs exactly one of index= or name=")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"get_layer(index={index!r}): expected an int")
            if not self._layers or not (-len(self._layers) <= index < len(self._layers)):
                raise ValueError(f"get_layer(index={index}): the model has "
                                 f"{len(self._layers)} layers")
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; the layers are "
                         f"{[l.name for l in self._layers]}")

    def get_weights(self):
        """``[W0, b0, W1, b1, ...]`` as copies (no bias entry where ``use_bias=False``)."""
        net = self._require_built("get_weights")
        out = []
        for W, b in zip(net.coefs, net.intercepts):
            out.append(np.array(_to_numpy(W), copy=True))
            if b is not None:
                out.append(np.array(_to_numpy(b), copy=True))
        return out

    def set_weights(self, weights):
        """Set all weights from a list shaped like :meth:`get_weights`' result."""
        net = self._require_built("set_weights")
        weights = list(weights)
        expected = []
        for (w, b, fi, fo) in net.spec.layer_offsets():
            expected.append((fi, fo))
            if b is not None:
                expected.append((fo,))
        shapes = [np.shape(w) for w in weights]
        if shapes != expected:
            raise ValueError(f"set_weights expects {len(expected)} arrays of shapes {expected}; "
                             f"got {len(shapes)} of shapes {shapes}")
        flat = np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights])
        if not np.all(np.isfinite(flat)):
            raise ValueError("set_weights: the weights contain NaN or infinity")
        net.set_params(flat.astype(self.dtype))

    # ---- configuration -------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-serialisable description of the architecture and settings (with the
        input width once built, as Keras keeps the built input shape)."""
        return {"name": self.name, "seed": self.seed, "dtype": self.dtype,
                "device": self.device, "n_threads": self.n_threads,
                "input_dim": self._input_dim,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()}
                           for l in self._layers]}

    @classmethod
    def from_config(cls, config, **overrides):
        """A model from :meth:`get_config`'s output: uncompiled, with fresh weights, and
        built when the config has an input width; ``overrides`` replace settings such as
        ``device``."""
        layers = [_get_layer_class(item["class_name"]).from_config(item["config"])
                  for item in config["layers"]]
        kwargs = {k: config.get(k) for k in ("seed", "dtype", "device", "n_threads", "name")}
        kwargs.update(overrides)
        model = cls(layers, **kwargs)
        if config.get("input_dim") is not None:
            model.build(int(config["input_dim"]))
        return model

    @classmethod
    def from_spec(cls, spec, **model_kwargs):
        """Build a model from a list of ``(LayerClass, [args], {kwargs})`` tuples.

        Parameters
        ----------
        spec : list
            Each item is ``(LayerClass, args)``, ``(LayerClass, args, kwargs)``,
            ``(LayerClass, kwargs)`` or a layer instance; ``LayerClass`` may be the
            class or its name ("Dense").
        **model_kwargs
            Passed to :class:`Model` (seed, dtype, device, ...).

        Examples
        --------
        >>> from fastmlp import Model, Dense
        >>> spec = [(Dense, [50], {"activation": "relu", "input_dim": 784}),
        ...         (Dense, [10], {"activation": "softmax"})]
        >>> Model.from_spec(spec, device="numpy").count_params()
        39760
        """
        if isinstance(spec, (str, bytes)) or not hasattr(spec, "__iter__"):
            raise TypeError("spec must be a list of (LayerClass, [args], {kwargs}) tuples")
        layers = []
        for i, item in enumerate(spec):
            if isinstance(item, Layer):
                layers.append(item)
                continue
            if not isinstance(item, (tuple, list)) or not 1 <= len(item) <= 3:
                raise TypeError(f"spec[{i}]={item!r}: expected (LayerClass, [args], {{kwargs}})")
            try:
                layer_cls = _get_layer_class(item[0])
            except ValueError as exc:
                raise ValueError(f"spec[{i}]: {exc}") from None
            args = item[1] if len(item) > 1 else ()
            kwargs = item[2] if len(item) > 2 else {}
            if isinstance(args, dict) and len(item) == 2:
                args, kwargs = (), args
            if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
                raise TypeError(f"spec[{i}]: args must be a list/tuple and kwargs a dict; got "
                                f"{args!r} and {kwargs!r}")
            try:
                layers.append(layer_cls(*args, **kwargs))
            except TypeError as exc:
                raise TypeError(f"spec[{i}]: {exc}") from None
        return cls(layers, **model_kwargs)

    def __repr__(self):
        layers = ", ".join(repr(l) for l in self._layers)
        return f"Model([{layers}], dtype={self.dtype!r})"

    # ---- saving ----------------------------------------------------------------------------
    def _file_config(self, kind):
        net = self._network
        cfg = {"format": FILE_FORMAT, "format_version": FILE_FORMAT_VERSION,
               "fastmlp_version": _package_version(), "kind": kind,
               "model": self.get_config(),
               "built": None if net is None else {
                   "input_dim": self._input_dim, "layer_sizes": list(net.spec.layer_sizes),
                   "n_params": net.spec.n_params, "dtype": self.dtype},
               "training": {"seed": self._seed, "epochs_run": self._epochs_run}}
        if kind == "model":
            cfg["compile"] = None if not self.compiled else {
                "optimizer": self.optimizer.get_config(), "loss": self.loss,
                "metrics": list(self.metrics)}
            cfg["optimizer_state"] = None
            if net is not None and self.compiled:
                cfg["optimizer_state"] = {"step": int(net.step),
                                          "learning_rate": float(net.optimizer.learning_rate),
                                          "n_slots": net.optimizer.n_slots}
        return cfg

    def save(self, filepath):
        """Save architecture, weights, compile settings and optimizer state to ONE
        ``.npz`` file (``.npz`` is appended when the name does not end in it, as
        ``numpy.savez`` does: ``"ckpt-0.663"`` becomes ``"ckpt-0.663.npz"``).

        The write is atomic: a temporary file in the same folder is renamed over the
        target, so a failed save never destroys a previous file.

        Returns
        -------
        str
            The path written.
        """
        arrays = {}
        if self.built:
            arrays["params"] = _to_numpy(self._network.get_params())
            if self.compiled:
                for i, slot in enumerate(self._network.get_optimizer_state()["slots"]):
                    arrays[f"optimizer_slot_{i}"] = _to_numpy(slot)
        return _write_model_file(filepath, self._file_config("model"), arrays)

    def save_weights(self, filepath):
        """Save only the weights (one ``.npz``; atomic like :meth:`save`)."""
        net = self._require_built("save_weights")
        return _write_model_file(filepath, self._file_config("weights"),
                                 {"params": _to_numpy(net.get_params())})

    def load_weights(self, filepath):
        """Load weights saved by :meth:`save_weights` or :meth:`save`; the layer sizes
        must match."""
        config, arrays = _read_model_file(filepath)
        built = config.get("built")
        if not built or "params" not in arrays:
            raise ValueError(f"{os.fspath(filepath)!r} holds no weights (the model was "
                             "never built)")
        # in this model's dtype, checked before anything is built or changed
        arrays["params"] = _stored_finite(arrays["params"], self.dtype, os.fspath(filepath))
        net = self._require_built("load_weights") if self.input_dim is not None else None
        if net is None:
            self.build(int(built["input_dim"]))
            net = self._network
        if list(built["layer_sizes"]) != list(net.spec.layer_sizes):
            raise ValueError(f"the weights in {os.fspath(filepath)!r} are for layer sizes "
                             f"{built['layer_sizes']}; this model has "
                             f"{list(net.spec.layer_sizes)}")
        params = arrays["params"]
        if params.shape != (net.spec.n_params,):
            raise ValueError(f"{os.fspath(filepath)!r}: weights of shape {params.shape}; "
                             f"expected ({net.spec.n_params},)")
        net.set_params(params)


def _stored_finite(values, dtype, path):
    """Stored weights or optimizer state as ``dtype``, all finite: fit restores finite
    weights when training diverges and set_weights refuses others, so NaN or infinity
    means an edited file, or float64 values beyond the range of a float32 model."""
    if values.dtype.kind == "f":
        try:
            with np.errstate(over="raise"):
                values = values.astype(dtype, copy=False)
        except FloatingPointError:
            values = None
    if values is None or values.dtype.kind != "f" or not np.isfinite(values).all():
        raise ValueError(f"{path!r}: the stored weights or optimizer state contain NaN or "
                         f"infinity, values beyond {np.dtype(dtype).name}'s range, or are not "
                         "floating point; was the file edited?")
    return values


def _readable_size(nbytes):
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024


def _package_version():
    from . import __version__
    return __version__


#: Keras spelling
Sequential = Model


# ---------------------------------------------------------------------------------------
# The file format: one .npz (a zip of .npy files, no pickle anywhere)
def _digest(config_bytes, arrays):
    h = hashlib.sha256()
    h.update(config_bytes)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _target_path(filepath):
    path = os.fspath(filepath)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if os.path.isdir(path) or path.endswith(("/", os.sep)) or not os.path.basename(path):
        raise ValueError(f"cannot save to {path!r}: it names a folder; give a file name "
                         f"such as {os.path.join(path, 'model.npz')!r}")
    return _with_suffix(path)


def _with_suffix(path):
    """``path`` with ``.npz`` added unless it ends in ``.npz`` (as numpy.savez: a
    name such as "ckpt-0.663" or "model-v1.2" has no extension, only a dot)."""
    return path if path.lower().endswith(".npz") else path + ".npz"


def _new_file_mode(path):
    """Permissions for a file saved at ``path``: those of the file it replaces, else
    what the umask gives a new file (a temporary file is created private)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_model_file(filepath, config, arrays):
    path = _target_path(filepath)
    if os.path.islink(path):      # replace the file the link points to, keep the link
        path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save to {path!r}: the folder {folder!r} does not "
                                "exist")
    config_bytes = json.dumps(config, sort_keys=True, allow_nan=False).encode("utf-8")
    digest = _digest(config_bytes, arrays)
    payload = dict(arrays)
    payload[_CONFIG_KEY] = np.frombuffer(config_bytes, dtype=np.uint8)
    payload[_DIGEST_KEY] = np.frombuffer(digest.encode("ascii"), dtype=np.uint8)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=".fastmlp-", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _read_model_file(filepath):
    """Return ``(config, arrays)`` of a fastmlp file; ValueError for anything else."""
    path = os.fspath(filepath)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if not os.path.exists(path) and os.path.exists(_with_suffix(path)):
        path = _with_suffix(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder, not a model file (expected a .npz written "
                         "by Model.save or Model.save_weights)")
    not_ours = (f"{path!r} is not a fastmlp model file (expected a .npz written by "
                "Model.save or Model.save_weights)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":       # not a zip archive: .npy, pickle, text, empty...
        raise ValueError(not_ours)
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            if _CONFIG_KEY not in names or _DIGEST_KEY not in names:
                raise ValueError(f"{not_ours}; it holds {sorted(names)[:8]}")
            contents = {name: data[name] for name in names}
    except ValueError as exc:
        if str(exc).startswith(repr(path)):
            raise
        raise ValueError(f"{not_ours}, or it is damaged: {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, zlib.error) as exc:
        raise ValueError(f"{path!r} could not be read as a fastmlp model file: it is "
                         f"truncated or corrupted ({type(exc).__name__}: {exc})") from None
    config_bytes = contents.pop(_CONFIG_KEY)
    digest = contents.pop(_DIGEST_KEY)
    if config_bytes.dtype != np.uint8 or digest.dtype != np.uint8:
        raise ValueError(not_ours)
    config_bytes = config_bytes.tobytes()
    if _digest(config_bytes, contents) != digest.tobytes().decode("ascii", "replace"):
        raise ValueError(f"{path!r} failed its integrity check (SHA-256 mismatch): the file "
                         "was modified or damaged after it was saved")
    try:
        config = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{path!r}: the model configuration is not valid JSON") from None
    if not isinstance(config, dict) or config.get("format") != FILE_FORMAT:
        raise ValueError(not_ours)
    if int(config.get("format_version", 0)) > FILE_FORMAT_VERSION:
        raise ValueError(f"{path!r} was written by a newer fastmlp (file format version "
                         f"{config.get('format_version')}); upgrade fastmlp to load it")
    return config, contents


def load_model(filepath, *, device=None, n_threads=None, compile=True):
    """Load a model saved by :meth:`Model.save` (no pickle involved).

    Parameters
    ----------
    filepath : str or path
    device : str, optional
        Run the loaded model on this device instead of the saved one.
    n_threads : int, optional
    compile : bool, default=True
        Restore the optimizer, loss, metrics and optimizer state.

    Returns
    -------
    Model

    Raises
    ------
    ValueError
        For a truncated, foreign or modified file.
    FileNotFoundError
    """
    config, arrays = _read_model_file(filepath)
    path = os.fspath(filepath)
    if config.get("kind") != "model":
        raise ValueError(f"{path!r} holds only weights (saved by save_weights); build the "
                         "model and call model.load_weights(path)")
    try:
        overrides = {}
        if device is not None:
            overrides["device"] = device
        if n_threads is not None:
            overrides["n_threads"] = n_threads
        try:
            # built below, from the stored weights (compile first)
            model = Model.from_config({k: v for k, v in config["model"].items()
                                       if k != "input_dim"}, **overrides)
        except RuntimeError as exc:     # e.g. saved on a GPU, loaded where there is none
            raise RuntimeError(f"{exc}; load it elsewhere with "
                               f"load_model({path!r}, device='cpu')") from None
        model._seed = int(config["training"]["seed"])
        model._epochs_run = int(config["training"]["epochs_run"])
        comp = config.get("compile")
        if comp and compile:
            model.compile(optimizer=_optimizers.Optimizer.from_config(comp["optimizer"]),
                          loss=comp["loss"], metrics=comp["metrics"])
        built = config.get("built")
        if built:
            model.build(int(built["input_dim"]))
            net = model._network
            params = arrays["params"]
            if list(net.spec.layer_sizes) != list(built["layer_sizes"]) or \
                    params.shape != (net.spec.n_params,) or str(params.dtype) != model.dtype:
                raise ValueError("the stored weights do not match the stored architecture")
            _stored_finite(params, model.dtype, path)
            net.set_params(params)
            state = config.get("optimizer_state")
            if state and model.compiled:
                slots = [_stored_finite(arrays[f"optimizer_slot_{i}"], model.dtype, path)
                         for i in range(int(state["n_slots"]))]
                if float(state["learning_rate"]) != net.optimizer.learning_rate:
                    net.set_learning_rate(float(state["learning_rate"]))
                net.set_optimizer_state({"step": int(state["step"]), "slots": slots})
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"{path!r}: the saved model is inconsistent ({type(exc).__name__}: "
                         f"{exc}); was it edited?") from None
    return model
