"""Optimizers and learning-rate schedules with Keras' names, defaults and formulas.

Each optimizer converts to a :class:`fastmlp.backends.base.OptimizerSpec` (the exact
update formulas are in :mod:`fastmlp.backends.base`); the engine applies the updates.

======================  ==========================================================
class                   Keras defaults
======================  ==========================================================
``SGD``                 ``learning_rate=0.01, momentum=0.0, nesterov=False``
``Adam``                ``learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7``
``RMSprop``             ``learning_rate=0.001, rho=0.9, epsilon=1e-7``
``Adagrad``             ``learning_rate=0.001, initial_accumulator_value=0.1,
                        epsilon=1e-7``
======================  ==========================================================

``learning_rate`` may be a float, a schedule, or a plain function ``f(epoch) -> lr``
evaluated at the start of every epoch (epochs counted from 0).  Schedules:

* :class:`ExponentialDecay`, :class:`InverseTimeDecay` -- per update step, computed
  inside the engine (Keras' formulas, ``staircase`` supported);
* :class:`PiecewiseConstantDecay` -- per update step (Keras' semantics); fit stops
  its engine slices exactly at the boundaries, so the switch is exact;
* :class:`StepDecay` -- per epoch: ``lr0 * drop ** floor(epoch / epochs_per_drop)``;
* :class:`LambdaSchedule` -- wraps ``f(epoch)`` (what a plain function becomes).

Examples
--------
>>> from fastmlp import optimizers
>>> opt = optimizers.SGD(0.1, momentum=0.9, nesterov=True)
>>> opt = optimizers.Adam(optimizers.ExponentialDecay(1e-3, decay_steps=1000,
...                                                   decay_rate=0.9))
"""

from __future__ import annotations

import bisect
import gc
import math
import warnings
import weakref

import numpy as np

from .backends.base import OptimizerSpec

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "Adagrad", "LearningRateSchedule",
           "ExponentialDecay", "InverseTimeDecay", "PiecewiseConstantDecay", "StepDecay",
           "LambdaSchedule", "get"]


def _is_whole(value) -> bool:
    """An int, or a float without a fractional part (3.0); not a bool."""
    return (not isinstance(value, bool)
            and isinstance(value, (int, float, np.integer, np.floating))
            and float(value).is_integer())


