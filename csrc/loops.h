/* The hot loops of every operation, as each operation's file registers them for each
 * instruction set, and the choice among those sets at run time. Private to csrc/.
 *
 * CMake compiles the files that have loops once more per instruction set (generic
 * everywhere; avx2 and avx512 on x86-64), with ELMAN_ISA set to the path's name and its -m
 * flags. In that copy the file defines its loops (static) and, at its end (after the
 * double pass, #if ELMAN_LAST_PASS), registers them by name, as NumPy names its variants
 * with NPY_CPU_DISPATCH_CURFX and PyTorch registers them with REGISTER_DISPATCH:
 *
 *     ELMAN_REGISTER(adagrad) = {.adagrad_f32 = adagrad_f32, .adagrad_f64 = adagrad_f64};
 *
 * defines elman_adagrad_avx512 (say), of type elman_adagrad_loops. dispatch.c gathers each
 * operation's registrations in elman_<op>_paths[], indexed by the path in use, elman_isa().
 * An entry point reads elman_isa() once per call, so that one call runs one path's loops.
 *
 * The loops take validated sizes and pointers and check nothing; restrict buffers must not
 * overlap. Every loop returning int returns nonzero when it met a NaN or infinity (in the
 * gradient, or in a parameter its update made), by the check described in adagrad.c.
 */
#ifndef ELMAN_LOOPS_H
#define ELMAN_LOOPS_H

#include "internal.h"
#include "parallel.h"
#include "tuning.h"

/* Bytes of a weight matrix above which one row's product streams the matrix instead of
 * walking its column panels (gemm_small.c): half this CPU's L2 cache, as the OS reports
 * it (dispatch.c; 512 KiB when it does not). */
elman_int elman_stream_weight_bytes(void);

/* The kernel paths, in the order elman_isa() numbers them. */
enum { ELMAN_ISA_GENERIC = 0, ELMAN_ISA_AVX2 = 1, ELMAN_ISA_AVX512 = 2, ELMAN_NUM_ISAS = 3 };

/* The path every kernel call uses: the best this CPU runs, unless elman_set_kernel_path
 * chose one (dispatch.c). */
int elman_isa(void);

/* adagrad.c: clr the decayed rate, scale the gradient's factor (maximize: negative), clip
 * +inf for none, (eps_in, eps_out) = (eps, 0) or (0, eps). */
typedef struct {
    int (*adagrad_f32)(float *restrict p, const float *restrict g, float *restrict s,
                       elman_int n, float clr, float scale, float clip, float wd,
                       float eps_in, float eps_out);
    int (*adagrad_f64)(double *restrict p, const double *restrict g, double *restrict s,
                       elman_int n, double clr, double scale, double clip, double wd,
                       double eps_in, double eps_out);
} elman_adagrad_loops;

/* proximal_adagrad.c */
typedef struct {
    int (*proximal_f32)(float *restrict p, const float *restrict g, float *restrict s,
                        elman_int n, float lr, float scale, float l1, float l2);
    int (*proximal_f64)(double *restrict p, const double *restrict g, double *restrict s,
                        elman_int n, double lr, double scale, double l1, double l2);
} elman_proximal_loops;

/* rowwise_adagrad.c: a (rows, cols) matrix, one accumulator per row */
typedef struct {
    int (*rowwise_f32)(float *restrict p, const float *restrict g, float *restrict s,
                       elman_int rows, elman_int cols, float lr, float scale, float eps);
    int (*rowwise_f64)(double *restrict p, const double *restrict g, double *restrict s,
                       elman_int rows, elman_int cols, double lr, double scale, double eps);
} elman_rowwise_loops;

/* sgd.c: buf is read and written only when mom != 0 */
typedef struct {
    int (*sgd_f32)(float *restrict p, const float *restrict g, float *restrict buf,
                   elman_int n, float lr, float mom, float scale, float clip, float wd);
    int (*sgd_f64)(double *restrict p, const double *restrict g, double *restrict buf,
                   elman_int n, double lr, double mom, double scale, double clip, double wd);
} elman_sgd_loops;

