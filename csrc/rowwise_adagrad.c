/* Row-wise Adagrad, FBGEMM's rowwise_adagrad: one accumulator per row of a (rows, cols)
 * matrix, cols times less optimizer state than Adagrad:
 *
 *     g = grad * grad_scale;  S_r += mean_j g_rj^2;  theta_rj -= lr * g_rj / (sqrt(S_r) + eps)
 *
 * Reference twin: elman.reference.rowwise_adagrad_update. The non-finite check is
 * Adagrad's (adagrad.c).
 */
#ifndef ELMAN_TYPED
#include "loops.h"

/* The options the entry point accepts: rate, eps and scale >= 0 (NaN refused). */
static inline int elman_rowwise_opts_ok(const elman_rowwise_opts *o)
{
    return o != NULL && o->lr >= 0 && o->eps >= 0 && o->grad_scale >= 0;
}

#define ELMAN_TYPED_FILE "rowwise_adagrad.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry point, once per REAL ---- */

int TYPED(elman_rowwise_adagrad_update_f32, elman_rowwise_adagrad_update_f64)(
    REAL *param, const REAL *grad, REAL *state, elman_int rows, elman_int cols,
    const elman_rowwise_opts *o)
{
    if (!elman_rowwise_opts_ok(o) || rows < 0 || cols < 0) return ELMAN_ERR_ARG;
    if (elman_mul(rows, cols) < 0) return ELMAN_ERR_TOO_LARGE;
    if (rows == 0 || cols == 0) return ELMAN_OK;
    if (!elman_distinct3(param, state, grad)) return ELMAN_ERR_ARG;
    const elman_rowwise_loops *loops = elman_rowwise_paths[elman_isa()];
    const int bad = loops->TY(rowwise)(param, grad, state, rows, cols, (REAL)o->lr,
                                       (REAL)o->grad_scale, (REAL)o->eps);
    return bad ? ELMAN_ERR_NONFINITE : ELMAN_OK;
}

#else /* ---- the loop, once per REAL and instruction set ---- */

static int TYPED(rowwise_f32, rowwise_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict s, elman_int rows, elman_int cols,
    REAL lr, REAL scale, REAL eps)
{
    REAL chk = 0;
    for (elman_int r = 0; r < rows; r++) {
        const REAL *gr = g + r * cols;
        REAL *pr = p + r * cols;
        double sq = 0; /* the row's mean square, in double */
#pragma omp simd reduction(+:sq)
        for (elman_int j = 0; j < cols; j++) {
            const double x = (double)gr[j] * (double)scale;
            sq += x * x;
        }
        const REAL sr = s[r] + (REAL)(sq / (double)cols);
        s[r] = sr;
        const REAL k = lr * scale / (SQRT(sr) + eps); /* the row's step, g's scale folded in */
#pragma omp simd reduction(+:chk)
        for (elman_int j = 0; j < cols; j++) {
            const REAL pi = pr[j] - k * gr[j];
            pr[j] = pi;
            chk += (gr[j] - gr[j]) + (pi - pi); /* the non-finite check (adagrad.c) */
        }
    }
    return chk != 0;
}

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(rowwise) = {.rowwise_f32 = rowwise_f32, .rowwise_f64 = rowwise_f64};
#endif

#endif
