/* Mean squared error fused with its gradient, over n values:
 *
 *     loss  = scale * sum_i (p_i - q_i)^2
 *     dpred = 2 * scale * (p - q)           (when asked; may overwrite pred)
 *
 * Reference twin: elman.reference.mse_loss (scale = 1/n for "mean", 1 for "sum"). One
 * pass, memory bound: no per-instruction-set copy.
 */
#ifndef ELMAN_TYPED
#include "internal.h"

#define ELMAN_TYPED_FILE "mse.c"
#include "typed.h"

#else /* ---- checked entry point, once per REAL ---- */

int TYPED(elman_mse_f32, elman_mse_f64)(
    double *loss,       /* out: scale * sum (p - q)^2 */
    REAL *dpred,        /* (n,) out, or NULL; may be pred */
    const REAL *pred,   /* (n,) */
    const REAL *target, /* (n,) */
    elman_int n, double scale)
{
    if (loss == NULL || n < 0 || !(scale >= 0)) return ELMAN_ERR_ARG;
    *loss = 0;
    if (n == 0) return ELMAN_OK;
    if (pred == NULL || target == NULL) return ELMAN_ERR_ARG;
    const REAL k = (REAL)(2 * scale);
    double total = 0;
    for (elman_int i = 0; i < n; i++) {
        const REAL diff = pred[i] - target[i];
        total += (double)diff * (double)diff;
        if (dpred != NULL) dpred[i] = k * diff; /* d/dp scale * (p - q)^2 */
    }
    *loss = total * scale;
    return isfinite(*loss) ? ELMAN_OK : ELMAN_ERR_NONFINITE;
}

#endif
