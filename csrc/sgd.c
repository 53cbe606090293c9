/* Plain gradient descent, with PyTorch's optional momentum (dampening 0, not Nesterov):
 *
 *     g = clip(grad * grad_scale, -clip_value, clip_value), negated if maximize
 *     g += weight_decay * theta
 *     buf = momentum * buf + g         (buf starts at zero; skipped when momentum == 0)
 *     theta -= lr * buf                (theta -= lr * g without momentum)
 *
 * Reference twin: elman.reference.sgd_update. The non-finite check is Adagrad's
 * (adagrad.c).
 */
#ifndef ELMAN_TYPED
#include "loops.h"

/* The options the entry point accepts (momentum needs its buffer: checked with it). */
static inline int elman_sgd_opts_ok(const elman_sgd_opts *o)
{
    return o != NULL && o->clip_value > 0;
}

#define ELMAN_TYPED_FILE "sgd.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry point, once per REAL ---- */

int TYPED(elman_sgd_update_f32, elman_sgd_update_f64)(
    REAL *param, const REAL *grad, REAL *momentum_buf, elman_int n, const elman_sgd_opts *o)
{
    if (!elman_sgd_opts_ok(o) || n < 0) return ELMAN_ERR_ARG;
    if (n == 0) return ELMAN_OK;
    if (param == NULL || grad == NULL || (o->momentum != 0 && momentum_buf == NULL))
        return ELMAN_ERR_ARG;
    if (param == momentum_buf || param == grad || momentum_buf == grad) return ELMAN_ERR_ARG;
    /* clipping is symmetric, so maximize rides exactly on the scale's sign (as Adagrad's) */
    const REAL scale = (REAL)(o->maximize ? -o->grad_scale : o->grad_scale);
    const elman_sgd_loops *loops = elman_sgd_paths[elman_isa()];
    const int bad = loops->TY(sgd)(param, grad, momentum_buf, n, (REAL)o->lr,
                                   (REAL)o->momentum, scale, (REAL)o->clip_value,
                                   (REAL)o->weight_decay);
    return bad ? ELMAN_ERR_NONFINITE : ELMAN_OK;
}

#else /* ---- the loops, once per REAL and instruction set ---- */

/* One thread's range. with_wd and with_mom are literals at each call below: one copy of
 * the loop per combination, none with a test inside. */
static ELMAN_ALWAYS_INLINE int TYPED(sgd_range_f32, sgd_range_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict buf, elman_int n, REAL lr,
    REAL mom, REAL scale, REAL clip, REAL wd, const int with_wd, const int with_mom)
{
    REAL chk = 0;
#pragma omp simd reduction(+:chk)
    for (elman_int i = 0; i < n; i++) {
        const REAL gi = g[i];
        REAL x = gi * scale;
        x = x > clip ? clip : (x < -clip ? -clip : x);
        if (with_wd) x = x + wd * p[i];
        if (with_mom) {
            x = mom * buf[i] + x; /* buf = momentum * buf + g */
            buf[i] = x;
        }
        const REAL pi = p[i] - lr * x;
        p[i] = pi;
        chk += (gi - gi) + (pi - pi); /* the non-finite check (adagrad.c) */
    }
    return chk != 0;
}

/* The four specializations, picked once per call. */
static int TYPED(sgd_pick_f32, sgd_pick_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict buf, elman_int n, REAL lr,
    REAL mom, REAL scale, REAL clip, REAL wd)
{
    if (wd != 0 && mom != 0) return TY(sgd_range)(p, g, buf, n, lr, mom, scale, clip, wd, 1, 1);
    if (wd != 0) return TY(sgd_range)(p, g, buf, n, lr, mom, scale, clip, wd, 1, 0);
    if (mom != 0) return TY(sgd_range)(p, g, buf, n, lr, mom, scale, clip, wd, 0, 1);
    return TY(sgd_range)(p, g, buf, n, lr, mom, scale, clip, wd, 0, 0);
}

static int TYPED(sgd_f32, sgd_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict buf, elman_int n, REAL lr,
    REAL mom, REAL scale, REAL clip, REAL wd)
{
    if (elman_serial(n)) return TY(sgd_pick)(p, g, buf, n, lr, mom, scale, clip, wd);
    int bad = 0;
#pragma omp parallel reduction(|:bad)
    {
        elman_int lo, len;
        elman_split(n, &lo, &len);
        REAL *b = mom != 0 ? buf + lo : buf; /* buf may be NULL without momentum */
        bad = TY(sgd_pick)(p + lo, g + lo, b, len, lr, mom, scale, clip, wd);
    }
    return bad;
}

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(sgd) = {.sgd_f32 = sgd_f32, .sgd_f64 = sgd_f64};
#endif

#endif
