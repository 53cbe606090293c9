/* elman: C kernels for Elman recurrent networks and their optimizers.
 *
 * The one public header. Every kernel exists for float (suffix _f32) and double (_f64);
 * each operation's file in csrc/ writes its code once and instantiates it for both
 * (csrc/typed.h), and names the file at each group below.
 *
 * Size letters used everywhere:
 *   T steps, B batch, I input features (the vocabulary size for token-id inputs),
 *   H hidden units, O outputs, N rows of a projection (T*B, or B for the last step only),
 *   n elements of a flat buffer.
 * Arrays are row-major and time-major: x is (T, B, I), hidden states (T+1, B, H).
 *
 * Conventions:
 *   - Arguments come in the order outputs, inputs, parameters, sizes/options; the one
 *     exception, the optimizer updates, take (param, grad, state), the order of PyTorch's
 *     optimizers and of every layer of elman above this header.
 *   - Every kernel returns an elman_status; none prints, exits or allocates from the heap.
 *   - Backward kernels overwrite their gradient outputs (they never accumulate).
 *   - Buffers do not overlap unless a kernel's comment says an output may equal an input.
 *   - Sizes are 64-bit. Products of sizes are checked for overflow; dimensions handed to
 *     the BLAS must also fit its 32-bit int (ELMAN_ERR_TOO_LARGE otherwise).
 */
#ifndef ELMAN_H
#define ELMAN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int64_t elman_int;

typedef enum {
    ELMAN_OK = 0,
    ELMAN_ERR_ARG = 1,        /* a size is negative, a pointer is missing, an option is invalid */
    ELMAN_ERR_NONFINITE = 2,  /* a NaN or infinity reached a result (loss, gradient) */
    ELMAN_ERR_TARGET = 3,     /* a class target or token id lies outside [0, K) */
    ELMAN_ERR_TOO_LARGE = 4,  /* a size product overflows, or a BLAS dimension exceeds INT_MAX */
    ELMAN_ERR_NO_BLAS = 5,    /* elman_set_blas has not been given a GEMM */
    ELMAN_ERR_CPU = 6         /* the kernel path asked for is not one this CPU runs */
} elman_status;

/* A short English description of a status code; never NULL. */
const char *elman_status_string(int status);

/* ---------------------------------------------------------------------------------------
 * BLAS shim (blas.c). GEMM comes from the host (SciPy's BLAS through
 * scipy.linalg.cython_blas), handed over once at import; nothing is linked at build time.
 * The pointers have the Fortran BLAS signature (column-major, every argument by pointer).
 */
typedef void (*elman_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                               float *alpha, float *a, int *lda, float *b, int *ldb,
                               float *beta, float *c, int *ldc);
typedef void (*elman_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                               double *alpha, double *a, int *lda, double *b, int *ldb,
                               double *beta, double *c, int *ldc);

void elman_set_blas(elman_sgemm_fn sgemm, elman_dgemm_fn dgemm);
int elman_has_blas(void);

/* Row-major C (M, N) = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T by trans_*.
 * lda, ldb, ldc are row strides of the matrices as stored. Empty products (M, N or K = 0)
 * are handled here: C is scaled by beta (set to zero when beta == 0). */
int elman_gemm_f32(int trans_a, int trans_b, elman_int M, elman_int N, elman_int K,
                   float alpha, const float *A, elman_int lda, const float *B, elman_int ldb,
                   float beta, float *C, elman_int ldc);
int elman_gemm_f64(int trans_a, int trans_b, elman_int M, elman_int N, elman_int K,
                   double alpha, const double *A, elman_int lda, const double *B, elman_int ldb,
                   double beta, double *C, elman_int ldc);

/* C (M, N) += A (M, K) @ W (K, N), all row-major and dense, on elman's register-blocked
 * kernel (gemm_small.c): the per-step product of the recurrence, exposed for benchmarks and for
 * callers with small products. C must not overlap A or W. */
int elman_step_gemm_f32(float *C, const float *A, const float *W, elman_int M, elman_int K,
                        elman_int N);
int elman_step_gemm_f64(double *C, const double *A, const double *W, elman_int M, elman_int K,
                        elman_int N);

/* ---------------------------------------------------------------------------------------
 * Optimizers (adagrad.c, proximal_adagrad.c, rowwise_adagrad.c, sgd.c; norm.c for the
 * squared norm; probe.c): one pass over a flat buffer of n elements, in place.
 *
 * Adagrad, PyTorch's semantics, in this order:
 *   g  = grad * grad_scale                 global-norm clipping folded in (1 for none)
 *   g  = clip(g, -clip_value, clip_value)  INFINITY for none
 *   g  = -g if maximize
 *   g  = g + weight_decay * theta
 *   clr = lr / (1 + (step - 1) * lr_decay)  step counts updates, 1 on the first
 *   S += g * g
 *   theta -= clr * g / (sqrt(S) + eps)     eps_inside = 0 (PyTorch)
 *   theta -= clr * g / sqrt(S + eps)       eps_inside = 1 (Keras 3, optax, min-char-rnn)
 * Returns ELMAN_ERR_NONFINITE when grad held a NaN or infinity or an updated parameter is
 * not finite; the update has then been applied all the same (the check is fused into the
 * one pass, not a sweep before it).
 */
