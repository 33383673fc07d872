"""The Network interface in plain array code over an array module ``xp``.

With ``xp = numpy`` this is the NumPy reference backend (``device="numpy"``): the
readable, obviously-correct oracle for tests and the baseline for benchmarks.
It favours clarity over speed; every formula mirrors the module docstring of
:mod:`fastmlp.backends.base`.  With ``xp = cupy`` the same code runs on a GPU.
"""

from __future__ import annotations

import math

import numpy as np

from ..base import (ELU_ALPHA, LEAKY_RELU_SLOPE, Network, NetworkSpec, OptimizerSpec,
                    shuffled_order)

# ---------------------------------------------------------------------------------------
# Counter-based dropout RNG (splitmix64 finaliser), bit-identical to csrc/rng.c.
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def _mix64(z):
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def dropout_keep_mask(xp, seed, step, layer, shape, rate):
    """Boolean keep-mask for ``shape`` elements of layer ``layer`` at update ``step``."""
    with np.errstate(over="ignore"):
        key = np.array([(int(seed) + 0x9E3779B97F4A7C15 * (int(step) * 64 + int(layer) + 1))
                        & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
        stream = _mix64(key)[0]
        n = int(np.prod(shape))
        idx = xp.arange(n, dtype=xp.uint64)
        u = _mix64(xp.asarray(stream, dtype=xp.uint64) + idx * xp.asarray(_GOLDEN))
        uniform = (u >> xp.asarray(_U64(11))).astype(xp.float64) * (1.0 / 9007199254740992.0)
    return (uniform >= rate).reshape(shape)


# ---------------------------------------------------------------------------------------
def _normal_cdf(xp, Z):
    """Phi(Z) = (1 + erf(Z / sqrt 2)) / 2, as erfc(-Z / sqrt 2) / 2: no cancellation in the
    lower tail, where 1 + erf(...) loses every digit (Phi(-10) = 7.6e-24)."""
    if xp is np:
        from scipy.special import erfc
    else:
        from cupyx.scipy.special import erfc  # pragma: no cover - GPU only
    return 0.5 * erfc(-Z / math.sqrt(2.0))


def activation_forward(xp, name, Z):
    if name == "identity":
        return Z.copy()
    if name == "relu":
        return xp.maximum(Z, 0)
    if name == "sigmoid":
        # stable for large |z|: exp of a non-positive number only
        e = xp.exp(-xp.abs(Z))
        return xp.where(Z >= 0, 1 / (1 + e), e / (1 + e))
    if name == "tanh":
        return xp.tanh(Z)
    if name == "softmax":
        E = xp.exp(Z - Z.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)
    if name == "leaky_relu":
        return xp.where(Z > 0, Z, Z * LEAKY_RELU_SLOPE)
    if name == "elu":
        return xp.where(Z > 0, Z, ELU_ALPHA * xp.expm1(xp.minimum(Z, 0)))
    if name == "softplus":
        return xp.maximum(Z, 0) + xp.log1p(xp.exp(-xp.abs(Z)))
    if name == "gelu":
        return Z * _normal_cdf(xp, Z)
    if name == "exp":
        return xp.exp(Z)
    raise ValueError(name)


def activation_backward(xp, name, Z, A, dA):
    """dZ from dA, given the pre-activation Z and the activation A = act(Z)."""
    if name == "identity":
        return dA
    if name == "relu":
        return dA * (Z > 0)
    if name == "sigmoid":
        return dA * A * (1 - A)
    if name == "tanh":
        return dA * (1 - A * A)
    if name == "softmax":
        return A * (dA - (A * dA).sum(axis=1, keepdims=True))
    if name == "leaky_relu":
        return dA * xp.where(Z > 0, 1.0, LEAKY_RELU_SLOPE).astype(Z.dtype)
    if name == "elu":
        return dA * xp.where(Z > 0, 1.0, A + ELU_ALPHA).astype(Z.dtype)
    if name == "softplus":
        return dA * activation_forward(xp, "sigmoid", Z)
    if name == "gelu":
        cdf = _normal_cdf(xp, Z)
        pdf = xp.exp(-0.5 * Z * Z) / math.sqrt(2 * math.pi)
        return dA * (cdf + Z * pdf)
    if name == "exp":
        return dA * A
    raise ValueError(name)


def _clip_log(xp, logp, eps):
    return xp.clip(logp, math.log(eps), math.log1p(-eps))


def loss_rows_and_delta(xp, loss, out_act, Z, P, Y):
    """Per-row loss ``l_i`` (n,) and ``dl_i/dZ`` (n, k) of the output layer."""
    eps = float(np.finfo(P.dtype).eps)
    if Y.ndim == 1:  # integer labels, categorical cross-entropy
        onehot = xp.zeros_like(P)
        onehot[xp.arange(P.shape[0]), Y] = 1
        Y = onehot
    if loss == "squared_error":
        R = P - Y
        rows = 0.5 * (R * R).sum(axis=1)
        delta = R if out_act == "identity" else activation_backward(xp, out_act, Z, P, R)
        return rows, delta
    if loss == "binary_crossentropy":
        logp = _clip_log(xp, -activation_forward(xp, "softplus", -Z), eps)
        log1mp = _clip_log(xp, -activation_forward(xp, "softplus", Z), eps)
        rows = -(Y * logp + (1 - Y) * log1mp).sum(axis=1)
        return rows, P - Y
    if loss == "categorical_crossentropy":
        # log p = (z - max) - log(sum exp(z - max)): no cancellation of large logits
        shifted = Z - Z.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = -(Y * _clip_log(xp, logp, eps)).sum(axis=1)
        return rows, P - Y
    if loss == "poisson":
        ylogy = xp.where(Y > 0, Y * xp.log(xp.where(Y > 0, Y, 1)), 0)
        rows = (ylogy - Y * Z - Y + P).sum(axis=1)
        return rows, P - Y
    raise ValueError(loss)


# ---------------------------------------------------------------------------------------
class ArrayNetwork(Network):
    """Network over an array module; see the module docstring."""

    xp = np

    def __init__(self, spec: NetworkSpec, optimizer: OptimizerSpec = None, n_threads=1):
        xp = self.xp
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        self.n_threads = int(n_threads)
        self._params = xp.zeros(spec.n_params, dtype=self.dtype)
        self.optimizer = None
        self._slots = []
        self.step = 0
        self.diverged = False
        self._epoch = None
        self._metrics = {}
        self.set_optimizer(optimizer if optimizer is not None else OptimizerSpec())

    # ---- parameters --------------------------------------------------------------------
    @property
    def params(self):
        return self._params

    def get_params(self):
        return self._to_host(self._params).copy()

    def set_params(self, flat):
        flat = self.xp.asarray(flat, dtype=self.dtype).ravel()
        if flat.shape != (self.spec.n_params,):
            raise ValueError(f"expected {self.spec.n_params} parameters; got {flat.shape[0]}")
        self._params[...] = flat

    def _to_host(self, a):
        return a if self.xp is np else self.xp.asnumpy(a)

    def _layers(self, flat=None):
        p = self._params if flat is None else flat
        for (w, b, fi, fo), act in zip(self.spec.layer_offsets(), self.spec.activations):
            W = p[w:w + fi * fo].reshape(fi, fo)
            yield W, (None if b is None else p[b:b + fo]), act

    # ---- optimizer -----------------------------------------------------------------
    def set_optimizer(self, optimizer, reset_state=True):
        if not isinstance(optimizer, OptimizerSpec):
            raise TypeError(f"optimizer must be an OptimizerSpec; got {type(optimizer)}")
        same = (self.optimizer is not None and optimizer.kind == self.optimizer.kind
                and optimizer.n_slots == self.optimizer.n_slots)
        self.optimizer = optimizer
        if reset_state or not same:
            fill = optimizer.initial_accumulator if optimizer.kind == "adagrad" else 0.0
            self._slots = [self.xp.full(self.spec.n_params, fill, dtype=self.dtype)
                           for _ in range(optimizer.n_slots)]
            self.step = 0

    def set_learning_rate(self, lr):
        self.optimizer = self.optimizer.with_changes(learning_rate=float(lr))

    def get_optimizer_state(self):
        return {"step": int(self.step), "slots": [self._to_host(s).copy() for s in self._slots]}

    def set_optimizer_state(self, state):
        slots = list(state["slots"])
        if len(slots) != len(self._slots):
            raise ValueError(f"optimizer state has {len(slots)} buffers; {self.optimizer.kind} "
                             f"needs {len(self._slots)}")
        for dst, src in zip(self._slots, slots):
            src = self.xp.asarray(src, dtype=self.dtype).ravel()
            if src.shape != dst.shape:
                raise ValueError("optimizer state buffer has the wrong length")
            dst[...] = src
        self.step = int(state["step"])

    def _flush(self, state):
        """State values (and weights) below the smallest normal number become 0 (see
        base.py)."""
        state[self.xp.abs(state) < np.finfo(self.dtype).tiny] = 0

    def _term_grad(self, grad, beta, power):
        """grad, with 0 where |grad| is below the threshold of the optimizer's state term
        c g^power, c = 1 - beta in the dtype (beta None: Adagrad's g^2, c = 1): (tiny /
        c)^(1 / power), computed in float64 and rounded to the dtype as the CPU engine
        does (csrc/optimizers_impl.inc; c = 0 takes every term as 0).  See base.py."""
        xp, real = self.xp, self.dtype.type
        c = real(1) if beta is None else real(1) - real(beta)
        ratio = float(np.finfo(self.dtype).tiny) / float(c) if c > 0 else math.inf
        g_min = real(ratio if power == 1 else math.sqrt(ratio))
        return xp.where(xp.abs(grad) < g_min, real(0), grad)

    def _apply_update(self, grad):
        opt, xp, w = self.optimizer, self.xp, self._params
        if opt.clipnorm is not None:
            norm = float(xp.sqrt((grad.astype(xp.float64) ** 2).sum()))
            if norm > opt.clipnorm:
                grad = grad * (opt.clipnorm / norm)
        lr = opt.learning_rate_at(self.step)
        self.step += 1
        if opt.kind == "sgd":
            if opt.momentum > 0:
                v = self._slots[0]
                v[...] = opt.momentum * v - lr * grad
                self._flush(v)
                w += (opt.momentum * v - lr * grad) if opt.nesterov else v
            else:
                w -= lr * grad
        elif opt.kind == "adam":
            m, v = self._slots
            t = self.step
            g1 = self._term_grad(grad, opt.beta_1, 1)
            g2 = self._term_grad(grad, opt.beta_2, 2)
            m[...] = opt.beta_1 * m + (1 - opt.beta_1) * g1
            v[...] = opt.beta_2 * v + (1 - opt.beta_2) * g2 * g2
            self._flush(m)
            self._flush(v)
            bc2 = math.sqrt(1 - opt.beta_2 ** t)
            step_size = lr * bc2 / (1 - opt.beta_1 ** t)
            eps = opt.epsilon * (bc2 if opt.epsilon_style == "pytorch" else 1.0)
            w -= step_size * m / (xp.sqrt(v) + eps)
        elif opt.kind == "rmsprop":
            v = self._slots[0]
            g2 = self._term_grad(grad, opt.rho, 2)
            v[...] = opt.rho * v + (1 - opt.rho) * g2 * g2
            self._flush(v)
            w -= lr * grad / xp.sqrt(v + opt.epsilon)
        elif opt.kind == "adagrad":
            a = self._slots[0]
            g2 = self._term_grad(grad, None, 2)
            a += g2 * g2
            self._flush(a)
            w -= lr * grad / xp.sqrt(a + opt.epsilon)
        self._flush(w)

    # ---- one batch -------------------------------------------------------------------
    def _batch(self, X, Y, sw, *, training, step=0, seed=0, want_grad=True):
        """Forward (+ backward) on one batch.

        Returns ``(data_loss, penalty, grad or None, P)``.
        """
        xp, spec = self.xp, self.spec
        n = X.shape[0]
        layers = list(self._layers())
        inputs, Zs, As, masks = [X], [], [], []
        for l, (W, b, act) in enumerate(layers):
            Z = inputs[-1] @ W
            if b is not None:
                Z = Z + b
            A = activation_forward(xp, act, Z)
            Zs.append(Z)
            As.append(A)
            rate = spec.dropout[l]
            if training and rate > 0:
                keep = dropout_keep_mask(xp, seed, step, l, A.shape, rate)
                mask = keep.astype(self.dtype) / self.dtype.type(1 - rate)
                masks.append(mask)
                A = A * mask
            else:
                masks.append(None)
            inputs.append(A)
        P = As[-1]
        rows, delta = loss_rows_and_delta(xp, spec.loss, spec.activations[-1], Zs[-1], P, Y)
        # weights and loss sums in float64, as the CPU engine sums them (float32 sums of
        # large weights overflow)
        w = xp.ones(n, dtype=xp.float64) if sw is None else sw.astype(xp.float64)
        norm = float(w.sum()) if spec.weight_normalization == "sum_weights" else float(n)
        if norm <= 0.0:     # every row weighs 0: no data loss, the penalty per row
            norm = float(n)
        data_loss = spec.loss_scale * float((w * rows.astype(xp.float64)).sum()) / norm
        pen_scale = 1.0 / norm if spec.penalty_normalization == "per_sample" else 1.0
        penalty = 0.0
        for l, (W, b, act) in enumerate(layers):
            if spec.l2[l]:
                penalty += spec.l2[l] * float((W * W).sum()) * pen_scale
            if spec.l1[l]:
                penalty += spec.l1[l] * float(xp.abs(W).sum()) * pen_scale
        if not want_grad:
            return data_loss, penalty, None, P
        grad = xp.zeros(spec.n_params, dtype=self.dtype)
        gl = list(self._layers(grad))
        dZ = delta * (w * (spec.loss_scale / norm)).astype(self.dtype)[:, None]
        for l in range(spec.n_layers - 1, -1, -1):
            W, b, _ = layers[l]
            dW, db, _ = gl[l]
            dW[...] = inputs[l].T @ dZ
            if spec.l2[l]:
                # 0 where the term would be below the smallest normal number (base.py)
                c2 = self.dtype.type(2 * spec.l2[l] * pen_scale)
                w_min = self.dtype.type(float(np.finfo(self.dtype).tiny) / float(c2)
                                        if c2 > 0 else 0.0)
                dW += xp.where(xp.abs(W) < w_min, self.dtype.type(0), c2 * W)
            if spec.l1[l]:
                dW += (spec.l1[l] * pen_scale) * xp.sign(W)
            if db is not None:
                db[...] = dZ.sum(axis=0)
            if l > 0:
                dA = dZ @ W.T
                if masks[l - 1] is not None:
                    dA = dA * masks[l - 1]
                dZ = activation_backward(xp, spec.activations[l - 1], Zs[l - 1],
                                         As[l - 1], dA)
        return data_loss, penalty, grad, P

    # ---- epochs ------------------------------------------------------------------------
    def _check_epoch_inputs(self, X, Y, sample_weight, batch_size, order):
        from .. import _check_engine_arrays
        return _check_engine_arrays(self.spec, X, Y, sample_weight, batch_size, order,
                                    xp=self.xp)

    def start_epoch(self, X, Y, sample_weight=None, *, batch_size, shuffle=False, seed=0,
                    epoch=0, order=None, track_metrics=False):
        X, Y, sample_weight, batch_size, order = self._check_epoch_inputs(
            X, Y, sample_weight, batch_size, order)
        n = X.shape[0]
        if order is None and shuffle:
            order = shuffled_order(n, seed, epoch)
        if order is not None:
            order = self.xp.asarray(order)
        self.diverged = False
        self._epoch = dict(X=X, Y=Y, sw=sample_weight, bs=batch_size, order=order,
                           n=n, done=0, loss_sum=0.0, seed=int(seed), metrics=track_metrics)
        self._metrics = dict(accuracy=0.0, mae=0.0, mse=0.0, data_loss=0.0, penalty=0.0,
                             weight=0.0)

    def run_steps(self, max_steps=None):
        e = self._epoch
        if e is None:
            raise RuntimeError("run_steps() called before start_epoch()")
        steps = 0
        while e["done"] < e["n"] and not self.diverged and (max_steps is None
                                                              or steps < max_steps):
            lo, hi = e["done"], min(e["done"] + e["bs"], e["n"])
            idx = slice(lo, hi) if e["order"] is None else e["order"][lo:hi]
            Xb, Yb = e["X"][idx], e["Y"][idx]
            swb = None if e["sw"] is None else e["sw"][idx]
            data_loss, penalty, grad, P = self._batch(Xb, Yb, swb, training=True,
                                                      step=self.step, seed=e["seed"])
            if not math.isfinite(data_loss + penalty):
                self.diverged = True
                break
            if e["metrics"]:
                self._accumulate_metrics(P, Yb, swb, data_loss, penalty, hi - lo)
            self._apply_update(grad)
            e["loss_sum"] += (data_loss + penalty) * (hi - lo)
            e["done"] = hi
            steps += 1
        return steps

    def _accumulate_metrics(self, P, Y, sw, data_loss, penalty, nb):
        xp, m = self.xp, self._metrics
        w = xp.ones(P.shape[0], dtype=self.dtype) if sw is None else sw
        if Y.ndim == 1:
            correct = P.argmax(axis=1) == Y
            onehot = xp.zeros_like(P)
            onehot[xp.arange(P.shape[0]), Y] = 1
            Y = onehot
        elif P.shape[1] == 1:
            correct = (P[:, 0] > 0.5) == (Y[:, 0] > 0.5)
        else:
            correct = P.argmax(axis=1) == Y.argmax(axis=1)
        R = P - Y
        m["accuracy"] += float((w * correct).sum())
        m["mae"] += float((w * xp.abs(R).mean(axis=1)).sum())
        m["mse"] += float((w * (R * R).mean(axis=1)).sum())
        m["weight"] += float(w.sum())
        m["data_loss"] += data_loss * nb
        m["penalty"] += penalty * nb

    @property
    def epoch_progress(self):
        e = self._epoch
        return (0, 0) if e is None else (e["done"], e["n"])

    @property
    def epoch_metrics(self):
        m, e = self._metrics, self._epoch
        if not m or m.get("weight", 0) == 0 or e is None or e["done"] == 0:
            return {}
        return {"accuracy": m["accuracy"] / m["weight"], "mae": m["mae"] / m["weight"],
                "mse": m["mse"] / m["weight"], "data_loss": m["data_loss"] / e["done"],
                "penalty": m["penalty"] / e["done"]}

    def finish_epoch(self):
        e = self._epoch
        if e is None:
            raise RuntimeError("finish_epoch() called before start_epoch()")
        if self.diverged:
            return float("nan")
        return e["loss_sum"] / max(e["done"], 1)

    # ---- full batch ------------------------------------------------------------------
    def forward(self, X, batch_size=None):
        from .. import _check_engine_arrays
        X = _check_engine_arrays(self.spec, X, None, None, 1, None, xp=self.xp)[0]
        out = []
        step = X.shape[0] if not batch_size else int(batch_size)
        for lo in range(0, X.shape[0], step):
            out.append(self._predict_batch(X[lo:lo + step]))
        return self.xp.concatenate(out, axis=0)

    def _predict_batch(self, X):
        A = X
        for W, b, act in self._layers():
            Z = A @ W
            if b is not None:
                Z = Z + b
            A = activation_forward(self.xp, act, Z)
        return A

    def loss_and_grad(self, X, Y, sample_weight=None):
        from .. import _check_engine_arrays
        X, Y, sw, _, _ = _check_engine_arrays(self.spec, X, Y, sample_weight, 1, None,
                                              xp=self.xp)
        d, p, g, _ = self._batch(X, Y, sw, training=False)
        return d + p, self._to_host(g)

    def compute_loss(self, X, Y, sample_weight=None, include_penalty=True):
        from .. import _check_engine_arrays
        X, Y, sw, _, _ = _check_engine_arrays(self.spec, X, Y, sample_weight, 1, None,
                                              xp=self.xp)
        d, p, _, _ = self._batch(X, Y, sw, training=False, want_grad=False)
        return d + p if include_penalty else d


class NumpyNetwork(ArrayNetwork):
    """The pure-NumPy reference backend (``device="numpy"``)."""

    xp = np
