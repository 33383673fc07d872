/*
 * fastmlp.h -- the C kernels of fastmlp, in plain C99 (no Python, no numpy): elementwise
 * activations, losses and optimizer updates, small and direct (unpacked) GEMMs, the
 * fused pass of tiny networks, the gather of shuffled rows and the dropout RNG.
 *
 * Layering: C kernels here -> Cython engine (fastmlp/backends/cpu/_network.pyx), which
 * runs a whole epoch without the GIL and calls BLAS for the larger matrix products
 * -> thin Python fronts.
 *
 * Kernels exist for float (suffix _f32) and double (_f64): the prototypes are
 * written once in fastmlp_kernels.inc with REAL and FM(name), and instantiated twice
 * below.  All matrices are row-major and contiguous; shapes are given as
 * (rows, cols) in the comments: B = rows of a batch, n = units of a layer,
 * K = outputs of the network.  Arguments are marked IN / OUT / INOUT.
 * Elementwise loops take an explicit n_threads (OpenMP when built with it).
 */
#ifndef FASTMLP_H
#define FASTMLP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Activation codes (match fastmlp/backends/cpu/_network.pyx and base.ACTIVATIONS). */
enum fm_activation {
    FM_IDENTITY = 0, FM_RELU = 1, FM_SIGMOID = 2, FM_TANH = 3, FM_SOFTMAX = 4,
    FM_LEAKY_RELU = 5, FM_ELU = 6, FM_SOFTPLUS = 7, FM_GELU = 8, FM_EXP = 9
};

/* Loss codes (match base.LOSSES). */
enum fm_loss {
    FM_SQUARED_ERROR = 0, FM_BINARY_CE = 1, FM_CATEGORICAL_CE = 2, FM_POISSON = 3
};

/* The functions of csrc/vmath.h that the test entry point vmath_apply_f32 / _f64 runs. */
enum fm_vmath_function {
    FM_VMATH_EXPM1 = 1, FM_VMATH_LOG1P, FM_VMATH_ERF, FM_VMATH_NORMAL_CDF, FM_VMATH_NORMAL_PDF
};

#define FM_LEAKY_RELU_SLOPE 0.2
#define FM_ELU_ALPHA 1.0

/* ---- counter-based RNG (rng.c) -------------------------------------------------------
 * splitmix64's finaliser; a stream is keyed by (seed, step, layer) and element e draws
 * u = mix64(stream + e * golden) >> 11 scaled to [0, 1).  Identical to the NumPy
 * reference (fastmlp/backends/array/network.py::dropout_keep_mask). */
uint64_t fm_mix64(uint64_t z);
uint64_t fm_dropout_stream(uint64_t seed, uint64_t step, uint64_t layer);
double fm_uniform(uint64_t stream, uint64_t e);

/* out (n) OUT: a uniformly random permutation of 0..n-1, determined by (seed, epoch). */
void fm_permutation(int64_t n, uint64_t seed, uint64_t epoch, int64_t *out);

/* ---- tiny networks (tiny.c) ----------------------------------------------------------
 * Networks whose every layer has at most FM_TINY_WIDTH units train through one fused
 * pass (tiny_forward / tiny_backward in fastmlp_kernels.inc) instead of one kernel per
 * product and activation.  fm_tiny_plan checks that a network qualifies (at most
 * FM_TINY_MAX_LAYERS layers, hidden activations identity/relu/leaky_relu/tanh/sigmoid;
 * any output activation, which the caller applies) and lays out its workspace (in
 * elements of the network dtype, zeroed by the caller once): packed zero-padded weights,
 * and, for up to `rows` rows, the hidden activations and two buffers of deltas. */