typedef struct {
    double lr, lr_decay, weight_decay, eps;
    double clip_value;  /* > 0; INFINITY for no clipping by value */
    double grad_scale;  /* multiplies the raw gradient; 1 for none */
    int64_t step;       /* >= 1 */
    int eps_inside;
    int maximize;
} elman_adagrad_opts;

int elman_adagrad_update_f32(float *param, const float *grad, float *state, elman_int n,
                             const elman_adagrad_opts *opts);
int elman_adagrad_update_f64(double *param, const double *grad, double *state, elman_int n,
                             const elman_adagrad_opts *opts);

/* Adagrad over count buffers at once (a framework's list of parameter tensors), with one
 * set of options: buffer i is params[i], grads[i], states[i], each ns[i] elements. Large
 * buffers are split among the threads one after another; small ones are shared among the
 * threads a buffer at a time. ELMAN_ERR_NONFINITE as above, for any buffer (all updated). */
int elman_adagrad_update_many_f32(float *const *params, const float *const *grads,
                                  float *const *states, const elman_int *ns,
                                  elman_int count, const elman_adagrad_opts *opts);
int elman_adagrad_update_many_f64(double *const *params, const double *const *grads,
                                  double *const *states, const elman_int *ns,
                                  elman_int count, const elman_adagrad_opts *opts);

/* Adagrad on some rows of a (V, H) matrix only (the input weights of a token-id model): the
 * rows named by ids (m of them, repeats allowed, each row updated once) get exactly the
 * update elman_adagrad_update gives them; other rows and their state are not touched. With
 * weight_decay 0 that equals the dense update, since an unused row's gradient is zero.
 * mask: V bytes of workspace, all zero on entry, left all zero. */
int elman_adagrad_rows_update_f32(float *param, const float *grad, float *state,
                                  const elman_int *ids, elman_int m, elman_int V, elman_int H,
                                  unsigned char *mask, const elman_adagrad_opts *opts);
int elman_adagrad_rows_update_f64(double *param, const double *grad, double *state,
                                  const elman_int *ids, elman_int m, elman_int V, elman_int H,
                                  unsigned char *mask, const elman_adagrad_opts *opts);

/* Proximal Adagrad, TensorFlow's ApplyProximalAdagrad (FOBOS with Adagrad's step):
 *   g = grad * grad_scale;  S += g * g
 *   v = theta - lr * g * (1 / sqrt(S))
 *   theta = sign(v) / (1 + lr * l2) * max(|v| - lr * l1, 0)      (l1 gives exact zeros)
 * S must start positive (TensorFlow: 0.1). ELMAN_ERR_NONFINITE as for Adagrad. */
typedef struct {
    double lr, l1, l2;
    double grad_scale;  /* 1 for none */
} elman_proximal_opts;

int elman_proximal_adagrad_update_f32(float *param, const float *grad, float *state,
                                      elman_int n, const elman_proximal_opts *opts);
int elman_proximal_adagrad_update_f64(double *param, const double *grad, double *state,
                                      elman_int n, const elman_proximal_opts *opts);

/* Row-wise Adagrad (FBGEMM's rowwise_adagrad): one accumulator per row of a (rows, cols)
 * matrix, cols times less optimizer state:
 *   g = grad * grad_scale;  S_r += mean_j g_rj^2;  theta_rj -= lr * g_rj / (sqrt(S_r) + eps)
 * state holds rows values. ELMAN_ERR_NONFINITE as for Adagrad. */
typedef struct {
    double lr, eps;
    double grad_scale;  /* 1 for none */
} elman_rowwise_opts;

int elman_rowwise_adagrad_update_f32(float *param, const float *grad, float *state,
                                     elman_int rows, elman_int cols,
                                     const elman_rowwise_opts *opts);
int elman_rowwise_adagrad_update_f64(double *param, const double *grad, double *state,
                                     elman_int rows, elman_int cols,
                                     const elman_rowwise_opts *opts);

/* SGD with optional momentum (PyTorch's, dampening 0, not Nesterov), with Adagrad's
 * ELMAN_ERR_NONFINITE contract:
 *   g = clip(grad * grad_scale, +-clip_value); g = -g if maximize; g += weight_decay * theta
 *   buf = momentum * buf + g               (buf starts at zero; skipped when momentum == 0)
 *   theta -= lr * buf                      (theta -= lr * g without momentum)
 * momentum_buf may be NULL only when momentum == 0. */
typedef struct {
    double lr, momentum, weight_decay;
    double clip_value;  /* > 0; INFINITY for none */
    double grad_scale;
    int maximize;
} elman_sgd_opts;

int elman_sgd_update_f32(float *param, const float *grad, float *momentum_buf, elman_int n,
                         const elman_sgd_opts *opts);
int elman_sgd_update_f64(double *param, const double *grad, double *momentum_buf, elman_int n,
                         const elman_sgd_opts *opts);

