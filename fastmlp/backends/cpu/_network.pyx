"""The CPU engine: a whole epoch of minibatch training without the GIL.

Layering: scalar C kernels (csrc/, elementwise, OpenMP) and BLAS (``_blas.gemm``) ->
fused-type ``noexcept nogil`` step functions here (gather, forward, loss, backward,
penalty, clipping, optimizer update) -> ``Engine``, an extension type owning the
buffers -> ``CPUNetwork`` (network.py), the thin Python class implementing
``fastmlp.backends.base.Network``.

Memory: parameters, gradients and optimizer state are each ONE flat buffer (for
every layer, W (fan_in, fan_out) row-major then b); workspaces (activations, deltas,
the gathered batch) are allocated once per batch capacity and reused: no allocation
happens inside an epoch.
"""
from libc.stdint cimport int64_t, uint64_t
from libc.math cimport sqrt, pow, floor, isfinite
from cython cimport floating

import numpy as np

from ._blas cimport gemm
from ._kernels cimport *

# Products with m * n * k at or below this go to the small-matrix C kernels:
# a BLAS call costs more than the arithmetic there (measured: benchmarks/RESULTS.md).
cdef int64_t SMALL_GEMM_WORK = 32768
# Zeroed elements left after every buffer handed to the small kernels: they read rows as
# whole vectors, up to 16 elements past a buffer's end (csrc/gemm_small_impl.inc).
cdef enum:
    FASTMLP_SLACK = 32

ACTIVATION_CODES = {"identity": FM_IDENTITY, "relu": FM_RELU, "sigmoid": FM_SIGMOID,
                    "tanh": FM_TANH, "softmax": FM_SOFTMAX, "leaky_relu": FM_LEAKY_RELU,
                    "elu": FM_ELU, "softplus": FM_SOFTPLUS, "gelu": FM_GELU, "exp": FM_EXP}
LOSS_CODES = {"squared_error": FM_SQUARED_ERROR, "binary_crossentropy": FM_BINARY_CE,
              "categorical_crossentropy": FM_CATEGORICAL_CE, "poisson": FM_POISSON}
OPTIMIZER_CODES = {"sgd": 0, "adam": 1, "rmsprop": 2, "adagrad": 3}
SCHEDULE_CODES = {"constant": 0, "exponential": 1, "inverse_time": 2}


def set_small_gemm_work(int64_t work):
    """Set the m*n*k at or below which products use the small C kernels instead of BLAS
    (for benchmarks and tests; returns the previous value)."""
    global SMALL_GEMM_WORK
    previous = SMALL_GEMM_WORK
    SMALL_GEMM_WORK = work
    return previous


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fm_openmp_enabled())


cdef struct LayerC:
    int64_t fan_in, fan_out
    int64_t w_off, b_off        # into params/grads; b_off < 0: no bias
    int act
    double rate, l2, l1         # dropout rate of this layer's output, penalties of W
    int64_t a_off               # workspace: A (rows, fan_out); also Z when z_off < 0
    int64_t z_off               # workspace: Z (rows, fan_out), kept for gelu and output
    int64_t d_off               # workspace: dropout output (rows, fan_out), or -1
    int64_t g_off               # workspace: delta dZ (rows, fan_out)


cdef struct NetC:
    int n_layers
    LayerC *layers
    int64_t n_params, n_features, n_outputs
    int loss
    double loss_scale
    bint norm_by_weights, penalty_per_sample
    int n_threads
    # buffers (float* or double*, by the network dtype)
    void *params
    void *grads
    void *slot0
    void *slot1
    void *ws
    int64_t ws_rows
    int64_t xb_off, yb_off, wb_off      # workspace: gathered X, Y, w of a batch
    int64_t *lb                         # gathered labels (ws_rows)
    # optimizer
    int opt_kind, schedule
    double lr, momentum, beta_1, beta_2, eps, rho, clipnorm, decay_rate, decay_steps
    bint nesterov, eps_pytorch, staircase
    int64_t step
    # the epoch in progress
    void *X
    void *Y
    int64_t *labels
    void *sw
    int64_t *order
    int64_t n, done, batch_size
    uint64_t seed
    double loss_sum
    bint diverged, track_metrics
    double metrics[6]    # sum w*correct, w*mae, w*mse, w; sum data_loss*nb, penalty*nb


