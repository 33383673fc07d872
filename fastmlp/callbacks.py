"""Callbacks for :meth:`fastmlp.Model.fit`, with Keras' names, arguments and semantics.

Hooks (each gets the model as ``self.model`` and fit's settings as ``self.params``):

* ``on_train_begin(logs)`` / ``on_train_end(logs)``
* ``on_epoch_begin(epoch, logs)`` / ``on_epoch_end(epoch, logs)`` -- ``logs`` holds
  ``loss``, each metric, ``val_*`` when there is validation data, and ``lr``;
* ``on_epoch_progress(epoch, steps_done, logs)`` -- fastmlp only: called between the
  engine's slices of an epoch (a few times a second), with running ``loss`` and
  metrics.  There are no per-batch hooks: batches run inside the engine.

Set ``self.model.stop_training = True`` to stop after the current epoch.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import sys
import time
import warnings

import numpy as np

__all__ = ["Callback", "CallbackList", "History", "EarlyStopping", "ReduceLROnPlateau",
           "ModelCheckpoint", "TerminateOnNaN", "CSVLogger", "LearningRateScheduler",
           "LambdaCallback", "ProgressBar", "EpochLogger", "format_logs"]


class Callback:
    """Base class: override the hooks you need (all do nothing here)."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        """Attach the model being trained."""
        self.model = model

    def set_params(self, params):
        """Receive fit's settings (epochs, steps, samples, batch_size, verbose)."""
        self.params = dict(params)

    def on_train_begin(self, logs=None):
        """Called once when fit starts."""

    def on_train_end(self, logs=None):
        """Called once when fit ends (also after early stopping or Ctrl-C)."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called before epoch ``epoch`` (0-based) runs."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after epoch ``epoch`` with its ``logs``."""

    def on_epoch_progress(self, epoch, steps_done, logs=None):
        """Called between engine slices of epoch ``epoch`` (running ``logs``)."""


class CallbackList:
    """Runs hooks on several callbacks in order (used by ``fit``)."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        # only callbacks that override on_epoch_progress are called between slices
        self._progress = [cb for cb in self.callbacks if _overrides(cb, "on_epoch_progress")]

    @property
    def wants_progress(self) -> bool:
        """Whether any callback listens to ``on_epoch_progress``."""
        return bool(self._progress)

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_epoch_progress(self, epoch, steps_done, logs=None):
        for cb in self._progress:
            cb.on_epoch_progress(epoch, steps_done, logs)


def _real(value, where, lo=-math.inf, hi=math.inf, lo_open=False, hi_open=False):
    """``value`` as a float within the bounds, or a TypeError/ValueError naming ``where``
    (e.g. "ReduceLROnPlateau(factor": the message reads "ReduceLROnPlateau(factor=...)")."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}={value!r}): expected a number")
    v = float(value)
    if math.isnan(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{where}={value!r}): must be in {left}{lo:g}, {hi:g}{right}")
    return v


def _whole(value, where, minimum=0):
    """``value`` as an int >= minimum, or a TypeError/ValueError naming ``where``."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)                      # 3.0 is accepted as 3
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}={value!r}): expected an int >= {minimum}")
    if value < minimum:
        raise ValueError(f"{where}={value!r}): must be an int >= {minimum}")
    return int(value)


def _text_path(value, where):
    """``value`` (a str or os.PathLike naming a file) as a str, or a TypeError naming
    ``where``."""
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise TypeError(f"{where}={value!r}): expected a file path (a str or pathlib.Path)")
    return path


def _overrides(callback, hook):
    method = getattr(callback, hook)
    return getattr(method, "__func__", method) is not getattr(Callback, hook)


def _check_callbacks(callbacks):
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks must be a list of fastmlp.callbacks.Callback; got "
                        f"{callbacks!r}") from None
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be fastmlp.callbacks.Callback instances; got "
                            f"{cb!r}")
    return callbacks


def _format_value(value):
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v != 0 and math.isfinite(v) and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.4e}"
        return f"{v:.4f}"
    return str(value)


def format_logs(logs, skip=("lr",)) -> str:
    """``"loss: 0.1234 - accuracy: 0.9500 - val_loss: ..."`` (Keras' style)."""
    return " - ".join(f"{k}: {_format_value(v)}" for k, v in logs.items() if k not in skip)


def _resolve_mode(mode, monitor, who):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}(mode={mode!r}): expected 'auto', 'min' or 'max'")
    if mode != "auto":
        return mode
    name = monitor.lower()
    if "acc" in name or "auc" in name or name.startswith("fmeasure"):
        return "max"
    return "min"


def _monitor_value(logs, monitor, who):
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{who}: the monitored quantity {monitor!r} is not in the logs; "
                      f"available: {sorted(logs or {})}", RuntimeWarning, stacklevel=3)
    return value


