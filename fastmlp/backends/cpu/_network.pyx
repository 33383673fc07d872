"""The CPU engine: a whole epoch of minibatch training without the GIL.

Layering: scalar C kernels (csrc/, elementwise, OpenMP) and BLAS (``_blas.gemm``) ->
fused-type ``noexcept nogil`` step functions here (gather, forward, loss, backward,
penalty, clipping, optimizer update) -> ``Engine``, an extension type owning the
buffers -> ``CPUNetwork`` (network.py), the thin Python class implementing
``fastmlp.backends.base.Network``.

Memory: parameters, gradients and optimizer state are each ONE flat buffer (for
every layer, W (fan_in, fan_out) row-major then b); workspaces (activations, deltas,
the gathered batch) are allocated once per batch capacity and reused: no allocation
happens inside an epoch.  Every buffer the small kernels touch has FASTMLP_SLACK zeroed
elements after it (they read and write rows as whole vectors).

Threads: a large batch of a narrow network (or a long batch of a wide one) is split into
one shard per thread (each shard: its own workspace and gradient buffer, single-threaded
BLAS); the shards' gradients are summed, then ONE update is applied.  Otherwise BLAS
threads split each product.  Predictions are split by rows the same way (nothing to sum).
The choice is a fixed rule (batch_is_sharded, predict_is_sharded), never a timing, so
results do not depend on the machine's load.  Such a batch whose first layer skips X's
zeros and holds most of the parameters (scikit-learn's default network on MNIST), with at
most half as many rows as the input has features, takes the feature split instead: the
first layer's products and update split over its input features (W0's rows, each thread
its own), the rest of the network over the rows, all of an epoch's steps in one parallel
region (feature_split_thread).  Predictions and full batches (L-BFGS, evaluation) skip
X's zeros by the same density rule, the forward product in blocks of PREDICT_SKIP_ROWS rows
(Engine._begin_call).

Short batches (at most DIRECT_MAX_ROWS rows; DIRECT_MAX_ROWS_THREADED when the product
is split over threads, which a wide network's batch then is rather than split by rows)
multiply through the direct kernels
(csrc/gemm_direct_impl.inc) where the CPU has AVX-512: they read W in place instead of
packing it on every call as BLAS does, split each product over OpenMP threads (in a
training step the forward product, the weight gradient and dZ @ W^T all by W's rows, so
that each thread reads and writes only the rows of W it updates; predictions by W's
columns), and the update after them is split over the same threads (use_direct).  The
elementwise passes between them run inside the products' parallel regions (the hidden
layers' bias and activation in the forward's sum of partial products, act' in dZ @ W^T,
each thread on the block it wrote; FUSED_EPILOGUES), and both threads gather the
shuffled rows.

Tiny networks (every layer at most FM_TINY_WIDTH units, no dropout) train through one
fused pass (csrc/tiny_impl.inc: zero-padded weights, one vector per row) instead of a
kernel call per product and activation; the output activation and loss stay the general
kernels' (float softmax excepted).  batch_is_tiny decides, per batch.
"""
from libc.stdint cimport int64_t, uint16_t, uint64_t
from libc.math cimport sqrt, pow, floor, isfinite
from libc.string cimport memcpy, memset
from cython cimport floating
from cython.parallel cimport prange, parallel

import numpy as np

from ._blas cimport gemm
from ._kernels cimport *

# Products with m * n * k at or below this go to the small-matrix C kernels:
# a BLAS call costs more than the arithmetic there (measured: benchmarks/RESULTS.md).
cdef int64_t SMALL_GEMM_WORK = 32768
# A batch is split over the threads only when it holds at least this many multiply-adds
# (per forward pass); below, the fork/join costs more than it saves.
cdef int64_t SHARD_MIN_WORK = 1 << 21
# ... and only when no layer is wider than this, or each thread gets at least
# SHARD_WIDE_MIN_ROWS rows (and the batch is too long for the direct kernels, where the
# CPU runs them: DIRECT_MAX_ROWS_THREADED).  OpenBLAS splits a product with a narrow
# output badly over its threads, and one with a wide output well only while the batch is
# short (measured on 2 cores, benchmarks/RESULTS.md: 784-100-10 b200 sharded 188 vs BLAS
# threads 155 GFLOP/s; 784-500-500-10 b128 158 vs 175, b256 215 vs 202, b512 248-259 vs
# 232-241, b1024 265 vs 226).  A fixed rule, never a timing, decides: the result must not
# depend on the machine's mood (sharding changes the summation order).
cdef int64_t SHARD_MAX_WIDTH = 256
cdef int64_t SHARD_WIDE_MIN_ROWS = 128
# Tiny networks (every layer at most FM_TINY_WIDTH units, no dropout, every product of a
# batch at or below SMALL_GEMM_WORK) train through the fused pass of csrc/tiny_impl.inc,
# where it runs its x86-64-v4 clone: it holds a row in one 16-lane vector, one AVX-512
# register.  Any other clone splits each vector over 2 or 4 registers, and GCC then
# spills (v3) or keeps the vectors in memory (baseline, aarch64): the iris-sized step
# measured 11.3 us on the tiny pass against 2.8 us on the general kernels in the v3 clone
# (2.4 against 3.1 us in the v4 clone; benchmarks/RESULTS.md, session 13).  Float32 only:
# a row of 16 doubles is two registers even there, and the general kernels, whose narrow
# products hold rows of up to 16 doubles in four 32-byte vectors, train the float64
# iris-sized network 2.3x faster (3.8 against 8.9 us; session 14).
TINY_DEFAULT = fm_simd_level() >= 4
cdef int TINY_FORCED = -1   # -1: the default (TINY_DEFAULT, float32 networks); 0 / 1: forced
# Batches of at most this many rows multiply through the direct kernels (where the CPU has
# AVX-512; csrc/gemm_direct_impl.inc), which read W in place: BLAS packs W on every call,
# which for short batches costs about as much as the arithmetic (benchmarks/RESULTS.md).
# Products split over threads go direct up to DIRECT_MAX_ROWS_THREADED rows: there BLAS
# also pays its threads' fork/join (784-500-500-10 at b128 on two threads: 2.71 ms per
# step direct, 2.95 through BLAS; on one thread BLAS wins, 4.21 against 4.60).  A wide
# network's batch of up to that many rows goes direct rather than being split over the
# threads (batch_is_sharded).  784-500-500-10 on MNIST, two threads, the build before
# (direct up to 128 rows; BLAS's threads up to 255; the split by rows from 256) against
# this one, best of three alternating processes: b160 1.65x (first layer dense: 1.98x),
# b192 1.59x, b200 1.62x (dense 1.13x), b256 1.07x (dense 1.07x; float64 0.98x in
# process); from 288 rows on the direct path measured 1.00-1.05x the split, which stays
# there (benchmarks/RESULTS.md, session 25).
cdef int64_t DIRECT_MAX_ROWS = 64
cdef int64_t DIRECT_MAX_ROWS_THREADED = 256
# A product whose output rows are narrow (the forward product and weight gradient of an
# output layer of a few classes: at most NARROW_OUTPUT_BYTES a row, two of the small
# kernels' 32-byte vectors) goes to the small kernels' narrow path (csrc/gemm_small_impl.inc)
# where the direct kernels would take it: the direct kernels' 32-lane panels and 64-byte
# row alignment fit wide outputs.  Measured (Intel Xeon, AVX-512, K = 500, one call, us):
# float32 N = 10 at 32 / 128 / 512 rows, forward 8.0 / 29 / 115 narrow against 25 / 73 /
# 275 direct on one thread and 26 / 40 / 144 on two, weight gradient 13 / 33 / 142 against
# 21 / 72 / 280 and 21 / 42 / 149; N = 1 and 3 alike; from N = 32 the direct kernels win
# (b128: 175 against 58); float64 N = 8: 9.1 / 32 / 122 against 22 / 82 / 263 and 22 / 47
# / 140 (N = 10 and 16 mixed, so doubles stop at 8).  Products that the direct kernels
# split over several threads stay there (sending them too lost 1-1.6% per step at b64-b200).
# Training 784-500-500-10, per step: two threads b16 1.04x, b32 1.03x; one thread b16-b64
# 1.02x (benchmarks/RESULTS.md, session 27).
cdef int64_t NARROW_OUTPUT_BYTES = 64
cdef bint NARROW_OUTPUTS = True
# With direct products, the optimizer update of a network of at least this many parameters
# is split over the threads.
cdef int64_t DIRECT_SPLIT_UPDATE_MIN = 1 << 16

# The first layer's training products skip the input's zeros (csrc/zero_skip.c) when, at
# the start of an epoch, at most this fraction of a sample of X's rows is nonzero (MNIST:
# 0.19).  Float32 networks, where the CPU runs the AVX-512 kernels: on batches whose rows a
# thread multiplies alone (split over the threads, or one thread), and on the direct path's
# batches split over W's rows (skips_zeros).  On MNIST's rows (784-100 on 100 rows) the
# forward product takes 0.4x and the weight gradient 0.27x the dense kernels' time
# (benchmarks/RESULTS.md, sessions 18 to 20); the work falls with the density and theirs
# does not, so SKIP_ZEROS_MAX_DENSITY sits below where they measured even.
cdef double SKIP_ZEROS_MAX_DENSITY = 0.3
cdef int SKIP_ZEROS_FORCED = -1   # -1: the density rule; 0 / 1: forced off / on
cdef int64_t SKIP_ZEROS_SAMPLE_ROWS = 256
# Predictions and full batches skip the zeros too (Engine._begin_call), their forward
# product in blocks of this many rows (masks, then the product): 784-500-500-10 on 10,000
# MNIST rows, two threads, 51 ms per prediction in blocks of 16 to 256 rows, 55 in the
# workspace's 4096, 67 dense (benchmarks/RESULTS.md, session 23).
cdef int64_t PREDICT_SKIP_ROWS = 128


# Predictions and full batches run through the workspaces in chunks of rows: the
# workspace grows to this many rows for them (each shard's chunks are its workspace's
# rows: these, or ceil(these / n_shards) for the shards past the first).  Best of 12 interleaved calls on two
# threads, 10,000 MNIST rows (prediction skipping zeros / dense / loss and gradient),
# chunks of 4096 against 1024: 784-500-500-10 49.4 / 72.5 / 135.2 against 49.8 / 71.3 /
# 133.7 ms (512 rows: 51.0 / 76.0 / 131.5), 784-100-10 5.4 / 10.2 / 11.7 against 5.6 /
# 10.4 / 10.8, 784-2048-10 108.2 / 179.6 / 229.6 against 101.8 / 178.6 / 219.7; the
# workspaces, 63.0 against 18.0 MiB, 18.2 against 4.9, 117.3 against 35.5
# (benchmarks/RESULTS.md, session 26).
cdef int64_t CALL_CHUNK_ROWS = 1024


def call_chunk_rows():
    """The rows a prediction or full batch grows the workspace to (CALL_CHUNK_ROWS)."""
    return CALL_CHUNK_ROWS


def set_call_chunk_rows(int64_t rows):
    """The rows a prediction or full batch grows the workspace to (for benchmarks and
    tests; networks whose workspace has grown keep it; returns the previous value)."""
    global CALL_CHUNK_ROWS
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    previous = CALL_CHUNK_ROWS
    CALL_CHUNK_ROWS = rows
    return int(previous)


def predict_skip_rows():
    """The rows per block of a prediction that skips X's zeros (PREDICT_SKIP_ROWS)."""
    return PREDICT_SKIP_ROWS


def set_skip_zeros(enabled):
    """Force the first layer's zero-skipping products on (True) or off (False), or back to
    the density rule (None), for epochs started afterwards and for predictions (tests,
    benchmarks).  Forced on, they run even where the CPU lacks AVX-512 (through the naive
    references).  Returns the previous setting."""
    global SKIP_ZEROS_FORCED
    previous = None if SKIP_ZEROS_FORCED < 0 else bool(SKIP_ZEROS_FORCED)
    SKIP_ZEROS_FORCED = -1 if enabled is None else int(bool(enabled))
    return previous


cdef double sampled_density(const float *X, int64_t n, int64_t d) noexcept nogil:
    """The fraction of nonzero elements among up to SKIP_ZEROS_SAMPLE_ROWS rows of X (n, d)
    spread evenly over it."""
    cdef int64_t rows = min(n, SKIP_ZEROS_SAMPLE_ROWS), r, j, nonzero = 0
    cdef const float *x
    if rows == 0 or d == 0:
        return 1.0
    for r in range(rows):
        x = X + (r * n // rows) * d
        for j in range(d):
            nonzero += x[j] != 0
    return nonzero / <double> (rows * d)


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


def set_shard_min_work(int64_t work):
    """Set the multiply-adds per batch from which a batch is split over the threads (for
    benchmarks and tests; returns the previous value)."""
    global SHARD_MIN_WORK
    previous = SHARD_MIN_WORK
    SHARD_MIN_WORK = work
    return previous


def set_tiny_path(enabled):
    """Use the fused pass for tiny networks when they qualify: True / False force it on /
    off for every dtype (for benchmarks and tests, which compare both paths), None restores
    the default (float32 networks, where the x86-64-v4 clones run: see TINY_DEFAULT).
    Returns the previous setting (None: the default)."""
    global TINY_FORCED
    previous = None if TINY_FORCED < 0 else bool(TINY_FORCED)
    TINY_FORCED = -1 if enabled is None else int(bool(enabled))
    return previous


def set_narrow_kernels(enabled):
    """Use the small products' narrow kernels (csrc/gemm_small_impl.inc): True / False force
    them on / off (tests, benchmarks), None restores the default (on where the x86-64-v3 or
    v4 clones run).  Returns the previous value."""
    return bool(fm_narrow_set_enabled(-1 if enabled is None else int(bool(enabled))))


def set_direct_max_rows(rows):
    """Set the batch rows up to which products use the direct kernels instead of BLAS, for
    benchmarks and tests: an int (0: never) for products on one thread and on several, or
    a pair (one thread, several).  Returns the previous pair."""
    global DIRECT_MAX_ROWS, DIRECT_MAX_ROWS_THREADED
    previous = (DIRECT_MAX_ROWS, DIRECT_MAX_ROWS_THREADED)
    if isinstance(rows, tuple):
        single, threaded = rows
    else:
        single = threaded = rows
    DIRECT_MAX_ROWS, DIRECT_MAX_ROWS_THREADED = single, threaded
    return previous


def set_narrow_outputs(bint enabled):
    """Send products with narrow output rows (NARROW_OUTPUT_BYTES) to the small kernels
    where the direct kernels would take them (the default), or leave them to the direct
    kernels (False; for benchmarks and tests).  Returns the previous setting."""
    global NARROW_OUTPUTS
    previous = NARROW_OUTPUTS
    NARROW_OUTPUTS = enabled
    return previous


def product_kernel_of(str kind, int64_t rows, int64_t fan_in, int64_t fan_out,
                      int n_threads=1, dtype=np.float32):
    """Which kernels ("small", "direct" or "blas") multiply a layer's training product
    of this kind on a batch of `rows` rows with n_threads threads: "nn" the forward
    product (rows, fan_in) @ W (fan_in, fan_out), "tn" its weight gradient, "nt" the
    delta passed down, dZ @ W^T (for tests and benchmarks: the rule, not a timing)."""
    cdef int64_t work = rows * fan_in * fan_out
    cdef size_t itemsize = np.dtype(dtype).itemsize
    cdef ProductKernel kernel
    if itemsize not in (4, 8):
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    if kind == "nt":
        kernel = product_kernel(work, rows, n_threads)
    elif kind in ("nn", "tn"):
        kernel = output_kernel(work, fan_out, rows, n_threads, itemsize)
    else:
        raise ValueError(f"kind must be 'nn', 'tn' or 'nt', got {kind!r}")
    return {PRODUCT_SMALL: "small", PRODUCT_DIRECT: "direct", PRODUCT_BLAS: "blas"}[kernel]


def direct_kernels_available():
    """True when the CPU runs the direct kernels' AVX-512 code (else the engine keeps BLAS
    for every product above the small-kernel size)."""
    return bool(fm_direct_available())


def set_shard_rule(int64_t max_width, int64_t wide_min_rows):
    """Set when a batch is split over the threads: always if no layer is wider than
    max_width, else only with at least wide_min_rows rows per thread (for benchmarks and
    tests; returns the previous pair)."""
    global SHARD_MAX_WIDTH, SHARD_WIDE_MIN_ROWS
    previous = (SHARD_MAX_WIDTH, SHARD_WIDE_MIN_ROWS)
    SHARD_MAX_WIDTH = max_width
    SHARD_WIDE_MIN_ROWS = wide_min_rows
    return previous


def permutation(int64_t n, uint64_t seed, uint64_t epoch):
    """A seeded permutation of range(n) as int64 (csrc/rng.c, Fisher-Yates on splitmix64)."""
    out = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] o = out
    if n > 0:
        with nogil:
            fm_permutation(n, seed, epoch, &o[0])
    return out


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fm_openmp_enabled())


