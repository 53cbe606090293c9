/* The affine output projection, one GEMM over all N rows (blas.c):
 *
 *     Y (N, O) = X (N, K) @ W (K, O) + b        (b may be NULL: no bias)
 *     dW = X^T @ dY,   db = sum_rows dY,   dX = dY @ W^T
 *
 * Reference twins: elman.reference.linear_forward, elman.reference.linear_backward.
 */
#ifndef ELMAN_TYPED
#include "loops.h"

#define ELMAN_TYPED_FILE "linear.c"
#include "typed.h"

#else /* ---- once per REAL ---- */

int TYPED(elman_linear_forward_f32, elman_linear_forward_f64)(
    REAL *Y, const REAL *X, const REAL *W, const REAL *b, elman_int N, elman_int K, elman_int O)
{
    return TY(elman_linear_forward_mm)(Y, X, W, b, N, K, O, NULL);
}

/* The forward with its product in bfloat16 when bf is not NULL (internal.h). */
int TYPED(elman_linear_forward_mm_f32, elman_linear_forward_mm_f64)(
    REAL *Y,       /* (N, O) out */
    const REAL *X, /* (N, K) */
    const REAL *W, /* (K, O) */
    const REAL *b, /* (O,) or NULL */
    elman_int N, elman_int K, elman_int O, const elman_bf16_work *bf)
{
    if (N < 0 || K < 0 || O < 0) return ELMAN_ERR_ARG;
    if (elman_mul(N, O) < 0 || elman_mul(N, K) < 0 || elman_mul(K, O) < 0)
        return ELMAN_ERR_TOO_LARGE;
    if (N == 0 || O == 0) return ELMAN_OK;
    if (Y == NULL) return ELMAN_ERR_ARG;
    if (b != NULL)
        for (elman_int r = 0; r < N; r++)
            for (elman_int j = 0; j < O; j++) Y[r * O + j] = b[j];
    /* Y = [b +] X @ W (the BLAS: at a narrow O, elman's 64-column panels waste lanes) */
    return TY(elman_mm)(bf, 0, 0, N, O, K, X, K, W, O, b != NULL ? 1 : 0, Y, O);
}

int TYPED(elman_linear_backward_f32, elman_linear_backward_f64)(
    REAL *dW, REAL *db, REAL *dX, const REAL *dY, const REAL *X, const REAL *W, elman_int N,
    elman_int K, elman_int O)
{
    return TY(elman_linear_backward_mm)(dW, db, dX, dY, X, W, N, K, O, NULL);
}

/* The backward with its products in bfloat16 when bf is not NULL (internal.h). */
int TYPED(elman_linear_backward_mm_f32, elman_linear_backward_mm_f64)(
    REAL *dW,       /* (K, O) out */
    REAL *db,       /* (O,) out, or NULL */
    REAL *dX,       /* (N, K) out, or NULL */
    const REAL *dY, /* (N, O) */
    const REAL *X,  /* (N, K) */
    const REAL *W,  /* (K, O) */
    elman_int N, elman_int K, elman_int O, const elman_bf16_work *bf)
{
    if (N < 0 || K < 0 || O < 0) return ELMAN_ERR_ARG;
    if (elman_mul(N, O) < 0 || elman_mul(N, K) < 0 || elman_mul(K, O) < 0)
        return ELMAN_ERR_TOO_LARGE;
    /* dW = X^T @ dY: over the N rows on elman's kernel (gemm_tn), or the BLAS */
    const elman_gemm_small_loops *gs = elman_gemm_small_paths[elman_isa()];
    if (bf == NULL && gs->fast) {
        if (K > 0 && O > 0) {
            if (dW == NULL || (N > 0 && (X == NULL || dY == NULL))) return ELMAN_ERR_ARG;
            gs->TY(gemm_tn)(dW, X, dY, K, N, O, K);
        }
    } else {
        ELMAN_TRY(TY(elman_mm)(bf, 1, 0, K, O, N, X, K, dY, O, 0, dW, O));
    }
    if (db != NULL) { /* db = sum over rows of dY */
        for (elman_int j = 0; j < O; j++) db[j] = 0;
        for (elman_int r = 0; r < N; r++) {
            const REAL *d = dY + r * O;
            for (elman_int j = 0; j < O; j++) db[j] += d[j];
        }
    }
    /* dX = dY @ W^T */
    if (dX != NULL) ELMAN_TRY(TY(elman_mm)(bf, 0, 1, N, K, O, dY, O, W, O, 0, dX, K));
    return ELMAN_OK;
}

#endif