# ---------------------------------------------------------------------------------------
# matrix products: small C kernels below SMALL_GEMM_WORK, BLAS above
cdef inline void mm_nn(int64_t M, int64_t N, int64_t K, const floating *A,
                       const floating *B, floating *C) noexcept nogil:
    """C (M, N) = A (M, K) @ B (K, N)."""
    if M * N * K <= SMALL_GEMM_WORK:
        if floating is float:
            gemm_nn_small_f32(M, N, K, A, B, 0, C)
        else:
            gemm_nn_small_f64(M, N, K, A, B, 0, C)
    else:
        gemm(False, False, <int> M, <int> N, <int> K, 1, A, <int> K, B, <int> N, 0, C, <int> N)


cdef inline void mm_tn(int64_t M, int64_t N, int64_t K, const floating *A,
                       const floating *B, floating beta, floating *C) noexcept nogil:
    """C (M, N) = A^T @ B + beta C, with A (K, M) and B (K, N)."""
    if M * N * K <= SMALL_GEMM_WORK:
        if floating is float:
            gemm_tn_small_f32(M, N, K, A, B, beta, C)
        else:
            gemm_tn_small_f64(M, N, K, A, B, beta, C)
    else:
        gemm(True, False, <int> M, <int> N, <int> K, 1, A, <int> M, B, <int> N, beta, C,
             <int> N)


cdef inline void mm_nt(int64_t M, int64_t N, int64_t K, const floating *A,
                       const floating *B, floating *C) noexcept nogil:
    """C (M, N) = A (M, K) @ B^T, with B (N, K)."""
    if M * N * K <= SMALL_GEMM_WORK:
        if floating is float:
            gemm_nt_small_f32(M, N, K, A, B, C)
        else:
            gemm_nt_small_f64(M, N, K, A, B, C)
    else:
        gemm(False, True, <int> M, <int> N, <int> K, 1, A, <int> K, B, <int> K, 0, C, <int> N)


# ---------------------------------------------------------------------------------------
cdef inline const floating *layer_input(NetC *s, int l, const floating *x,
                                        bint training) noexcept nogil:
    """What layer l reads: the batch for l == 0, else the previous layer's output
    (after dropout while training)."""
    cdef floating *ws = <floating *> s.ws
    cdef LayerC *p
    if l == 0:
        return x
    p = &s.layers[l - 1]
    return ws + (p.d_off if (training and p.d_off >= 0) else p.a_off)


cdef void forward_batch(NetC *s, const floating *x, int64_t b, bint training,
                        floating *dummy) noexcept nogil:
    """Forward pass of b rows x (b, n_features); dropout when training."""
    cdef floating *ws = <floating *> s.ws
    cdef floating *params = <floating *> s.params
    cdef LayerC *L
    cdef const floating *inp
    cdef floating *z
    cdef floating *a
    cdef const floating *bias
    cdef int l, done
    for l in range(s.n_layers):
        L = &s.layers[l]
        inp = layer_input(s, l, x, training)
        a = ws + L.a_off
        z = ws + L.z_off if L.z_off >= 0 else a
        bias = params + L.b_off if L.b_off >= 0 else NULL
        if b * L.fan_out * L.fan_in <= SMALL_GEMM_WORK:
            # narrow layers: product, bias and (for relu-like) activation in one pass
            if floating is float:
                done = dense_forward_small_f32(b, L.fan_out, L.fan_in, inp, params + L.w_off,
                                               bias, L.act if z == a else FM_IDENTITY, z)
            else:
                done = dense_forward_small_f64(b, L.fan_out, L.fan_in, inp, params + L.w_off,
                                               bias, L.act if z == a else FM_IDENTITY, z)
            if done:
                # z holds the biased pre-activation (and, when z is a, the activation too)
                bias = NULL
            else:
                mm_nn(b, L.fan_out, L.fan_in, inp, params + L.w_off, z)
        else:
            done = 0
            mm_nn(b, L.fan_out, L.fan_in, inp, params + L.w_off, z)
        if not (done and z == a):
            if z != a and bias != NULL:
                # Z is kept (gelu, output layer): it must hold the true pre-activation
                if floating is float:
                    bias_act_forward_f32(b, L.fan_out, z, bias, FM_IDENTITY, z, s.n_threads)
                else:
                    bias_act_forward_f64(b, L.fan_out, z, bias, FM_IDENTITY, z, s.n_threads)
                bias = NULL
            if floating is float:
                bias_act_forward_f32(b, L.fan_out, z, bias, L.act, a, s.n_threads)
            else:
                bias_act_forward_f64(b, L.fan_out, z, bias, L.act, a, s.n_threads)
        if L.d_off >= 0 and training:
            if floating is float:
                dropout_forward_f32(b, L.fan_out, L.rate, fm_dropout_stream(s.seed, s.step, l),
                                    a, ws + L.d_off, s.n_threads)
            else:
                dropout_forward_f64(b, L.fan_out, L.rate, fm_dropout_stream(s.seed, s.step, l),
                                    a, ws + L.d_off, s.n_threads)