/* The bandwidth probe of the benchmarks: Adagrad's memory traffic (read p, s, g; write p, s)
 * with no arithmetic to speak of: s += g, p -= g. Same threads and vector path as Adagrad. */
int elman_stream_probe_f32(float *p, float *s, const float *g, elman_int n);
int elman_stream_probe_f64(double *p, double *s, const double *g, elman_int n);

/* The FMA peak probe of the benchmarks: on every thread elman's kernels use, iters rounds
 * of independent vector multiply-adds on registers (no memory traffic). Writes the FLOPs
 * done (2 per lane per multiply-add) to *flops and a sum of the results to *sink (keep it:
 * it is what makes the work observable). The caller times the call. */
int elman_fma_probe_f32(elman_int iters, double *flops, double *sink);
int elman_fma_probe_f64(elman_int iters, double *flops, double *sink);

/* Input checks, for bindings that validate before calling the kernels: 1 when every
 * element of x (n) is finite (NaN and +-inf are not); the smallest and largest id. */
int elman_all_finite_f32(const float *x, elman_int n);
int elman_all_finite_f64(const double *x, elman_int n);
int elman_index_range(elman_int *lo, elman_int *hi, const elman_int *x, elman_int n);

/* *out = sum(x * x), accumulated in double (the square of the L2 norm). */
int elman_sumsq_f32(double *out, const float *x, elman_int n);
int elman_sumsq_f64(double *out, const double *x, elman_int n);

/* ---------------------------------------------------------------------------------------
 * Activations (act.c), elementwise over n, in place allowed (y == a).
 */
typedef enum elman_nonlinearity { ELMAN_TANH = 0, ELMAN_RELU = 1 } elman_nonlinearity;

/* y = f(a) */
int elman_act_forward_f32(float *y, const float *a, elman_int n, int nonlinearity);
int elman_act_forward_f64(double *y, const double *a, elman_int n, int nonlinearity);
/* dA = dH * f'(A), written through the output y = f(A): 1 - y^2 for tanh, y > 0 for relu */
int elman_act_backward_f32(float *dA, const float *dH, const float *y, elman_int n, int nonlinearity);
int elman_act_backward_f64(double *dA, const double *dH, const double *y, elman_int n, int nonlinearity);

/* ---------------------------------------------------------------------------------------
 * Elman layer (rnn.c).
 *
 *   A_t = X_t @ W_xh + H_{t-1} @ W_hh + b_h      W_xh (I, H), W_hh (H, H), b_h (H,)
 *   H_t = f(A_t)                                  f = tanh or relu
 *
 * The input is either dense, x (T, B, I), or token ids, ids (T, B) with 0 <= id < I, whose
 * projection X_t @ W_xh is a row gather of W_xh (never a one-hot product). Exactly one of
 * x and ids is given. The shapes and options (sequence lengths, direction) travel in a
 * struct: zero it, then set what you use.
 */
typedef struct {
    elman_int T, B, I, H;
    int nonlinearity;          /* elman_nonlinearity */
    int reverse;               /* 1: run from step T down to step 1 (the backward direction
                                  of a bidirectional layer) */
    const elman_int *lengths;  /* (B,) or NULL: sequence b has lengths[b] valid steps,
                                  1 <= lengths[b] <= T; the rest is padding */
} elman_rnn_shape;

/* Forward over T steps. hs (T+1, B, H), the initial state and the T outputs:
 *   forward direction: hs[0] = h0 on entry; on return hs[t] = H_t, t = 1..T.
 *   reverse:           hs[T] = h0 on entry; on return hs[t-1] = H_t, computed from
 *                      H_{t+1} (hs[t]), t = T..1. Its final state is hs[0].
 * That is all the backward needs (f' is computed from H_t).
 * With lengths, a padded step leaves the state as it was (H_t = H_{t-1}, or H_{t+1} in
 * reverse), so the forward direction's final state hs[T] is each sequence's H at its own
 * length, and the reverse direction starts each sequence from h0 at its own last step
 * (torch's PackedSequence semantics). */
int elman_rnn_forward_f32(float *hs, const float *x, const elman_int *ids,
                          const float *W_xh, const float *W_hh, const float *b_h,
                          const elman_rnn_shape *shape);
int elman_rnn_forward_f64(double *hs, const double *x, const elman_int *ids,
                          const double *W_xh, const double *W_hh, const double *b_h,
                          const elman_rnn_shape *shape);

/* Backprop through time. Given dH (T, B, H), the gradient of the loss with respect to each
 * H_t from above (outputs or the next layer, not through the recurrence), and optionally
 * dh_T (B, H), an extra gradient on the final state, computes
 *   dA_t  = (dH_t + dA_{t+1} @ W_hh^T) * f'(A_t)      into dA (T, B, H); dA may equal dH
 *   dW_hh = sum_t H_{t-1}^T dA_t    dW_xh = sum_t X_t^T dA_t    db_h = sum_t dA_t
 *   dh0   = dA_1 @ W_hh^T   (if dh0)            dx_t = dA_t @ W_xh^T   (if dx; dense only)
 * (in reverse, t+1 and t-1 trade places and dh0 = dA_T @ W_hh^T). dA, dH and dx are
 * indexed by step, as x. With lengths, dH at padded steps is ignored, dA there is zero, and
 * dh_T reaches each sequence where its final state was computed.
 * All outputs are overwritten. With ids, dW_xh is zeroed and the used rows scatter-added. */