#define FM_TINY_WIDTH 16
#define FM_TINY_MAX_LAYERS 8
typedef struct {
    int64_t fan_in, fan_out;
    int64_t w_off, b_off;   /* into the flat parameter / gradient buffers; b_off < 0: none */
    int act;
} fm_tiny_layer;
typedef struct {
    int n_layers;
    fm_tiny_layer layers[FM_TINY_MAX_LAYERS];
    /* workspace offsets (elements), V = FM_TINY_WIDTH: packed W (fan_in, V), bias (V) and
     * W^T (fan_out, V) of each layer; hidden activations (n_layers - 1, rows, V); deltas
     * (2, rows, V); size: the total */
    int64_t wp_off[FM_TINY_MAX_LAYERS], bp_off[FM_TINY_MAX_LAYERS], wt_off[FM_TINY_MAX_LAYERS];
    int64_t rows, h_off, d_off, size;
} fm_tiny_net;
/* 1 and net filled when the network qualifies (for batches of up to `rows` rows), else 0. */
int fm_tiny_plan(fm_tiny_net *net, int n_layers, const fm_tiny_layer *layers, int64_t rows);

/* 1 when the small products' narrow kernels (32-byte vectors, gemm_small_impl.inc) run
 * here: in the x86-64-v3/v4 clones; elsewhere the plain loops do.
 * fm_narrow_set_enabled(0 / 1) forces them off / on (tests, benchmarks), (-1) restores the
 * default; returns the previous availability. */
int fm_narrow_available(void);
int fm_narrow_set_enabled(int enabled);

/* ---- direct products (gemm_direct.c) -------------------------------------------------
 * 1 when the AVX-512 kernels of direct_gemm / direct_gemm_nt run on this CPU (decided once
 * from its features); the engine uses them for short batches only then.
 * fm_direct_set_enabled(0) makes them fall back to the naive references (tests,
 * benchmarks), (1) restores the CPU's answer; returns the previous availability. */
int fm_direct_available(void);
int fm_direct_set_enabled(int enabled);
/* The first of the M rows (of a tall product, or W's rows) that thread t of nt owns in the
 * direct products; t = nt gives M.  Whole blocks of 8 rows. */
int64_t fm_direct_row_split(int64_t M, int t, int nt);
/* The same where cuts (nt + 1 values from 0 to M) is not NULL: cuts[t].  The split of the
 * first layer's rows that its zero-skipping products and its update share (zero_skip.c,
 * _network.pyx update_own_rows). */
int64_t fm_cut_row_split(int64_t M, const int64_t *cuts, int t, int nt);
/* Direct products below this many multiply-adds stay on the calling thread. */
#define FM_DIRECT_PARALLEL_MIN_WORK (1 << 18)

/* ---- the first layer's products skipping the input's zeros (zero_skip.c, float32) ----
 * masks (b, ceil(d / 16)): bit t of masks[i * dq + q] is set when X[i, 16 q + t] != 0.
 * skip_gemm_nn: Z (b, N) = X (b, d) @ W (d, N); skip_gemm_tn: dW (d, N) = beta dW + X^T @ dZ
 * (dZ (b, N)); both leave out the terms of X's zeros.  The AVX-512 kernels where
 * fm_direct_available(), else the naive references (also exported, for the tests). */
void nonzero_masks_f32(int64_t b, int64_t d, const float *X, uint16_t *masks);
void skip_gemm_nn_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks,
                      const float *W, float *Z);
void skip_gemm_tn_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks,
                      const float *dZ, float beta, float *dW);
void nonzero_masks_naive_f32(int64_t b, int64_t d, const float *X, uint16_t *masks);
void skip_gemm_nn_naive_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const uint16_t *masks, const float *W, float *Z);
void skip_gemm_tn_naive_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const uint16_t *masks, const float *dZ, float beta,
                            float *dW);