cdef double output_loss(NetC *s, int64_t b, const floating *y, const int64_t *labels,
                        const floating *w, double norm, bint want_metrics,
                        floating *dummy) noexcept nogil:
    """Data loss of the batch (scaled, normalised) and the output delta in g_off."""
    cdef floating *ws = <floating *> s.ws
    cdef LayerC *L = &s.layers[s.n_layers - 1]
    cdef double total
    cdef double *metrics = &s.metrics[0] if want_metrics else NULL
    cdef double delta_scale = s.loss_scale / norm
    if floating is float:
        total = loss_forward_backward_f32(s.loss, L.act, b, L.fan_out, ws + L.z_off,
                                          ws + L.a_off, y, labels, w, delta_scale,
                                          ws + L.g_off, metrics)
    else:
        total = loss_forward_backward_f64(s.loss, L.act, b, L.fan_out, ws + L.z_off,
                                          ws + L.a_off, y, labels, w, delta_scale,
                                          ws + L.g_off, metrics)
    if s.loss == FM_SQUARED_ERROR and L.act != FM_IDENTITY:
        # squared error on a non-identity output: chain rule through the activation
        if floating is float:
            act_backward_f32(b, L.fan_out, L.act, ws + L.z_off, ws + L.a_off, ws + L.g_off,
                             s.n_threads)
        else:
            act_backward_f64(b, L.fan_out, L.act, ws + L.z_off, ws + L.a_off, ws + L.g_off,
                             s.n_threads)
    return s.loss_scale * total / norm


cdef double backward_batch(NetC *s, const floating *x, int64_t b, double norm,
                           bint training, bint accumulate, bint want_penalty_grad,
                           floating *dummy) noexcept nogil:
    """Gradients of the batch into s.grads (added to them when accumulate); returns the
    penalty value (its gradient is added when want_penalty_grad)."""
    cdef floating *ws = <floating *> s.ws
    cdef floating *params = <floating *> s.params
    cdef floating *grads = <floating *> s.grads
    cdef LayerC *L
    cdef LayerC *P
    cdef int l
    cdef double penalty = 0.0
    cdef double pen_scale = 1.0 / norm if s.penalty_per_sample else 1.0
    cdef floating *dprev
    for l in range(s.n_layers - 1, -1, -1):
        L = &s.layers[l]
        # dW (fan_in, fan_out) = input^T (fan_in, b) @ dZ (b, fan_out)
        mm_tn(L.fan_in, L.fan_out, b, layer_input(s, l, x, training), ws + L.g_off,
              1 if accumulate else 0, grads + L.w_off)
        if L.l2 != 0 or L.l1 != 0:
            if floating is float:
                penalty += penalty_forward_backward_f32(
                    L.fan_in * L.fan_out, params + L.w_off,
                    grads + L.w_off if want_penalty_grad else NULL,
                    L.l2 * pen_scale, L.l1 * pen_scale)
            else:
                penalty += penalty_forward_backward_f64(
                    L.fan_in * L.fan_out, params + L.w_off,
                    grads + L.w_off if want_penalty_grad else NULL,
                    L.l2 * pen_scale, L.l1 * pen_scale)
        if L.b_off >= 0:
            if floating is float:
                if not column_sums_small_f32(b, L.fan_out, ws + L.g_off, grads + L.b_off,
                                             accumulate):
                    column_sums_f32(b, L.fan_out, ws + L.g_off, grads + L.b_off, accumulate)
            else:
                if not column_sums_small_f64(b, L.fan_out, ws + L.g_off, grads + L.b_off,
                                             accumulate):
                    column_sums_f64(b, L.fan_out, ws + L.g_off, grads + L.b_off, accumulate)
        if l == 0:
            break  # no gradient with respect to the input is needed
        # dA_prev (b, fan_in) = dZ (b, fan_out) @ W^T
        P = &s.layers[l - 1]
        dprev = ws + P.g_off
        mm_nt(b, L.fan_in, L.fan_out, ws + L.g_off, params + L.w_off, dprev)
        if floating is float:
            if P.d_off >= 0 and training:
                dropout_backward_f32(b, P.fan_out, P.rate,
                                     fm_dropout_stream(s.seed, s.step, l - 1), dprev,
                                     s.n_threads)
            act_backward_f32(b, P.fan_out, P.act, ws + P.z_off if P.z_off >= 0 else NULL,
                             ws + P.a_off, dprev, s.n_threads)
        else:
            if P.d_off >= 0 and training:
                dropout_backward_f64(b, P.fan_out, P.rate,
                                     fm_dropout_stream(s.seed, s.step, l - 1), dprev,
                                     s.n_threads)
            act_backward_f64(b, P.fan_out, P.act, ws + P.z_off if P.z_off >= 0 else NULL,
                             ws + P.a_off, dprev, s.n_threads)
    return penalty