int elman_rnn_backward_f32(float *dW_xh, float *dW_hh, float *db_h, float *dh0, float *dx,
                           float *dA, const float *dH, const float *dh_T, const float *hs,
                           const float *x, const elman_int *ids,
                           const float *W_xh, const float *W_hh,
                           const elman_rnn_shape *shape);
int elman_rnn_backward_f64(double *dW_xh, double *dW_hh, double *db_h, double *dh0, double *dx,
                           double *dA, const double *dH, const double *dh_T, const double *hs,
                           const double *x, const elman_int *ids,
                           const double *W_xh, const double *W_hh,
                           const elman_rnn_shape *shape);

/* The forward pass of the R-operator (Gauss-Newton products): the derivative of every H_t
 * along a direction V = (V_xh, V_hh, v_b) of the parameters (and R{X}, that of the input, when
 * the input depends on the parameters: a layer above the first):
 *   R{A_t} = R{X_t} @ W_xh + X_t @ V_xh + R{H_{t-1}} @ W_hh + H_{t-1} @ V_hh + v_b
 *   R{H_t} = f'(A_t) * R{A_t}            R{h0} = 0
 * into Rhs (T+1, B, H), laid out as hs (R{H_t} where hs holds H_t, zero where it holds h0),
 * from hs of elman_rnn_forward at the same parameters. Rx NULL: R{X} = 0 (and W_xh is not
 * read). With lengths, a padded step carries R{H} as the forward carries H. */
int elman_rnn_rforward_f32(float *Rhs, const float *Rx, const float *hs, const float *x,
                           const elman_int *ids, const float *W_xh, const float *W_hh,
                           const float *V_xh, const float *V_hh, const float *v_b,
                           const elman_rnn_shape *shape);
int elman_rnn_rforward_f64(double *Rhs, const double *Rx, const double *hs, const double *x,
                           const elman_int *ids, const double *W_xh, const double *W_hh,
                           const double *V_xh, const double *V_hh, const double *v_b,
                           const elman_rnn_shape *shape);

/* ---------------------------------------------------------------------------------------
 * A whole torch.nn.RNN stack in one call (stack.c): L layers of D directions (D = 2:
 * bidirectional, the second direction in reverse), torch's layout and dropout:
 *
 *   X_0 = x (T, B, I),   X_l = Y_{l-1} * M_{l-1} (l > 0),   Y_l = [H^(l,0) | H^(l,1)]
 *   H^(l,d)_t = f(X_l,t @ w_ih^T + b_ih + b_hh + H^(l,d)_{t-1} @ w_hh^T)
 *
 * with the weights of layer-direction k = l*D + d given as k-indexed arrays of pointers:
 * w_ih[k] (H, I_l), I_0 = I and I_l = D*H; w_hh[k] (H, H); b_ih[k], b_hh[k] (H,) (both
 * NULL: no biases). M_l (T, B, D*H) are dropout scales (0 or 1/(1-p)) drawn by the caller,
 * or NULL. Lengths as in elman_rnn_shape. elman_stack_sizes gives the element counts of the
 * buffers the forward fills for the backward (the transposed weights, every state, the
 * masked layer inputs) and of the backward's scratch. */
typedef struct {
    elman_int T, B, I, H;
    elman_int L;               /* layers, >= 1 */
    elman_int D;               /* directions, 1 or 2 */
    int nonlinearity;          /* elman_nonlinearity */
    const elman_int *lengths;  /* (B,) or NULL, as in elman_rnn_shape */
} elman_stack_shape;

int elman_stack_sizes(const elman_stack_shape *shape, elman_int *weights, elman_int *states,
                      elman_int *inputs, elman_int *work);

/* Fills wt (weights), hs (L*D, T+1, B, H: each layer-direction's hs as in elman_rnn_forward),
 * ys (L-1, T, B, D*H: the masked inputs of layers 1..L-1; NULL when L = 1), out (T, B, D*H:
 * the top layer's outputs; NULL when D = 1, whose output is hs[L-1, 1:]) and h_n (L*D, B, H:
 * the final states), from x (T, B, I) and h0 (L*D, B, H). */
int elman_stack_forward_f32(float *wt, float *hs, float *ys, float *out, float *h_n,
                            const float *x, const float *h0, const float *const *w_ih,
                            const float *const *w_hh, const float *const *b_ih,
                            const float *const *b_hh, const float *masks,
                            const elman_stack_shape *shape);
int elman_stack_forward_f64(double *wt, double *hs, double *ys, double *out, double *h_n,
                            const double *x, const double *h0, const double *const *w_ih,
                            const double *const *w_hh, const double *const *b_ih,
                            const double *const *b_hh, const double *masks,
                            const elman_stack_shape *shape);