/* norm.c: the sum of squares (in double), and whether x holds a NaN or an infinity */
typedef struct {
    double (*sumsq_f32)(const float *x, elman_int n);
    double (*sumsq_f64)(const double *x, elman_int n);
    int (*nonfinite_f32)(const float *x, elman_int n);
    int (*nonfinite_f64)(const double *x, elman_int n);
} elman_norm_loops;

/* act.c: y = f(a) and dA = dH * f'(y), in place allowed; tanh alone, on one thread (the
 * fused recurrence step's epilogue) */
typedef struct {
    void (*act_forward_f32)(float *y, const float *a, elman_int n, int nonlinearity);
    void (*act_forward_f64)(double *y, const double *a, elman_int n, int nonlinearity);
    void (*act_backward_f32)(float *dA, const float *dH, const float *y, elman_int n,
                             int nonlinearity);
    void (*act_backward_f64)(double *dA, const double *dH, const double *y, elman_int n,
                             int nonlinearity);
    void (*tanh_f32)(float *y, const float *a, elman_int n);
    void (*tanh_f64)(double *y, const double *a, elman_int n);
} elman_act_loops;

/* softmax_xent.c: rows of cross-entropy (nonzero when a target is out of range), and
 * d[j] = exp((z[j] - m) * k) for j < n, returning their sum in double (d may equal z) */
typedef struct {
    int (*xent_rows_f32)(double *total, float *d, const float *z, const elman_int *targets,
                         elman_int N, elman_int O, double scale);
    int (*xent_rows_f64)(double *total, double *d, const double *z,
                         const elman_int *targets, elman_int N, elman_int O, double scale);
    double (*exp_shift_f32)(float *d, const float *z, elman_int n, float m, float k);
    double (*exp_shift_f64)(double *d, const double *z, elman_int n, double m, double k);
} elman_softmax_loops;

/* gemm_small.c: C (M, N) += A (M, K) @ W (K, N), row-major and dense; and one step of the
 * recurrence, C (B, H) = f(C + A @ W) forward or (C + A @ W) * f'(Y) backward. fast: the
 * step kernel is at least as fast as the BLAS for the per-step products on this path. */
typedef struct {
    int fast;
    void (*gemm_nn_f32)(float *restrict C, const float *restrict A, const float *restrict W,
                        elman_int M, elman_int K, elman_int N);
    void (*gemm_nn_f64)(double *restrict C, const double *restrict A,
                        const double *restrict W, elman_int M, elman_int K, elman_int N);
    /* C (M, N) += A (M, K) @ W^T for W (N, K): rows of W as dot products (one thread) */
    void (*gemm_nt_f32)(float *restrict C, const float *restrict A, const float *restrict W,
                        elman_int M, elman_int K, elman_int N);
    void (*gemm_nt_f64)(double *restrict C, const double *restrict A,
                        const double *restrict W, elman_int M, elman_int K, elman_int N);
    /* C (M, N) = A^T @ W for A (K, M) with rows lda apart, W (K, N): weight gradients over
     * K = T*B rows (threads over C's rows) */
    void (*gemm_tn_f32)(float *restrict C, const float *restrict A, const float *restrict W,
                        elman_int M, elman_int K, elman_int N, elman_int lda);
    void (*gemm_tn_f64)(double *restrict C, const double *restrict A,
                        const double *restrict W, elman_int M, elman_int K, elman_int N,
                        elman_int lda);
    void (*step_f32)(float *restrict C, const float *restrict A, const float *restrict W,
                     const float *restrict Y, elman_int B, elman_int H, int nonlinearity,
                     int backward);
    void (*step_f64)(double *restrict C, const double *restrict A, const double *restrict W,
                     const double *restrict Y, elman_int B, elman_int H, int nonlinearity,
                     int backward);
    /* W (K, N), or W^T for W (N, K), packed in column panels (K*N elements); the step on
     * such a packed weight (gemm_small.c) */
    void (*pack_panels_f32)(float *restrict Wp, const float *restrict W, elman_int K,
                            elman_int N, int transpose);
    void (*pack_panels_f64)(double *restrict Wp, const double *restrict W, elman_int K,
                            elman_int N, int transpose);
    void (*step_packed_f32)(float *restrict C, const float *restrict A,
                            const float *restrict Wp, const float *restrict Y, elman_int B,
                            elman_int H, int nonlinearity, int backward);
    void (*step_packed_f64)(double *restrict C, const double *restrict A,
                            const double *restrict Wp, const double *restrict Y, elman_int B,
                            elman_int H, int nonlinearity, int backward);
} elman_gemm_small_loops;