SIMD_LEVEL_NAMES = {4: "x86-64-v4", 3: "x86-64-v3", 0: "baseline"}


def simd_level():
    """The x86-64 feature level of the elementwise, loss, optimizer and small-product
    kernels that run on this CPU: ``"x86-64-v4"`` (AVX-512), ``"x86-64-v3"`` (AVX2 + FMA)
    or ``"baseline"`` (SSE2).  The loader picks the highest level that the build compiled
    (:func:`simd_build`) and the CPU supports."""
    return SIMD_LEVEL_NAMES.get(fm_simd_level(), "unknown")


def simd_build():
    """The highest x86-64 feature level compiled into this build: 4 (the default: v4, v3
    and baseline clones and the AVX-512 direct products), 3 (``FASTMLP_SIMD=x86-64-v3``:
    what an AVX2-only CPU runs) or 0 (``FASTMLP_SIMD=baseline``, or a compiler or platform
    without GCC's multiversioning: the baseline code only)."""
    return fm_simd_clones()


cdef struct LayerC:
    int64_t fan_in, fan_out
    int64_t w_off, b_off        # into params/grads; b_off < 0: no bias
    int act
    double rate, l2, l1         # dropout rate of this layer's output, penalties of W


cdef struct LayerWs:
    # where a layer's blocks lie in one shard's workspace, each (rows, fan_out) for the
    # shard's rows (ShardC.rows)
    int64_t a_off               # A; also Z when z_off < 0
    int64_t z_off               # Z, kept for gelu and the output layer; else -1
    int64_t d_off               # the dropout output; -1 without dropout
    int64_t g_off               # the delta dZ


cdef struct ShardC:
    # one thread's share of a batch: its workspace and gradient buffer
    void *ws
    int64_t rows         # the rows its workspace holds (shard 0: ws_rows; the others
                         # ceil(ws_rows / n_shards), the most any of them is given:
                         # Engine._alloc_shard_workspaces)
    LayerWs *lw          # its layers' blocks (n_layers entries)
    void *grads
    double loss
    double penalty       # this thread's part of the batch's penalty (penalty_slice)
    double metrics[6]    # sum w*correct, w*mae, w*mse, w; sum data_loss*nb, penalty*nb
    bint grads_zeroed    # every weight gradient is 0 (cleared after its last read; see
                         # ZEROED_GRADS): the next weight-gradient products accumulate
    uint16_t *pmask      # the nonzero masks of this shard's rows in a prediction or full
                         # batch that skips X's zeros (call_skips; ws_rows x
                         # ceil(n_features / 16)) ...
    bint pmask_ready     # ... built by the forward pass of the rows now in the workspace


cdef struct NetC:
    int n_layers
    LayerC *layers
    int64_t n_params, n_features, n_outputs, macs_per_row, max_fan_out, max_layer_macs
    int n_shards                        # threads a large batch is split over
    ShardC *shards                      # n_shards entries; shard 0 owns ws and grads
    int loss
    double loss_scale
    bint norm_by_weights, penalty_per_sample
    int n_threads
    # buffers (float* or double*, by the network dtype)
    void *params
    void *grads
    void *slot0
    void *slot1
    int64_t ws_rows                     # the rows of the longest batch or call chunk so far
    void *partial                       # n_threads - 1 partial products of split-K forwards
    int64_t partial_rows                # ... each of up to this many rows x max_fan_out
                                        #     (0 when there is no partial buffer)
    int64_t xb_off, yb_off, wb_off      # shard 0's workspace: gathered X, Y, w of a batch
    int64_t *lb                         # gathered labels (ws_rows)
    bint skip_zeros                     # this epoch's first-layer products skip X's zeros
    int64_t skip_split_batches          # ... of them, batches split over W's rows (for tests)
    uint16_t *xmask                     # ... with the batch rows' nonzero masks
                                        #     (ws_rows x ceil(n_features / 16))
    bint call_skips                     # the running prediction's or full batch's first
                                        # layer skips X's zeros (masks in the shards'
                                        # pmask)
    bint fs_ready                       # this epoch's split batches may take the feature
                                        # split (feature_split_applies), with:
    int fs_threads                      # ... buffers for this many threads
    int64_t fs_rows                     # ... and batches of up to this many rows:
    void *fs_partial                    # ... their partial first-layer products
                                        #     (fs_rows x fan_out each), then the batch's
                                        #     dZ0 (as much)
    uint16_t *fs_masks                  # ... their masks (fs_rows x ceil(n_features / 16)
                                        #     each, the words of their features written)
    int64_t *fs_cuts                    # ... their features: [fs_cuts[t], fs_cuts[t + 1])
    int64_t *fs_sync                    # ... counters of their features' pieces of a step
                                        #     (FS_SYNC_STRIDE apart: FS_CLAIMED, FS_DONE,
                                        #     FS_TAKEN)
    int64_t fs_steps                    # steps of the last feature-split run
    int64_t feature_split_batches       # batches trained so (a diagnostic, for tests)
    bint tiny_shape                     # the network qualifies for the fused tiny pass
    bint tiny_default                   # ... and takes it by default (TINY_DEFAULT, float32)
    fm_tiny_net tiny                    # its plan (for ws_rows rows) ...
    void *tw                            # ... and workspace, or NULL
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


# ---------------------------------------------------------------------------------------
# matrix products: small C kernels below SMALL_GEMM_WORK; above it, the direct kernels
# (csrc/gemm_direct_impl.inc, W read in place) for short batches, else BLAS.  `rows` is
# the batch's row count of the product, nt the threads it may use.
cdef inline bint use_direct(int64_t rows, int nt) noexcept nogil:
    """Do products of a batch of this many rows, on nt threads, go to the direct kernels?"""
    return (rows <= (DIRECT_MAX_ROWS_THREADED if nt > 1 else DIRECT_MAX_ROWS)
            and fm_direct_available())


cdef enum ProductKernel:
    PRODUCT_SMALL, PRODUCT_DIRECT, PRODUCT_BLAS


cdef inline ProductKernel product_kernel(int64_t work, int64_t rows, int nt) noexcept nogil:
    """The kernels that multiply a product of `work` multiply-adds over `rows` batch rows on
    nt threads (the one rule mm_nt dispatches by, and that backward_batch asks before
    fusing an epilogue into a direct product; mm_nn and mm_tn: output_kernel)."""
    if work <= SMALL_GEMM_WORK:
        return PRODUCT_SMALL
    if use_direct(rows, nt):
        return PRODUCT_DIRECT
    return PRODUCT_BLAS


cdef inline bint narrow_output(int64_t n_cols, size_t itemsize) noexcept nogil:
    """Are output rows of n_cols elements narrow enough for the small kernels' narrow path
    to beat the direct kernels (NARROW_OUTPUT_BYTES), where that path runs?"""
    return (NARROW_OUTPUTS and n_cols * <int64_t> itemsize <= NARROW_OUTPUT_BYTES
            and fm_narrow_available())


cdef inline ProductKernel output_kernel(int64_t work, int64_t n_cols, int64_t rows, int nt,
                                        size_t itemsize) noexcept nogil:
    """product_kernel of a product whose output rows hold n_cols elements of itemsize bytes
    (mm_nn: the layer's outputs, mm_tn: its weight gradient; both fan_out wide): a narrow
    output goes to the small kernels where the direct kernels would take it on one thread
    (nt 1, or too little work to split: FM_DIRECT_PARALLEL_MIN_WORK)."""
    cdef ProductKernel kernel = product_kernel(work, rows, nt)
    if (kernel == PRODUCT_DIRECT and (nt == 1 or work < FM_DIRECT_PARALLEL_MIN_WORK)
            and narrow_output(n_cols, itemsize)):
        return PRODUCT_SMALL
    return kernel


cdef inline void mm_nn(int64_t M, int64_t N, int64_t K, const floating *A,
                       const floating *B, floating *C, int nt) noexcept nogil:
    """C (M, N) = A (M, K) @ B (K, N); M is the batch."""
    cdef ProductKernel kernel = output_kernel(M * N * K, N, M, nt, sizeof(floating))
    if kernel == PRODUCT_SMALL:
        if floating is float:
            gemm_nn_small_f32(M, N, K, A, B, 0, C)
        else:
            gemm_nn_small_f64(M, N, K, A, B, 0, C)
    elif kernel == PRODUCT_DIRECT:
        if floating is float:
            direct_gemm_f32(M, N, K, A, K, 1, B, 0, C, nt)
        else:
            direct_gemm_f64(M, N, K, A, K, 1, B, 0, C, nt)
    else:
        gemm(False, False, <int> M, <int> N, <int> K, 1, A, <int> K, B, <int> N, 0, C, <int> N)


cdef inline void mm_tn(int64_t M, int64_t N, int64_t K, const floating *A,
                       const floating *B, floating beta, floating *C, int nt) noexcept nogil:
    """C (M, N) = A^T @ B + beta C, with A (K, M) and B (K, N); K is the batch."""
    cdef ProductKernel kernel = output_kernel(M * N * K, N, K, nt, sizeof(floating))
    if kernel == PRODUCT_SMALL:
        if floating is float:
            gemm_tn_small_f32(M, N, K, A, B, beta, C)
        else:
            gemm_tn_small_f64(M, N, K, A, B, beta, C)
    elif kernel == PRODUCT_DIRECT:
        if floating is float:
            direct_gemm_f32(M, N, K, A, 1, M, B, beta, C, nt)
        else:
            direct_gemm_f64(M, N, K, A, 1, M, B, beta, C, nt)
    else:
        gemm(True, False, <int> M, <int> N, <int> K, 1, A, <int> M, B, <int> N, beta, C,
             <int> N)


cdef inline void mm_nt(int64_t M, int64_t N, int64_t K, const floating *A,
                       const floating *B, floating *C, int nt) noexcept nogil:
    """C (M, N) = A (M, K) @ B^T, with B (N, K); M is the batch."""
    cdef ProductKernel kernel = product_kernel(M * N * K, M, nt)
    if kernel == PRODUCT_SMALL:
        if floating is float:
            gemm_nt_small_f32(M, N, K, A, B, C)
        else:
            gemm_nt_small_f64(M, N, K, A, B, C)
    elif kernel == PRODUCT_DIRECT:
        if floating is float:
            direct_gemm_nt_f32(M, N, K, A, B, C, nt)
        else:
            direct_gemm_nt_f64(M, N, K, A, B, C, nt)
    else:
        gemm(False, True, <int> M, <int> N, <int> K, 1, A, <int> K, B, <int> K, 0, C, <int> N)


# The forward product of a training step through the direct kernels on several threads is
# split over W's rows (K), each thread its own partial product, then summed
# (direct_gemm_split_k): each thread then reads only the rows of W that its own core wrote
# in the last update (update_own_rows).  Predictions keep the split by W's columns.
cdef bint SPLIT_K_FORWARD = True


def set_split_k_forward(bint enabled):
    """Split the training forward products of direct batches on several threads over W's
    rows (default True; for benchmarks and tests; returns the previous value)."""
    global SPLIT_K_FORWARD
    previous = SPLIT_K_FORWARD
    SPLIT_K_FORWARD = enabled
    return bool(previous)


cdef inline bint forward_is_split_k(NetC *s, int64_t b, int64_t work, int nt) noexcept nogil:
    """Does a training forward product of b rows and `work` multiply-adds on nt threads
    split over W's rows?  When it goes direct and would be split over the threads at all,
    and the partial products fit their buffer."""
    return (SPLIT_K_FORWARD and nt > 1 and work >= FM_DIRECT_PARALLEL_MIN_WORK
            and b <= s.partial_rows and use_direct(b, nt))


# On the direct path the elementwise passes around the products run where the products
# left their rows: the hidden layer's bias and activation in the split-K forward's pass
# that sums the partial products (each thread its rows), the activation's derivative in
# the backward dZ @ W^T (each thread the columns it wrote), and the shuffled rows gathered
# by both threads; otherwise these passes, too short for a parallel region of their own
# (csrc/fm_internal.h), ran on one thread while the other waited.
cdef bint FUSED_EPILOGUES = True


def set_fused_epilogues(bint enabled):
    """Run the direct path's elementwise passes inside its products' parallel regions
    (default True; for benchmarks and tests, which compare both; returns the previous
    value)."""
    global FUSED_EPILOGUES
    previous = FUSED_EPILOGUES
    FUSED_EPILOGUES = enabled
    return bool(previous)


# A batch split over the threads runs BLAS on each thread's rows; a weight-gradient product
# with beta = 0 makes BLAS zero its output first, a pass over every weight gradient of every
# shard whose lines had left the caches (5% of a b512 step's samples).  Instead each
# gradient is cleared where it is read for the last time, while in cache: the other
# shards' by the pass that sums them into shard 0's, shard 0's by the update, in blocks
# (update_clearing); the next products then accumulate into zeros (beta = 1, no zeroing).
cdef bint ZEROED_GRADS = True
cdef int64_t UPDATE_BLOCK = 2048   # elements per block of update_clearing (in L1)


def set_zeroed_grads(bint enabled):
    """Clear the shards' gradients after their last read so that the next step's BLAS
    weight-gradient products accumulate instead of zeroing their output (default True; for
    benchmarks and tests, which compare both; returns the previous value)."""
    global ZEROED_GRADS
    previous = ZEROED_GRADS
    ZEROED_GRADS = enabled
    return bool(previous)


# ---------------------------------------------------------------------------------------
cdef inline const floating *layer_input(NetC *s, ShardC *sh, int l, const floating *x,
                                        bint training) noexcept nogil:
    """What layer l reads: the batch for l == 0, else the previous layer's output
    (after dropout while training)."""
    cdef floating *ws = <floating *> sh.ws
    cdef LayerWs *p
    if l == 0:
        return x
    p = &sh.lw[l - 1]
    return ws + (p.d_off if (training and p.d_off >= 0) else p.a_off)


cdef inline int64_t mask_words(NetC *s) noexcept nogil:
    """16-bit words of nonzero mask per row of X"""
    return (s.n_features + 15) // 16


# The direct path's split of the first layer's skipping products over W's rows: the
# epoch's cuts that give the threads equal shares of X's nonzeros (balanced_feature_cuts,
# the feature split's) instead of equal shares of the rows; the update follows them
# (update_own_rows).  On MNIST the second half of the pixels holds 11% more nonzeros than
# the first, which the thread with the first half waited for.
cdef bint BALANCED_DIRECT_CUTS = True


def set_balanced_direct_cuts(bint enabled):
    """Split the direct path's zero-skipping products over W's rows by the epoch's
    nonzero-balanced cuts (default True; for benchmarks and tests, which compare both;
    returns the previous value)."""
    global BALANCED_DIRECT_CUTS
    previous = BALANCED_DIRECT_CUTS
    BALANCED_DIRECT_CUTS = enabled
    return bool(previous)


cdef inline const int64_t *skip_cuts(NetC *s, int nt) noexcept nogil:
    """The cuts of W0's rows for the direct path's skipping products on nt threads: the
    epoch's balanced ones where it has them for nt threads, else NULL (even shares)."""
    if BALANCED_DIRECT_CUTS and s.fs_ready and s.skip_zeros and nt == s.fs_threads:
        return s.fs_cuts
    return NULL


cdef inline bint skips_zeros(NetC *s, int64_t b, int64_t row0, int nt) noexcept nogil:
    """Do the first layer's training products of rows [row0, row0 + b) of the batch skip
    X's zeros?  In an epoch that chose it (start_epoch), for rows whose masks fit the
    workspace, multiplied by one thread or by the direct path's split over W's rows
    (forward_is_split_k: skip_gemm_split_k and skip_gemm_tn_rows split as it does)."""
    cdef LayerC *L = &s.layers[0]
    return (s.skip_zeros and row0 + b <= s.ws_rows
            and (nt == 1 or forward_is_split_k(s, b, b * L.fan_out * L.fan_in, nt)))