/* The gradients of a stack from d_out (T, B, D*H: on the top layer's outputs, or NULL) and
 * dh_n (L*D, B, H: on the final states, or NULL), given the forward's wt, hs and ys and the
 * same x and masks: dw_ih[k] (H, I_l), dw_hh[k] (H, H), db (L*D, H: the gradient of b_ih[k],
 * which is also b_hh[k]'s), dh0 (L*D, B, H) and, when not NULL, dx (T, B, I). work
 * (elman_stack_sizes) is scratch. All outputs are overwritten. */
int elman_stack_backward_f32(float *const *dw_ih, float *const *dw_hh, float *db, float *dh0,
                             float *dx, float *work, const float *d_out, const float *dh_n,
                             const float *wt, const float *hs, const float *ys, const float *x,
                             const float *masks, const elman_stack_shape *shape);
int elman_stack_backward_f64(double *const *dw_ih, double *const *dw_hh, double *db,
                             double *dh0, double *dx, double *work, const double *d_out,
                             const double *dh_n, const double *wt, const double *hs,
                             const double *ys, const double *x, const double *masks,
                             const elman_stack_shape *shape);

/* ---------------------------------------------------------------------------------------
 * Affine projection (linear.c): Y (N, O) = X (N, K) @ W (K, O) + b (O,), one GEMM over
 * all rows. b may be NULL (no bias). Backward overwrites dW = X^T dY, db = sum_rows dY (if db),
 * dX = dY @ W^T (if dX). */
int elman_linear_forward_f32(float *Y, const float *X, const float *W, const float *b,
                             elman_int N, elman_int K, elman_int O);
int elman_linear_forward_f64(double *Y, const double *X, const double *W, const double *b,
                             elman_int N, elman_int K, elman_int O);
int elman_linear_backward_f32(float *dW, float *db, float *dX, const float *dY,
                              const float *X, const float *W, elman_int N, elman_int K, elman_int O);
int elman_linear_backward_f64(double *dW, double *db, double *dX, const double *dY,
                              const double *X, const double *W, elman_int N, elman_int K, elman_int O);

/* ---------------------------------------------------------------------------------------
 * Losses fused with their gradient (softmax_xent.c, mse.c). scale is 1 for reduction "sum" and
 * 1 / count for "mean". The loss is accumulated in double.
 *
 * Softmax cross-entropy over N rows of O logits with integer targets (N,):
 *   loss = scale * sum_r (logsumexp(z_r) - z_r[y_r])
 *   dz_r = scale * (softmax(z_r) - onehot(y_r))          (if dlogits; may equal logits)
 * All targets are checked before anything is written (ELMAN_ERR_TARGET).
 *
 * Mean squared error over n values:
 *   loss = scale * sum (p - q)^2,   dp = 2 * scale * (p - q)   (if dpred; may equal pred)
 *
 * Both return ELMAN_ERR_NONFINITE, after writing, when the loss is not finite. */
int elman_softmax_xent_f32(double *loss, float *dlogits, const float *logits,
                           const elman_int *targets, elman_int N, elman_int O, double scale);
int elman_softmax_xent_f64(double *loss, double *dlogits, const double *logits,
                           const elman_int *targets, elman_int N, elman_int O, double scale);
int elman_mse_f32(double *loss, float *dpred, const float *pred, const float *target,
                  elman_int n, double scale);
int elman_mse_f64(double *loss, double *dpred, const double *pred, const double *target,
                  elman_int n, double scale);

/* ---------------------------------------------------------------------------------------
 * A whole model step (model.c): stacked Elman layers + output projection + loss + BPTT, one
 * call.
 *
 * L = num_layers layers of D = 2 (bidirectional) or 1 directions. Layer 0 reads the input
 * (I features or ids); layer l > 0 reads the D*H outputs of layer l-1 (the directions'
 * outputs concatenated, forward first, as torch), through dropout when training. The output
 * projection reads the last layer's D*H outputs.
 *
 * Parameters live in one flat buffer, in this order (the layout the Python views share):
 *   for l in 0..L-1, for d in 0..D-1:  W_xh (I_l, H) | W_hh (H, H) | b_h (H,)
 *   then                                W_hy (D*H, O) | b_y (O,)
 * with I_0 = I and I_l = D*H; one layer, one direction is W_xh | W_hh | b_h | W_hy | b_y.
 * The gradients are a flat buffer of the same layout.
 *
 * States: hs holds (L*D, T+1, B, H), one elman_rnn_forward slab per layer and direction
 * (index l*D + d), each with its h0 and outputs where elman_rnn_forward puts them; dA holds
 * (L*D, T, B, H); initial and final states, dh0 and dh_T are (L*D, B, H), as torch's h_n.
 *
 * Dropout (probability p, between layers, when training: forward_backward and train_step;
 * never in elman_model_forward): element e = (t * Bg + offset + b) * D*H + j of layer l's
 * output (step t, lane b, feature j; Bg = dropout_batch or B, offset = dropout_offset) is
 * kept, and scaled by 1/(1-p), when u >= p, u = (mix64(seed + ((l << 48) | e) *
 * 0x9E3779B97F4A7C15) >> 11) * 2^-53, mix64 the splitmix64 output function. The same seed
 * gives the same masks, and processes that each hold some lanes of one batch (offset, Bg)
 * draw the masks one process holding all of it would.
 *
 * Lengths (shape.rnn.lengths): padded steps give no loss, no gradient, and no output (their
 * rows of Y are zero); "mean" averages over the valid steps; with last_step_only the output
 * of step lengths[b] is the one scored.
 */