/* probe.c: Adagrad's memory traffic (read p, g, s; write p, s) with no arithmetic to speak
 * of, the bandwidth the benchmarks compare Adagrad with */
typedef struct {
    void (*stream_f32)(float *restrict p, float *restrict s, const float *restrict g,
                       elman_int n);
    void (*stream_f64)(double *restrict p, double *restrict s, const double *restrict g,
                       elman_int n);
    /* the FMA peak probe's loop on this thread: adds its FLOPs to *flops, returns a sink */
    double (*fma_f32)(elman_int iters, double *flops);
    double (*fma_f64)(elman_int iters, double *flops);
} elman_probe_loops;

/* dispatch.c: 1 when the CPU has AMX-BF16 and the OS lets this process use the tiles (on
 * Linux asked of it once, on the first call). */
int elman_amx_permitted(void);

/* bf16.c: the workspace of the bfloat16 products (carved by elman_bf16_carve), and the
 * loops. kernels: the best kernel this path holds (ELMAN_BF16_EMULATED, _VDPBF16PS or _AMX,
 * elman.h), used up to what the CPU has. */
typedef struct elman_bf16_work {
    uint32_t *bblock;  /* (KC/2, NC) a packed block of B */
    uint32_t *ablocks; /* MAX_THREADS x (MC, KC/2) packed blocks of A, one per thread */
    uint32_t *wpack;   /* (wkp, H) the step's packed weight */
    uint32_t *stepa;   /* (B, H/2) the step's packed input rows */
    elman_int B, H;
    elman_int wkp;     /* k-pairs a panel of the packed weight holds: (H+1)/2, rounded up to
                          the AMX tile's 16 for that kernel */
    int kernel;        /* ELMAN_BF16_*: the kernel of every product on this workspace */
} elman_bf16_work;

/* k-pairs a packed panel of B holds for k rows of K: (k+1)/2, rounded up to the AMX
 * tile's 16 for that kernel (the step's weight: k = H; a GEMM's block: its rows of K). */
static inline elman_int elman_bf16_panel_pairs(int kernel, elman_int k)
{
    const elman_int kp = (k + 1) / 2;
    return kernel == ELMAN_BF16_AMX ? (kp + 15) / 16 * 16 : kp;
}

typedef struct {
    int kernels;
    void (*gemm)(const elman_bf16_work *w, int trans_a, int trans_b, elman_int M, elman_int N,
                 elman_int K, const float *A, elman_int lda, const float *B, elman_int ldb,
                 int accumulate, float *C, elman_int ldc);
    void (*pack_b)(uint32_t *restrict dst, const float *restrict B, elman_int ldb, int trans,
                   elman_int k0, elman_int kc, elman_int n0, elman_int nc, elman_int kpad);
    void (*step)(const elman_bf16_work *w, float *C, const float *A, const float *Y,
                 elman_int B, int nonlinearity, int backward);
    double (*peak)(elman_int iters, double *flops); /* NULL without the native kernel */
    double (*peak_amx)(elman_int iters, double *flops); /* NULL without the AMX kernel */
} elman_bf16_loops;

/* bf16.c's checked entry points, for rnn.c and model.c: the workspace's size in 32-bit
 * words for batch B and hidden size H, and its parts; C (M, N) = [C +] bf16(op(A)) @
 * bf16(op(B)); the step's weight (H, H), or its transpose, packed; one step of the
 * recurrence on that weight, C (B, H) = f(C + bf16(A) @ W) or (C + bf16(A) @ W) * f'(Y). */
elman_int elman_bf16_work_words(elman_int B, elman_int H);
int elman_bf16_carve(elman_bf16_work *w, void *base, elman_int B, elman_int H);
int elman_bf16_gemm(const elman_bf16_work *w, int trans_a, int trans_b, elman_int M,
                    elman_int N, elman_int K, const float *A, elman_int lda, const float *B,
                    elman_int ldb, int accumulate, float *C, elman_int ldc);