cdef inline double learning_rate_at(NetC *s, int64_t step) noexcept nogil:
    cdef double ratio
    if s.schedule == 0:
        return s.lr
    ratio = step / s.decay_steps
    if s.staircase:
        ratio = floor(ratio)
    if s.schedule == 1:
        return s.lr * pow(s.decay_rate, ratio)
    return s.lr / (1.0 + s.decay_rate * ratio)


cdef void apply_update(NetC *s, floating *dummy) noexcept nogil:
    """Clip (global norm), then one optimizer step over the flat buffer."""
    cdef floating *w = <floating *> s.params
    cdef floating *g = <floating *> s.grads
    cdef floating *s0 = <floating *> s.slot0
    cdef floating *s1 = <floating *> s.slot1
    cdef double norm, lr = learning_rate_at(s, s.step), t, bc2, step_size, eps
    if s.clipnorm > 0:
        if floating is float:
            norm = sqrt(sum_squares_f32(s.n_params, g))
        else:
            norm = sqrt(sum_squares_f64(s.n_params, g))
        if norm > s.clipnorm:
            if floating is float:
                scale_inplace_f32(s.n_params, g, s.clipnorm / norm)
            else:
                scale_inplace_f64(s.n_params, g, s.clipnorm / norm)
    s.step += 1
    if s.opt_kind == 0:
        if floating is float:
            sgd_update_f32(s.n_params, w, g, s0, lr, s.momentum, s.nesterov, s.n_threads)
        else:
            sgd_update_f64(s.n_params, w, g, s0, lr, s.momentum, s.nesterov, s.n_threads)
    elif s.opt_kind == 1:
        t = <double> s.step
        bc2 = sqrt(1.0 - pow(s.beta_2, t))
        step_size = lr * bc2 / (1.0 - pow(s.beta_1, t))
        eps = s.eps * bc2 if s.eps_pytorch else s.eps
        if floating is float:
            adam_update_f32(s.n_params, w, g, s0, s1, step_size, s.beta_1, s.beta_2, eps,
                            s.n_threads)
        else:
            adam_update_f64(s.n_params, w, g, s0, s1, step_size, s.beta_1, s.beta_2, eps,
                            s.n_threads)
    elif s.opt_kind == 2:
        if floating is float:
            rmsprop_update_f32(s.n_params, w, g, s0, lr, s.rho, s.eps, s.n_threads)
        else:
            rmsprop_update_f64(s.n_params, w, g, s0, lr, s.rho, s.eps, s.n_threads)
    else:
        if floating is float:
            adagrad_update_f32(s.n_params, w, g, s0, lr, s.eps, s.n_threads)
        else:
            adagrad_update_f64(s.n_params, w, g, s0, lr, s.eps, s.n_threads)


cdef int64_t run_steps_impl(NetC *s, int64_t max_steps, floating *dummy) noexcept nogil:
    """Up to max_steps minibatch updates of the epoch in progress (max_steps < 0: all)."""
    cdef floating *ws = <floating *> s.ws
    cdef const floating *X = <const floating *> s.X
    cdef const floating *Y = <const floating *> s.Y
    cdef const floating *sw = <const floating *> s.sw
    cdef const floating *xb
    cdef const floating *yb
    cdef const floating *wb
    cdef const int64_t *lb
    cdef int64_t steps = 0, lo, b, i, d = s.n_features, K = s.n_outputs
    cdef double norm, data_loss, penalty
    while s.done < s.n and not s.diverged and (max_steps < 0 or steps < max_steps):
        lo = s.done
        b = s.batch_size if lo + s.batch_size <= s.n else s.n - lo
        if s.order == NULL:
            xb = X + lo * d
            yb = Y + lo * K if Y != NULL else NULL
            lb = s.labels + lo if s.labels != NULL else NULL
            wb = sw + lo if sw != NULL else NULL
        else:
            # gather the shuffled rows once per batch into contiguous buffers
            if floating is float:
                gather_rows_f32(b, d, X, s.order + lo, ws + s.xb_off)
                if Y != NULL:
                    gather_rows_f32(b, K, Y, s.order + lo, ws + s.yb_off)
            else:
                gather_rows_f64(b, d, X, s.order + lo, ws + s.xb_off)
                if Y != NULL:
                    gather_rows_f64(b, K, Y, s.order + lo, ws + s.yb_off)
            xb = ws + s.xb_off
            yb = ws + s.yb_off if Y != NULL else NULL
            lb = NULL
            if s.labels != NULL:
                for i in range(b):
                    s.lb[i] = s.labels[s.order[lo + i]]
                lb = s.lb
            wb = NULL
            if sw != NULL:
                for i in range(b):
                    ws[s.wb_off + i] = sw[s.order[lo + i]]
                wb = ws + s.wb_off
        if wb != NULL and s.norm_by_weights:
            norm = 0.0
            for i in range(b):
                norm += wb[i]
        else:
            norm = <double> b
        forward_batch(s, xb, b, True, dummy)
        data_loss = output_loss(s, b, yb, lb, wb, norm, s.track_metrics, dummy)
        penalty = backward_batch(s, xb, b, norm, True, False, True, dummy)
        if not isfinite(data_loss + penalty):
            s.diverged = True  # the update of this batch is not applied
            break
        apply_update(s, dummy)
        s.loss_sum += (data_loss + penalty) * b
        if s.track_metrics:
            s.metrics[4] += data_loss * b
            s.metrics[5] += penalty * b
        s.done += b
        steps += 1
    return steps