typedef enum elman_loss { ELMAN_LOSS_XENT = 0, ELMAN_LOSS_MSE = 1 } elman_loss;
typedef enum elman_reduction { ELMAN_REDUCE_MEAN = 0, ELMAN_REDUCE_SUM = 1 } elman_reduction;
/* The compute dtype (elman_model_forward, _forward_backward and _train_step, float32
 * only; the other model calls refuse bfloat16 with ELMAN_ERR_ARG). With bfloat16 every
 * matrix product's operands are rounded to bfloat16 (to nearest, ties to even) and the
 * products accumulated in float32 (AMX tiles or vdpbf16ps where the CPU has them, an
 * emulation elsewhere: elman_bf16_kernel, bf16.c); parameters, states, gradients, the loss and the update stay float32.
 * The workspace then also holds the products' packed operands (elman_model_work_bytes). */
typedef enum elman_compute { ELMAN_COMPUTE_FLOAT32 = 0, ELMAN_COMPUTE_BFLOAT16 = 1 } elman_compute;

typedef struct {
    elman_rnn_shape rnn;  /* T, B, I, H, nonlinearity, lengths (reverse is ignored) */
    elman_int O;
    int loss;             /* ELMAN_LOSS_* */
    int reduction;        /* ELMAN_REDUCE_* */
    int last_step_only;   /* loss on the final step only (sequence classification) */
    elman_int num_layers; /* L >= 1 (0 is read as 1) */
    int bidirectional;    /* 0 or 1 */
    double dropout;       /* p in [0, 1) */
    uint64_t dropout_seed;
    elman_int dropout_batch;  /* 0, or the lanes of a batch this call holds part of */
    elman_int dropout_offset; /* the first of them this call holds (data parallelism) */
    int compute;          /* ELMAN_COMPUTE_*: the dtype the products run in */
} elman_model_shape;

/* Number of parameters of the layout above, or -1 when it overflows. */
elman_int elman_model_num_params(const elman_model_shape *shape);

/* Bytes of the workspace `work` the model kernels need for this shape (for real_bytes =
 * sizeof(float) or sizeof(double)): the concatenated or dropped-out layer inputs, their
 * gradients and the gathered rows of a variable-length loss. 0 for one unidirectional
 * layer without lengths, when work may be NULL. -1 when the size overflows. work must be
 * aligned to 8 bytes. */
elman_int elman_model_work_bytes(const elman_model_shape *shape, int real_bytes);

/* Every buffer size of a model call, in elements (work in bytes), for bindings to allocate
 * and check from instead of computing the layout again. */
typedef struct {
    elman_int params;     /* the flat parameter (and gradient) buffer */
    elman_int hs;         /* (L*D, T+1, B, H) */
    elman_int Y;          /* (N, O), N = B if last_step_only else T*B */
    elman_int dA;         /* (L*D, T, B, H) */
    elman_int states;     /* (L*D, B, H): h0, h_n, dh0, dh_T */
    elman_int work_bytes; /* elman_model_work_bytes for real_bytes */
} elman_model_sizes;

int elman_model_buffer_sizes(elman_model_sizes *out, const elman_model_shape *shape,
                             int real_bytes);

/* Offset in the flat buffer of W_xh of layer l, direction d (0 <= l < L, 0 <= d < D), or
 * of W_hy for l = L (d = 0); -1 for an index outside those or a shape that overflows. */
elman_int elman_model_param_offset(const elman_model_shape *shape, elman_int l, elman_int d);

/* Y (T, B, O) = outputs of every step; hs (L*D, T+1, B, H) as above. */
int elman_model_forward_f32(float *Y, float *hs, void *work, const float *x,
                            const elman_int *ids, const float *params,
                            const elman_model_shape *shape);
int elman_model_forward_f64(double *Y, double *hs, void *work, const double *x,
                            const elman_int *ids, const double *params,
                            const elman_model_shape *shape);

/* Forward, loss and full BPTT. Outputs: *loss, grads (overwritten, flat layout), dh0
 * (L*D, B, H) or NULL. Workspace: hs (L*D, T+1, B, H) with the initial states in place (and
 * the final ones on return), Y (N, O) with N = B if last_step_only else T*B, dA
 * (L*D, T, B, H), work (elman_model_work_bytes).
 * Targets: y_ids (N,) class ids for cross-entropy, y_values (N, O) for MSE (padded steps'
 * targets are not read).
 * dh_T (L*D, B, H) or NULL: a gradient arriving on the final states from outside (a model
 * chained after this one), added to the loss's. */
int elman_model_forward_backward_f32(double *loss, float *grads, float *dh0,
                                     float *hs, float *Y, float *dA, void *work,
                                     const float *x, const elman_int *ids,
                                     const elman_int *y_ids, const float *y_values,
                                     const float *dh_T, const float *params,
                                     const elman_model_shape *shape);