int elman_bf16_pack_weight(const elman_bf16_work *w, const float *W, int transpose);
int elman_bf16_step(const elman_bf16_work *w, float *C, const float *A, const float *Y,
                    elman_int B, int nonlinearity, int backward);

/* A product in a model's compute dtype (blas.c): elman_gemm with alpha = 1 when bf is
 * NULL, else elman_bf16_gemm (float32 only). The layer and head kernels with their
 * products so (rnn.c, linear.c): the public entry points are these with bf = NULL. */
int elman_mm_f32(const elman_bf16_work *bf, int trans_a, int trans_b, elman_int M, elman_int N,
                 elman_int K, const float *A, elman_int lda, const float *B, elman_int ldb,
                 float beta, float *C, elman_int ldc);
int elman_mm_f64(const elman_bf16_work *bf, int trans_a, int trans_b, elman_int M, elman_int N,
                 elman_int K, const double *A, elman_int lda, const double *B, elman_int ldb,
                 double beta, double *C, elman_int ldc);
#define ELMAN_MM_DECLARE(R, sfx)                                                              \
    int elman_rnn_forward_mm_##sfx(R *hs, const R *x, const elman_int *ids, const R *W_xh,   \
                                   const R *W_hh, const R *b_h, const elman_rnn_shape *s,    \
                                   const elman_bf16_work *bf, R *wpack);                     \
    int elman_rnn_backward_mm_##sfx(R *dW_xh, R *dW_hh, R *db_h, R *dh0, R *dx, R *dA,        \
                                    const R *dH, const R *dh_T, const R *hs, const R *x,     \
                                    const elman_int *ids, const R *W_xh, const R *W_hh,      \
                                    const elman_rnn_shape *s, const elman_bf16_work *bf);    \
    int elman_linear_forward_mm_##sfx(R *Y, const R *X, const R *W, const R *b, elman_int N, \
                                      elman_int K, elman_int O, const elman_bf16_work *bf);  \
    int elman_linear_backward_mm_##sfx(R *dW, R *db, R *dX, const R *dY, const R *X,         \
                                       const R *W, elman_int N, elman_int K, elman_int O,    \
                                       const elman_bf16_work *bf)
ELMAN_MM_DECLARE(float, f32);
ELMAN_MM_DECLARE(double, f64);
#undef ELMAN_MM_DECLARE

/* dst (rows, cols) = src^T for src (cols, rows), both row-major, in square tiles (rnn.c;
 * stack.c turns torch's weights and gradients with it) */
void elman_transpose_f32(float *restrict dst, const float *restrict src, elman_int rows,
                         elman_int cols);
void elman_transpose_f64(double *restrict dst, const double *restrict src, elman_int rows,
                         elman_int cols);

/* Each operation's registered paths (dispatch.c), indexed by elman_isa(). */
#define ELMAN_DECLARE_PATHS(op)                                                            \
    extern const elman_##op##_loops elman_##op##_generic, elman_##op##_avx2,                \
        elman_##op##_avx512;                                                                \
    extern const elman_##op##_loops *const elman_##op##_paths[ELMAN_NUM_ISAS]
ELMAN_DECLARE_PATHS(adagrad);
ELMAN_DECLARE_PATHS(proximal);
ELMAN_DECLARE_PATHS(rowwise);
ELMAN_DECLARE_PATHS(sgd);
ELMAN_DECLARE_PATHS(norm);
ELMAN_DECLARE_PATHS(act);
ELMAN_DECLARE_PATHS(softmax);
ELMAN_DECLARE_PATHS(gemm_small);
ELMAN_DECLARE_PATHS(probe);
ELMAN_DECLARE_PATHS(bf16);

/* In a per-instruction-set copy: the name of this path's registration of op, and its
 * definition. */
#define ELMAN_PATH_CAT_(a, b) a##b
#define ELMAN_PATH_CAT(a, b) ELMAN_PATH_CAT_(a, b)
#define ELMAN_THIS_PATH(op) ELMAN_PATH_CAT(elman_##op##_, ELMAN_ISA)
#define ELMAN_REGISTER(op) const elman_##op##_loops ELMAN_THIS_PATH(op)

#endif /* ELMAN_LOOPS_H */