cdef void forward_batch(NetC *s, ShardC *sh, const floating *x, int64_t b, int64_t row0,
                        bint training, int first, int nt, floating *dummy) noexcept nogil:
    """Forward pass of b rows x (b, n_features) into the shard's workspace; dropout when
    training (row0: where these rows start in the whole batch, for the dropout draws).
    Layers from `first` on (first > 0: the layers below have written their outputs)."""
    cdef floating *ws = <floating *> sh.ws
    cdef floating *params = <floating *> s.params
    cdef LayerC *L
    cdef LayerWs *W
    cdef const floating *inp
    cdef floating *z
    cdef floating *a
    cdef const floating *bias
    cdef int l, done
    cdef int64_t work
    for l in range(first, s.n_layers):
        L = &s.layers[l]
        W = &sh.lw[l]
        work = b * L.fan_out * L.fan_in
        inp = layer_input(s, sh, l, x, training)
        a = ws + W.a_off
        z = ws + W.z_off if W.z_off >= 0 else a
        bias = params + L.b_off if L.b_off >= 0 else NULL
        done = 0
        if (work <= SMALL_GEMM_WORK
                or (l > 0 and output_kernel(work, L.fan_out, b, nt, sizeof(floating))
                    == PRODUCT_SMALL)):
            # small products, and narrow outputs past the first layer (whose products may
            # skip X's zeros, leaving masks for its weight gradient): product, bias and
            # (for relu-like) activation in one pass
            if floating is float:
                done = dense_forward_small_f32(b, L.fan_out, L.fan_in, inp, params + L.w_off,
                                               bias, L.act if z == a else FM_IDENTITY, z)
            else:
                done = dense_forward_small_f64(b, L.fan_out, L.fan_in, inp, params + L.w_off,
                                               bias, L.act if z == a else FM_IDENTITY, z)
            if done:
                # z holds the biased pre-activation (and, when z is a, the activation too)
                bias = NULL
        if l == 0:
            sh.pmask_ready = False
        if not done and l == 0 and not training and s.call_skips:
            # a prediction's or a full batch's rows (Engine.predict, Engine.full_batch):
            # X's nonzeros alone, in blocks whose rows stay in the caches between the masks
            # and the product; the masks stay for the weight gradient (backward_batch)
            if floating is float:
                skip_gemm_nn_blocks_f32(b, L.fan_out, L.fan_in, x, sh.pmask, params + L.w_off,
                                        z, PREDICT_SKIP_ROWS, nt)
                sh.pmask_ready = True
        elif not done and l == 0 and training and skips_zeros(s, b, row0, nt):
            # X's nonzeros: the masks of these rows, then the product over them alone
            if floating is float:
                if nt == 1:
                    nonzero_masks_f32(b, L.fan_in, x, s.xmask + row0 * mask_words(s))
                    skip_gemm_nn_f32(b, L.fan_out, L.fan_in, x, s.xmask + row0 * mask_words(s),
                                     params + L.w_off, z)
                else:
                    # split over W's rows; bias and activation in the sum of the partials
                    # where the epilogues are fused (z is a)
                    s.skip_split_batches += 1
                    done = FUSED_EPILOGUES and z == a
                    skip_gemm_split_k_f32(b, L.fan_out, L.fan_in, x, s.xmask, params + L.w_off,
                                          bias if done else NULL, L.act if done else -1, z,
                                          <float *> s.partial, skip_cuts(s, nt), nt)
                    if done:
                        bias = NULL
        elif not done:
            if training and forward_is_split_k(s, b, work, nt):
                if FUSED_EPILOGUES and z == a:
                    # bias and activation in the pass that sums the partial products
                    if floating is float:
                        direct_gemm_split_k_act_f32(b, L.fan_out, L.fan_in, inp,
                                                    params + L.w_off, bias, L.act, a,
                                                    <float *> s.partial, nt)
                    else:
                        direct_gemm_split_k_act_f64(b, L.fan_out, L.fan_in, inp,
                                                    params + L.w_off, bias, L.act, a,
                                                    <double *> s.partial, nt)
                    done = 1
                    bias = NULL
                elif floating is float:
                    direct_gemm_split_k_f32(b, L.fan_out, L.fan_in, inp, params + L.w_off, z,
                                            <float *> s.partial, nt)
                else:
                    direct_gemm_split_k_f64(b, L.fan_out, L.fan_in, inp, params + L.w_off, z,
                                            <double *> s.partial, nt)
            else:
                mm_nn(b, L.fan_out, L.fan_in, inp, params + L.w_off, z, nt)
        layer_epilogue(s, sh, l, b, row0, z, bias, not (done and z == a), training, nt)


cdef void layer_epilogue(NetC *s, ShardC *sh, int l, int64_t b, int64_t row0, floating *z,
                         const floating *bias, bint activate, bint training,
                         int nt) noexcept nogil:
    """Layer l's elementwise passes after its product left b rows in z (the shard's Z, or
    A where Z is not kept): with `activate`, the bias (into Z itself where it is kept) and
    the activation into A (without, the product did both); dropout when training (row0:
    the rows' place in the batch, for the draws)."""
    cdef floating *ws = <floating *> sh.ws
    cdef LayerC *L = &s.layers[l]
    cdef LayerWs *W = &sh.lw[l]
    cdef floating *a = ws + W.a_off
    if activate:
        if z != a and bias != NULL:
            # Z is kept (gelu, output layer): it must hold the true pre-activation
            if floating is float:
                bias_act_forward_f32(b, L.fan_out, z, bias, FM_IDENTITY, z, nt)
            else:
                bias_act_forward_f64(b, L.fan_out, z, bias, FM_IDENTITY, z, nt)
            bias = NULL
        if floating is float:
            bias_act_forward_f32(b, L.fan_out, z, bias, L.act, a, nt)
        else:
            bias_act_forward_f64(b, L.fan_out, z, bias, L.act, a, nt)
    if W.d_off >= 0 and training:
        if floating is float:
            dropout_forward_f32(b, L.fan_out, L.rate, fm_dropout_stream(s.seed, s.step, l),
                                row0 * L.fan_out, a, ws + W.d_off, nt)
        else:
            dropout_forward_f64(b, L.fan_out, L.rate, fm_dropout_stream(s.seed, s.step, l),
                                row0 * L.fan_out, a, ws + W.d_off, nt)


cdef double output_loss(NetC *s, ShardC *sh, int64_t b, const floating *y,
                        const int64_t *labels, const floating *w, double norm,
                        bint want_metrics, int nt, floating *dummy) noexcept nogil:
    """Data loss of the rows (scaled, normalised by the WHOLE batch's norm) and the output
    delta in the shard's g_off; metrics go to the shard's accumulators."""
    cdef floating *ws = <floating *> sh.ws
    cdef LayerC *L = &s.layers[s.n_layers - 1]
    cdef LayerWs *W = &sh.lw[s.n_layers - 1]
    cdef double total
    cdef double *metrics = &sh.metrics[0] if want_metrics else NULL
    cdef double delta_scale = s.loss_scale / norm
    if floating is float:
        total = loss_forward_backward_f32(s.loss, L.act, b, L.fan_out, ws + W.z_off,
                                          ws + W.a_off, y, labels, w, delta_scale,
                                          ws + W.g_off, metrics)
    else:
        total = loss_forward_backward_f64(s.loss, L.act, b, L.fan_out, ws + W.z_off,
                                          ws + W.a_off, y, labels, w, delta_scale,
                                          ws + W.g_off, metrics)
    if s.loss == FM_SQUARED_ERROR and L.act != FM_IDENTITY:
        # squared error on a non-identity output: chain rule through the activation
        if floating is float:
            act_backward_f32(b, L.fan_out, L.act, ws + W.z_off, ws + W.a_off, ws + W.g_off, nt)
        else:
            act_backward_f64(b, L.fan_out, L.act, ws + W.z_off, ws + W.a_off, ws + W.g_off, nt)
    return s.loss_scale * total / norm


cdef void backward_batch(NetC *s, ShardC *sh, const floating *x, int64_t b, int64_t row0,
                         bint training, bint accumulate, int last, int nt,
                         floating *dummy) noexcept nogil:
    """Gradients of the data loss of these rows into the shard's gradient buffer (added to
    it when accumulate), of the layers from `last` on (last > 0: down to the delta dZ of
    layer last - 1, whose gradients the caller takes).  Penalties are added separately
    (penalty_pass)."""
    cdef floating *ws = <floating *> sh.ws
    cdef floating *params = <floating *> s.params
    cdef floating *grads = <floating *> sh.grads
    cdef LayerC *L
    cdef LayerC *P
    cdef LayerWs *W
    cdef LayerWs *PW
    cdef int l
    cdef floating *dprev
    # weight gradients cleared since their last read are accumulated into (ZEROED_GRADS)
    cdef floating w_beta = 1 if accumulate or sh.grads_zeroed else 0
    sh.grads_zeroed = False
    for l in range(s.n_layers - 1, last - 1, -1):
        L = &s.layers[l]
        W = &sh.lw[l]
        # dW (fan_in, fan_out) = input^T (fan_in, b) @ dZ (b, fan_out)
        if l == 0 and training and skips_zeros(s, b, row0, nt):
            # over X's nonzeros alone, with the masks forward_batch left
            if floating is float:
                if nt == 1:
                    skip_gemm_tn_f32(b, L.fan_out, L.fan_in, x, s.xmask + row0 * mask_words(s),
                                     ws + W.g_off, w_beta, grads + L.w_off)
                else:   # each thread the rows of dW that it updates (update_own_rows)
                    skip_gemm_tn_rows_f32(b, L.fan_out, L.fan_in, x, s.xmask, ws + W.g_off,
                                          w_beta, grads + L.w_off, skip_cuts(s, nt), nt)
        elif l == 0 and not training and s.call_skips and sh.pmask_ready:
            # a full batch's chunk, with the masks its forward pass left (each thread its
            # rows of dW)
            if floating is float:
                skip_gemm_tn_rows_f32(b, L.fan_out, L.fan_in, x, sh.pmask, ws + W.g_off,
                                      w_beta, grads + L.w_off, NULL, nt)
        else:
            mm_tn(L.fan_in, L.fan_out, b, layer_input(s, sh, l, x, training), ws + W.g_off,
                  w_beta, grads + L.w_off, nt)
        if L.b_off >= 0:
            if floating is float:
                if not column_sums_small_f32(b, L.fan_out, ws + W.g_off, grads + L.b_off,
                                             accumulate):
                    column_sums_f32(b, L.fan_out, ws + W.g_off, grads + L.b_off, accumulate)
            else:
                if not column_sums_small_f64(b, L.fan_out, ws + W.g_off, grads + L.b_off,
                                             accumulate):
                    column_sums_f64(b, L.fan_out, ws + W.g_off, grads + L.b_off, accumulate)
        if l == 0:
            break  # no gradient with respect to the input is needed
        # dA_prev (b, fan_in) = dZ (b, fan_out) @ W^T
        P = &s.layers[l - 1]
        PW = &sh.lw[l - 1]
        dprev = ws + PW.g_off
        if (FUSED_EPILOGUES and not (PW.d_off >= 0 and training)
                and product_kernel(b * L.fan_in * L.fan_out, b, nt) == PRODUCT_DIRECT):
            # the derivative of the layer below in the product's parallel region
            if floating is float:
                direct_gemm_nt_act_f32(b, L.fan_in, L.fan_out, ws + W.g_off, params + L.w_off,
                                       dprev, P.act, ws + PW.z_off if PW.z_off >= 0 else NULL,
                                       ws + PW.a_off, nt)
            else:
                direct_gemm_nt_act_f64(b, L.fan_in, L.fan_out, ws + W.g_off, params + L.w_off,
                                       dprev, P.act, ws + PW.z_off if PW.z_off >= 0 else NULL,
                                       ws + PW.a_off, nt)
            continue
        mm_nt(b, L.fan_in, L.fan_out, ws + W.g_off, params + L.w_off, dprev, nt)
        if floating is float:
            if PW.d_off >= 0 and training:
                dropout_backward_f32(b, P.fan_out, P.rate,
                                     fm_dropout_stream(s.seed, s.step, l - 1),
                                     row0 * P.fan_out, dprev, nt)
            act_backward_f32(b, P.fan_out, P.act, ws + PW.z_off if PW.z_off >= 0 else NULL,
                             ws + PW.a_off, dprev, nt)
        else:
            if PW.d_off >= 0 and training:
                dropout_backward_f64(b, P.fan_out, P.rate,
                                     fm_dropout_stream(s.seed, s.step, l - 1),
                                     row0 * P.fan_out, dprev, nt)
            act_backward_f64(b, P.fan_out, P.act, ws + PW.z_off if PW.z_off >= 0 else NULL,
                             ws + PW.a_off, dprev, nt)


cdef double penalty_slice(NetC *s, floating *grads, int64_t lo, int64_t hi, double norm,
                          floating *dummy, bint want_value=True) noexcept nogil:
    """The penalty of the weights among parameters [lo, hi) of the flat buffer; its
    gradient is added to grads (when not NULL).  Biases carry no penalty, so each layer's
    weight block is cut to the slice.  want_value False (with grads): the gradient alone,
    returns 0."""
    cdef double penalty = 0.0
    cdef double pen_scale = 1.0 / norm if s.penalty_per_sample else 1.0
    cdef floating *params = <floating *> s.params
    cdef LayerC *L
    cdef int l
    cdef int64_t a, z
    for l in range(s.n_layers):
        L = &s.layers[l]
        a = max(lo, L.w_off)
        z = min(hi, L.w_off + L.fan_in * L.fan_out)
        if (L.l2 != 0 or L.l1 != 0) and a < z:
            if not want_value and grads != NULL:
                if floating is float:
                    penalty_gradient_f32(z - a, params + a, grads + a, L.l2 * pen_scale,
                                         L.l1 * pen_scale)
                else:
                    penalty_gradient_f64(z - a, params + a, grads + a, L.l2 * pen_scale,
                                         L.l1 * pen_scale)
            elif floating is float:
                penalty += penalty_forward_backward_f32(
                    z - a, params + a, grads + a if grads != NULL else NULL,
                    L.l2 * pen_scale, L.l1 * pen_scale)
            else:
                penalty += penalty_forward_backward_f64(
                    z - a, params + a, grads + a if grads != NULL else NULL,
                    L.l2 * pen_scale, L.l1 * pen_scale)
    return penalty


cdef double penalty_pass(NetC *s, floating *grads, double norm, floating *dummy) noexcept nogil:
    """The penalty of every weight matrix; its gradient is added to grads (when not NULL)."""
    return penalty_slice(s, grads, 0, s.n_params, norm, dummy)


cdef inline bint has_penalty(NetC *s) noexcept nogil:
    """Does any layer carry an L2 or L1 penalty?"""
    cdef int l
    for l in range(s.n_layers):
        if s.layers[l].l2 != 0 or s.layers[l].l1 != 0:
            return True
    return False


cdef void shard_step(NetC *s, int k, int n_shards, const floating *xb, const floating *yb,
                     const int64_t *lb, const floating *wb, int64_t b, double norm, int nt,
                     floating *dummy) noexcept nogil:
    """Forward, loss and backward of shard k's rows of a batch (rows [r0, r1))."""
    cdef ShardC *sh = &s.shards[k]
    cdef int64_t r0 = b * k // n_shards, r1 = b * (k + 1) // n_shards
    cdef int64_t d = s.n_features, K = s.n_outputs
    sh.loss = 0.0
    if r1 <= r0:
        return
    forward_batch(s, sh, xb + r0 * d, r1 - r0, r0, True, 0, nt, dummy)
    sh.loss = output_loss(s, sh, r1 - r0, yb + r0 * K if yb != NULL else NULL,
                          lb + r0 if lb != NULL else NULL, wb + r0 if wb != NULL else NULL,
                          norm, s.track_metrics, nt, dummy)
    backward_batch(s, sh, xb + r0 * d, r1 - r0, r0, True, False, 0, nt, dummy)


cdef inline bint tiny_batch_fits(NetC *s, int64_t b) noexcept nogil:
    """Does a batch of b rows qualify for the fused pass of a tiny network?"""
    cdef bint enabled = s.tiny_default if TINY_FORCED < 0 else TINY_FORCED
    return enabled and s.tiny_shape and b * s.max_layer_macs <= SMALL_GEMM_WORK


cdef inline bint batch_is_tiny(NetC *s, int64_t b) noexcept nogil:
    """Train this batch through the fused pass (it qualifies, and the workspace is there)?"""
    return tiny_batch_fits(s, b) and s.tw != NULL and b <= s.ws_rows


