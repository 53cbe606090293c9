# Declarations of csrc/elman.h for the binding (_core.pyx), and the enums Python shares
# with C: cpdef enums are visible from Python as elman._core.ELMAN_TANH and so on, so that
# every layer takes its codes from this one source.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "elman.h":
    cpdef enum elman_nonlinearity:
        ELMAN_TANH
        ELMAN_RELU
    cpdef enum elman_loss:
        ELMAN_LOSS_XENT
        ELMAN_LOSS_MSE
    cpdef enum elman_reduction:
        ELMAN_REDUCE_MEAN
        ELMAN_REDUCE_SUM
    cpdef enum elman_optimizer_kind:
        ELMAN_OPT_ADAGRAD
        ELMAN_OPT_SGD

cdef extern from "elman.h" nogil:
    ctypedef int64_t elman_int

    enum:
        ELMAN_OK
        ELMAN_ERR_ARG
        ELMAN_ERR_NONFINITE
        ELMAN_ERR_TARGET
        ELMAN_ERR_TOO_LARGE
        ELMAN_ERR_NO_BLAS
        ELMAN_ERR_CPU
    const char *elman_status_string(int status)

    ctypedef void (*elman_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *,
                                    int *, float *, int *, float *, float *, int *)
    ctypedef void (*elman_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *,
                                    int *, double *, int *, double *, double *, int *)
    void elman_set_blas(elman_sgemm_fn sgemm, elman_dgemm_fn dgemm)
    int elman_has_blas()

    int elman_step_gemm_f32(float *, const float *, const float *, elman_int, elman_int,
                            elman_int)
    int elman_step_gemm_f64(double *, const double *, const double *, elman_int, elman_int,
                            elman_int)

    ctypedef struct elman_adagrad_opts:
        double lr, lr_decay, weight_decay, eps, clip_value, grad_scale
        int64_t step
        int eps_inside, maximize
    ctypedef struct elman_sgd_opts:
        double lr, momentum, weight_decay, clip_value, grad_scale
        int maximize

    int elman_adagrad_update_many_f32(float **, const float **, float **,
                                      const elman_int *, elman_int, const elman_adagrad_opts *)
    int elman_adagrad_update_many_f64(double **, const double **, double **,
                                      const elman_int *, elman_int, const elman_adagrad_opts *)
    int elman_adagrad_update_f32(float *, const float *, float *, elman_int, const elman_adagrad_opts *)
    int elman_adagrad_update_f64(double *, const double *, double *, elman_int, const elman_adagrad_opts *)
    int elman_adagrad_rows_update_f32(float *, const float *, float *, const elman_int *,
                                      elman_int, elman_int, elman_int, unsigned char *,
                                      const elman_adagrad_opts *)
    int elman_adagrad_rows_update_f64(double *, const double *, double *, const elman_int *,
                                      elman_int, elman_int, elman_int, unsigned char *,
                                      const elman_adagrad_opts *)
    ctypedef struct elman_proximal_opts:
        double lr, l1, l2, grad_scale
    int elman_proximal_adagrad_update_f32(float *, const float *, float *, elman_int,
                                          const elman_proximal_opts *)
    int elman_proximal_adagrad_update_f64(double *, const double *, double *, elman_int,
                                          const elman_proximal_opts *)
    ctypedef struct elman_rowwise_opts:
        double lr, eps, grad_scale
    int elman_rowwise_adagrad_update_f32(float *, const float *, float *, elman_int, elman_int,
                                         const elman_rowwise_opts *)
    int elman_rowwise_adagrad_update_f64(double *, const double *, double *, elman_int,
                                         elman_int, const elman_rowwise_opts *)
    int elman_sgd_update_f32(float *, const float *, float *, elman_int, const elman_sgd_opts *)
    int elman_sgd_update_f64(double *, const double *, double *, elman_int, const elman_sgd_opts *)
    int elman_stream_probe_f32(float *, float *, const float *, elman_int)
    int elman_stream_probe_f64(double *, double *, const double *, elman_int)
    int elman_fma_probe_f32(elman_int, double *, double *)
    int elman_fma_probe_f64(elman_int, double *, double *)
    int elman_all_finite_f32(const float *, elman_int)
    int elman_all_finite_f64(const double *, elman_int)
    int elman_index_range(elman_int *, elman_int *, const elman_int *, elman_int)
    int elman_sumsq_f32(double *, const float *, elman_int)
    int elman_sumsq_f64(double *, const double *, elman_int)

    int elman_act_forward_f32(float *, const float *, elman_int, int)
    int elman_act_forward_f64(double *, const double *, elman_int, int)
    int elman_act_backward_f32(float *, const float *, const float *, elman_int, int)
    int elman_act_backward_f64(double *, const double *, const double *, elman_int, int)

    ctypedef struct elman_rnn_shape:
        elman_int T, B, I, H
        int nonlinearity
        int reverse
        const elman_int *lengths

    int elman_rnn_forward_f32(float *, const float *, const elman_int *, const float *,
                              const float *, const float *, const elman_rnn_shape *)
    int elman_rnn_forward_f64(double *, const double *, const elman_int *, const double *,
                              const double *, const double *, const elman_rnn_shape *)
    int elman_rnn_backward_f32(float *, float *, float *, float *, float *, float *,
                               const float *, const float *, const float *, const float *,
                               const elman_int *, const float *, const float *,
                               const elman_rnn_shape *)
    int elman_rnn_backward_f64(double *, double *, double *, double *, double *, double *,
                               const double *, const double *, const double *, const double *,
                               const elman_int *, const double *, const double *,
                               const elman_rnn_shape *)
    int elman_rnn_rforward_f32(float *, const float *, const float *, const float *,
                               const elman_int *, const float *, const float *, const float *,
                               const float *, const float *, const elman_rnn_shape *)
    int elman_rnn_rforward_f64(double *, const double *, const double *, const double *,
                               const elman_int *, const double *, const double *,
                               const double *, const double *, const double *,
                               const elman_rnn_shape *)

    ctypedef struct elman_stack_shape:
        elman_int T, B, I, H, L, D
        int nonlinearity
        const elman_int *lengths

    int elman_stack_sizes(const elman_stack_shape *, elman_int *, elman_int *, elman_int *,
                          elman_int *)
    int elman_stack_forward_f32(float *, float *, float *, float *, float *, const float *,
                                const float *, const float **, const float **,
                                const float **, const float **, const float *,
                                const elman_stack_shape *)
    int elman_stack_forward_f64(double *, double *, double *, double *, double *,
                                const double *, const double *, const double **,
                                const double **, const double **, const double **,
                                const double *, const elman_stack_shape *)
    int elman_stack_backward_f32(float **, float **, float *, float *, float *, float *,
                                 const float *, const float *, const float *, const float *,
                                 const float *, const float *, const float *,
                                 const elman_stack_shape *)
    int elman_stack_backward_f64(double **, double **, double *, double *, double *,
                                 double *, const double *, const double *, const double *,
                                 const double *, const double *, const double *,
                                 const double *, const elman_stack_shape *)

    int elman_linear_forward_f32(float *, const float *, const float *, const float *,
                                 elman_int, elman_int, elman_int)
    int elman_linear_forward_f64(double *, const double *, const double *, const double *,
                                 elman_int, elman_int, elman_int)
    int elman_linear_backward_f32(float *, float *, float *, const float *, const float *,
                                  const float *, elman_int, elman_int, elman_int)
    int elman_linear_backward_f64(double *, double *, double *, const double *, const double *,
                                  const double *, elman_int, elman_int, elman_int)

    int elman_softmax_xent_f32(double *, float *, const float *, const elman_int *, elman_int,
                               elman_int, double)
    int elman_softmax_xent_f64(double *, double *, const double *, const elman_int *, elman_int,
                               elman_int, double)
    int elman_mse_f32(double *, float *, const float *, const float *, elman_int, double)
    int elman_mse_f64(double *, double *, const double *, const double *, elman_int, double)

    ctypedef struct elman_model_shape:
        elman_rnn_shape rnn
        elman_int O
        int loss, reduction, last_step_only
        elman_int num_layers
        int bidirectional
        double dropout
        uint64_t dropout_seed
        elman_int dropout_batch, dropout_offset
        int compute

    elman_int elman_model_num_params(const elman_model_shape *)
    elman_int elman_model_work_bytes(const elman_model_shape *, int)
    ctypedef struct elman_model_sizes:
        elman_int params, hs, Y, dA, states, work_bytes
    int elman_model_buffer_sizes(elman_model_sizes *, const elman_model_shape *, int)
    elman_int elman_model_param_offset(const elman_model_shape *, elman_int, elman_int)
    int elman_model_forward_f32(float *, float *, void *, const float *, const elman_int *,
                                const float *, const elman_model_shape *)
    int elman_model_forward_f64(double *, double *, void *, const double *, const elman_int *,
                                const double *, const elman_model_shape *)
    int elman_model_forward_backward_f32(double *, float *, float *, float *, float *, float *,
                                         void *, const float *, const elman_int *,
                                         const elman_int *, const float *, const float *,
                                         const float *, const elman_model_shape *)
    int elman_model_forward_backward_f64(double *, double *, double *, double *, double *,
                                         double *, void *, const double *, const elman_int *,
                                         const elman_int *, const double *, const double *,
                                         const double *, const elman_model_shape *)
    int elman_model_gauss_newton_prepare_f32(float *, float *, void *, const float *,
                                             const elman_int *, const float *,
                                             const elman_model_shape *)
    int elman_model_gauss_newton_prepare_f64(double *, double *, void *, const double *,
                                             const elman_int *, const double *,
                                             const elman_model_shape *)
    int elman_model_gauss_newton_product_f32(float *, float *, float *, float *, void *,
                                             float *, void *, const float *, const float *,
                                             const float *, const elman_int *, const float *,
                                             const elman_model_shape *, double, double)
    int elman_model_gauss_newton_product_f64(double *, double *, double *, double *, void *,
                                             double *, void *, const double *, const double *,
                                             const double *, const elman_int *,
                                             const double *, const elman_model_shape *, double,
                                             double)

    ctypedef struct elman_optimizer:
        int kind
        elman_adagrad_opts adagrad
        elman_sgd_opts sgd
        double max_grad_norm
    int elman_model_train_step_f32(double *, double *, float *, float *, float *, float *,
                                   float *, float *, void *, const float *, const elman_int *,
                                   const elman_int *, const float *, const elman_model_shape *,
                                   const elman_optimizer *)
    int elman_model_train_step_f64(double *, double *, double *, double *, double *, double *,
                                   double *, double *, void *, const double *, const elman_int *,
                                   const elman_int *, const double *, const elman_model_shape *,
                                   const elman_optimizer *)

    int elman_model_sample_f32(elman_int *, float *, float *, uint64_t *, elman_int, elman_int,
                               const elman_int *, double, const float *,
                               const elman_model_shape *)
    int elman_model_sample_f64(elman_int *, double *, double *, uint64_t *, elman_int,
                               elman_int, const elman_int *, double, const double *,
                               const elman_model_shape *)

    unsigned elman_cpu_features()
    int elman_bf16_native()
    int elman_bf16_kernel()
    int elman_set_bf16_kernel(int)
    int elman_bf16_probe(elman_int, double *, double *)
    int elman_bf16_amx_probe(elman_int, double *, double *)
    const char *elman_kernel_path()
    const char *elman_kernel_paths()
    int elman_kernel_path_supported(const char *name)
    int elman_set_kernel_path(const char *name)
    int elman_max_threads()
    void elman_set_num_threads(int n)
    const char *elman_build_info()


