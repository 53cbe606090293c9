/* The hot loops of every kernel, compiled once per instruction set (vec_isa.c, built as
 * generic, AVX2 and AVX-512 objects) and picked at run time (cpu.c).
 *
 * These are inner loops: their callers have validated every size and pointer, so none of
 * them checks arguments. Buffers marked restrict must not overlap. Private to csrc/.
 */
#ifndef ELMAN_VEC_H
#define ELMAN_VEC_H

#include "internal.h"

/* Below this many elements an elementwise loop runs on one thread: waking a second one
 * costs more than it saves (measured by bench/run.py, see bench/README.md). */
#define ELMAN_OMP_MIN_N 131072
/* The small GEMM shares its rows among threads from this many multiply-adds. */
#define ELMAN_OMP_MIN_FMAS 1048576

#define ELMAN_VEC_FIELDS(REAL, sfx)                                                          \
    /* Adagrad / SGD over n elements; nonzero when grad held a NaN/inf or a result is not  \
     * finite. clip = +inf for none; eps_in/eps_out = (eps, 0) or (0, eps). */               \
    int (*adagrad_##sfx)(REAL *restrict p, REAL *restrict s, const REAL *restrict g,        \
                         elman_int n, REAL clr, REAL scale, REAL clip, REAL wd,             \
                         REAL eps_in, REAL eps_out);                                         \
    /* Proximal Adagrad (TensorFlow's formula); scale multiplies the gradient */            \
    int (*proximal_##sfx)(REAL *restrict p, REAL *restrict s, const REAL *restrict g,       \
                          elman_int n, REAL lr, REAL scale, REAL l1, REAL l2);               \
    /* Row-wise Adagrad over a (rows, cols) matrix, one accumulator per row (FBGEMM) */     \
    int (*rowwise_##sfx)(REAL *restrict p, REAL *restrict s, const REAL *restrict g,        \
                         elman_int rows, elman_int cols, REAL lr, REAL scale, REAL eps);    \
    int (*sgd_##sfx)(REAL *restrict p, REAL *restrict buf, const REAL *restrict g,          \
                     elman_int n, REAL lr, REAL mom, REAL scale, REAL clip, REAL wd);       \
    double (*sumsq_##sfx)(const REAL *x, elman_int n);                                       \
    int (*nonfinite_##sfx)(const REAL *x, elman_int n); /* any NaN or +-inf in x */          \
    /* y = f(a), dA = dH * f'(y); in place allowed */                                        \
    void (*act_forward_##sfx)(REAL *y, const REAL *a, elman_int n, int nonlinearity);       \
    void (*act_backward_##sfx)(REAL *dA, const REAL *dH, const REAL *y, elman_int n,        \
                               int nonlinearity);                                            \
    /* softmax cross-entropy rows (loss.c); nonzero when a target is out of range */        \
    int (*xent_rows_##sfx)(double *total, REAL *d, const REAL *z, const elman_int *targets, \
                           elman_int N, elman_int O, double scale);                         \
    /* d[j] = exp((z[j] - m) * k) for j < n; returns the sum in double. d may equal z. */   \
    double (*exp_shift_##sfx)(REAL *d, const REAL *z, elman_int n, REAL m, REAL k);          \
    /* C (M, N) += A (M, K) @ W (K, N), all row-major and dense: the small-shape GEMM. */    \
    void (*gemm_nn_##sfx)(REAL *restrict C, const REAL *restrict A, const REAL *restrict W, \
                          elman_int M, elman_int K, elman_int N);                            \
    /* One recurrence step, activation fused (rnn.c): forward C = f(C + A @ W) (Y unused);  \
     * backward C = (C + A @ W) * f'(Y). C, A (B, H), W (H, H). */                           \
    void (*step_##sfx)(REAL *restrict C, const REAL *restrict A, const REAL *restrict W,     \
                       const REAL *restrict Y, elman_int B, elman_int H, int nonlinearity,  \
                       int backward);                                                        \
    /* The bandwidth probe: Adagrad's memory traffic (read p, g, s; write p, s), no math.  */ \
    void (*stream_##sfx)(REAL *restrict p, REAL *restrict s, const REAL *restrict g,         \
                         elman_int n);

typedef struct {
    const char *name;
    int fast_gemm; /* gemm_nn is at least as fast as the BLAS for the per-step products */
    ELMAN_VEC_FIELDS(float, f32)
    ELMAN_VEC_FIELDS(double, f64)
} elman_vec_ops;

/* Nonzero in a process forked from one whose OpenMP threads had started (cpu.c): then
 * every kernel runs on the calling thread alone. */
int elman_forked(void);

/* Nonzero where a parallel region may run (cpu.c): OpenMP built in, more than one thread,
 * not inside a region already, not in such a forked child. For the loops outside vec.inc
 * (many tensors at once, dropout masks). */
int elman_can_thread(void);

/* The table in use: the best path this CPU runs, unless elman_set_kernel_path chose one. */
const elman_vec_ops *elman_ops(void);

extern const elman_vec_ops elman_vec_generic;
#ifdef ELMAN_X86_PATHS
extern const elman_vec_ops elman_vec_avx2;
extern const elman_vec_ops elman_vec_avx512;
#endif

#endif /* ELMAN_VEC_H */