cdef void tiny_step(NetC *s, const floating *xb, const floating *yb, const int64_t *lb,
                    const floating *wb, int64_t b, double norm, floating *dummy) noexcept nogil:
    """shard_step of a tiny network, one thread: the fused forward pass (hidden layers and
    the output pre-activation), the general output activation and loss kernels, then the
    fused backward pass, which writes every gradient."""
    cdef ShardC *sh = &s.shards[0]
    cdef floating *ws = <floating *> sh.ws
    cdef LayerC *L = &s.layers[s.n_layers - 1]
    cdef LayerWs *W = &sh.lw[s.n_layers - 1]
    if floating is float:
        tiny_forward_f32(&s.tiny, b, xb, <float *> s.params, <float *> s.tw, ws + W.z_off)
        bias_act_forward_f32(b, L.fan_out, ws + W.z_off, NULL, L.act, ws + W.a_off, 1)
    else:
        tiny_forward_f64(&s.tiny, b, xb, <double *> s.params, <double *> s.tw, ws + W.z_off)
        bias_act_forward_f64(b, L.fan_out, ws + W.z_off, NULL, L.act, ws + W.a_off, 1)
    sh.loss = output_loss(s, sh, b, yb, lb, wb, norm, s.track_metrics, 1, dummy)
    sh.grads_zeroed = False  # the tiny backward overwrites every gradient
    if floating is float:
        tiny_backward_f32(&s.tiny, b, xb, <float *> s.tw, ws + W.g_off, <float *> sh.grads)
    else:
        tiny_backward_f64(&s.tiny, b, xb, <double *> s.tw, ws + W.g_off, <double *> sh.grads)


cdef void gather_batch(NetC *s, int64_t src, int64_t dst, int64_t rows,
                       floating *dummy) noexcept nogil:
    """Copy `rows` shuffled rows (order[src:src+rows]) of X, Y, labels and weights into the
    batch buffers at row `dst`."""
    cdef floating *ws = <floating *> s.shards[0].ws
    cdef const floating *X = <const floating *> s.X
    cdef int64_t d = s.n_features
    if floating is float:
        gather_rows_f32(rows, d, X, s.order + src, ws + s.xb_off + dst * d)
    else:
        gather_rows_f64(rows, d, X, s.order + src, ws + s.xb_off + dst * d)
    gather_targets(s, src, dst, rows, dummy)


cdef void gather_targets(NetC *s, int64_t src, int64_t dst, int64_t rows,
                         floating *dummy) noexcept nogil:
    """gather_batch of Y, labels and weights alone."""
    cdef floating *ws = <floating *> s.shards[0].ws
    cdef const floating *Y = <const floating *> s.Y
    cdef const floating *sw = <const floating *> s.sw
    cdef int64_t i, K = s.n_outputs
    if Y != NULL:
        if floating is float:
            gather_rows_f32(rows, K, Y, s.order + src, ws + s.yb_off + dst * K)
        else:
            gather_rows_f64(rows, K, Y, s.order + src, ws + s.yb_off + dst * K)
    if s.labels != NULL:
        for i in range(rows):
            s.lb[dst + i] = s.labels[s.order[src + i]]
    if sw != NULL:
        for i in range(rows):
            ws[s.wb_off + dst + i] = sw[s.order[src + i]]


cdef void reduce_grads(NetC *s, int64_t lo, int64_t hi, int n_shards, bint clear,
                       floating *dummy) noexcept nogil:
    """grads[lo:hi] += the other shards' grads[lo:hi], which are then set to 0 when clear
    (their last read: see ZEROED_GRADS)."""
    cdef floating *g0 = <floating *> s.shards[0].grads
    cdef floating *gk
    cdef int64_t e
    cdef int k
    for k in range(1, n_shards):
        gk = <floating *> s.shards[k].grads
        if clear:
            for e in range(lo, hi):
                g0[e] += gk[e]
                gk[e] = 0
        else:
            for e in range(lo, hi):
                g0[e] += gk[e]


cdef struct StepRule:
    # what an optimizer step needs beyond the buffers, computed once per step
    double lr          # the learning rate
    double step_size   # Adam: lr with the bias corrections of this update's number
    double eps         # Adam: epsilon (times the second correction when eps_pytorch)


cdef inline StepRule step_rule(NetC *s, double lr, int64_t step) noexcept nogil:
    """The rule of update number `step` (counted from 1: Adam's bias corrections) at
    learning rate lr."""
    cdef StepRule r
    cdef double bc2
    r.lr = lr
    r.step_size = lr
    r.eps = s.eps
    if s.opt_kind == 1:
        bc2 = sqrt(1.0 - pow(s.beta_2, <double> step))
        r.step_size = lr * bc2 / (1.0 - pow(s.beta_1, <double> step))
        r.eps = s.eps * bc2 if s.eps_pytorch else s.eps
    return r


cdef void update_with(NetC *s, int64_t lo, int64_t hi, const StepRule *r, int nt,
                      floating *dummy) noexcept nogil:
    """The optimizer update of parameters [lo, hi) by rule r, with nt threads inside the
    kernels.  No clipping here (apply_update)."""
    cdef floating *w = (<floating *> s.params) + lo
    cdef floating *g = (<floating *> s.grads) + lo
    cdef floating *s0 = (<floating *> s.slot0) + lo if s.slot0 != NULL else NULL
    cdef floating *s1 = (<floating *> s.slot1) + lo if s.slot1 != NULL else NULL
    cdef int64_t n = hi - lo
    if s.opt_kind == 0:
        if floating is float:
            sgd_update_f32(n, w, g, s0, r.lr, s.momentum, s.nesterov, nt)
        else:
            sgd_update_f64(n, w, g, s0, r.lr, s.momentum, s.nesterov, nt)
    elif s.opt_kind == 1:
        if floating is float:
            adam_update_f32(n, w, g, s0, s1, r.step_size, s.beta_1, s.beta_2, r.eps, nt)
        else:
            adam_update_f64(n, w, g, s0, s1, r.step_size, s.beta_1, s.beta_2, r.eps, nt)
    elif s.opt_kind == 2:
        if floating is float:
            rmsprop_update_f32(n, w, g, s0, r.lr, s.rho, s.eps, nt)
        else:
            rmsprop_update_f64(n, w, g, s0, r.lr, s.rho, s.eps, nt)
    else:
        if floating is float:
            adagrad_update_f32(n, w, g, s0, r.lr, s.eps, nt)
        else:
            adagrad_update_f64(n, w, g, s0, r.lr, s.eps, nt)


cdef void update_clearing(NetC *s, int64_t lo, int64_t hi, int n_sum, bint add_penalty,
                          double norm, const StepRule *rule, floating *dummy) noexcept nogil:
    """update_with of [lo, hi) on one thread, then its gradients set to 0 (ZEROED_GRADS),
    by blocks of UPDATE_BLOCK elements that stay in L1; with n_sum > 1 each block first
    sums the n_sum shards' gradients (reduce_grads, clearing theirs), and with add_penalty
    then adds the penalty's gradient (penalty_slice; its value was taken before), so that
    the gradient is never written out and read back between these passes."""
    cdef floating *g = <floating *> s.grads
    cdef int64_t a, z
    a = lo
    while a < hi:
        z = min(a + UPDATE_BLOCK, hi)
        if n_sum > 1:
            reduce_grads(s, a, z, n_sum, True, dummy)
        if add_penalty:
            penalty_slice(s, g, a, z, norm, dummy, False)
        update_with(s, a, z, rule, 1, dummy)
        memset(g + a, 0, (z - a) * sizeof(floating))
        a = z


cdef void update_own_rows(NetC *s, int t, int nt, const StepRule *rule,
                          floating *dummy) noexcept nogil:
    """Thread t's share (of nt) of the update by rule after direct products: the rows of
    each weight matrix that its share of the weight-gradient product wrote
    (fm_direct_row_split, as in direct_gemm and direct_gemm_nt; the first layer's at
    skip_cuts, as its zero-skipping products split them: fm_cut_row_split), so the gradient
    is read, and the weights and state written, where that thread's cache holds them;
    thread 0 updates the biases."""
    cdef LayerC *L
    cdef int l
    cdef int64_t r0, r1
    cdef const int64_t *cuts
    for l in range(s.n_layers):
        L = &s.layers[l]
        cuts = skip_cuts(s, nt) if l == 0 else NULL
        r0 = fm_cut_row_split(L.fan_in, cuts, t, nt)
        r1 = fm_cut_row_split(L.fan_in, cuts, t + 1, nt)
        update_with(s, L.w_off + r0 * L.fan_out, L.w_off + r1 * L.fan_out, rule, 1, dummy)
        if L.b_off >= 0 and t == 0:
            update_with(s, L.b_off, L.b_off + L.fan_out, rule, 1, dummy)


cdef inline bint split_pays(NetC *s, int64_t b) noexcept nogil:
    """Does every thread get enough of these b rows to pay for the fork/join (tiny networks
    never do)?"""
    return s.n_shards > 1 and b >= 2 * s.n_shards and b * s.macs_per_row >= SHARD_MIN_WORK


cdef inline bint batch_is_sharded(NetC *s, int64_t b) noexcept nogil:
    """Split this training batch over the threads?  When the split pays, and, for networks
    with a wide layer, each thread gets enough rows to beat BLAS's own split of each
    product and the batch is too long for the direct kernels' split of each product
    (DIRECT_MAX_ROWS_THREADED)."""
    return split_pays(s, b) and (s.max_fan_out <= SHARD_MAX_WIDTH
                                 or (b >= SHARD_WIDE_MIN_ROWS * s.n_shards
                                     and not use_direct(b, s.n_threads)))


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
    """Clip (global norm), then one optimizer step over the whole flat buffer."""
    cdef floating *g = <floating *> s.grads
    cdef double norm, lr = learning_rate_at(s, s.step)
    cdef StepRule rule
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
    rule = step_rule(s, lr, s.step)
    update_with(s, 0, s.n_params, &rule, s.n_threads, dummy)


cdef inline void merge_shard_metrics(NetC *s, int n_shards) noexcept nogil:
    """Shards 1 .. n_shards - 1's metric sums of a batch added into shard 0's, theirs
    cleared."""
    cdef int k, j
    for k in range(1, n_shards):
        for j in range(4):
            s.shards[0].metrics[j] += s.shards[k].metrics[j]
            s.shards[k].metrics[j] = 0.0


cdef inline void reject_batch(NetC *s, const double *metrics_before) noexcept nogil:
    """A batch whose loss is not finite: the epoch ends without its update, and (when
    tracked) shard 0's metric sums go back to metrics_before, as in the reference."""
    cdef int j
    s.diverged = True
    if s.track_metrics:
        for j in range(4):
            s.shards[0].metrics[j] = metrics_before[j]


cdef inline void count_batch(NetC *s, int64_t b, double data_loss, double penalty) noexcept nogil:
    """The books of an applied batch of b rows: the epoch's loss sum and (when tracked) the
    data loss's and penalty's sums."""
    s.loss_sum += (data_loss + penalty) * b
    if s.track_metrics:
        s.shards[0].metrics[4] += data_loss * b
        s.shards[0].metrics[5] += penalty * b


cdef inline double loss_norm(NetC *s, const floating *w, int64_t n) noexcept nogil:
    """The divisor of a batch's data loss (backends/base.py): the sum of its n row
    weights w under weight_normalization="sum_weights", else n; also n when every row
    weighs 0 (no data loss then, the penalty per row)."""
    cdef double norm = 0.0
    cdef int64_t i
    if w == NULL or not s.norm_by_weights:
        return <double> n
    for i in range(n):
        norm += w[i]
    return norm if norm > 0.0 else <double> n


# ---------------------------------------------------------------------------------------
# The feature split: a split batch whose first layer skips X's zeros (float32, AVX-512)
# and holds most of the parameters (scikit-learn's default network on MNIST: 78,500 of
# 79,510) runs its steps in ONE parallel region, each thread t of nt:
#
#   1. builds the nonzero masks of its features [k_t, k_t+1) (balanced_feature_cuts) in
#      every row of the batch, reading X's shuffled rows where they are (no gather: the
#      rows come from memory once, into this core's cache), gathers its rows' targets, and
#      multiplies X[:, k_t:k_t+1] @ W0[k_t:k_t+1, :] into its own partial product P_t
#      (every row);                                                              -- barrier
#   2. for its rows [r_t, r_t+1): Z0 = sum over u of P_u + b0, the activation, the rest of
#      the network's forward pass, the loss and the backward pass down to dZ0 (copied into
#      the batch's dZ0), the weight gradients of layers 1.. into its shard's buffer, db0's
#      column sums; the penalty of the parameters it updates;                    -- barrier
#   3. checks the batch's loss (every thread alike: a non-finite one ends the epoch, no
#      update); then, in FS_PIECES pieces of its features, writes dW0's rows of the piece
#      from the batch's dZ0, updates them while they are in L1, and asks for the piece's
#      share of the next batch's rows (its features); then its slice of the other
#      parameters (summing the shards' gradients and adding the penalty's in the update's
#      L1 blocks, update_clearing).  A thread that is through its own pieces takes those
#      of another thread that nobody has claimed yet (fm_claim), and each thread waits, at
#      the end of the step, until every piece of its features is done: a core that the
#      host slows (the two threads' steps differed by up to 1.4x on this VM; session 21)
#      then leaves the other less to wait for, and the results do not change: a piece's
#      rows of dW0 and their update are the same whichever thread computes them.
#
# So W0 -- its rows, gradient and optimizer state -- is read and written by one core only
# (but for the pieces that another thread takes); the batch split shares it: both
# threads' forward products read all of W0, so each thread's update writes lines the other
# core holds, and the shards' dW0 are summed across cores (its update took 18 ms of a 92
# ms epoch on two threads, 9.5 on one; benchmarks/RESULTS.md, session 20).  What crosses
# cores instead: the partial products' rows and dZ0 (b x fan_out each).  The other layers
# stay split by rows, as in the batch split; two barriers per step and no fork or join
# between steps.
#
# It pays while the batch is short against the input: what crosses cores per step, 2 b x
# fan_out (P and dZ0), against about 2 n_features x fan_out for the batch split (W0's lines
# after the update, the shards' dW0); so batches of at most n_features / 2 rows
# (FEATURE_SPLIT_MAX_ROWS).  Measured, one epoch per step size in turn (benchmarks/
# RESULTS.md, session 21): scikit-learn's default network on MNIST, batch 200, 1.19x the
# batch split's speed; 784-500-500-10 at batch 256, 1.17x; at batch 512, 0.92x.
cdef bint FEATURE_SPLIT = True
cdef double FEATURE_SPLIT_MIN_SHARE = 0.5   # the first layer's share of the parameters
cdef double FEATURE_SPLIT_MAX_ROWS = 0.5    # rows per batch, per input feature
# pieces of each thread's features in step 3, after each of which the next batch's rows
# are requested (session 21: epochs 70.1-71.4 against 73.3-75.3 ms without, min of 12-16
# each, two sets; 4 pieces measured the same), and which another thread may take
cdef int FS_PIECES = 16
# the counters of thread t's pieces, at fs_sync[t * FS_SYNC_STRIDE + ...] (two 64-byte
# lines of their own: pieces claimed, and pieces of other threads it took, a diagnostic, on
# the first; pieces done, which the thread spins on, on the second)
cdef enum:
    FS_SYNC_STRIDE = 16
    FS_CLAIMED = 0
    FS_DONE = 8
    FS_TAKEN = 4
# for tests: each thread claims the other threads' pieces before its own (every piece
# then crosses threads where the other thread is free to take it)
cdef bint FS_OTHERS_FIRST = False


def set_feature_split(bint enabled):
    """Let split batches whose first layer skips X's zeros take the feature split (default
    True; for benchmarks and tests, which compare both; returns the previous value)."""
    global FEATURE_SPLIT
    previous = FEATURE_SPLIT
    FEATURE_SPLIT = enabled
    return bool(previous)


def set_feature_split_others_first(bint enabled):
    """For tests: threads of the feature split claim the other threads' pieces of step 3
    before their own, so that pieces are computed across threads (results must not change;
    returns the previous value)."""
    global FS_OTHERS_FIRST
    previous = FS_OTHERS_FIRST
    FS_OTHERS_FIRST = enabled
    return bool(previous)


FEATURE_CUT_BASE = 0.02   # work per feature and row besides its nonzeros (in nonzeros)


