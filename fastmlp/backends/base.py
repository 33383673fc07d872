"""The Network interface that every backend implements, and the plain data that
describes a network (``NetworkSpec``) and its optimizer (``OptimizerSpec``).

Layering: fronts (``model.py``, ``sklearn.py``) build a ``NetworkSpec`` and an
``OptimizerSpec``, ask :func:`fastmlp.backends.make_network` for a ``Network`` and
drive it once per epoch (or per slice of an epoch).  Backends do everything inside
an epoch.  Nothing here knows about Keras or scikit-learn semantics beyond the
switches in the specs, and nothing here knows about pointers.

Semantics shared by every backend (the NumPy reference is the executable form):

* Layer ``l`` computes ``Z = A_prev @ W[l] + b[l]`` and ``A = act(Z)``, with ``W[l]``
  of shape ``(fan_in, fan_out)`` like scikit-learn's ``coefs_``.  ``A`` then gets
  inverted dropout (``A * keep / (1 - rate)``) while training, hidden layers only.
* All parameters live in one flat buffer: for each layer, ``W`` (row-major) then
  ``b`` (absent when ``use_bias`` is False).  ``params``/``coefs``/``intercepts``
  are views into it.
* Data loss of a batch, with per-row weights ``w`` (1 when not given)::

      L_data = scale * sum_i w_i * l_i / norm,
      norm   = sum_i w_i   (weight_normalization="sum_weights", scikit-learn;
                            n_batch for a batch whose weights are all 0, which
                            scikit-learn fails on with ZeroDivisionError)
             = n_batch     (weight_normalization="n_samples",  Keras)

  where ``l_i`` is, summed over outputs k:

  - ``squared_error``:  0.5 * (p - y)^2                         (any output act)
  - ``binary_crossentropy``: -y log p - (1-y) log(1-p)  (sigmoid output)
  - ``categorical_crossentropy``: -sum_k y_k log p_k     (softmax output; Y may
    be one-hot rows or integer class labels)
  - ``poisson``: y log(y/p) - y + p  with p = exp(z)     (exp output)

  Log-probabilities are clipped to ``[log(eps), log(1-eps)]`` with ``eps`` the
  dtype's machine epsilon, as scikit-learn (and Keras) clip probabilities.
  ``scale`` lets a front express per-output means (Keras' "mse" is
  ``squared_error`` with ``scale = 2 / n_outputs``).
* Penalty of a batch: ``P = sum_l (l2[l] * ||W[l]||^2 + l1[l] * |W[l]|_1) * s``
  with ``s = 1 / norm`` when ``penalty_normalization="per_sample"`` (scikit-learn:
  ``l2 = alpha / 2``) and ``s = 1`` when ``"none"`` (Keras regularizers).  Biases
  are never penalised.  The batch loss is ``L_data + P``; gradients are exact
  gradients of it (finite differences agree), except where the cross-entropies clip
  log p at the dtype's epsilon: there the loss is flat and the gradient stays
  ``p - y``, scikit-learn's convention; and L2's term for weights so small that it would
  be denormal counts as 0 (Denormal numbers, below).
* Epoch loss (what ``train_epoch`` returns) is ``sum_b loss_b * n_b / N`` over the
  batches of the epoch, as scikit-learn accumulates it.
* Optimizers (``OptimizerSpec.kind``), with ``g`` the gradient after optional
  global-norm clipping and ``lr`` the learning rate of the step:

  - ``sgd``: ``v = momentum * v - lr * g``; ``w += v`` or, with Nesterov,
    ``w += momentum * v - lr * g``.  This is both scikit-learn's and Keras'
    formula (PyTorch's differs only in when ``lr`` multiplies, identical for a
    constant lr).
  - ``adam``: ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``w -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``: scikit-learn's and
    Keras' placement of epsilon.  ``epsilon_style="pytorch"`` puts it after the
    bias correction instead (``m_hat / (sqrt(v_hat) + eps)``).
  - ``rmsprop`` (Keras): ``v = rho v + (1-rho) g^2``; ``w -= lr * g / sqrt(v + eps)``.
  - ``adagrad`` (Keras): ``a += g^2`` (``a`` starts at ``initial_accumulator``);
    ``w -= lr * g / sqrt(a + eps)``.
* Denormal numbers, in every backend (denormal arithmetic is ~100x slower on x86, and a
  dead unit's momentum decays through that range, as do, with L2, the weights of an input
  that is always 0, such as MNIST's border pixels): optimizer state values (velocity,
  Adam's moments, accumulators) and updated parameters smaller than the dtype's smallest
  normal number ``tiny`` are stored as 0; in the state's update the gradient's terms count
  as 0 where ``|g|`` is below a threshold, Adam's first-moment term ``(1-beta_1) g`` for
  ``|g| < tiny / c`` with ``c = 1-beta_1``, the squared-gradient term ``c g^2`` for
  ``|g| < sqrt(tiny / c)`` with ``c = 1-beta_2`` (Adam), ``1-rho`` (RMSprop) or 1
  (Adagrad); and the L2 penalty's gradient ``2 l2 s w`` counts as 0 for
  ``|w| < tiny / (2 l2 s)``.  Each ``c`` and ``2 l2 s`` is rounded to the dtype, each
  threshold computed in float64 and rounded to the dtype, so that the backends agree
  exactly; a threshold is where the term would fall below ``tiny``, to rounding.  A
  dropped square term moves ``sqrt(v)`` by less than ``sqrt(tiny)`` (1e-19 in float32),
  far below the default epsilon, so the step it would have changed changes only in
  rounding.
* Learning rate of step ``t`` (0-based count of updates so far):
  ``schedule="constant"``: ``lr``; ``"exponential"``: ``lr * decay_rate ** (t/decay_steps)``;
  ``"inverse_time"``: ``lr / (1 + decay_rate * t/decay_steps)``; with ``staircase``
  the ratio ``t/decay_steps`` is floored.  ``set_learning_rate`` replaces ``lr``.
* Divergence: a batch whose loss is not finite is not applied; the epoch stops
  there, ``diverged`` becomes True and ``train_epoch`` returns ``nan``.  Only the loss
  is checked per batch (a pass over the gradients would cost every step), so an update
  whose loss was finite can still leave non-finite weights (an overflowing gradient, a
  float32 loss that is finite in the double the engine sums it in): the
  fronts check the weights: Model.fit after every epoch (with the optimizer state, then
  restoring the last sound weights), the scikit-learn estimators at the end of fit
  (raising, as scikit-learn does).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

ACTIVATIONS = (
    "identity", "relu", "sigmoid", "tanh", "softmax",
    "leaky_relu", "elu", "softplus", "gelu", "exp",
)
#: aliases accepted everywhere (scikit-learn and Keras spellings)
ACTIVATION_ALIASES = {"logistic": "sigmoid", "linear": "identity", None: "identity",
                      "exponential": "exp"}
LOSSES = ("squared_error", "binary_crossentropy", "categorical_crossentropy", "poisson")
#: output activation each loss requires (None: any)
LOSS_OUTPUT_ACTIVATION = {
    "squared_error": None,
    "binary_crossentropy": "sigmoid",
    "categorical_crossentropy": "softmax",
    "poisson": "exp",
}
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")
SCHEDULES = ("constant", "exponential", "inverse_time")
#: negative slope of leaky_relu and alpha of elu (Keras 3 defaults are 0.2 and 1.0)
LEAKY_RELU_SLOPE = 0.2
ELU_ALPHA = 1.0


def canonical_activation(name) -> str:
    """Return the canonical activation name, accepting aliases; ValueError otherwise."""
    key = name.lower() if isinstance(name, str) else name
    key = ACTIVATION_ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise ValueError(
            f"activation={name!r} is not supported; expected one of "
            f"{sorted(ACTIVATIONS + tuple(k for k in ACTIVATION_ALIASES if k))}")
    return key


def _tuple(value, n, what, cast):
    if np.ndim(value) == 0:
        return (cast(value),) * n
    value = tuple(cast(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} entries; expected one per layer ({n})")
    return value


@dataclass(frozen=True)
class NetworkSpec:
    """Plain description of a dense network; validated on construction.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_features, hidden_1, ..., n_outputs)``; at least 2 entries (no hidden
        layer means linear / logistic regression).
    activations : str or sequence of str
        One per layer (``len(layer_sizes) - 1``); the last is the output activation.
    loss : str
        One of :data:`LOSSES`.
    dtype : "float32" or "float64"
    use_bias, dropout, l2, l1 : scalar or one per layer
        ``dropout[l]`` is the rate applied to layer ``l``'s output while training
        (must be 0 for the output layer).  ``l2``/``l1`` penalise ``W[l]``.
    loss_scale : float
        Multiplies the data loss (see module docstring).
    weight_normalization : "sum_weights" or "n_samples"
    penalty_normalization : "per_sample" or "none"
    """

    layer_sizes: tuple
    activations: tuple
    loss: str = "squared_error"
    dtype: str = "float64"
    use_bias: tuple = True
    dropout: tuple = 0.0
    l2: tuple = 0.0
    l1: tuple = 0.0
    loss_scale: float = 1.0
    weight_normalization: str = "sum_weights"
    penalty_normalization: str = "per_sample"

    def __post_init__(self):
        sizes = tuple(int(s) for s in self.layer_sizes)
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes={self.layer_sizes!r} needs at least an input "
                             "and an output size")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"layer_sizes={self.layer_sizes!r}: every size must be a "
                             "positive integer")
        n = len(sizes) - 1
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        set_("layer_sizes", sizes)
        acts = ((self.activations,) * n if isinstance(self.activations, str)
                or self.activations is None else tuple(self.activations))
        if len(acts) != n:
            raise ValueError(f"activations has {len(acts)} entries; expected one per "
                             f"layer ({n})")
        set_("activations", tuple(canonical_activation(a) for a in acts))
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not supported; expected one of {LOSSES}")
        need = LOSS_OUTPUT_ACTIVATION[self.loss]
        if need is not None and self.activations[-1] != need:
            raise ValueError(f"loss={self.loss!r} needs a {need!r} output layer; the output "
                             f"activation is {self.activations[-1]!r}")
        if self.activations[-1] == "softmax" and sizes[-1] < 2 and self.loss != "squared_error":
            raise ValueError("a softmax output needs at least 2 units")
        if str(np.dtype(self.dtype)) not in ("float32", "float64"):
            raise ValueError(f"dtype={self.dtype!r}: expected 'float32' or 'float64'")
        set_("dtype", str(np.dtype(self.dtype)))
        set_("use_bias", _tuple(self.use_bias, n, "use_bias", bool))
        set_("dropout", _tuple(self.dropout, n, "dropout", float))
        set_("l2", _tuple(self.l2, n, "l2", float))
        set_("l1", _tuple(self.l1, n, "l1", float))
        for r in self.dropout:
            if not (0.0 <= r < 1.0) or math.isnan(r):
                raise ValueError(f"dropout={self.dropout!r}: each rate must be in [0, 1)")
        if self.dropout[-1] != 0.0:
            raise ValueError("dropout on the output layer is not supported; use it on "
                             "hidden layers")
        for name in ("l2", "l1"):
            if any(not (v >= 0.0) or math.isinf(v) for v in getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)!r}: penalties must be "
                                 "finite and >= 0")
        if not (self.loss_scale > 0 and math.isfinite(self.loss_scale)):
            raise ValueError(f"loss_scale={self.loss_scale!r} must be finite and > 0")
        if self.weight_normalization not in ("sum_weights", "n_samples"):
            raise ValueError("weight_normalization must be 'sum_weights' or 'n_samples'")
        if self.penalty_normalization not in ("per_sample", "none"):
            raise ValueError("penalty_normalization must be 'per_sample' or 'none'")

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden + output)."""
        return len(self.layer_sizes) - 1

    @property
    def n_features(self) -> int:
        """Width of the input (the first layer's fan-in)."""
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        """Units of the output layer."""
        return self.layer_sizes[-1]

    def layer_offsets(self):
        """``[(w_offset, b_offset_or_None, fan_in, fan_out), ...]`` into the flat buffer."""
        out, off = [], 0
        for l in range(self.n_layers):
            fi, fo = self.layer_sizes[l], self.layer_sizes[l + 1]
            w_off = off
            off += fi * fo
            b_off = None
            if self.use_bias[l]:
                b_off = off
                off += fo
            out.append((w_off, b_off, fi, fo))
        return out

    @property
    def n_params(self) -> int:
        """Length of the flat parameter buffer (every W and b)."""
        w_off, b_off, fi, fo = self.layer_offsets()[-1]
        return (b_off + fo) if b_off is not None else (w_off + fi * fo)

    def with_changes(self, **kw) -> "NetworkSpec":
        """A copy with the given fields replaced (validated again)."""
        return replace(self, **kw)