/* The same on n_threads, split as the direct path splits W's rows (fm_direct_row_split),
 * or thread t on rows [cuts[t], cuts[t + 1]) where cuts (n_threads + 1 values from 0 to d)
 * is not NULL: skip_gemm_split_k builds the masks of all b rows and the forward product,
 * each thread over its rows of W into its partial product (thread t > 0: partial + (t - 1)
 * b N), then sums them, with bias and activation act when act >= 0
 * (direct_gemm_split_k_act); skip_gemm_tn_rows writes each thread's rows of dW (masks from
 * skip_gemm_split_k).  One thread, no OpenMP or no AVX-512: the single-threaded kernels. */
void skip_gemm_split_k_f32(int64_t b, int64_t N, int64_t d, const float *X, uint16_t *masks,
                           const float *W, const float *bias, int act, float *Z,
                           float *partial, const int64_t *cuts, int n_threads);
void skip_gemm_tn_rows_f32(int64_t b, int64_t N, int64_t d, const float *X,
                           const uint16_t *masks, const float *dZ, float beta, float *dW,
                           const int64_t *cuts, int n_threads);
/* Masks and Z (b, N) = X (b, d) @ W (d, N) over the nonzeros of many rows (a prediction,
 * a full batch), by blocks of `block` rows spread over n_threads. */
void skip_gemm_nn_blocks_f32(int64_t b, int64_t N, int64_t d, const float *X, uint16_t *masks,
                             const float *W, float *Z, int64_t block, int n_threads);
/* One thread's share of the features, [k0, k1) (k0 a multiple of 4): the words of masks
 * that cover them, Z (b, N) = X[:, k0:k1] @ W[k0:k1, :], and dW's rows [k0, k1), for the
 * batch's rows i < b: X's rows rows[i] (the epoch's shuffled order, read in place; rows
 * NULL: X's first b rows).  The engine's feature split; no OpenMP inside. */
void nonzero_masks_range_f32(int64_t b, int64_t d, const float *X, const int64_t *rows,
                             int64_t k0, int64_t k1, uint16_t *masks);
void skip_gemm_nn_range_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const int64_t *rows, const uint16_t *masks, const float *W,
                            float *Z, int64_t k0, int64_t k1);
/* prefetch_rows_range asks for the lines of features [k0, k1) of those rows, into L2 (the
 * next batch's, while this one's update runs). */
void prefetch_rows_range_f32(int64_t b, int64_t d, const float *X, const int64_t *rows,
                             int64_t k0, int64_t k1);
void skip_gemm_tn_range_f32(int64_t b, int64_t N, int64_t d, const float *X,
                            const int64_t *rows, const uint16_t *masks, const float *dZ,
                            float beta, float *dW, int64_t k0, int64_t k1);

/* 1 when built with OpenMP. */
int fm_openmp_enabled(void);
/* A barrier of the innermost enclosing OpenMP parallel region (nothing without OpenMP);
 * for Cython's parallel() blocks, which have no barrier of their own. */
void fm_thread_barrier(void);
/* The calling thread's team: its size and this thread's number (1 and 0 outside a parallel
 * region or without OpenMP). */
int fm_team_size(void);
int fm_thread_num(void);
/* Counters shared by a team: take the next unit of work (returns the old value, adds 1);
 * count one more unit done, after this thread's writes; read a count, before reading what
 * it counts (rng.c). */
int64_t fm_claim(int64_t *counter);
void fm_count_done(int64_t *counter);
int64_t fm_count_read(int64_t *counter);
/* The x86-64 feature level of the multiversioned kernels that the loader chose on this
 * CPU (4 = x86-64-v4, 3 = x86-64-v3, 0 = baseline; -1 = none of the clones, which must not
 * happen), and the highest level the build compiled (4, 3 or 0: setup.py's FASTMLP_SIMD). */
int fm_simd_level(void);
int fm_simd_clones(void);

#define REAL float
#define FM(name) name##_f32
#include "fastmlp_kernels.inc"
#undef REAL
#undef FM

#define REAL double
#define FM(name) name##_f64
#include "fastmlp_kernels.inc"
#undef REAL
#undef FM

#ifdef __cplusplus
}
#endif
#endif /* FASTMLP_H */
