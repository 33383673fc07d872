# The C kernels of csrc/fastmlp.h (see that header for shapes and semantics).
from libc.stdint cimport int64_t, uint16_t, uint64_t

cdef extern from "fastmlp.h" nogil:
    enum:
        FM_IDENTITY, FM_RELU, FM_SIGMOID, FM_TANH, FM_SOFTMAX, FM_LEAKY_RELU, FM_ELU,
        FM_SOFTPLUS, FM_GELU, FM_EXP
    enum:
        FM_SQUARED_ERROR, FM_BINARY_CE, FM_CATEGORICAL_CE, FM_POISSON
    enum:
        FM_VMATH_EXPM1, FM_VMATH_LOG1P, FM_VMATH_ERF, FM_VMATH_NORMAL_CDF, FM_VMATH_NORMAL_PDF

    enum:
        FM_TINY_WIDTH, FM_TINY_MAX_LAYERS
    ctypedef struct fm_tiny_layer:
        int64_t fan_in, fan_out, w_off, b_off
        int act
    ctypedef struct fm_tiny_net:
        int n_layers
        int64_t size
    int fm_tiny_plan(fm_tiny_net *net, int n_layers, const fm_tiny_layer *layers, int64_t rows)

    int fm_narrow_available()
    int fm_narrow_set_enabled(int enabled)
    int fm_direct_available()
    int fm_direct_set_enabled(int enabled)
    int64_t fm_direct_row_split(int64_t M, int t, int nt)
    int64_t fm_cut_row_split(int64_t M, const int64_t *cuts, int t, int nt)
    void nonzero_masks_f32(int64_t b, int64_t d, const float *X, uint16_t *masks)
    void skip_gemm_nn_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks, const float *W, float *Z)
    void skip_gemm_tn_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks, const float *dZ, float beta, float *dW)
    void nonzero_masks_naive_f32(int64_t b, int64_t d, const float *X, uint16_t *masks)
    void skip_gemm_nn_naive_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks, const float *W, float *Z)
    void skip_gemm_tn_naive_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks, const float *dZ, float beta, float *dW)
    void skip_gemm_split_k_f32(int64_t b, int64_t N, int64_t d, const float *X, uint16_t *masks, const float *W, const float *bias, int act, float *Z, float *partial, const int64_t *cuts, int n_threads)
    void skip_gemm_tn_rows_f32(int64_t b, int64_t N, int64_t d, const float *X, const uint16_t *masks, const float *dZ, float beta, float *dW, const int64_t *cuts, int n_threads)
    void skip_gemm_nn_blocks_f32(int64_t b, int64_t N, int64_t d, const float *X, uint16_t *masks, const float *W, float *Z, int64_t block, int n_threads)
    void nonzero_masks_range_f32(int64_t b, int64_t d, const float *X, const int64_t *rows, int64_t k0, int64_t k1, uint16_t *masks)
    void skip_gemm_nn_range_f32(int64_t b, int64_t N, int64_t d, const float *X, const int64_t *rows, const uint16_t *masks, const float *W, float *Z, int64_t k0, int64_t k1)
    void prefetch_rows_range_f32(int64_t b, int64_t d, const float *X, const int64_t *rows, int64_t k0, int64_t k1)
    void skip_gemm_tn_range_f32(int64_t b, int64_t N, int64_t d, const float *X, const int64_t *rows, const uint16_t *masks, const float *dZ, float beta, float *dW, int64_t k0, int64_t k1)
    enum:
        FM_DIRECT_PARALLEL_MIN_WORK

    uint64_t fm_dropout_stream(uint64_t seed, uint64_t step, uint64_t layer)
    int fm_openmp_enabled()
    void fm_thread_barrier()
    int fm_team_size()
    int fm_thread_num()
    int64_t fm_claim(int64_t *counter)
    void fm_count_done(int64_t *counter)
    int64_t fm_count_read(int64_t *counter)
    int fm_simd_level()
    int fm_simd_clones()
    void fm_permutation(int64_t n, uint64_t seed, uint64_t epoch, int64_t *out)

    void bias_act_forward_f32(int64_t B, int64_t n, const float *Z, const float *bias, int act, float *A, int n_threads)
    void bias_act_forward_f64(int64_t B, int64_t n, const double *Z, const double *bias, int act, double *A, int n_threads)
    void bias_act_forward_naive_f32(int64_t B, int64_t n, const float *Z, const float *bias, int act, float *A)
    void bias_act_forward_naive_f64(int64_t B, int64_t n, const double *Z, const double *bias, int act, double *A)
    void act_backward_f32(int64_t B, int64_t n, int act, const float *Z, const float *A, float *dA, int n_threads)
    void act_backward_f64(int64_t B, int64_t n, int act, const double *Z, const double *A, double *dA, int n_threads)
    void act_backward_naive_f32(int64_t B, int64_t n, int act, const float *Z, const float *A, float *dA)
    void act_backward_naive_f64(int64_t B, int64_t n, int act, const double *Z, const double *A, double *dA)
    void vmath_apply_f32(int fn, int64_t n, const float *x, float *y)
    void vmath_apply_f64(int fn, int64_t n, const double *x, double *y)
    void column_sums_f32(int64_t B, int64_t n, const float *dZ, float *db, int accumulate)
    void column_sums_f64(int64_t B, int64_t n, const double *dZ, double *db, int accumulate)
    void dropout_forward_f32(int64_t B, int64_t n, double rate, uint64_t stream, int64_t e0, const float *A, float *out, int n_threads)
    void dropout_forward_f64(int64_t B, int64_t n, double rate, uint64_t stream, int64_t e0, const double *A, double *out, int n_threads)
    void dropout_backward_f32(int64_t B, int64_t n, double rate, uint64_t stream, int64_t e0, float *dA, int n_threads)
    void dropout_backward_f64(int64_t B, int64_t n, double rate, uint64_t stream, int64_t e0, double *dA, int n_threads)

    double loss_forward_backward_f32(int loss, int out_act, int64_t B, int64_t K, const float *Z, const float *P, const float *Y, const int64_t *labels, const float *w, double delta_scale, float *dZ, double *metrics)
    double loss_forward_backward_f64(int loss, int out_act, int64_t B, int64_t K, const double *Z, const double *P, const double *Y, const int64_t *labels, const double *w, double delta_scale, double *dZ, double *metrics)
    double penalty_forward_backward_f32(int64_t n, const float *W, float *dW, double l2, double l1)
    double penalty_forward_backward_f64(int64_t n, const double *W, double *dW, double l2, double l1)
    void penalty_gradient_f32(int64_t n, const float *W, float *dW, double l2, double l1)
    void penalty_gradient_f64(int64_t n, const double *W, double *dW, double l2, double l1)

    void sgd_update_f32(int64_t n, float *w, const float *g, float *v, double lr, double momentum, int nesterov, int n_threads)
    void sgd_update_f64(int64_t n, double *w, const double *g, double *v, double lr, double momentum, int nesterov, int n_threads)
    void adam_update_f32(int64_t n, float *w, const float *g, float *m, float *v, double step_size, double beta_1, double beta_2, double eps, int n_threads)
    void adam_update_f64(int64_t n, double *w, const double *g, double *m, double *v, double step_size, double beta_1, double beta_2, double eps, int n_threads)
    void rmsprop_update_f32(int64_t n, float *w, const float *g, float *v, double lr, double rho, double eps, int n_threads)
    void rmsprop_update_f64(int64_t n, double *w, const double *g, double *v, double lr, double rho, double eps, int n_threads)
    void adagrad_update_f32(int64_t n, float *w, const float *g, float *a, double lr, double eps, int n_threads)
    void adagrad_update_f64(int64_t n, double *w, const double *g, double *a, double lr, double eps, int n_threads)
    double sum_squares_f32(int64_t n, const float *x)
    double sum_squares_f64(int64_t n, const double *x)
    void scale_inplace_f32(int64_t n, float *x, double s)
    void scale_inplace_f64(int64_t n, double *x, double s)

    void gemm_nn_small_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float beta, float *C)
    void gemm_nn_small_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *B, double beta, double *C)
    void gemm_tn_small_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float beta, float *C)
    void gemm_tn_small_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *B, double beta, double *C)
    void gemm_nt_small_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C)
    void gemm_nt_small_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *B, double *C)

    int dense_forward_small_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *W, const float *bias, int act, float *out)
    int dense_forward_small_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *W, const double *bias, int act, double *out)
    int column_sums_small_f32(int64_t B, int64_t n, const float *dZ, float *db, int accumulate)
    int column_sums_small_f64(int64_t B, int64_t n, const double *dZ, double *db, int accumulate)

    void gather_rows_f32(int64_t B, int64_t d, const float *X, const int64_t *idx, float *out)
    void gather_rows_f64(int64_t B, int64_t d, const double *X, const int64_t *idx, double *out)
    void gather_rows_naive_f32(int64_t B, int64_t d, const float *X, const int64_t *idx, float *out)
    void gather_rows_naive_f64(int64_t B, int64_t d, const double *X, const int64_t *idx, double *out)

    void tiny_forward_f32(const fm_tiny_net *net, int64_t B, const float *X, const float *params, float *tw, float *Z)
    void tiny_forward_f64(const fm_tiny_net *net, int64_t B, const double *X, const double *params, double *tw, double *Z)
    void tiny_backward_f32(const fm_tiny_net *net, int64_t B, const float *X, float *tw, const float *G, float *grads)
    void tiny_backward_f64(const fm_tiny_net *net, int64_t B, const double *X, double *tw, const double *G, double *grads)

    void direct_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t a_rs, int64_t a_cs, const float *B, float beta, float *C, int n_threads)
    void direct_gemm_f64(int64_t M, int64_t N, int64_t K, const double *A, int64_t a_rs, int64_t a_cs, const double *B, double beta, double *C, int n_threads)
    void direct_gemm_nt_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C, int n_threads)
    void direct_gemm_nt_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *B, double *C, int n_threads)
    void direct_gemm_split_k_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C, float *partial, int n_threads)
    void direct_gemm_split_k_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *B, double *C, double *partial, int n_threads)
    void direct_gemm_nt_act_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C, int act, const float *Z, const float *P, int n_threads)
    void direct_gemm_nt_act_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *B, double *C, int act, const double *Z, const double *P, int n_threads)
    void direct_gemm_split_k_act_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B, const float *bias, int act, float *C, float *partial, int n_threads)
    void direct_gemm_split_k_act_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *B, const double *bias, int act, double *C, double *partial, int n_threads)
    void direct_gemm_naive_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t a_rs, int64_t a_cs, const float *B, float beta, float *C)
    void direct_gemm_naive_f64(int64_t M, int64_t N, int64_t K, const double *A, int64_t a_rs, int64_t a_cs, const double *B, double beta, double *C)
    void direct_gemm_nt_naive_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C)
    void direct_gemm_nt_naive_f64(int64_t M, int64_t N, int64_t K, const double *A, const double *B, double *C)