@dataclass(frozen=True)
class OptimizerSpec:
    """Plain description of an optimizer (see the module docstring for formulas)."""

    kind: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    epsilon_style: str = "keras"          # "keras" (= scikit-learn) or "pytorch"
    rho: float = 0.9
    initial_accumulator: float = 0.1
    clipnorm: Optional[float] = None      # global-norm gradient clipping
    schedule: str = "constant"
    decay_rate: float = 1.0
    decay_steps: float = 1.0
    staircase: bool = False

    def __post_init__(self):
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.kind!r} is not supported; expected one of "
                             f"{OPTIMIZERS}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate={self.learning_rate!r} must be finite and > 0")
        if not (0.0 <= self.momentum <= 1.0):
            raise ValueError(f"momentum={self.momentum!r} must be in [0, 1]")
        for name in ("beta_1", "beta_2", "rho"):
            v = getattr(self, name)
            if not (0.0 <= v < 1.0):
                raise ValueError(f"{name}={v!r} must be in [0, 1)")
        if not (self.epsilon >= 0.0 and math.isfinite(self.epsilon)):
            raise ValueError(f"epsilon={self.epsilon!r} must be finite and >= 0")
        if self.epsilon_style not in ("keras", "pytorch"):
            raise ValueError("epsilon_style must be 'keras' or 'pytorch'")
        if self.initial_accumulator < 0:
            raise ValueError("initial_accumulator must be >= 0")
        if self.clipnorm is not None and not (self.clipnorm > 0):
            raise ValueError(f"clipnorm={self.clipnorm!r} must be > 0 or None")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: expected one of {SCHEDULES}")
        if not (self.decay_steps > 0):
            raise ValueError("decay_steps must be > 0")
        if not (self.decay_rate >= 0):
            raise ValueError("decay_rate must be >= 0")

    @property
    def n_slots(self) -> int:
        """How many parameter-sized state buffers this optimizer keeps."""
        return {"sgd": 1 if self.momentum > 0 else 0, "adam": 2, "rmsprop": 1,
                "adagrad": 1}[self.kind]

    def learning_rate_at(self, step: int) -> float:
        """Learning rate used for update number ``step`` (0-based)."""
        if self.schedule == "constant":
            return self.learning_rate
        ratio = step / self.decay_steps
        if self.staircase:
            ratio = math.floor(ratio)
        if self.schedule == "exponential":
            return self.learning_rate * self.decay_rate ** ratio
        return self.learning_rate / (1.0 + self.decay_rate * ratio)

    def with_changes(self, **kw) -> "OptimizerSpec":
        """A copy with the given fields replaced (validated again)."""
        return replace(self, **kw)