def _positive(value, name, *, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number; got {value!r}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not ok or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be finite and {'>=' if allow_zero else '>'} 0")
    return value


def _unit_interval(value, name):
    value = _positive(value, name, allow_zero=True)
    if not value < 1.0:
        raise ValueError(f"{name}={value!r} must be in [0, 1)")
    return value


# ----------------------------------------------------------------------------------------
# Learning-rate schedules
class LearningRateSchedule:
    """Base class of learning-rate schedules.

    A schedule is evaluated in one of three ways (``kind``):

    * ``"engine"``: the engine computes it from the update count (see
      :meth:`engine_fields`);
    * ``"step"``: Python sets the rate between engine slices, which end where the
      rate changes (see :meth:`steps_until_change`);
    * ``"epoch"``: Python sets the rate at the start of every epoch
      (:meth:`at_epoch`).
    """

    kind = "epoch"

    def __call__(self, step):
        """The learning rate of update ``step`` (0-based), as in Keras."""
        raise NotImplementedError

    def at_epoch(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (per-epoch schedules)."""
        raise NotImplementedError

    def initial_rate(self) -> float:
        """The rate of the first update of training."""
        return float(self.at_epoch(0) if self.kind == "epoch" else self(0))

    def engine_fields(self) -> dict:
        """OptimizerSpec fields of an engine-computed schedule (``kind="engine"``)."""
        return {"schedule": "constant", "learning_rate": self.initial_rate()}

    def steps_until_change(self, step: int):
        """Updates from ``step`` during which the rate stays ``self(step)`` (None:
        forever).  Only for ``kind="step"``."""
        return None

    def get_config(self) -> dict:
        """JSON-serialisable constructor arguments."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _EngineDecay(LearningRateSchedule):
    kind = "engine"
    _engine_name = None

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.decay_rate = _positive(decay_rate, "decay_rate", allow_zero=True)
        self.staircase = bool(staircase)

    def engine_fields(self):
        return {"schedule": self._engine_name, "learning_rate": self.initial_learning_rate,
                "decay_rate": self.decay_rate, "decay_steps": self.decay_steps,
                "staircase": self.staircase}

    def __call__(self, step):
        return OptimizerSpec(**self.engine_fields()).learning_rate_at(int(step))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


class ExponentialDecay(_EngineDecay):
    """``lr0 * decay_rate ** (step / decay_steps)`` per update (Keras' formula).

    Parameters
    ----------
    initial_learning_rate : float
    decay_steps : float
        Updates (batches, not epochs) per decay period.
    decay_rate : float
    staircase : bool, default=False
        Floor ``step / decay_steps`` (decay in discrete jumps).
    """

    _engine_name = "exponential"


class InverseTimeDecay(_EngineDecay):
    """``lr0 / (1 + decay_rate * step / decay_steps)`` per update (Keras' formula).

    Parameters
    ----------
    initial_learning_rate : float
    decay_steps : float
    decay_rate : float
    staircase : bool, default=False
    """

    _engine_name = "inverse_time"


class PiecewiseConstantDecay(LearningRateSchedule):
    """Constant pieces over update steps (Keras' semantics): ``values[0]`` while
    ``step <= boundaries[0]``, ``values[1]`` while ``step <= boundaries[1]``, ...,
    ``values[-1]`` afterwards.

    Parameters
    ----------
    boundaries : sequence of int
        Strictly increasing update counts.
    values : sequence of float
        One more than ``boundaries``.
    """

    kind = "step"

    def __init__(self, boundaries, values):
        if isinstance(boundaries, (str, bytes)) or not hasattr(boundaries, "__iter__"):
            raise TypeError(f"boundaries={boundaries!r} must be a sequence of ints (steps)")
        if not all(_is_whole(b) for b in boundaries):
            raise ValueError(f"boundaries={list(boundaries)!r} must hold whole numbers "
                             "(step counts)")
        boundaries = [int(b) for b in boundaries]
        values = [_positive(v, "values[i]") for v in values]
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values needs one more entry than boundaries; got "
                             f"{len(values)} values and {len(boundaries)} boundaries")
        if any(b1 <= b0 for b0, b1 in zip(boundaries, boundaries[1:])) or \
                any(b < 0 for b in boundaries):
            raise ValueError(f"boundaries={boundaries} must be >= 0 and strictly increasing")
        self.boundaries, self.values = boundaries, values

    def __call__(self, step):
        return self.values[bisect.bisect_left(self.boundaries, int(step))]

    def steps_until_change(self, step):
        i = bisect.bisect_left(self.boundaries, int(step))
        return None if i == len(self.boundaries) else self.boundaries[i] + 1 - int(step)

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


class StepDecay(LearningRateSchedule):
    """Per-epoch step decay: ``initial_learning_rate * drop ** floor(epoch / epochs_per_drop)``.

    Parameters
    ----------
    initial_learning_rate : float
    drop : float, default=0.5
        Factor applied every ``epochs_per_drop`` epochs.
    epochs_per_drop : int, default=10
    """

    kind = "epoch"

    def __init__(self, initial_learning_rate, drop=0.5, epochs_per_drop=10):
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate")
        self.drop = _positive(drop, "drop")
        if not _is_whole(epochs_per_drop) or epochs_per_drop < 1:
            raise ValueError(f"epochs_per_drop={epochs_per_drop!r} must be an int >= 1")
        self.epochs_per_drop = int(epochs_per_drop)

    def at_epoch(self, epoch):
        return self.initial_learning_rate * self.drop ** (int(epoch) // self.epochs_per_drop)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "drop": self.drop,
                "epochs_per_drop": self.epochs_per_drop}


class LambdaSchedule(LearningRateSchedule):
    """A per-epoch schedule from a function ``fn(epoch) -> learning rate``.

    Functions cannot be saved with a model: a saved model keeps the rate reached.
    """

    kind = "epoch"

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"LambdaSchedule needs a callable fn(epoch); got {fn!r}")
        self.fn = fn

    def at_epoch(self, epoch):
        lr = self.fn(int(epoch))
        try:
            return _positive(lr, f"learning-rate function {self.fn!r} returned lr")
        except TypeError:
            raise TypeError(f"the learning-rate function {self.fn!r} must return a number; "
                            f"returned {lr!r} for epoch {epoch}") from None

    def get_config(self):
        return {"fn": getattr(self.fn, "__name__", repr(self.fn))}