# ----------------------------------------------------------------------------------------
class History(Callback):
    """Records the logs of every epoch; ``fit`` returns it.

    Attributes
    ----------
    history : dict of list
        ``{"loss": [...], "accuracy": [...], "val_loss": [...], "lr": [...], ...}``,
        one entry per epoch run.
    epoch : list of int
        The epoch indices run.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self


class EarlyStopping(Callback):
    """Stop training when a monitored quantity stops improving (Keras 3 semantics).

    Parameters
    ----------
    monitor : str, default="val_loss"
    min_delta : float, default=0
        An improvement must exceed this.
    patience : int, default=0
        Epochs without improvement before stopping.
    verbose : int, default=0
    mode : {"auto", "min", "max"}, default="auto"
        "auto": "max" for accuracy-like names, "min" otherwise.
    baseline : float, optional
        Training stops unless the quantity beats it within ``patience`` epochs.
    restore_best_weights : bool, default=False
        At the end of training, put back the weights of the best epoch.
    start_from_epoch : int, default=0
        Epochs to wait before monitoring.

    Attributes
    ----------
    stopped_epoch : int
        The epoch at which training stopped (0 if it did not stop early).
    best_epoch : int
    best : float
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = str(monitor)
        self.min_delta = _real(min_delta, "EarlyStopping(min_delta", 0.0)
        self.patience = _whole(patience, "EarlyStopping(patience")
        self.verbose = verbose
        self.mode = _resolve_mode(mode, self.monitor, "EarlyStopping")
        self.baseline = None if baseline is None else _real(baseline, "EarlyStopping(baseline")
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _whole(start_from_epoch, "EarlyStopping(start_from_epoch")
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitor_value(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        current = float(current)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if math.isfinite(current) and self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when a quantity stops improving
    (Keras semantics).

    Parameters
    ----------
    monitor : str, default="val_loss"
    factor : float in (0, 1), default=0.1
    patience : int, default=10
    verbose : int, default=0
    mode : {"auto", "min", "max"}, default="auto"
    min_delta : float, default=1e-4
    cooldown : int, default=0
        Epochs to wait after a reduction before counting again.
    min_lr : float, default=0.0
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        self.factor = _real(factor, "ReduceLROnPlateau(factor", 0.0, 1.0, True, True)
        self.monitor = str(monitor)
        self.patience = _whole(patience, "ReduceLROnPlateau(patience")
        self.verbose = verbose
        self.mode = _resolve_mode(mode, self.monitor, "ReduceLROnPlateau")
        self.min_delta = _real(min_delta, "ReduceLROnPlateau(min_delta", 0.0)
        self.cooldown = _whole(cooldown, "ReduceLROnPlateau(cooldown")
        self.min_lr = _real(min_lr, "ReduceLROnPlateau(min_lr", 0.0)
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _better(self, a, b):
        return a < b - self.min_delta if self.mode == "min" else a > b + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitor_value(logs, self.monitor, "ReduceLROnPlateau")
        if current is None:
            return
        current = float(current)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(self.model.optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new_lr:g}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class ModelCheckpoint(Callback):
    """Save the model (one ``.npz``) after epochs.

    Parameters
    ----------
    filepath : str or path
        May contain ``{epoch}`` (1-based) and log keys, e.g.
        ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``; missing folders are created.
    monitor : str, default="val_loss"
    verbose : int, default=0
    save_best_only : bool, default=False
        Save only when ``monitor`` improves on the best value so far.
    save_weights_only : bool, default=False
        Save with :meth:`Model.save_weights` instead of :meth:`Model.save`.
    mode : {"auto", "min", "max"}, default="auto"
    save_freq : "epoch"
        Only per-epoch saving is supported.
    initial_value_threshold : float, optional
        With ``save_best_only``, the value the first save must beat.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        self.filepath = _text_path(filepath, "ModelCheckpoint(filepath")
        self.monitor = str(monitor)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _resolve_mode(mode, self.monitor, "ModelCheckpoint")
        if save_freq != "epoch":
            raise ValueError(f"ModelCheckpoint(save_freq={save_freq!r}): only 'epoch' is "
                             "supported (batches run inside the engine)")
        self.save_freq = save_freq
        self.best = None if initial_value_threshold is None else \
            _real(initial_value_threshold, "ModelCheckpoint(initial_value_threshold")

    def _path(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint filepath {self.filepath!r} could not be "
                             f"formatted with epoch and the logs {sorted(logs or {})}: "
                             f"{exc!r}") from None

    def on_epoch_end(self, epoch, logs=None):
        path = self._path(epoch, logs)
        if self.save_best_only:
            current = _monitor_value(logs, self.monitor, "ModelCheckpoint")
            if current is None or not math.isfinite(float(current)):
                return
            current = float(current)
            better = self.best is None or (current < self.best if self.mode == "min"
                                           else current > self.best)
            if not better:
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from "
                          f"{self.best:.5f}")
                return
            if self.verbose:
                prev = ("inf" if self.mode == "min" else "-inf") if self.best is None \
                    else f"{self.best:.5f}"
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {prev} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:                # as Keras, the checkpoint's folders are created
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite.

    (fit already stops on a diverging loss and restores the last finite weights;
    this callback also catches a non-finite ``val_loss``.)
    """

    def on_epoch_end(self, epoch, logs=None):
        for key in ("loss", "val_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                print(f"Epoch {epoch + 1}: invalid {key} ({value}), terminating training")
                self.model.stop_training = True
                return


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` then the sorted log keys.

    Parameters
    ----------
    filename : str or path
    separator : str, default=","
    append : bool, default=False
        Append to an existing file (the header is written only if it is empty).
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = _text_path(filename, "CSVLogger(filename")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger(separator={separator!r}): must be one character, "
                             "such as ',' or '\\t'")
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        write_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8") as f:
                write_header = not f.readline()
        self._file = open(self.filename, "a" if self.append else "w", newline="",
                          encoding="utf-8")
        self._write_header = write_header
        self.keys = None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self.keys,
                                          delimiter=self.sep, extrasaction="ignore")
            if self._write_header:
                self._writer.writeheader()
        row = {"epoch": epoch}
        for k in self.keys:
            v = logs.get(k, "NA")
            row[k] = repr(float(v)) if isinstance(v, (float, np.floating)) else v
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def _n_positional(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and
               p.default is p.empty for p in params)


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch from ``schedule``.

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> new lr`` (or ``schedule(epoch)``), epochs from 0.
    verbose : int, default=0
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler needs a callable schedule; got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        self._two_args = _n_positional(schedule) >= 2

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.model.optimizer.learning_rate)
        new = self.schedule(epoch, lr) if self._two_args else self.schedule(epoch)
        if isinstance(new, bool) or not isinstance(new, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(new)) or float(new) <= 0:
            raise ValueError(f"the schedule of LearningRateScheduler must return a finite "
                             f"number > 0; returned {new!r} for epoch {epoch}")
        self.model.optimizer.learning_rate = float(new)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(new):g}.")


class LambdaCallback(Callback):
    """A callback from plain functions.

    Parameters
    ----------
    on_epoch_begin, on_epoch_end : callable ``(epoch, logs)``, optional
    on_train_begin, on_train_end : callable ``(logs)``, optional
    on_epoch_progress : callable ``(epoch, steps_done, logs)``, optional
    """

    _HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
              "on_epoch_progress")

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_epoch_progress=None, **kwargs):
        super().__init__()
        if kwargs:
            raise TypeError(f"LambdaCallback got unsupported hooks {sorted(kwargs)}; fastmlp "
                            f"supports {list(self._HOOKS)} (batches run inside the engine, so "
                            "there are no per-batch hooks)")
        for name, fn in zip(self._HOOKS, (on_epoch_begin, on_epoch_end, on_train_begin,
                                          on_train_end, on_epoch_progress)):
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback({name}=...) must be callable; got {fn!r}")
                setattr(self, name, fn)


# ----------------------------------------------------------------------------------------
# Progress display (added by fit according to ``verbose``)
class ProgressBar(Callback):
    """A live tqdm bar per epoch (``verbose=1``), updated between engine slices."""

    def __init__(self, file=None):
        super().__init__()
        self.file = file
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm
        self._bar = tqdm(total=self.params.get("steps"), unit="step",
                         desc=f"Epoch {epoch + 1}/{self.params.get('epochs')}",
                         file=self.file if self.file is not None else sys.stdout,
                         leave=True, mininterval=0.1, dynamic_ncols=True)

    def on_epoch_progress(self, epoch, steps_done, logs=None):
        bar = self._bar
        if bar is None:
            return
        if logs:
            bar.set_postfix_str(format_logs(logs), refresh=False)
        bar.update(steps_done - bar.n)

    def on_epoch_end(self, epoch, logs=None):
        bar = self._bar
        if bar is None:
            return
        bar.set_postfix_str(format_logs(logs or {}), refresh=False)
        bar.update(max(0, (bar.total or bar.n) - bar.n))
        bar.close()
        self._bar = None

    def on_train_end(self, logs=None):
        if self._bar is not None:   # interrupted mid-epoch
            self._bar.close()
            self._bar = None


class EpochLogger(Callback):
    """One line per epoch (``verbose=2``): ``Epoch 3/10 - 0.21s - loss: ... - ...``."""

    def __init__(self, file=None):
        super().__init__()
        self.file = file
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        line = f"Epoch {epoch + 1}/{self.params.get('epochs')} - {dt:.2f}s"
        if logs:
            line += " - " + format_logs(logs)
        print(line, file=self.file if self.file is not None else sys.stdout, flush=True)