def shuffled_order(n_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The row order of a shuffled epoch: identical on every backend.

    Fisher-Yates on splitmix64 keyed by ``(seed, epoch)``, in C (csrc/rng.c): about 4x
    cheaper than NumPy's ``Generator.permutation``, which cost ~0.5 us per step of an
    iris-sized epoch.
    """
    from .cpu._network import permutation
    if n_samples < 0:
        raise ValueError("n_samples must be >= 0")
    return permutation(int(n_samples), int(seed) & 0xFFFFFFFFFFFFFFFF,
                       int(epoch) & 0xFFFFFFFFFFFFFFFF)


class Network(abc.ABC):
    """What every backend provides.  Fronts use only these members.

    Construction: ``Network(spec, optimizer=None, n_threads=1)``; parameters start
    at zero (initialise with :mod:`fastmlp.initializers` and ``set_params``).

    Attributes
    ----------
    spec : NetworkSpec
    optimizer : OptimizerSpec or None
    params : ndarray (n_params,)      -- the flat parameter buffer (a live view)
    coefs : list of ndarray (fan_in, fan_out)   -- live views into ``params``
    intercepts : list of ndarray (fan_out,) or None -- live views (None: no bias)
    step : int           -- optimizer updates applied so far (Adam's t)
    diverged : bool      -- the last epoch stopped on a non-finite loss
    n_threads : int
    """

    spec: NetworkSpec
    optimizer: Optional[OptimizerSpec]

    # ---- parameters -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def params(self) -> np.ndarray: ...

    @property
    def coefs(self):
        p = self.params
        return [p[w:w + fi * fo].reshape(fi, fo) for w, b, fi, fo in self.spec.layer_offsets()]

    @property
    def intercepts(self):
        p = self.params
        return [None if b is None else p[b:b + fo]
                for w, b, fi, fo in self.spec.layer_offsets()]

    def get_params(self) -> np.ndarray:
        """A copy of the flat parameter buffer (NumPy, on the host)."""
        return np.array(self.params, copy=True)

    @abc.abstractmethod
    def set_params(self, flat) -> None:
        """Copy a flat vector of length ``n_params`` into the parameters."""

    def set_weights(self, coefs: Sequence, intercepts: Sequence) -> None:
        """Set parameters from per-layer arrays (shapes are checked)."""
        flat = np.zeros(self.spec.n_params, dtype=self.spec.dtype)
        offs = self.spec.layer_offsets()
        if len(coefs) != len(offs) or len(intercepts) != len(offs):
            raise ValueError(f"expected {len(offs)} weight matrices and bias vectors; got "
                             f"{len(coefs)} and {len(intercepts)}")
        for (w, b, fi, fo), W, c in zip(offs, coefs, intercepts):
            W = np.asarray(W)
            if W.shape != (fi, fo):
                raise ValueError(f"weight matrix of shape {W.shape}; expected {(fi, fo)}")
            flat[w:w + fi * fo] = W.ravel()
            if b is not None:
                c = np.asarray(c)
                if c.shape != (fo,):
                    raise ValueError(f"bias of shape {c.shape}; expected {(fo,)}")
                flat[b:b + fo] = c
        self.set_params(flat)

    # ---- optimizer ----------------------------------------------------------------
    @abc.abstractmethod
    def set_optimizer(self, optimizer: OptimizerSpec, reset_state: bool = True) -> None:
        """Use ``optimizer``; zero its state (and ``step``) unless ``reset_state`` is
        False and the state layout is unchanged."""

    @abc.abstractmethod
    def set_learning_rate(self, lr: float) -> None:
        """Replace the base learning rate (schedules then apply to it)."""

    @property
    def current_learning_rate(self) -> float:
        """The learning rate the next update would use."""
        return self.optimizer.learning_rate_at(self.step)

    @abc.abstractmethod
    def get_optimizer_state(self) -> dict:
        """``{"step": int, "slots": [ndarray (n_params,), ...]}`` (copies)."""

    @abc.abstractmethod
    def set_optimizer_state(self, state: dict) -> None:
        """Restore a state from :meth:`get_optimizer_state`; ValueError when its slot
        count or lengths do not fit this optimizer."""

    def state_finite(self) -> bool:
        """True when the parameters and the optimizer state are all finite (what the
        per-batch divergence check cannot see; see Divergence above)."""
        arrays = [self.get_params()] + list(self.get_optimizer_state()["slots"])
        return all(bool(np.isfinite(np.asarray(a)).all()) for a in arrays)

    # ---- training -------------------------------------------------------------------
    @abc.abstractmethod
    def start_epoch(self, X, Y, sample_weight=None, *, batch_size: int,
                    shuffle: bool = False, seed: int = 0, epoch: int = 0,
                    order=None, track_metrics: bool = False) -> None:
        """Prepare an epoch over ``X`` (n, n_features) and ``Y``.

        ``Y`` is (n, n_outputs) in the network dtype, or, for
        categorical_crossentropy, integer class labels of shape (n,).  ``order``
        (an intp permutation, or any index array) overrides ``shuffle``; else
        ``shuffle`` uses :func:`shuffled_order` ``(n, seed, epoch)``.  Inputs must
        already be validated and C-contiguous in the network dtype (see
        :func:`fastmlp.backends.validate_training_data`).
        ``track_metrics`` accumulates weighted sums for ``epoch_metrics``.
        """

    @abc.abstractmethod
    def run_steps(self, max_steps: Optional[int] = None) -> int:
        """Run up to ``max_steps`` minibatch updates (all remaining when None) of the
        started epoch; return how many ran (0 when the epoch is over)."""

    @property
    @abc.abstractmethod
    def epoch_progress(self) -> tuple:
        """``(samples_done, n_samples)`` of the current epoch."""

    @abc.abstractmethod
    def finish_epoch(self) -> float:
        """Close the epoch; return its loss (``sum_b loss_b * n_b / N`` over the batches
        run), or nan when it diverged."""

    @property
    @abc.abstractmethod
    def epoch_metrics(self) -> dict:
        """Running metrics of the current/last epoch when ``track_metrics`` was set:
        ``{"accuracy", "mae", "mse", "data_loss", "penalty"}`` -- weighted means over
        the rows seen (accuracy: argmax match for several outputs, threshold 0.5 for
        one sigmoid output / labels; mae/mse averaged over outputs)."""

    def train_epoch(self, X, Y, sample_weight=None, *, batch_size: int,
                    shuffle: bool = False, seed: int = 0, epoch: int = 0,
                    order=None, track_metrics: bool = False) -> float:
        """Run a whole epoch of minibatch updates; return the epoch loss."""
        self.start_epoch(X, Y, sample_weight, batch_size=batch_size, shuffle=shuffle,
                         seed=seed, epoch=epoch, order=order, track_metrics=track_metrics)
        self.run_steps(None)
        return self.finish_epoch()

    # ---- full-batch evaluation ------------------------------------------------------------
    @abc.abstractmethod
    def forward(self, X, batch_size: Optional[int] = None) -> np.ndarray:
        """Outputs of the last layer for every row of ``X`` (no dropout)."""

    @abc.abstractmethod
    def loss_and_grad(self, X, Y, sample_weight=None) -> tuple:
        """``(loss, grad)``: the batch loss (data + penalty, as one batch of all rows)
        and its gradient as a flat array of length ``n_params`` (a copy)."""

    @abc.abstractmethod
    def compute_loss(self, X, Y, sample_weight=None, include_penalty: bool = True) -> float:
        """The loss of all rows as one batch (no dropout, no update)."""