cdef double full_batch_impl(NetC *s, const floating *X, const floating *Y,
                            const int64_t *labels, const floating *sw, int64_t n,
                            bint want_grad, bint include_penalty, floating *dummy) noexcept nogil:
    """Loss (and gradient into s.grads) of n rows as ONE batch, computed in chunks of
    the workspace capacity with the normalisation of the whole batch."""
    cdef int64_t lo, b, i, d = s.n_features, K = s.n_outputs
    cdef double norm = 0.0, data_loss = 0.0, penalty = 0.0
    cdef LayerC *L
    cdef double pen_scale
    if sw != NULL and s.norm_by_weights:
        for i in range(n):
            norm += sw[i]
    else:
        norm = <double> n
    lo = 0
    while lo < n:
        b = s.ws_rows if lo + s.ws_rows <= n else n - lo
        forward_batch(s, X + lo * d, b, False, dummy)
        data_loss += output_loss(s, b, Y + lo * K if Y != NULL else NULL,
                                 labels + lo if labels != NULL else NULL,
                                 sw + lo if sw != NULL else NULL, norm, False, dummy)
        if want_grad:
            # penalty gradient only once, with the last chunk
            penalty = backward_batch(s, X + lo * d, b, norm, False, lo > 0, lo + b >= n,
                                     dummy)
        lo += b
    if not want_grad and include_penalty:
        pen_scale = 1.0 / norm if s.penalty_per_sample else 1.0
        for i in range(s.n_layers):
            L = &s.layers[i]
            if L.l2 != 0 or L.l1 != 0:
                if floating is float:
                    penalty += penalty_forward_backward_f32(
                        L.fan_in * L.fan_out, (<float *> s.params) + L.w_off, NULL,
                        L.l2 * pen_scale, L.l1 * pen_scale)
                else:
                    penalty += penalty_forward_backward_f64(
                        L.fan_in * L.fan_out, (<double *> s.params) + L.w_off, NULL,
                        L.l2 * pen_scale, L.l1 * pen_scale)
    return data_loss + (penalty if include_penalty else 0.0)


cdef void predict_impl(NetC *s, const floating *X, int64_t n, floating *out,
                       floating *dummy) noexcept nogil:
    """out (n, n_outputs) = the network's outputs for X (n, n_features)."""
    cdef int64_t lo, b, e, d = s.n_features, K = s.n_outputs
    cdef floating *ws = <floating *> s.ws
    cdef LayerC *L = &s.layers[s.n_layers - 1]
    lo = 0
    while lo < n:
        b = s.ws_rows if lo + s.ws_rows <= n else n - lo
        forward_batch(s, X + lo * d, b, False, dummy)
        for e in range(b * K):
            out[lo * K + e] = ws[L.a_off + e]
        lo += b