int elman_model_forward_backward_f64(double *loss, double *grads, double *dh0,
                                     double *hs, double *Y, double *dA, void *work,
                                     const double *x, const elman_int *ids,
                                     const elman_int *y_ids, const double *y_values,
                                     const double *dh_T, const double *params,
                                     const elman_model_shape *shape);

/* Gauss-Newton products for second-order training (Hessian-free optimization):
 *   Gv = J^T H_L J v + lambda v + lambda mu c J_H^T J_H v
 * J the Jacobian of the scored outputs (logits, or the MSE predictions) with respect to the
 * flat parameters; H_L the Hessian of forward_backward's loss with respect to them, scaled as
 * its reduction scales the loss (per row diag(p) - p p^T for softmax cross-entropy, p the
 * softmax; 2 I for MSE); lambda = damping; mu = structural_damping; J_H the Jacobian of the
 * hidden states of every layer and direction at the valid steps (the Gauss-Newton matrix of
 * 1/2 sum |H_t(theta + v) - H_t(theta)|^2), c = 1 / (valid steps: T*B or sum of lengths) for
 * "mean" and 1 for "sum". Dropout, if the shape has it, uses its seed's masks throughout.
 *
 * The prepare runs the forward at the parameters into hs (h0 in place) and work, and writes
 * P (N, O): the softmax of each scored row (cross-entropy) or the predictions (MSE); each
 * product then reuses hs, work and P (not modified by it) and needs its own workspace: Rhs
 * (as hs), RY (N, O), dA (L*D, T, B, H) and Rwork (elman_model_work_bytes). Gv may not be v.
 * ELMAN_ERR_NONFINITE from the prepare when an output is NaN or infinite. */
int elman_model_gauss_newton_prepare_f32(float *P, float *hs, void *work, const float *x,
                                         const elman_int *ids, const float *params,
                                         const elman_model_shape *shape);
int elman_model_gauss_newton_prepare_f64(double *P, double *hs, void *work, const double *x,
                                         const elman_int *ids, const double *params,
                                         const elman_model_shape *shape);
int elman_model_gauss_newton_product_f32(float *Gv, float *Rhs, float *RY, float *dA,
                                         void *Rwork, float *hs, void *work, const float *P,
                                         const float *v, const float *x, const elman_int *ids,
                                         const float *params, const elman_model_shape *shape,
                                         double damping, double structural_damping);
int elman_model_gauss_newton_product_f64(double *Gv, double *Rhs, double *RY, double *dA,
                                         void *Rwork, double *hs, void *work, const double *P,
                                         const double *v, const double *x,
                                         const elman_int *ids, const double *params,
                                         const elman_model_shape *shape, double damping,
                                         double structural_damping);

/* A whole training step in one call: elman_model_forward_backward, then (optionally) the
 * global gradient norm, then the optimizer's update, with nothing in between. The update
 * is the one elman_adagrad_update / elman_sgd_update make with grad_scale replaced by the
 * clipping coefficient min(1, max_grad_norm / (||grads|| + 1e-6)) (PyTorch's
 * clip_grad_norm_). The caller counts steps (adagrad.step is this update's). */
typedef enum elman_optimizer_kind { ELMAN_OPT_ADAGRAD = 0, ELMAN_OPT_SGD = 1 } elman_optimizer_kind;
typedef struct {
    int kind;                     /* ELMAN_OPT_* */
    elman_adagrad_opts adagrad;   /* for ELMAN_OPT_ADAGRAD (grad_scale is ignored) */
    elman_sgd_opts sgd;           /* for ELMAN_OPT_SGD (grad_scale is ignored) */
    double max_grad_norm;         /* > 0; INFINITY for no clipping */
} elman_optimizer;

/* *loss and *grad_norm (NAN when not computed) out; state is the Adagrad accumulator or
 * the SGD momentum buffer (n params; NULL for SGD without momentum). Returns
 * ELMAN_ERR_NONFINITE when the loss is not finite (nothing updated; grads not written),
 * when the gradient norm is not (nothing updated), or when the update made a parameter
 * non-finite (update applied). */
int elman_model_train_step_f32(double *loss, double *grad_norm, float *params, float *grads,
                               float *state, float *hs, float *Y, float *dA, void *work,
                               const float *x,
                               const elman_int *ids, const elman_int *y_ids,
                               const float *y_values, const elman_model_shape *shape,
                               const elman_optimizer *opt);
int elman_model_train_step_f64(double *loss, double *grad_norm, double *params, double *grads,
                               double *state, double *hs, double *Y, double *dA,
                               void *work, const double *x, const elman_int *ids, const elman_int *y_ids,
                               const double *y_values, const elman_model_shape *shape,
                               const elman_optimizer *opt);