_SCHEDULES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay,
                                      PiecewiseConstantDecay, StepDecay)}


def _schedule_from_config(config):
    cls = _SCHEDULES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"unknown learning-rate schedule in config: {config!r}")
    return cls(**config["config"])


# ----------------------------------------------------------------------------------------
# Optimizers
class Optimizer:
    """Base class: a description of the update rule, converted to an
    :class:`~fastmlp.backends.base.OptimizerSpec` when the model is built.

    Parameters
    ----------
    learning_rate : float, LearningRateSchedule or callable ``f(epoch)``
    global_clipnorm : float, optional
        Rescale the gradient (all parameters together) to at most this norm.
    clipnorm : float, optional
        Accepted for Keras code; fastmlp applies it to the global norm as well
        (Keras clips each weight array separately).

    Attributes
    ----------
    learning_rate : float
        While the optimizer drives a model: the rate the next update uses; setting
        it changes the rate from now on (what ReduceLROnPlateau does).  Not settable
        when a schedule was given.
    iterations : int
        Updates applied so far.
    """

    kind = None

    def __init__(self, learning_rate, *, global_clipnorm=None, clipnorm=None):
        if isinstance(learning_rate, LearningRateSchedule):
            self._learning_rate = learning_rate
        elif callable(learning_rate):
            self._learning_rate = LambdaSchedule(learning_rate)
        else:
            self._learning_rate = _positive(learning_rate, "learning_rate")
        if global_clipnorm is not None and clipnorm is not None:
            raise ValueError("give clipnorm or global_clipnorm, not both")
        clip = global_clipnorm if global_clipnorm is not None else clipnorm
        self.clipnorm = None if clip is None else _positive(clip, "clipnorm")
        self._network = None
        self._owner = None     # weak reference to the Model compiled with this optimizer

    # -- the learning rate ----------------------------------------------------------------
    @property
    def schedule(self):
        """The LearningRateSchedule given as ``learning_rate`` (None for a constant)."""
        lr = self._learning_rate
        return lr if isinstance(lr, LearningRateSchedule) else None

    @property
    def learning_rate(self):
        if self._network is not None:
            return float(self._network.current_learning_rate)
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if self.schedule is not None:
            raise TypeError(f"this optimizer's learning rate follows the schedule "
                            f"{self.schedule!r}, so it cannot be set; use a float "
                            "learning_rate to change it during training")
        value = _positive(value, "learning_rate")
        self._learning_rate = value
        if self._network is not None:
            self._network.set_learning_rate(value)

    @property
    def iterations(self) -> int:
        return 0 if self._network is None else int(self._network.step)

    def _bind(self, network):
        """Attach to the engine network that applies this optimizer's updates."""
        self._network = network

    def _claim(self, model):
        """Make ``model`` this optimizer's only user (None: release it).  One instance
        drives one model's updates, step count and learning rate, so a second live model
        is refused (as Keras does) rather than silently taking it over."""
        if model is not None:
            self._check_free_for(model)
        self._owner = None if model is None else weakref.ref(model)

    def _check_free_for(self, model):
        """Raise unless ``model`` may use this optimizer (see _claim)."""
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner is not model:
            # a model dropped by the user may linger in a reference cycle (its layers
            # point back to it) until the collector runs: only a live one counts
            del owner
            gc.collect()
            owner = self._owner()
        if owner is not None and owner is not model:
            raise ValueError(
                f"this {type(self).__name__} instance is already used by another model; give "
                f"each model its own optimizer (e.g. optimizers.{type(self).__name__}(...) "
                "again, or a name such as 'adam')")

    # -- conversion ----------------------------------------------------------------------
    def _rule_fields(self) -> dict:
        raise NotImplementedError

    def to_spec(self, epoch: int = 0) -> "OptimizerSpec":
        """The engine's OptimizerSpec (the learning rate of ``epoch`` for per-epoch
        schedules, of the first update for per-step ones)."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            if lr.kind == "engine":
                fields = lr.engine_fields()
            elif lr.kind == "epoch":
                fields = {"learning_rate": lr.at_epoch(epoch)}
            else:
                fields = {"learning_rate": lr(0)}
        else:
            fields = {"learning_rate": lr}
        return OptimizerSpec(kind=self.kind, clipnorm=self.clipnorm, **fields,
                             **self._rule_fields())

    def get_config(self) -> dict:
        """JSON-serialisable description (``{"class_name", "config"}``); a function
        learning rate is replaced by the current rate, with a warning."""
        lr = self._learning_rate
        if isinstance(lr, LambdaSchedule):
            current = float(self._network.optimizer.learning_rate) if self._network \
                is not None else lr.at_epoch(0)
            warnings.warn(f"the learning-rate function {lr.fn!r} cannot be saved; the saved "
                          f"optimizer uses the constant rate {current:g}", UserWarning,
                          stacklevel=3)
            lr_cfg = current
        elif isinstance(lr, LearningRateSchedule):
            lr_cfg = {"class_name": type(lr).__name__, "config": lr.get_config()}
        else:
            lr_cfg = lr
        return {"class_name": type(self).__name__,
                "config": dict(learning_rate=lr_cfg, global_clipnorm=self.clipnorm,
                               **self._public_config())}

    def _public_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        """Build an optimizer from :meth:`get_config`'s output."""
        name, kwargs = config["class_name"], dict(config["config"])
        if name not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer class {name!r} in config")
        lr = kwargs.get("learning_rate")
        if isinstance(lr, dict):
            kwargs["learning_rate"] = _schedule_from_config(lr)
        return _OPTIMIZERS[name](**kwargs)

    def __repr__(self):
        cfg = self.get_config()["config"] if not isinstance(self._learning_rate, LambdaSchedule) \
            else dict(learning_rate=self._learning_rate, **self._public_config())
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if v is not None)
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v = momentum * v - lr * g``; ``w += v`` (or ``w += momentum * v - lr * g``
    with Nesterov): Keras' and scikit-learn's formula.

    Parameters
    ----------
    learning_rate : float, schedule or callable, default=0.01
    momentum : float in [0, 1), default=0.0
    nesterov : bool, default=False
    global_clipnorm, clipnorm : float, optional
    """

    kind = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, *,
                 global_clipnorm=None, clipnorm=None):
        super().__init__(learning_rate, global_clipnorm=global_clipnorm, clipnorm=clipnorm)
        self.momentum = _unit_interval(momentum, "momentum")
        self.nesterov = bool(nesterov)

    def _rule_fields(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def _public_config(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras' epsilon placement (``m_hat / (sqrt(v) + eps)`` with the bias
    correction folded into the step size; also scikit-learn's).

    Parameters
    ----------
    learning_rate : float, schedule or callable, default=0.001
    beta_1 : float, default=0.9
    beta_2 : float, default=0.999
    epsilon : float, default=1e-7
    amsgrad : bool, default=False
        Only False is supported (accepted so that Keras code runs unchanged).
    global_clipnorm, clipnorm : float, optional
    """

    kind = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, *, global_clipnorm=None, clipnorm=None):
        super().__init__(learning_rate, global_clipnorm=global_clipnorm, clipnorm=clipnorm)
        if amsgrad:
            raise ValueError("amsgrad=True is not supported by fastmlp's engine")
        self.beta_1 = _unit_interval(beta_1, "beta_1")
        self.beta_2 = _unit_interval(beta_2, "beta_2")
        self.epsilon = _positive(epsilon, "epsilon", allow_zero=True)

    def _rule_fields(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "epsilon_style": "keras"}

    def _public_config(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop as in Keras: ``v = rho v + (1 - rho) g^2``; ``w -= lr g / sqrt(v + eps)``.

    Parameters
    ----------
    learning_rate : float, schedule or callable, default=0.001
    rho : float, default=0.9
    momentum : float, default=0.0
        Only 0 is supported (accepted for Keras code).
    epsilon : float, default=1e-7
    centered : bool, default=False
        Only False is supported.
    global_clipnorm, clipnorm : float, optional
    """

    kind = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, *, global_clipnorm=None, clipnorm=None):
        super().__init__(learning_rate, global_clipnorm=global_clipnorm, clipnorm=clipnorm)
        if momentum:
            raise ValueError(f"RMSprop(momentum={momentum!r}) is not supported by fastmlp's "
                             "engine; use momentum=0 or SGD(momentum=...)")
        if centered:
            raise ValueError("RMSprop(centered=True) is not supported by fastmlp's engine")
        self.rho = _unit_interval(rho, "rho")
        self.epsilon = _positive(epsilon, "epsilon", allow_zero=True)

    def _rule_fields(self):
        return {"rho": self.rho, "epsilon": self.epsilon}

    def _public_config(self):
        return {"rho": self.rho, "epsilon": self.epsilon}


class Adagrad(Optimizer):
    """Adagrad as in Keras: ``a += g^2`` (``a`` starts at
    ``initial_accumulator_value``); ``w -= lr g / sqrt(a + eps)``.

    Parameters
    ----------
    learning_rate : float, schedule or callable, default=0.001
    initial_accumulator_value : float, default=0.1
    epsilon : float, default=1e-7
    global_clipnorm, clipnorm : float, optional
    """

    kind = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, *,
                 global_clipnorm=None, clipnorm=None):
        super().__init__(learning_rate, global_clipnorm=global_clipnorm, clipnorm=clipnorm)
        self.initial_accumulator_value = _positive(initial_accumulator_value,
                                                   "initial_accumulator_value", allow_zero=True)
        self.epsilon = _positive(epsilon, "epsilon", allow_zero=True)

    def _rule_fields(self):
        return {"initial_accumulator": self.initial_accumulator_value,
                "epsilon": self.epsilon}

    def _public_config(self):
        return {"initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


_OPTIMIZERS = {c.__name__: c for c in (SGD, Adam, RMSprop, Adagrad)}
_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad}


def get(identifier) -> Optimizer:
    """An :class:`Optimizer` from a name ("sgd", "adam", "rmsprop", "adagrad"; Keras
    defaults), a config dict or an instance (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.strip().lower()
        if key not in _BY_NAME:
            raise ValueError(f"optimizer={identifier!r} is not known; expected one of "
                             f"{sorted(_BY_NAME)} or a fastmlp.optimizers instance")
        return _BY_NAME[key]()
    if isinstance(identifier, dict):
        return Optimizer.from_config(identifier)
    raise TypeError("optimizer must be a name ('sgd', 'adam', 'rmsprop', 'adagrad') or a "
                    f"fastmlp.optimizers.Optimizer; got {identifier!r}")