# ---------------------------------------------------------------------------------------
cdef class Engine:
    """Owns the flat buffers and workspaces of one network; see module docstring.

    Use through :class:`fastmlp.backends.cpu.CPUNetwork`, which checks arguments.
    """
    cdef NetC s
    cdef object _layers_arr, _params, _grads, _slots, _ws, _lb
    cdef object _epoch_refs
    cdef readonly bint is_f32
    cdef readonly object dtype

    def __cinit__(self, layer_sizes, activations, use_bias, dropout, l2, l1, str loss,
                  double loss_scale, bint norm_by_weights, bint penalty_per_sample,
                  dtype, int n_threads):
        cdef int n_layers = len(layer_sizes) - 1
        cdef int l
        cdef int64_t off = 0
        cdef LayerC *L
        self.dtype = np.dtype(dtype)
        self.is_f32 = self.dtype == np.float32
        self._layers_arr = np.zeros(n_layers * sizeof(LayerC), dtype=np.uint8)
        self.s.layers = <LayerC *> <size_t> self._layers_arr.ctypes.data
        self.s.n_layers = n_layers
        for l in range(n_layers):
            L = &self.s.layers[l]
            L.fan_in = layer_sizes[l]
            L.fan_out = layer_sizes[l + 1]
            L.w_off = off
            off += L.fan_in * L.fan_out
            if use_bias[l]:
                L.b_off = off
                off += L.fan_out
            else:
                L.b_off = -1
            L.act = ACTIVATION_CODES[activations[l]]
            L.rate = dropout[l]
            L.l2 = l2[l]
            L.l1 = l1[l]
        self.s.n_params = off
        self.s.n_features = layer_sizes[0]
        self.s.n_outputs = layer_sizes[n_layers]
        self.s.loss = LOSS_CODES[loss]
        self.s.loss_scale = loss_scale
        self.s.norm_by_weights = norm_by_weights
        self.s.penalty_per_sample = penalty_per_sample
        self.s.n_threads = n_threads
        self._params = np.zeros(off + FASTMLP_SLACK, dtype=self.dtype)[:off]
        self._grads = np.zeros(off + FASTMLP_SLACK, dtype=self.dtype)[:off]
        self.s.params = <void *> <size_t> self._params.ctypes.data
        self.s.grads = <void *> <size_t> self._grads.ctypes.data
        self._slots = []
        self.s.slot0 = NULL
        self.s.slot1 = NULL
        self.s.ws_rows = 0
        self._epoch_refs = None
        self.s.n = 0
        self.s.done = 0

    # -- buffers ------------------------------------------------------------------------
    @property
    def params(self):
        return self._params

    @property
    def grads(self):
        return self._grads

    @property
    def slots(self):
        return self._slots

    @property
    def n_threads(self):
        return self.s.n_threads

    @n_threads.setter
    def n_threads(self, int value):
        self.s.n_threads = value

    @property
    def workspace_rows(self):
        return self.s.ws_rows

    @property
    def workspace_nbytes(self):
        return 0 if self._ws is None else self._ws.nbytes

    def ensure_workspace(self, int64_t rows):
        """Size the workspaces for batches of up to ``rows`` rows (grow only)."""
        cdef int64_t off = 0
        cdef int l
        cdef LayerC *L
        if rows <= self.s.ws_rows:
            return
        for l in range(self.s.n_layers):
            L = &self.s.layers[l]
            L.a_off = off
            off += rows * L.fan_out + FASTMLP_SLACK
            L.g_off = off
            off += rows * L.fan_out + FASTMLP_SLACK
            if L.act == FM_GELU or l == self.s.n_layers - 1:
                L.z_off = off
                off += rows * L.fan_out + FASTMLP_SLACK
            else:
                L.z_off = -1
            if L.rate > 0:
                L.d_off = off
                off += rows * L.fan_out + FASTMLP_SLACK
            else:
                L.d_off = -1
        self.s.xb_off = off
        off += rows * self.s.n_features + FASTMLP_SLACK
        self.s.yb_off = off
        off += rows * self.s.n_outputs + FASTMLP_SLACK
        self.s.wb_off = off
        off += rows + FASTMLP_SLACK
        self._ws = np.zeros(off, dtype=self.dtype)
        self._lb = np.empty(rows, dtype=np.int64)
        self.s.ws = <void *> <size_t> self._ws.ctypes.data
        self.s.lb = <int64_t *> <size_t> self._lb.ctypes.data
        self.s.ws_rows = rows

    # -- optimizer -------------------------------------------------------------------------
    def set_optimizer(self, int kind, double lr, double momentum, bint nesterov,
                      double beta_1, double beta_2, double eps, bint eps_pytorch, double rho,
                      double clipnorm, int schedule, double decay_rate, double decay_steps,
                      bint staircase):
        self.s.opt_kind = kind
        self.s.lr = lr
        self.s.momentum = momentum
        self.s.nesterov = nesterov
        self.s.beta_1 = beta_1
        self.s.beta_2 = beta_2
        self.s.eps = eps
        self.s.eps_pytorch = eps_pytorch
        self.s.rho = rho
        self.s.clipnorm = clipnorm
        self.s.schedule = schedule
        self.s.decay_rate = decay_rate
        self.s.decay_steps = decay_steps
        self.s.staircase = staircase

    def set_slots(self, list slots):
        """Use these (n_params,) arrays of the network dtype as optimizer state."""
        for a in slots:
            if a.dtype != self.dtype or a.shape != (self.s.n_params,) or \
                    not a.flags.c_contiguous:
                raise ValueError("optimizer state buffers must be contiguous "
                                 f"({self.s.n_params},) arrays of {self.dtype}")
        self._slots = slots
        self.s.slot0 = <void *> <size_t> slots[0].ctypes.data if len(slots) > 0 else NULL
        self.s.slot1 = <void *> <size_t> slots[1].ctypes.data if len(slots) > 1 else NULL

    def set_learning_rate(self, double lr):
        self.s.lr = lr

    @property
    def step(self):
        return self.s.step

    @step.setter
    def step(self, int64_t value):
        self.s.step = value

    # -- epochs -------------------------------------------------------------------------------
    def start_epoch(self, X, Y, labels, sw, order, int64_t batch_size, uint64_t seed,
                    bint track_metrics):
        """Arrays are already checked (CPUNetwork): C-contiguous, right dtype and shapes."""
        self.ensure_workspace(batch_size)
        self._epoch_refs = (X, Y, labels, sw, order)  # keep them alive during the epoch
        self.s.X = <void *> <size_t> X.ctypes.data
        self.s.Y = <void *> <size_t> Y.ctypes.data if Y is not None else NULL
        self.s.labels = <int64_t *> <size_t> labels.ctypes.data if labels is not None else NULL
        self.s.sw = <void *> <size_t> sw.ctypes.data if sw is not None else NULL
        self.s.order = <int64_t *> <size_t> order.ctypes.data if order is not None else NULL
        self.s.n = X.shape[0]
        self.s.done = 0
        self.s.batch_size = batch_size
        self.s.seed = seed
        self.s.loss_sum = 0.0
        self.s.diverged = False
        self.s.track_metrics = track_metrics
        for i in range(6):
            self.s.metrics[i] = 0.0

    def run_steps(self, int64_t max_steps=-1):
        cdef int64_t steps
        if self._epoch_refs is None:
            raise RuntimeError("run_steps() called before start_epoch()")
        with nogil:
            if self.is_f32:
                steps = run_steps_impl[float](&self.s, max_steps, NULL)
            else:
                steps = run_steps_impl[double](&self.s, max_steps, NULL)
        return steps

    def end_epoch(self):
        """Release the references to the epoch's arrays."""
        self._epoch_refs = None
        self.s.X = NULL
        self.s.Y = NULL
        self.s.labels = NULL
        self.s.sw = NULL
        self.s.order = NULL

    @property
    def epoch_state(self):
        """(done, n, loss_sum, diverged, metrics tuple)."""
        return (self.s.done, self.s.n, self.s.loss_sum, bool(self.s.diverged),
                tuple(self.s.metrics[i] for i in range(6)))

    # -- full batch --------------------------------------------------------------------------
    def full_batch(self, X, Y, labels, sw, bint want_grad, bint include_penalty):
        """Loss of all rows of X as one batch; with want_grad the gradient is in grads."""
        cdef double loss
        cdef int64_t n = X.shape[0]
        self.ensure_workspace(min(n, 4096))
        cdef void *px = <void *> <size_t> X.ctypes.data
        cdef void *py = <void *> <size_t> Y.ctypes.data if Y is not None else NULL
        cdef int64_t *pl = <int64_t *> <size_t> labels.ctypes.data if labels is not None else NULL
        cdef void *pw = <void *> <size_t> sw.ctypes.data if sw is not None else NULL
        with nogil:
            if self.is_f32:
                loss = full_batch_impl[float](&self.s, <float *> px, <float *> py, pl,
                                              <float *> pw, n, want_grad, include_penalty, NULL)
            else:
                loss = full_batch_impl[double](&self.s, <double *> px, <double *> py, pl,
                                               <double *> pw, n, want_grad, include_penalty,
                                               NULL)
        return loss

    def predict(self, X, out):
        cdef int64_t n = X.shape[0]
        self.ensure_workspace(min(n, 4096))
        cdef void *px = <void *> <size_t> X.ctypes.data
        cdef void *po = <void *> <size_t> out.ctypes.data
        with nogil:
            if self.is_f32:
                predict_impl[float](&self.s, <float *> px, n, <float *> po, NULL)
            else:
                predict_impl[double](&self.s, <double *> px, n, <double *> po, NULL)
        return out