/* Generation (sample.c), one token at a time, for a unidirectional model whose outputs
 * are its input ids (O <= I), in B independent streams:
 *   h_0 = f(W_xh[id] + b_h + h_0 @ W_hh);  h_l = f(h_{l-1} @ W_xh_l + b_h_l + h_l @ W_hh_l)
 *   z = h_{L-1} @ W_hy + b_y;  id ~ softmax(z / temperature)
 * stream b starting from id = first[b] with generator rng[b]; temperature 0 takes the
 * argmax. Writes stream b's n ids to row b of out (B, n), leaves the final states in h
 * (L, B, H) and advances each rng[b] (splitmix64; seed them with any values). Reads only
 * I, H, O, nonlinearity, num_layers and bidirectional (which must be 0) from the shape; no
 * dropout. work holds B * (H + O) values. A stream's ids depend only on its own first id,
 * state and generator, and on B and the path through the products' rounding (rows go
 * through the small GEMM four at a time, whose sums run in another order than one row's). */
int elman_model_sample_f32(elman_int *out, float *h, float *work, uint64_t *rng, elman_int n,
                           elman_int B, const elman_int *first, double temperature,
                           const float *params, const elman_model_shape *shape);
int elman_model_sample_f64(elman_int *out, double *h, double *work, uint64_t *rng, elman_int n,
                           elman_int B, const elman_int *first, double temperature,
                           const double *params, const elman_model_shape *shape);

/* ---------------------------------------------------------------------------------------
 * CPU, kernel paths and threads (dispatch.c); build information (util.c).
 */
enum {
    ELMAN_CPU_SSE2 = 1 << 0,
    ELMAN_CPU_AVX = 1 << 1,
    ELMAN_CPU_AVX2 = 1 << 2,
    ELMAN_CPU_FMA = 1 << 3,
    ELMAN_CPU_AVX512F = 1 << 4,
    ELMAN_CPU_AVX512BF16 = 1 << 5, /* vdpbf16ps: the bfloat16 products' native kernel */
    ELMAN_CPU_AMXBF16 = 1 << 6     /* AMX tiles with bfloat16 products, whose state the OS
                                      saves; the process's permission (Linux:
                                      ARCH_REQ_XCOMP_PERM) is asked on their first use */
};
/* Features the CPU has and the OS saves the registers of (cpuid + xgetbv). */
unsigned elman_cpu_features(void);
/* Kernel paths: the hot loops compiled for one instruction set each, "generic" (the
 * baseline ISA), "avx2" (AVX2 + FMA) and "avx512" (AVX-512F) on x86-64. The best path
 * the CPU runs is used unless one is set. */
const char *elman_kernel_path(void);                    /* the path in use */
const char *elman_kernel_paths(void);                   /* those built, space-separated */
int elman_kernel_path_supported(const char *name);      /* built and runnable here: 1/0 */
/* Use the named path ("auto" or NULL: the best). ELMAN_ERR_ARG for a name not built,
 * ELMAN_ERR_CPU for one this CPU cannot run. */
int elman_set_kernel_path(const char *name);
/* The kernels of the bfloat16 products (ELMAN_COMPUTE_BFLOAT16), slowest first: float
 * arithmetic on the rounded operands (any CPU), vdpbf16ps (AVX512_BF16: 2 products a
 * float lane), AMX tiles (tdpbf16ps: a 16 x 16 tile of C += a 16 x 32 by 32 x 16 product).
 * All give the same sums up to their order; vdpbf16ps and AMX treat denormal inputs and
 * results as zero. */
enum { ELMAN_BF16_EMULATED = 0, ELMAN_BF16_VDPBF16PS = 1, ELMAN_BF16_AMX = 2 };
/* The kernel the bfloat16 products run on now: the best the path in use holds and the CPU
 * runs, at most the one set by elman_set_bf16_kernel. */
int elman_bf16_kernel(void);
/* Use at most this kernel (-1: the best there is). ELMAN_ERR_ARG for another number,
 * ELMAN_ERR_CPU for a kernel this CPU or build lacks. */
int elman_set_bf16_kernel(int kernel);
/* 1 when elman_bf16_kernel() is a native one (vdpbf16ps or AMX), 0 for the emulation. */
int elman_bf16_native(void);
/* The bfloat16 peak probes: on every thread, iters rounds of ELMAN_FMA_CHAINS independent
 * vdpbf16ps (64 FLOPs each), or of four independent tdpbf16ps (16384 FLOPs each); *flops
 * gets the FLOPs done, *sink a value to keep. ELMAN_ERR_CPU where the path in use or the CPU
 * lacks the instruction. */
int elman_bf16_probe(elman_int iters, double *flops, double *sink);
int elman_bf16_amx_probe(elman_int iters, double *flops, double *sink);

/* OpenMP threads (1 when built without OpenMP) for the elementwise kernels above
 * ELMAN_PAR_MIN_ELEMENTS elements, the per-step products above ELMAN_PAR_MIN_FMAS (both in
 * tuning.h) and large GEMMs,
 * which are cut into row slices with one BLAS call per thread (the caller holds the BLAS
 * itself to one thread meanwhile). elman_set_num_threads is omp_set_num_threads: it sets
 * the calling thread's count (OMP_NUM_THREADS sets every thread's). */
int elman_max_threads(void);
void elman_set_num_threads(int n);
/* Compiler and flags the kernels were built with. */
const char *elman_build_info(void);

#ifdef __cplusplus
}
#endif
#endif /* ELMAN_H */