def balanced_feature_cuts(X, int nt):
    """Cuts 0 = c_0 <= c_1 <= ... <= c_nt = d of X's features (columns), multiples of 4,
    that give nt threads about equal first-layer work: the nonzeros of a sample of X's rows
    (the rows sampled_density reads), plus FEATURE_CUT_BASE per feature and row."""
    n, d = X.shape
    rows = min(n, SKIP_ZEROS_SAMPLE_ROWS)
    weight = np.full(d, FEATURE_CUT_BASE * max(rows, 1))
    if rows > 0:
        sample = X[(np.arange(rows) * n) // rows]
        weight += np.count_nonzero(sample, axis=0)
    # the total weight of features [0, 4 q) for q = 0 .. ceil(d / 4)
    blocks = np.add.reduceat(weight, np.arange(0, d, 4)) if d > 0 else np.zeros(0)
    before = np.concatenate([[0.0], np.cumsum(blocks)])
    total = float(before[len(before) - 1])
    cuts = np.zeros(nt + 1, dtype=np.int64)
    for t in range(1, nt):
        q = int(np.argmin(np.abs(before - total * t / nt)))
        cuts[t] = max(int(cuts[t - 1]), min(4 * q, d))
    cuts[nt] = d
    return cuts


cdef inline bint feature_split_applies(NetC *s, int64_t b) noexcept nogil:
    """Does this training batch of b rows take the feature split?  When the batch split
    would take it, its first layer skips zeros (fs_ready: float32, a first layer of at
    least FEATURE_SPLIT_MIN_SHARE of the parameters, buffers for the threads), the batch
    has at most FEATURE_SPLIT_MAX_ROWS rows per input feature, and no clipping needs the
    whole gradient's norm before the update."""
    return (FEATURE_SPLIT and s.fs_ready and s.skip_zeros and s.clipnorm <= 0
            and s.fs_threads >= s.n_shards and b <= s.fs_rows
            and b <= FEATURE_SPLIT_MAX_ROWS * s.n_features and batch_is_sharded(s, b))


cdef inline int64_t feature_cut(NetC *s, int t, int nt) noexcept nogil:
    """The first feature of thread t's share (t = nt: n_features): the epoch's cuts, which
    balance the threads' nonzeros (Engine._prepare_feature_split), or, for a team of another
    size, equal shares; multiples of 4 (skip_gemm_tn's blocks of rows of dW; 4 rows of W0
    are a whole number of cache lines when fan_out is a multiple of 4)."""
    if nt == s.fs_threads:
        return s.fs_cuts[t]
    return min(s.n_features, 4 * (((s.n_features + 3) // 4) * t // nt))


cdef inline int64_t piece_start(int64_t k0, int64_t k1, int64_t i) noexcept nogil:
    """The first feature of piece i (of FS_PIECES; i = FS_PIECES: k1) of the features
    [k0, k1), k0 a multiple of 4: multiples of 4 (skip_gemm_tn's blocks), so pieces can be
    empty when there are fewer than 4 FS_PIECES features."""
    return min(k1, k0 + 4 * (((k1 - k0 + 3) // 4) * i // FS_PIECES))


cdef void fs_piece(NetC *s, int v, int nt, int64_t i, int64_t b, const float *xb,
                   const int64_t *xrows, int64_t nb, const int64_t *next_rows,
                   const float *dz0, bint penalized, double norm,
                   const StepRule *rule) noexcept nogil:
    """Piece i of thread v's features in step 3 of the feature split (by whichever thread
    claimed it): dW0's rows of the piece from the batch's dZ0 and thread v's masks, their
    update (then their gradient cleared), and a request for the piece's share of the next
    batch's nb rows (next_rows; nb 0: none), those features."""
    cdef float *dummy = NULL
    cdef LayerC *L0 = &s.layers[0]
    cdef int64_t d = s.n_features, N = L0.fan_out
    cdef int64_t k0 = feature_cut(s, v, nt), k1 = feature_cut(s, v + 1, nt)
    cdef int64_t e = piece_start(k0, k1, i), f = piece_start(k0, k1, i + 1)
    cdef const uint16_t *masks = s.fs_masks + v * s.fs_rows * mask_words(s)
    if f > e:
        skip_gemm_tn_range_f32(b, N, d, xb, xrows, masks, dz0, 0,
                               <float *> s.grads + L0.w_off, e, f)
        update_clearing(s, L0.w_off + e * N, L0.w_off + f * N, 1, penalized, norm, rule,
                        dummy)
    if nb > 0:
        prefetch_rows_range_f32(nb * (i + 1) // FS_PIECES - nb * i // FS_PIECES, d,
                                <const float *> s.X, next_rows + nb * i // FS_PIECES, k0, k1)


cdef void feature_split_thread(NetC *s, int64_t max_steps) noexcept nogil:
    """Thread fm_thread_num() of the team's part of up to max_steps (< 0: all) steps of the
    epoch in progress through the feature split (see above), while the batches take it;
    thread 0 keeps the books (s.done, s.step, s.loss_sum, the metrics, s.fs_steps)."""
    cdef float *dummy = NULL
    cdef int t = fm_thread_num(), nt = fm_team_size(), u, j, v
    cdef LayerC *L0 = &s.layers[0]
    cdef ShardC *sh = &s.shards[t]
    cdef LayerWs *W0 = &sh.lw[0]
    cdef float *ws = <float *> sh.ws
    cdef float *ws0 = <float *> s.shards[0].ws
    cdef float *params = <float *> s.params
    cdef const float *X = <const float *> s.X
    cdef const float *Y = <const float *> s.Y
    cdef const float *sw = <const float *> s.sw
    cdef int64_t d = s.n_features, N = L0.fan_out, K = s.n_outputs, dq = mask_words(s)
    cdef int64_t k0 = feature_cut(s, t, nt), k1 = feature_cut(s, t + 1, nt)
    cdef uint16_t *masks = s.fs_masks + t * s.fs_rows * dq
    cdef float *part = <float *> s.fs_partial
    cdef int64_t cap = s.fs_rows * N             # elements of each thread's partial product
    cdef float *dz0 = part + nt * cap            # the batch's dZ0 (b, N)
    cdef int64_t rest = L0.w_off + d * N         # b0 and the layers above start here
    cdef int64_t rest_lo = rest + (s.n_params - rest) * t // nt
    cdef int64_t rest_hi = rest + (s.n_params - rest) * (t + 1) // nt
    cdef int64_t done = s.done, step = s.step, steps = 0
    cdef int64_t lo, b, r0, r1, rows, i, e, nb
    cdef const float *xb
    cdef const int64_t *xrows
    cdef const int64_t *next_rows
    cdef const float *yb
    cdef const float *wb
    cdef const int64_t *lb
    cdef const float *src
    cdef float *z
    cdef StepRule rule
    cdef double norm, data_loss, penalty
    cdef bint penalized = has_penalty(s)
    cdef double metrics_before[4]
    if nt != s.n_shards:
        # a team short of the threads asked for (OpenMP may give fewer): each thread's rows
        # would overflow the shards' workspaces (ShardC.rows); the batches go the general way
        return
    for j in range(4):
        metrics_before[j] = 0.0
    while done < s.n and (max_steps < 0 or steps < max_steps):
        lo = done
        b = s.batch_size if lo + s.batch_size <= s.n else s.n - lo
        if not feature_split_applies(s, b):
            break
        r0 = b * t // nt
        r1 = b * (t + 1) // nt
        rows = r1 - r0
        if t == 0 and s.track_metrics:
            for j in range(4):
                metrics_before[j] = sh.metrics[j]
        # 1. its features' masks, its rows' targets, its partial product
        if s.order == NULL:
            xb = X + lo * d
            xrows = NULL
            yb = Y + lo * K if Y != NULL else NULL
            lb = s.labels + lo if s.labels != NULL else NULL
            wb = sw + lo if sw != NULL else NULL
        else:
            # X's rows are read where they are (s.order); the targets are gathered
            xb = X
            xrows = s.order + lo
            yb = ws0 + s.yb_off if Y != NULL else NULL
            lb = s.lb if s.labels != NULL else NULL
            wb = ws0 + s.wb_off if sw != NULL else NULL
            gather_targets(s, lo + r0, r0, rows, dummy)
        nonzero_masks_range_f32(b, d, xb, xrows, k0, k1, masks)
        skip_gemm_nn_range_f32(b, N, d, xb, xrows, masks, params + L0.w_off, part + t * cap,
                               k0, k1)
        fm_thread_barrier()
        # 2. this thread's rows: Z0 from the partial products, then the shard step above it;
        # its pieces' counters for step 3 (every thread is through the last step's pieces)
        s.fs_sync[t * FS_SYNC_STRIDE + FS_CLAIMED] = 0
        s.fs_sync[t * FS_SYNC_STRIDE + FS_DONE] = 0
        norm = loss_norm(s, wb, b)
        z = ws + (W0.z_off if W0.z_off >= 0 else W0.a_off)
        memcpy(z, part + r0 * N, rows * N * sizeof(float))
        for u in range(1, nt):
            src = part + u * cap + r0 * N
            for e in range(rows * N):
                z[e] += src[e]
        layer_epilogue(s, sh, 0, rows, r0, z, params + L0.b_off if L0.b_off >= 0 else NULL,
                       True, True, 1)
        forward_batch(s, sh, NULL, rows, r0, True, 1, 1, dummy)
        sh.loss = output_loss(s, sh, rows, yb + r0 * K if yb != NULL else NULL,
                              lb + r0 if lb != NULL else NULL, wb + r0 if wb != NULL else NULL,
                              norm, s.track_metrics, 1, dummy)
        backward_batch(s, sh, NULL, rows, r0, True, False, 1, 1, dummy)
        # dZ0's rows where every thread's weight gradient reads all b of them
        memcpy(dz0 + r0 * N, ws + W0.g_off, rows * N * sizeof(float))
        if L0.b_off >= 0:
            if not column_sums_small_f32(rows, N, ws + W0.g_off, <float *> sh.grads + L0.b_off,
                                         False):
                column_sums_f32(rows, N, ws + W0.g_off, <float *> sh.grads + L0.b_off, False)
        sh.penalty = 0.0
        if penalized:
            sh.penalty = (penalty_slice(s, NULL, L0.w_off + k0 * N, L0.w_off + k1 * N, norm,
                                        dummy)
                          + penalty_slice(s, NULL, rest_lo, rest_hi, norm, dummy))
        fm_thread_barrier()
        # 3. every thread the same check; then dW0's rows and their update, by pieces, and
        # the update of this thread's slice of the other parameters
        data_loss = 0.0
        penalty = 0.0
        for u in range(nt):
            data_loss += s.shards[u].loss
            penalty += s.shards[u].penalty
        if t == 0 and s.track_metrics:
            merge_shard_metrics(s, nt)
        if not isfinite(data_loss + penalty):
            if t == 0:
                reject_batch(s, metrics_before)
            break
        rule = step_rule(s, learning_rate_at(s, step), step + 1)
        # dW0's rows and their update by pieces, each followed by a request for the lines
        # of a share of the next batch's shuffled rows (the piece's thread's features),
        # which arrive from memory while the next pieces run; this thread's pieces first
        # (FS_OTHERS_FIRST: last), then those of the others that nobody has claimed
        nb = 0
        next_rows = NULL
        if s.order != NULL and lo + b < s.n:
            nb = s.batch_size if lo + b + s.batch_size <= s.n else s.n - lo - b
            next_rows = s.order + lo + b
        for j in range(nt):
            v = (t + j + (1 if FS_OTHERS_FIRST else 0)) % nt
            while True:
                i = fm_claim(&s.fs_sync[v * FS_SYNC_STRIDE + FS_CLAIMED])
                if i >= FS_PIECES:
                    break
                fs_piece(s, v, nt, i, b, xb, xrows, nb, next_rows, dz0, penalized, norm,
                         &rule)
                fm_count_done(&s.fs_sync[v * FS_SYNC_STRIDE + FS_DONE])
                if v != t:
                    s.fs_sync[t * FS_SYNC_STRIDE + FS_TAKEN] += 1
        update_clearing(s, rest_lo, rest_hi, nt, penalized, norm, &rule, dummy)
        sh.grads_zeroed = True
        # the next step's forward product reads W0's rows [k0, k1): wait for the pieces
        # that other threads took
        while fm_count_read(&s.fs_sync[t * FS_SYNC_STRIDE + FS_DONE]) < FS_PIECES:
            pass
        if t == 0:
            count_batch(s, b, data_loss, penalty)
            s.step = step + 1
            s.done = lo + b
            s.feature_split_batches += 1
        step += 1
        done = lo + b
        steps += 1
    if t == 0:
        s.fs_steps = steps


cdef int64_t run_steps_impl(NetC *s, int64_t max_steps, floating *dummy) noexcept nogil:
    """Up to max_steps minibatch updates of the epoch in progress (max_steps < 0: all).

    A large batch is split into one shard per thread (data parallel: each thread runs the
    forward and backward pass of its rows with single-threaded BLAS into its own workspace
    and gradient buffer); the gradients are then summed and ONE update is applied."""
    cdef floating *ws = <floating *> s.shards[0].ws
    cdef floating *g0 = <floating *> s.grads
    cdef const floating *X = <const floating *> s.X
    cdef const floating *Y = <const floating *> s.Y
    cdef const floating *sw = <const floating *> s.sw
    cdef const floating *xb
    cdef const floating *yb
    cdef const floating *wb
    cdef const int64_t *lb
    cdef int64_t steps = 0, lo, b, i, e, d = s.n_features, K = s.n_outputs
    cdef double norm, data_loss, penalty, lr_step
    cdef StepRule rule
    cdef int k, n_shards, n_update, n_pen, n_gather, j
    cdef bint clear, sum_in_update, penalized = has_penalty(s)
    cdef double metrics_before[4]   # shard 0's metric sums before the batch
    while s.done < s.n and not s.diverged and (max_steps < 0 or steps < max_steps):
        if s.track_metrics:
            for j in range(4):
                metrics_before[j] = s.shards[0].metrics[j]
        lo = s.done
        b = s.batch_size if lo + s.batch_size <= s.n else s.n - lo
        if floating is float:
            if feature_split_applies(s, b):
                # its steps leave every shard's gradient cleared (grads_zeroed) but never
                # touch the other shards' first-layer gradients: those must be 0 already
                for k in range(1, s.n_shards):
                    if not s.shards[k].grads_zeroed:
                        memset(s.shards[k].grads, 0, s.n_params * sizeof(float))
                        s.shards[k].grads_zeroed = True
                s.fs_steps = 0
                with parallel(num_threads=s.n_shards):
                    feature_split_thread(s, max_steps - steps if max_steps >= 0 else -1)
                steps += s.fs_steps
                if s.fs_steps > 0 or s.diverged:
                    continue
        n_shards = s.n_shards if batch_is_sharded(s, b) else 1
        # the shards' weight gradients are cleared after their last read when their
        # products go to BLAS (the direct kernels store their output without zeroing it)
        clear = ZEROED_GRADS and n_shards > 1 and not use_direct(b // n_shards, 1)
        # the update split over the threads: after a split batch by slices of the buffer,
        # after direct products by the weight rows each thread's products own (their
        # OpenMP threads are the update's: no BLAS threads to compete with, unlike the
        # elementwise kernels' rule in csrc/fm_internal.h)
        n_update = n_shards
        if (n_shards == 1 and s.n_shards > 1 and use_direct(b, s.n_threads)
                and s.n_params >= DIRECT_SPLIT_UPDATE_MIN):
            n_update = s.n_shards
        if s.order == NULL:
            xb = X + lo * d
            yb = Y + lo * K if Y != NULL else NULL
            lb = s.labels + lo if s.labels != NULL else NULL
            wb = sw + lo if sw != NULL else NULL
        else:
            # shuffled rows are gathered into contiguous buffers (each thread its own rows)
            xb = ws + s.xb_off
            yb = ws + s.yb_off if Y != NULL else NULL
            lb = s.lb if s.labels != NULL else NULL
            wb = ws + s.wb_off if sw != NULL else NULL
            # a direct batch's rows are gathered by the threads that run its products and
            # its update
            n_gather = n_update if FUSED_EPILOGUES else n_shards
            if n_gather > 1:
                for k in prange(n_gather, num_threads=n_gather, schedule="static", chunksize=1):
                    gather_batch(s, lo + b * k // n_gather, b * k // n_gather,
                                 b * (k + 1) // n_gather - b * k // n_gather, dummy)
            else:
                gather_batch(s, lo, 0, b, dummy)
        norm = loss_norm(s, wb, b)
        # the shards' gradients summed in the update's blocks (update_clearing), and the
        # penalty's gradient added there, when no clipping needs their sum before the
        # update; the penalty's value (the divergence check needs it before the update)
        # then comes from each thread's slice of the weights at the end of its shard
        sum_in_update = clear and s.clipnorm <= 0
        if n_shards > 1:
            for k in prange(n_shards, num_threads=n_shards, schedule="static", chunksize=1):
                shard_step(s, k, n_shards, xb, yb, lb, wb, b, norm, 1, dummy)
                if sum_in_update and penalized:
                    s.shards[k].penalty = penalty_slice(s, NULL, s.n_params * k // n_shards,
                                                        s.n_params * (k + 1) // n_shards,
                                                        norm, dummy)
        elif batch_is_tiny(s, b):
            tiny_step(s, xb, yb, lb, wb, b, norm, dummy)
        else:
            shard_step(s, 0, 1, xb, yb, lb, wb, b, norm, s.n_threads, dummy)
        data_loss = 0.0
        for k in range(n_shards):
            data_loss += s.shards[k].loss
        # otherwise the penalty and its gradient by flat slices, one per thread wherever the
        # update is split (after a split batch in the same pass as the sum of the shards'
        # gradients into shard 0's = s.grads, each slice while in that thread's cache)
        n_pen = n_update if n_update > 1 and (n_shards > 1 or penalized) else 1
        if sum_in_update:
            penalty = 0.0
            if penalized:
                for k in range(n_shards):
                    penalty += s.shards[k].penalty
        elif n_pen > 1:
            for k in prange(n_pen, num_threads=n_pen, schedule="static", chunksize=1):
                if n_shards > 1:
                    reduce_grads(s, s.n_params * k // n_shards,
                                 s.n_params * (k + 1) // n_shards, n_shards, clear, dummy)
                s.shards[k].penalty = penalty_slice(s, g0, s.n_params * k // n_pen,
                                                    s.n_params * (k + 1) // n_pen, norm, dummy)
            penalty = 0.0
            for k in range(n_pen):
                penalty += s.shards[k].penalty
            for k in range(1, n_shards):
                s.shards[k].grads_zeroed = clear
        else:
            penalty = penalty_pass(s, g0, norm, dummy)
        if s.track_metrics and n_shards > 1:
            merge_shard_metrics(s, n_shards)
        if not isfinite(data_loss + penalty):
            reject_batch(s, metrics_before)
            break
        if n_update > 1 and s.clipnorm <= 0:
            lr_step = learning_rate_at(s, s.step)
            s.step += 1
            rule = step_rule(s, lr_step, s.step)
            for k in prange(n_update, num_threads=n_update, schedule="static", chunksize=1):
                if clear:  # the slices reduce_grads summed, or sums now
                    update_clearing(s, s.n_params * k // n_update,
                                    s.n_params * (k + 1) // n_update,
                                    n_shards if sum_in_update else 1,
                                    sum_in_update and penalized, norm, &rule, dummy)
                elif n_shards > 1:
                    update_with(s, s.n_params * k // n_update, s.n_params * (k + 1) // n_update,
                                &rule, 1, dummy)
                else:
                    update_own_rows(s, k, n_update, &rule, dummy)
            for k in range(n_shards):
                s.shards[k].grads_zeroed = clear
        else:
            apply_update(s, dummy)
        count_batch(s, b, data_loss, penalty)
        s.done += b
        steps += 1
    return steps


cdef void full_batch_rows(NetC *s, ShardC *sh, const floating *X, const floating *Y,
                          const int64_t *labels, const floating *sw, int64_t lo, int64_t hi,
                          double norm, bint want_grad, int nt, floating *dummy) noexcept nogil:
    """Rows [lo, hi) of a full batch through shard sh, in chunks of its workspace's rows:
    their data loss (normalised by the whole batch's norm) into sh.loss and, with
    want_grad, their gradient into sh's gradient buffer (written, not added to)."""
    cdef int64_t b, start = lo, d = s.n_features, K = s.n_outputs
    sh.loss = 0.0
    while lo < hi:
        b = sh.rows if lo + sh.rows <= hi else hi - lo
        forward_batch(s, sh, X + lo * d, b, lo, False, 0, nt, dummy)
        sh.loss += output_loss(s, sh, b, Y + lo * K if Y != NULL else NULL,
                               labels + lo if labels != NULL else NULL,
                               sw + lo if sw != NULL else NULL, norm, False, nt, dummy)
        if want_grad:
            backward_batch(s, sh, X + lo * d, b, lo, False, lo > start, 0, nt, dummy)
        lo += b


cdef double full_batch_impl(NetC *s, const floating *X, const floating *Y,
                            const int64_t *labels, const floating *sw, int64_t n,
                            bint want_grad, bint include_penalty, floating *dummy) noexcept nogil:
    """Loss (and gradient into s.grads) of n rows as ONE batch, computed in chunks of
    the workspace capacity with the normalisation of the whole batch; split over the
    threads by rows as a prediction is (predict_is_sharded: each shard its rows, through
    single-threaded BLAS, then the shards' gradients summed into shard 0's)."""
    cdef int k, n_shards = s.n_shards if predict_is_sharded(s, n) else 1
    cdef double norm = loss_norm(s, sw, n), data_loss = 0.0, penalty = 0.0
    if n_shards > 1:
        for k in prange(n_shards, num_threads=n_shards, schedule="static", chunksize=1):
            full_batch_rows(s, &s.shards[k], X, Y, labels, sw, n * k // n_shards,
                            n * (k + 1) // n_shards, norm, want_grad, 1, dummy)
        if want_grad:
            reduce_grads(s, 0, s.n_params, n_shards, True, dummy)
            for k in range(1, n_shards):
                s.shards[k].grads_zeroed = True
    else:
        full_batch_rows(s, &s.shards[0], X, Y, labels, sw, 0, n, norm, want_grad,
                        s.n_threads, dummy)
    for k in range(n_shards):
        data_loss += s.shards[k].loss
    if include_penalty or want_grad:
        penalty = penalty_pass(s, <floating *> s.grads if want_grad else NULL, norm, dummy)
    return data_loss + (penalty if include_penalty else 0.0)


cdef void predict_rows(NetC *s, ShardC *sh, const floating *X, int64_t lo, int64_t hi,
                       floating *out, int nt, floating *dummy) noexcept nogil:
    """out rows [lo, hi) = the network's outputs for X rows [lo, hi), in chunks of the
    shard's workspace rows (sh.rows), through shard sh's workspace."""
    cdef int64_t b, e, d = s.n_features, K = s.n_outputs
    cdef floating *ws = <floating *> sh.ws
    cdef LayerWs *W = &sh.lw[s.n_layers - 1]
    while lo < hi:
        b = sh.rows if lo + sh.rows <= hi else hi - lo
        forward_batch(s, sh, X + lo * d, b, lo, False, 0, nt, dummy)
        for e in range(b * K):
            out[lo * K + e] = ws[W.a_off + e]
        lo += b


cdef inline bint predict_is_sharded(NetC *s, int64_t n) noexcept nogil:
    """Split a prediction over the threads (rows are independent: nothing to reduce), each
    with single-threaded BLAS?  Whenever the split pays."""
    return split_pays(s, n)


cdef void predict_impl(NetC *s, const floating *X, int64_t n, floating *out,
                       floating *dummy) noexcept nogil:
    """out (n, n_outputs) = the network's outputs for X (n, n_features)."""
    cdef int k, n_shards = s.n_shards if predict_is_sharded(s, n) else 1
    if n_shards > 1:
        for k in prange(n_shards, num_threads=n_shards, schedule="static", chunksize=1):
            predict_rows(s, &s.shards[k], X, n * k // n_shards, n * (k + 1) // n_shards, out,
                         1, dummy)
    else:
        predict_rows(s, &s.shards[0], X, 0, n, out, s.n_threads, dummy)


# ---------------------------------------------------------------------------------------
cdef class Engine:
    """Owns the flat buffers and workspaces of one network; see module docstring.

    Use through :class:`fastmlp.backends.cpu.CPUNetwork`, which checks arguments.
    """
    cdef NetC s
    cdef object _layers_arr, _params, _grads, _slots, _lb, _xmask, _pmask
    cdef readonly bint last_call_skipped_zeros
    cdef object _shards_arr, _shard_ws, _lw_arr, _shard_grads, _tw, _partial
    cdef object _fs_partial, _fs_masks, _fs_cuts, _fs_sync
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
        self.s.macs_per_row = 0
        self.s.max_fan_out = 0
        self.s.max_layer_macs = 0
        for l in range(n_layers):
            self.s.macs_per_row += self.s.layers[l].fan_in * self.s.layers[l].fan_out
            self.s.max_fan_out = max(self.s.max_fan_out, self.s.layers[l].fan_out)
            self.s.max_layer_macs = max(self.s.max_layer_macs,
                                        self.s.layers[l].fan_in * self.s.layers[l].fan_out)
        self._tw = None
        self.s.tw = NULL
        self.s.tiny_shape = (self._plan_tiny(1) and
                             all(self.s.layers[l].rate == 0 for l in range(n_layers)))
        self.s.tiny_default = TINY_DEFAULT and self.is_f32
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
        self._set_shards(n_threads)

    cdef bint _plan_tiny(self, int64_t rows):
        """Fill s.tiny for batches of `rows` rows; False when the network is not tiny."""
        cdef fm_tiny_layer tl[FM_TINY_MAX_LAYERS]
        cdef int l
        if self.s.n_layers > FM_TINY_MAX_LAYERS:
            return False
        for l in range(self.s.n_layers):
            tl[l].fan_in = self.s.layers[l].fan_in
            tl[l].fan_out = self.s.layers[l].fan_out
            tl[l].w_off = self.s.layers[l].w_off
            tl[l].b_off = self.s.layers[l].b_off
            tl[l].act = self.s.layers[l].act
        return fm_tiny_plan(&self.s.tiny, self.s.n_layers, tl, rows) == 1

    @property
    def tiny_network(self):
        """True when this network trains through the fused tiny pass (batches whose every
        product is small enough; see batch_is_tiny)."""
        return bool(self.s.tiny_shape)

    def will_use_tiny_path(self, int64_t batch_size):
        """True when batches of this size go through the fused tiny pass."""
        return bool(tiny_batch_fits(&self.s, batch_size))

    def _set_shards(self, int n_threads):
        """One shard per thread (1 without OpenMP); shard 0 owns ws and grads."""
        cdef int k, n = n_threads if fm_openmp_enabled() else 1
        cdef ShardC *sh
        self._shards_arr = np.zeros(n * sizeof(ShardC), dtype=np.uint8)
        self.s.shards = <ShardC *> <size_t> self._shards_arr.ctypes.data
        self.s.n_shards = n
        self._shard_grads = [self._grads]
        self.s.shards[0].grads = self.s.grads
        for k in range(1, n):
            self.s.shards[k].grads = NULL    # until a split needs them (_need_shard_grads)
        self._alloc_shard_workspaces()

    def _need_shard_grads(self):
        """The other shards' gradient buffers, made the first time a batch or a full batch
        with its gradient is split over the threads (the only passes that use them; the
        direct path and one thread never do): n_shards - 1 copies of the parameters' size."""
        cdef int k
        if len(self._shard_grads) == self.s.n_shards:
            return
        self._shard_grads = [self._grads] + [
            np.zeros(self.s.n_params + FASTMLP_SLACK, dtype=self.dtype)[:self.s.n_params]
            for k in range(1, self.s.n_shards)]
        for k in range(1, self.s.n_shards):
            self.s.shards[k].grads = <void *> <size_t> self._shard_grads[k].ctypes.data

    cdef int64_t _layout(self, LayerWs *lw, int64_t rows, bint batch_buffers):
        """Lay out a shard's workspace for `rows` rows: each layer's blocks into lw, then,
        with batch_buffers (shard 0), the gathered batch's X, Y and w (s.xb_off, s.yb_off,
        s.wb_off).  Returns the workspace's length in elements."""
        cdef int64_t off = 0
        cdef int l
        cdef LayerC *L
        for l in range(self.s.n_layers):
            L = &self.s.layers[l]
            lw[l].a_off = off
            off += rows * L.fan_out + FASTMLP_SLACK
            lw[l].g_off = off
            off += rows * L.fan_out + FASTMLP_SLACK
            if L.act == FM_GELU or l == self.s.n_layers - 1:
                lw[l].z_off = off
                off += rows * L.fan_out + FASTMLP_SLACK
            else:
                lw[l].z_off = -1
            if L.rate > 0:
                lw[l].d_off = off
                off += rows * L.fan_out + FASTMLP_SLACK
            else:
                lw[l].d_off = -1
        if batch_buffers:
            self.s.xb_off = off
            off += rows * self.s.n_features + FASTMLP_SLACK
            self.s.yb_off = off
            off += rows * self.s.n_outputs + FASTMLP_SLACK
            self.s.wb_off = off
            off += rows + FASTMLP_SLACK
        return off

    def _alloc_shard_workspaces(self):
        """Each shard's workspace for the current ws_rows and shards: shard 0's for ws_rows
        rows and the gathered batch; the others' for ceil(ws_rows / n_shards) rows, the
        most any of them is given (shard_step's split of a batch, the feature split's of its
        rows, predictions and full batches in chunks of sh.rows), and no batch buffers."""
        cdef int k, n = self.s.n_shards, n_layers = self.s.n_layers
        cdef int64_t rows
        cdef LayerWs *lw
        self.s.partial_rows = min(self.s.ws_rows, DIRECT_MAX_ROWS_THREADED)
        if self.s.n_threads > 1 and self.s.partial_rows > 0:
            self._partial = np.zeros((self.s.n_threads - 1) * self.s.partial_rows
                                     * self.s.max_fan_out + FASTMLP_SLACK, dtype=self.dtype)
            self.s.partial = <void *> <size_t> self._partial.ctypes.data
        else:
            self._partial = None
            self.s.partial = NULL
            self.s.partial_rows = 0
        self._lw_arr = np.zeros(n * n_layers * sizeof(LayerWs), dtype=np.uint8)
        lw = <LayerWs *> <size_t> self._lw_arr.ctypes.data
        self._shard_ws = []
        for k in range(n):
            rows = self.s.ws_rows if k == 0 else (self.s.ws_rows + n - 1) // n
            self.s.shards[k].rows = rows
            self.s.shards[k].lw = lw + k * n_layers
            if self.s.ws_rows == 0:
                self.s.shards[k].ws = NULL
                continue
            self._shard_ws.append(np.zeros(self._layout(lw + k * n_layers, rows, k == 0),
                                           dtype=self.dtype))
            self.s.shards[k].ws = <void *> <size_t> self._shard_ws[k].ctypes.data

    def will_shard(self, int64_t batch_size):
        """True when batches of this size are split over the threads (each thread then
        calls BLAS single-threaded)."""
        return bool(batch_is_sharded(&self.s, batch_size))

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
        self._set_shards(value)

    @property
    def workspace_rows(self):
        return self.s.ws_rows

    @property
    def shard_workspace_rows(self):
        """The rows each shard's workspace holds (shard 0 first; a diagnostic, for tests):
        ws_rows for shard 0, ceil(ws_rows / n_shards) for the others."""
        return tuple(int(self.s.shards[k].rows) for k in range(self.s.n_shards))

    @property
    def feature_split_rows(self):
        """The rows of a batch that the feature split's buffers hold (0 before any epoch
        that could take the split; a diagnostic, for tests)."""
        return int(self.s.fs_rows) if self._fs_partial is not None else 0

    @property
    def workspace_nbytes(self):
        """Bytes of all workspaces (the shards', the tiny pass's, the split-K partials) and
        per-thread gradient buffers."""
        total = sum(w.nbytes for w in self._shard_ws) + (self._tw.nbytes if self._tw is not None
                                                           else 0)
        total += self._partial.nbytes if self._partial is not None else 0
        if self._fs_partial is not None:
            total += self._fs_partial.nbytes + self._fs_masks.nbytes + self._fs_sync.nbytes
        return total + sum(g.nbytes for g in self._shard_grads[1:])

    def ensure_workspace(self, int64_t rows):
        """Size the workspaces for batches of up to ``rows`` rows (grow only)."""
        if rows <= self.s.ws_rows:
            return
        if self.s.tiny_shape and self._plan_tiny(rows):
            self._tw = np.zeros(self.s.tiny.size + FASTMLP_SLACK, dtype=self.dtype)
            self.s.tw = <void *> <size_t> self._tw.ctypes.data
        self._lb = np.empty(rows, dtype=np.int64)
        self._xmask = np.zeros(rows * mask_words(&self.s) + FASTMLP_SLACK, dtype=np.uint16)
        self.s.xmask = <uint16_t *> <size_t> self._xmask.ctypes.data
        self.s.lb = <int64_t *> <size_t> self._lb.ctypes.data
        self.s.ws_rows = rows
        self._alloc_shard_workspaces()

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
        self.s.skip_zeros = self._epoch_skips_zeros(X)
        self._prepare_feature_split(X)
        for k in range(self.s.n_shards):
            for i in range(6):
                self.s.shards[k].metrics[i] = 0.0

    def _epoch_skips_zeros(self, X):
        """Does this epoch's first layer skip X's zeros (SKIP_ZEROS_MAX_DENSITY)?"""
        cdef double density
        if not self.is_f32 or SKIP_ZEROS_FORCED == 0:
            return False
        if SKIP_ZEROS_FORCED == 1:
            return True
        if not fm_direct_available():
            return False
        density = sampled_density(<const float *> <size_t> X.ctypes.data, X.shape[0],
                                  self.s.n_features)
        return density <= SKIP_ZEROS_MAX_DENSITY

    def _prepare_feature_split(self, X):
        """Set s.fs_ready for this epoch, with the feature split's buffers for the current
        threads and the epoch's batches: of the batch size, or of the most rows a batch
        that takes the split may have (FEATURE_SPLIT_MAX_ROWS), if fewer; allocated at the
        first epoch that can use them, again only for more threads or rows.  Not for the
        workspace's rows, which a prediction may have grown (CALL_CHUNK_ROWS)."""
        cdef LayerC *L0 = &self.s.layers[0]
        cdef int nt = self.s.n_shards
        cdef int64_t rows = min(self.s.batch_size,
                                <int64_t> (FEATURE_SPLIT_MAX_ROWS * self.s.n_features))
        self.s.fs_ready = False
        if not (self.is_f32 and self.s.skip_zeros and nt > 1 and rows > 0
                and L0.fan_in * L0.fan_out >= FEATURE_SPLIT_MIN_SHARE * self.s.n_params):
            return
        if self._fs_partial is None or self.s.fs_threads != nt or self.s.fs_rows < rows:
            self._fs_partial = np.zeros((nt + 1) * rows * L0.fan_out + FASTMLP_SLACK,
                                        dtype=np.float32)
            self._fs_masks = np.zeros(nt * rows * mask_words(&self.s) + FASTMLP_SLACK,
                                      dtype=np.uint16)
            self.s.fs_rows = rows
            self.s.fs_partial = <void *> <size_t> self._fs_partial.ctypes.data
            self.s.fs_masks = <uint16_t *> <size_t> self._fs_masks.ctypes.data
            self.s.fs_threads = nt
            self._fs_cuts = np.zeros(nt + 1, dtype=np.int64)
            self.s.fs_cuts = <int64_t *> <size_t> self._fs_cuts.ctypes.data
            # each thread's counters on 64-byte lines of their own (FS_SYNC_STRIDE)
            self._fs_sync = np.zeros(nt * FS_SYNC_STRIDE + 8, dtype=np.int64)
            self.s.fs_sync = <int64_t *> <size_t> (
                (self._fs_sync.ctypes.data + 63) // 64 * 64)
        self._fs_cuts[:] = balanced_feature_cuts(X, nt)
        self.s.fs_ready = True

    @property
    def feature_split_batches(self):
        """Batches since the engine was built that trained through the feature split
        (feature_split_applies; a diagnostic, for tests)."""
        return int(self.s.feature_split_batches)

    @property
    def feature_split_pieces_taken(self):
        """Pieces of step 3 of the feature split that a thread took from another thread's
        features, since the feature split's buffers were made (a diagnostic, for tests)."""
        if self._fs_sync is None:
            return 0
        return int(sum(self.s.fs_sync[t * FS_SYNC_STRIDE + FS_TAKEN]
                       for t in range(self.s.fs_threads)))

    @property
    def skips_zeros(self):
        """True while an epoch runs whose first-layer products skip X's zeros."""
        return bool(self.s.skip_zeros)

    @property
    def zero_skip_split_batches(self):
        """Batches since the engine was built whose zero-skipping first layer ran split
        over W's rows on several threads (the direct path; a diagnostic, for tests)."""
        return int(self.s.skip_split_batches)

    def run_steps(self, int64_t max_steps=-1):
        cdef int64_t steps
        if self._epoch_refs is None:
            raise RuntimeError("run_steps() called before start_epoch()")
        # an epoch's batches come in two sizes: the batch size and what is left at its end
        if (batch_is_sharded(&self.s, self.s.batch_size)
                or batch_is_sharded(&self.s, self.s.n % self.s.batch_size)):
            self._need_shard_grads()
        with nogil:
            if self.is_f32:
                steps = run_steps_impl[float](&self.s, max_steps, NULL)
            else:
                steps = run_steps_impl[double](&self.s, max_steps, NULL)
        return steps

    def end_epoch(self):
        """Release the references to the epoch's arrays."""
        self._epoch_refs = None
        self.s.skip_zeros = False
        self.s.fs_ready = False
        self.s.X = NULL
        self.s.Y = NULL
        self.s.labels = NULL
        self.s.sw = NULL
        self.s.order = NULL

    @property
    def epoch_state(self):
        """(done, n, loss_sum, diverged, metrics tuple)."""
        return (self.s.done, self.s.n, self.s.loss_sum, bool(self.s.diverged),
                tuple(self.s.shards[0].metrics[i] for i in range(6)))

    # -- full batch --------------------------------------------------------------------------
    def full_batch(self, X, Y, labels, sw, bint want_grad, bint include_penalty):
        """Loss of all rows of X as one batch; with want_grad the gradient is in grads.
        The first layer's products skip X's zeros as a prediction's do (_begin_call;
        last_call_skipped_zeros)."""
        cdef double loss
        cdef int64_t n = X.shape[0]
        self.ensure_workspace(min(n, CALL_CHUNK_ROWS))
        if want_grad and predict_is_sharded(&self.s, n):
            self._need_shard_grads()
        cdef void *px = <void *> <size_t> X.ctypes.data
        cdef void *py = <void *> <size_t> Y.ctypes.data if Y is not None else NULL
        cdef int64_t *pl = <int64_t *> <size_t> labels.ctypes.data if labels is not None else NULL
        cdef void *pw = <void *> <size_t> sw.ctypes.data if sw is not None else NULL
        self._begin_call(X)
        try:
            with nogil:
                if self.is_f32:
                    loss = full_batch_impl[float](&self.s, <float *> px, <float *> py, pl,
                                                  <float *> pw, n, want_grad, include_penalty,
                                                  NULL)
                else:
                    loss = full_batch_impl[double](&self.s, <double *> px, <double *> py, pl,
                                                   <double *> pw, n, want_grad,
                                                   include_penalty, NULL)
        finally:
            self.s.call_skips = False
        return loss

    def will_shard_prediction(self, int64_t n):
        """True when a prediction or full batch of n rows is split over the threads (each
        thread then calls BLAS single-threaded)."""
        return bool(predict_is_sharded(&self.s, n))

    def predict(self, X, out):
        """out (n, n_outputs) = the network's outputs for X (n, n_features), C-contiguous
        arrays of the network's dtype.  Where the first layer is wide enough for the general
        products, its product skips X's zeros by the same density rule as training
        (_begin_call; last_call_skipped_zeros says whether it did)."""
        cdef int64_t n = X.shape[0]
        self.ensure_workspace(min(n, CALL_CHUNK_ROWS))
        cdef void *px = <void *> <size_t> X.ctypes.data
        cdef void *po = <void *> <size_t> out.ctypes.data
        self._begin_call(X)
        try:
            with nogil:
                if self.is_f32:
                    predict_impl[float](&self.s, <float *> px, n, <float *> po, NULL)
                else:
                    predict_impl[double](&self.s, <double *> px, n, <double *> po, NULL)
        finally:
            self.s.call_skips = False
        return out

    def _begin_call(self, X):
        """Set s.call_skips (and last_call_skipped_zeros) for a prediction or full batch on
        X, split over the threads as predict_is_sharded says (predict_impl,
        full_batch_impl): does its first layer skip X's zeros?  As an epoch
        (_epoch_skips_zeros: float32, the density of a sample of X's rows at most
        SKIP_ZEROS_MAX_DENSITY, or set_skip_zeros), where a shard's rows go through the
        general kernels (not the narrow ones of dense_forward_small; a shard's last, shorter
        chunk may still take those).  Points the shards' pmask at masks for ws_rows rows
        each."""
        cdef LayerC *L = &self.s.layers[0]
        cdef int64_t n = X.shape[0], rows, words = mask_words(&self.s)
        cdef int k, n_shards = self.s.n_shards if predict_is_sharded(&self.s, n) else 1
        rows = min((n + n_shards - 1) // n_shards, self.s.ws_rows)
        skip = (n > 0 and rows * L.fan_out * L.fan_in > SMALL_GEMM_WORK
                and self._epoch_skips_zeros(X))
        if skip:
            size = self.s.n_shards * self.s.ws_rows * words + FASTMLP_SLACK
            if self._pmask is None or self._pmask.shape[0] < size:
                self._pmask = np.zeros(size, dtype=np.uint16)
            for k in range(self.s.n_shards):
                self.s.shards[k].pmask = <uint16_t *> <size_t> (
                    self._pmask.ctypes.data + 2 * k * self.s.ws_rows * words)
                self.s.shards[k].pmask_ready = False
        self.last_call_skipped_zeros = skip
        self.s.call_skips = skip


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


VMATH_FUNCTIONS = {"expm1": FM_VMATH_EXPM1, "log1p": FM_VMATH_LOG1P, "erf": FM_VMATH_ERF,
                   "normal_cdf": FM_VMATH_NORMAL_CDF, "normal_pdf": FM_VMATH_NORMAL_PDF}


def kernel_vmath(str name, floating[::1] x):
    """One of csrc/vmath.h's vectorised functions (the fast activations' building blocks)
    of every element of x, as the fast kernels run it: "expm1", "log1p", "erf",
    "normal_cdf" (Phi(x)) or "normal_pdf" (exp(-x^2 / 2), unscaled)."""
    cdef int fn = VMATH_FUNCTIONS[name]
    out = np.empty_like(np.asarray(x))
    cdef floating[::1] y = out
    if x.shape[0] == 0:
        return out
    if floating is float:
        vmath_apply_f32(fn, x.shape[0], &x[0], &y[0])
    else:
        vmath_apply_f64(fn, x.shape[0], &x[0], &y[0])
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


def _product_dims(str kind, tuple a_shape, tuple b_shape):
    """(M, N, K) of the product of kind "nn" (A @ B), "tn" (A.T @ B) or "nt" (A @ B.T) of
    2-d operands of these shapes; ValueError for another kind or mismatched shapes."""
    if kind == "nn":
        (M, K), (K_b, N) = a_shape, b_shape
    elif kind == "tn":
        (K, M), (K_b, N) = a_shape, b_shape
    elif kind == "nt":
        (M, K), (N, K_b) = a_shape, b_shape
    else:
        raise ValueError(f"kind must be 'nn', 'tn' or 'nt'; got {kind!r}")
    if K_b != K:
        raise ValueError(f"{kind} product of A {a_shape[0]}x{a_shape[1]} and B "
                         f"{b_shape[0]}x{b_shape[1]}: the inner dimensions differ")
    return M, N, K


def kernel_small_gemm(str kind, floating[:, ::1] A, floating[:, ::1] B):
    """The small-matrix product kernels: kind "nn" (A @ B), "tn" (A.T @ B), "nt" (A @ B.T)."""
    cdef int64_t M, N, K
    M, N, K = _product_dims(kind, (A.shape[0], A.shape[1]), (B.shape[0], B.shape[1]))
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


_GUARD = 12345.0


def _guarded(int64_t n, dtype, int offset=0):
    """A buffer of n elements between two guard zones of FASTMLP_SLACK elements (the
    buffer is [FASTMLP_SLACK:FASTMLP_SLACK + n]), starting `offset` elements into its
    allocation, for the kernel tests to check that nothing was written outside."""
    storage = np.full(n + 2 * FASTMLP_SLACK + offset, _GUARD, dtype=dtype)
    return storage[offset:]


def _guards_intact(storage, int64_t n):
    """Are both guard zones around _guarded(n)'s buffer untouched?"""
    return bool((storage[:FASTMLP_SLACK] == _GUARD).all()
                and (storage[FASTMLP_SLACK + n:] == _GUARD).all())


def kernel_skip_gemm(str kind, const float[:, ::1] X, const float[:, ::1] B, C=None,
                     double beta=0.0, bint naive=False, int repeats=1, int n_threads=1,
                     int64_t block_rows=0, out=None, cuts=None):
    """The first layer's zero-skipping products (csrc/zero_skip.c), masks included:
    kind "nn": X (b, d) @ B (d, N); "tn": beta * C + X.T @ B, B (b, N) (the weight
    gradient; C (d, N), beta 0 without C).  naive: the portable references.  n_threads >
    1: the direct path's split over B's rows (skip_gemm_split_k, skip_gemm_tn_rows).  The
    output lies between guard zones (RuntimeError if a kernel wrote past it).  repeats
    (>= 1): run the masks and the product that many times (beta 0), for the benchmarks.
    block_rows > 0 (kind "nn", one thread): masks and product by blocks of that many rows,
    as a prediction runs them (PREDICT_SKIP_ROWS).  out: a float32 C-contiguous array of
    the output's shape to write into instead (no guard zones, no copy: for the benchmarks,
    where a call's allocation would be timed with it; not with C).  cuts (n_threads > 1):
    n_threads + 1 nondecreasing feature indices from 0 to d, thread t on B's rows (kind
    "nn") or the output's rows ("tn") [cuts[t], cuts[t + 1]), as the engine's
    nonzero-balanced cuts split them (skip_cuts).
    Returns (a new float32 array, or out; the masks as a (b, ceil(d / 16)) uint16 array)."""
    cdef int64_t b = X.shape[0], d = X.shape[1], N = B.shape[1], dq = (X.shape[1] + 15) // 16
    cdef int64_t out_rows
    cdef int rep
    cdef float beta_ = <float> beta
    cdef bint nn = kind == "nn"
    if kind not in ("nn", "tn"):
        raise ValueError(f"kind must be 'nn' or 'tn', got {kind!r}")
    if block_rows < 0 or (block_rows > 0 and (kind != "nn" or n_threads != 1 or naive)):
        raise ValueError(f"block_rows must be 0, or > 0 with kind 'nn', one thread and not "
                         f"naive, got {block_rows}")
    if (kind == "nn" and B.shape[0] != d) or (kind == "tn" and B.shape[0] != b):
        raise ValueError(f"{kind} product of X {b}x{d} and B {B.shape[0]}x{N}: the inner "
                         f"dimensions differ")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if n_threads < 1 or (n_threads > 1 and naive):
        raise ValueError(f"n_threads must be >= 1 (1 with naive), got {n_threads}")
    if beta != 0.0 and (C is None or kind != "tn" or repeats > 1):
        raise ValueError("beta != 0 needs C, kind 'tn' and repeats == 1")
    cuts_array = None
    if cuts is not None:
        cuts_array = np.ascontiguousarray(cuts, dtype=np.int64)
        if (n_threads < 2 or block_rows > 0 or cuts_array.shape != (n_threads + 1,)
                or cuts_array[0] != 0 or cuts_array[n_threads] != d
                or (np.diff(cuts_array) < 0).any()):
            raise ValueError(f"cuts must be n_threads + 1 >= 3 nondecreasing feature "
                             f"indices from 0 to {d} (n_threads > 1, no block_rows), got "
                             f"{cuts!r} with n_threads={n_threads}")
    cdef const int64_t *cuts_p = NULL
    cdef int64_t[::1] cuts_view
    if cuts_array is not None:
        cuts_view = cuts_array
        cuts_p = &cuts_view[0]
    out_rows = b if kind == "nn" else d
    given = out is not None
    if given:
        if C is not None:
            raise ValueError("out and C cannot both be given")
        if not (isinstance(out, np.ndarray) and out.dtype == np.float32
                and out.flags.c_contiguous and out.shape == (out_rows, N)):
            raise ValueError(f"out must be a C-contiguous float32 array of shape "
                             f"{(out_rows, N)}")
        storage = None
    else:
        storage = _guarded(out_rows * N, np.float32)
        out = storage[FASTMLP_SLACK:FASTMLP_SLACK + out_rows * N].reshape(out_rows, N)
    if C is not None:
        out[...] = C
    masks = np.zeros((b, dq), dtype=np.uint16)
    cdef float[:, ::1] O = out
    cdef uint16_t[:, ::1] Mk = masks
    cdef const float *Xp = &X[0, 0] if b > 0 and d > 0 else NULL
    cdef const float *Bp = &B[0, 0] if B.shape[0] > 0 and N > 0 else NULL
    cdef float *Op = &O[0, 0] if out_rows > 0 and N > 0 else NULL
    cdef uint16_t *Mp = &Mk[0, 0] if b > 0 and dq > 0 else NULL
    partial_storage = _guarded((n_threads - 1) * b * N, np.float32)
    cdef float[::1] Pv = partial_storage
    cdef float *Pp = &Pv[FASTMLP_SLACK]
    with nogil:
        for rep in range(repeats):
            if naive:
                nonzero_masks_naive_f32(b, d, Xp, Mp)
                if nn:
                    skip_gemm_nn_naive_f32(b, N, d, Xp, Mp, Bp, Op)
                else:
                    skip_gemm_tn_naive_f32(b, N, d, Xp, Mp, Bp, beta_, Op)
            elif n_threads > 1 and nn:
                skip_gemm_split_k_f32(b, N, d, Xp, Mp, Bp, NULL, -1, Op, Pp, cuts_p, n_threads)
            elif block_rows > 0:
                skip_gemm_nn_blocks_f32(b, N, d, Xp, Mp, Bp, Op, block_rows, 1)
            else:
                nonzero_masks_f32(b, d, Xp, Mp)
                if nn:
                    skip_gemm_nn_f32(b, N, d, Xp, Mp, Bp, Op)
                else:
                    skip_gemm_tn_rows_f32(b, N, d, Xp, Mp, Bp, beta_, Op, cuts_p, n_threads)
    if not _guards_intact(partial_storage, (n_threads - 1) * b * N):
        raise RuntimeError("a zero-skipping kernel wrote outside its partial products")
    if given:
        return out, masks
    if not _guards_intact(storage, out_rows * N):
        raise RuntimeError("a zero-skipping kernel wrote outside its output")
    return out.copy(), masks


def kernel_skip_gemm_features(str kind, const float[:, ::1] X, const float[:, ::1] B,
                              features, rows=None, C=None, double beta=0.0):
    """One thread's share of the feature split (csrc/zero_skip.c, *_range_f32): the batch
    is X's rows `rows` (int64 indices, read in place; None: X's first rows), its features
    the range features = (k0, k1) (k0 a multiple of 4).  kind "nn": X[rows][:, k0:k1] @
    B[k0:k1] (B (d, N)); "tn": rows [k0, k1) of beta * C + X[rows].T @ B (B (b, N), the
    weight gradient; C (d, N); its other rows are C's, or 0).  The AVX-512 kernels, or the
    references where set_direct_kernels(False).  Returns (a new float32 array, the masks
    (b, ceil(d / 16)) uint16, the words over [k0, k1) written, the others 0)."""
    cdef int64_t n = X.shape[0], d = X.shape[1], N = B.shape[1], dq = (X.shape[1] + 15) // 16
    cdef int64_t k0, k1, b, out_rows
    cdef float beta_ = <float> beta
    if kind not in ("nn", "tn"):
        raise ValueError(f"kind must be 'nn' or 'tn', got {kind!r}")
    k0, k1 = features
    if not (0 <= k0 <= k1 <= d and k0 % 4 == 0):
        raise ValueError(f"features must be (k0, k1) with 0 <= k0 <= k1 <= {d} and k0 a "
                         f"multiple of 4, got {features!r}")
    idx = None
    if rows is not None:
        idx = np.ascontiguousarray(rows, dtype=np.int64)
        if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= n)):
            raise ValueError(f"rows must be a 1-d array of row indices in [0, {n})")
    batch = idx.size if idx is not None else n     # the rows there are
    b = batch if kind == "nn" else B.shape[0]
    # tn: dZ has a row per index, or at most X's rows (X's first b rows)
    if (kind == "nn" and B.shape[0] != d) or (kind == "tn" and (
            b != batch if idx is not None else b > n)):
        raise ValueError(f"{kind} product of X {n}x{d} (rows {rows is not None}) and B "
                         f"{B.shape[0]}x{N}: the dimensions differ")
    if beta != 0.0 and (C is None or kind != "tn"):
        raise ValueError("beta != 0 needs C and kind 'tn'")
    out_rows = b if kind == "nn" else d
    storage = _guarded(out_rows * N, np.float32)
    out = storage[FASTMLP_SLACK:FASTMLP_SLACK + out_rows * N].reshape(out_rows, N)
    out[...] = C if C is not None else 0.0
    masks = np.zeros((b, dq), dtype=np.uint16)
    cdef float[:, ::1] O = out
    cdef uint16_t[:, ::1] Mk = masks
    cdef int64_t[::1] I
    cdef const int64_t *Ip = NULL
    if idx is not None and idx.size:
        I = idx
        Ip = &I[0]
    cdef const float *Xp = &X[0, 0] if n > 0 and d > 0 else NULL
    cdef const float *Bp = &B[0, 0] if B.shape[0] > 0 and N > 0 else NULL
    cdef float *Op = &O[0, 0] if out_rows > 0 and N > 0 else NULL
    cdef uint16_t *Mp = &Mk[0, 0] if b > 0 and dq > 0 else NULL
    cdef bint nn = kind == "nn"
    with nogil:
        nonzero_masks_range_f32(b, d, Xp, Ip, k0, k1, Mp)
        if nn:
            skip_gemm_nn_range_f32(b, N, d, Xp, Ip, Mp, Bp, Op, k0, k1)
        else:
            skip_gemm_tn_range_f32(b, N, d, Xp, Ip, Mp, Bp, beta_, Op, k0, k1)
    if not _guards_intact(storage, out_rows * N):
        raise RuntimeError("a zero-skipping kernel wrote outside its output")
    return out.copy(), masks


def kernel_direct_gemm(str kind, floating[:, ::1] A, floating[:, ::1] B, C=None,
                       double beta=0.0, bint naive=False, int n_threads=1, int c_offset=0,
                       int repeats=1):
    """The direct product kernels (csrc/gemm_direct_impl.inc): kind "nn" (A @ B), "tn"
    (A.T @ B) or "nt" (A @ B.T); with C, beta * C is added ("nn", "tn").  naive: the
    portable reference instead.  No slack: the kernels mask their tails (RuntimeError if
    one wrote past C).  c_offset (0 <= c_offset < 64 elements): where C starts in its
    buffer, to move C's rows across the 64-byte boundaries that the weight-gradient
    kernel aligns its stores to.  repeats (>= 1): run the product that many times (beta 0
    gives the same C each time), so that a benchmark can time the kernel apart from this
    function's allocations.  Returns a new array."""
    cdef int64_t M, N, K, a_rs, a_cs
    cdef int rep
    cdef bint transposed_b = kind == "nt"
    M, N, K = _product_dims(kind, (A.shape[0], A.shape[1]), (B.shape[0], B.shape[1]))
    a_rs = K if kind == "nn" else 1  # A'(i, p) = A[i * a_rs + p * a_cs]
    a_cs = 1 if kind == "nn" else M
    # C lies between two guard zones, checked after the call: the kernels mask their tails
    # and must write nothing outside C
    if not 0 <= c_offset < 64:
        raise ValueError(f"c_offset must be in [0, 64), got {c_offset}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if repeats > 1 and beta != 0.0:
        raise ValueError(f"repeats > 1 needs beta == 0 (each run would add to C), got {beta}")
    storage = _guarded(M * N, np.asarray(A).dtype, c_offset)
    out = storage[FASTMLP_SLACK:FASTMLP_SLACK + M * N].reshape(M, N)
    out[...] = 0 if C is None else C
    cdef floating[:, ::1] c = out
    if M == 0 or N == 0:
        return out
    with nogil:
        for rep in range(repeats):
            if transposed_b:
                if floating is float:
                    if naive:
                        direct_gemm_nt_naive_f32(M, N, K, &A[0, 0], &B[0, 0], &c[0, 0])
                    else:
                        direct_gemm_nt_f32(M, N, K, &A[0, 0], &B[0, 0], &c[0, 0], n_threads)
                else:
                    if naive:
                        direct_gemm_nt_naive_f64(M, N, K, &A[0, 0], &B[0, 0], &c[0, 0])
                    else:
                        direct_gemm_nt_f64(M, N, K, &A[0, 0], &B[0, 0], &c[0, 0], n_threads)
            else:
                if floating is float:
                    if naive:
                        direct_gemm_naive_f32(M, N, K, &A[0, 0], a_rs, a_cs, &B[0, 0], beta,
                                                &c[0, 0])
                    else:
                        direct_gemm_f32(M, N, K, &A[0, 0], a_rs, a_cs, &B[0, 0], beta, &c[0, 0],
                                        n_threads)
                else:
                    if naive:
                        direct_gemm_naive_f64(M, N, K, &A[0, 0], a_rs, a_cs, &B[0, 0], beta,
                                                &c[0, 0])
                    else:
                        direct_gemm_f64(M, N, K, &A[0, 0], a_rs, a_cs, &B[0, 0], beta, &c[0, 0],
                                        n_threads)
    if not _guards_intact(storage, M * N):
        raise RuntimeError(f"direct {kind} kernel wrote outside C ({M}x{N}x{K})")
    return out


def kernel_gather_rows(floating[:, ::1] X, idx, bint naive=False, int n_threads=1,
                       int64_t batch_rows=0):
    """out (len(idx), d) = X[idx] through the gather kernel (csrc/gather_impl.inc), or its
    naive reference.  n_threads > 1 splits the rows over that many threads at once, as a
    split batch gathers them (the kernel itself is serial).  batch_rows > 0: idx is gathered
    batch_rows at a time into the same batch_rows rows, as an epoch's shuffled batches go
    through one batch buffer (for benchmarks: the rows come from memory, the buffer stays
    in cache); out then has min(batch_rows, len(idx)) rows and holds the last whole batch.
    Returns a new array; RuntimeError if the kernel wrote outside it."""
    if np.asarray(idx).dtype.kind not in "iu":
        raise TypeError(f"idx must hold integers; got dtype {np.asarray(idx).dtype}")
    cdef int64_t[::1] order = np.ascontiguousarray(idx, dtype=np.int64)
    cdef int64_t n_idx = order.shape[0], d = X.shape[1], n = X.shape[0]
    cdef int64_t B = batch_rows if 0 < batch_rows <= n_idx else n_idx, lo
    cdef int k
    if n_idx and (np.min(order) < 0 or np.max(order) >= n):
        raise ValueError(f"idx holds indices outside [0, {n - 1}]")
    if n_threads < 1 or batch_rows < 0:
        raise ValueError(f"n_threads must be >= 1 and batch_rows >= 0, got {n_threads}, "
                         f"{batch_rows}")
    storage = _guarded(B * d, np.asarray(X).dtype)
    out = storage[FASTMLP_SLACK:FASTMLP_SLACK + B * d].reshape(B, d)
    if B == 0 or d == 0:
        return out
    cdef floating[:, ::1] o = out
    cdef const floating *px = &X[0, 0]
    cdef const int64_t *pi = &order[0]
    cdef floating *po = &o[0, 0]
    with nogil:
        lo = 0
        while lo + B <= n_idx:
            for k in prange(n_threads, num_threads=n_threads, schedule="static", chunksize=1):
                _gather_part(B * k // n_threads, B * (k + 1) // n_threads, d, px, pi + lo, po,
                             naive)
            lo += B
    if not _guards_intact(storage, B * d):
        raise RuntimeError(f"gather kernel wrote outside its output ({B}x{d})")
    return out


cdef void _gather_part(int64_t lo, int64_t hi, int64_t d, const floating *X,
                       const int64_t *idx, floating *out, bint naive) noexcept nogil:
    if floating is float:
        if naive:
            gather_rows_naive_f32(hi - lo, d, X, idx + lo, out + lo * d)
        else:
            gather_rows_f32(hi - lo, d, X, idx + lo, out + lo * d)
    else:
        if naive:
            gather_rows_naive_f64(hi - lo, d, X, idx + lo, out + lo * d)
        else:
            gather_rows_f64(hi - lo, d, X, idx + lo, out + lo * d)


def set_direct_kernels(bint enabled):
    """Switch the direct kernels' AVX-512 code off (they fall back to the naive references)
    or back to what the CPU supports (for tests; returns the previous availability)."""
    return bool(fm_direct_set_enabled(enabled))


def kernel_direct_gemm_split_k(floating[:, ::1] A, floating[:, ::1] B, int n_threads=2,
                               bias=None, act=None):
    """A (M, K) @ B (K, N) through the training forward's split-K kernel
    (direct_gemm_split_k: each of n_threads threads multiplies its rows of B into its own
    partial product, then they are summed), for tests; with act (a name of
    ACTIVATION_CODES), act(A @ B + bias) through direct_gemm_split_k_act, bias (N) or None.
    RuntimeError if it wrote outside C or its partial buffer.  Returns a new array."""
    cdef int64_t M, N, K
    cdef int code = -1
    cdef floating[::1] bv
    cdef const floating *pb = NULL
    M, N, K = _product_dims("nn", (A.shape[0], A.shape[1]), (B.shape[0], B.shape[1]))
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if act is not None:
        code = ACTIVATION_CODES[act]
    if bias is not None:
        if act is None:
            raise ValueError("bias needs act (the plain kernel adds no bias)")
        bv = bias
        if bv.shape[0] != N:
            raise ValueError(f"bias must have {N} elements, got {bv.shape[0]}")
        pb = &bv[0]
    dtype = np.asarray(A).dtype
    storage = _guarded(M * N, dtype)
    spare = _guarded((n_threads - 1) * M * N, dtype)
    out = storage[FASTMLP_SLACK:FASTMLP_SLACK + M * N].reshape(M, N)
    cdef floating[:, ::1] c = out
    cdef floating[::1] p = spare
    if M == 0 or N == 0:
        return out
    with nogil:
        if code >= 0:
            if floating is float:
                direct_gemm_split_k_act_f32(M, N, K, &A[0, 0], &B[0, 0], pb, code, &c[0, 0],
                                            &p[FASTMLP_SLACK], n_threads)
            else:
                direct_gemm_split_k_act_f64(M, N, K, &A[0, 0], &B[0, 0], pb, code, &c[0, 0],
                                            &p[FASTMLP_SLACK], n_threads)
        elif floating is float:
            direct_gemm_split_k_f32(M, N, K, &A[0, 0], &B[0, 0], &c[0, 0], &p[FASTMLP_SLACK],
                                    n_threads)
        else:
            direct_gemm_split_k_f64(M, N, K, &A[0, 0], &B[0, 0], &c[0, 0], &p[FASTMLP_SLACK],
                                    n_threads)
    if not (_guards_intact(storage, M * N) and _guards_intact(spare, (n_threads - 1) * M * N)):
        raise RuntimeError(f"split-K kernel wrote outside its buffers ({M}x{N}x{K})")
    return out


def kernel_direct_gemm_nt_act(floating[:, ::1] A, floating[:, ::1] B, Z, floating[:, ::1] P,
                              str act, int n_threads=2):
    """(A (M, K) @ B^T) * act'(Z, P), B (N, K), through direct_gemm_nt_act (the backward
    product with the derivative of the layer below applied by each thread to the columns
    it wrote), for tests: Z (M, N) the pre-activation or None, P (M, N) the activation.
    RuntimeError if it wrote outside C.  Returns a new array."""
    cdef int64_t M, N, K
    cdef int code = ACTIVATION_CODES[act]
    cdef floating[:, ::1] zv
    cdef const floating *pz = NULL
    M, N, K = _product_dims("nt", (A.shape[0], A.shape[1]), (B.shape[0], B.shape[1]))
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if P.shape[0] != M or P.shape[1] != N:
        raise ValueError(f"P must be {M}x{N}, got {P.shape[0]}x{P.shape[1]}")
    if Z is not None:
        zv = Z
        if zv.shape[0] != M or zv.shape[1] != N:
            raise ValueError(f"Z must be {M}x{N}, got {zv.shape[0]}x{zv.shape[1]}")
        pz = &zv[0, 0]
    storage = _guarded(M * N, np.asarray(A).dtype)
    out = storage[FASTMLP_SLACK:FASTMLP_SLACK + M * N].reshape(M, N)
    cdef floating[:, ::1] c = out
    if M == 0 or N == 0:
        return out
    with nogil:
        if floating is float:
            direct_gemm_nt_act_f32(M, N, K, &A[0, 0], &B[0, 0], &c[0, 0], code, pz, &P[0, 0],
                                   n_threads)
        else:
            direct_gemm_nt_act_f64(M, N, K, &A[0, 0], &B[0, 0], &c[0, 0], code, pz, &P[0, 0],
                                   n_threads)
    if not _guards_intact(storage, M * N):
        raise RuntimeError(f"direct nt kernel wrote outside C ({M}x{N}x{K})")
    return out