# ---------------------------------------------------------------------------------------
# Python twins of the C kernels, for the kernel tests (compare fast vs naive vs NumPy).
def kernel_bias_act_forward(floating[:, ::1] Z, bias, str act, bint naive=False,
                            int n_threads=1):
    """A = act(Z + bias) through the C kernel (fast or naive)."""
    cdef int code = ACTIVATION_CODES[act]
    out = np.empty_like(np.asarray(Z))
    cdef floating[:, ::1] A = out
    cdef floating[::1] b
    cdef const floating *pb = NULL
    if bias is not None:
        b = bias
        pb = &b[0]
    if floating is float:
        if naive:
            bias_act_forward_naive_f32(Z.shape[0], Z.shape[1], &Z[0, 0], pb, code, &A[0, 0])
        else:
            bias_act_forward_f32(Z.shape[0], Z.shape[1], &Z[0, 0], pb, code, &A[0, 0], n_threads)
    else:
        if naive:
            bias_act_forward_naive_f64(Z.shape[0], Z.shape[1], &Z[0, 0], pb, code, &A[0, 0])
        else:
            bias_act_forward_f64(Z.shape[0], Z.shape[1], &Z[0, 0], pb, code, &A[0, 0], n_threads)
    return out


def kernel_act_backward(floating[:, ::1] Z, floating[:, ::1] A, floating[:, ::1] dA, str act,
                        bint naive=False, int n_threads=1):
    """dZ from dA (a new array) through the C kernel (fast or naive)."""
    cdef int code = ACTIVATION_CODES[act]
    out = np.array(dA, copy=True)
    cdef floating[:, ::1] d = out
    if floating is float:
        if naive:
            act_backward_naive_f32(Z.shape[0], Z.shape[1], code, &Z[0, 0], &A[0, 0], &d[0, 0])
        else:
            act_backward_f32(Z.shape[0], Z.shape[1], code, &Z[0, 0], &A[0, 0], &d[0, 0], n_threads)
    else:
        if naive:
            act_backward_naive_f64(Z.shape[0], Z.shape[1], code, &Z[0, 0], &A[0, 0], &d[0, 0])
        else:
            act_backward_f64(Z.shape[0], Z.shape[1], code, &Z[0, 0], &A[0, 0], &d[0, 0], n_threads)
    return out


def kernel_small_gemm(str kind, floating[:, ::1] A, floating[:, ::1] B):
    """The small-matrix product kernels: kind "nn" (A @ B), "tn" (A.T @ B), "nt" (A @ B.T)."""
    cdef int64_t M, N, K
    if kind == "nn":
        M, K, N = A.shape[0], A.shape[1], B.shape[1]
        assert B.shape[0] == K
    elif kind == "tn":
        K, M, N = A.shape[0], A.shape[1], B.shape[1]
        assert B.shape[0] == K
    elif kind == "nt":
        M, K, N = A.shape[0], A.shape[1], B.shape[0]
        assert B.shape[1] == K
    else:
        raise ValueError(kind)
    # the kernels may write up to 16 elements past C's end and read past B's: slack
    out_storage = np.zeros(M * N + FASTMLP_SLACK, dtype=np.asarray(A).dtype)
    out = out_storage[:M * N].reshape(M, N)
    cdef floating[:, ::1] C = out
    padded = np.zeros(B.shape[0] * B.shape[1] + FASTMLP_SLACK, dtype=out.dtype)
    padded[:B.shape[0] * B.shape[1]] = np.asarray(B).ravel()
    B = padded[:B.shape[0] * B.shape[1]].reshape(B.shape[0], B.shape[1])
    if floating is float:
        if kind == "nn":
            gemm_nn_small_f32(M, N, K, &A[0, 0], &B[0, 0], 0, &C[0, 0])
        elif kind == "tn":
            gemm_tn_small_f32(M, N, K, &A[0, 0], &B[0, 0], 0, &C[0, 0])
        else:
            gemm_nt_small_f32(M, N, K, &A[0, 0], &B[0, 0], &C[0, 0])
    else:
        if kind == "nn":
            gemm_nn_small_f64(M, N, K, &A[0, 0], &B[0, 0], 0, &C[0, 0])
        elif kind == "tn":
            gemm_tn_small_f64(M, N, K, &A[0, 0], &B[0, 0], 0, &C[0, 0])
        else:
            gemm_nt_small_f64(M, N, K, &A[0, 0], &B[0, 0], &C[0, 0])
    return out
