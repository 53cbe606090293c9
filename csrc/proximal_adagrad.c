/* Proximal Adagrad, TensorFlow's ApplyProximalAdagrad (FOBOS with Adagrad's step size):
 *
 *     g = grad * grad_scale;  S += g * g
 *     v = theta - lr * g * (1 / sqrt(S))
 *     theta = sign(v) / (1 + lr * l2) * max(|v| - lr * l1, 0)
 *
 * so that l1 sets small weights to exactly zero. Reference twin:
 * elman.reference.proximal_adagrad_update. The non-finite check is Adagrad's (adagrad.c).
 */
#ifndef ELMAN_TYPED
#include "loops.h"

/* The options the entry point accepts: every rate and penalty >= 0 (NaN refused). */
static inline int elman_proximal_opts_ok(const elman_proximal_opts *o)
{
    return o != NULL && o->lr >= 0 && o->l1 >= 0 && o->l2 >= 0 && o->grad_scale >= 0;
}

#define ELMAN_TYPED_FILE "proximal_adagrad.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry point, once per REAL ---- */

int TYPED(elman_proximal_adagrad_update_f32, elman_proximal_adagrad_update_f64)(
    REAL *param, const REAL *grad, REAL *state, elman_int n, const elman_proximal_opts *o)
{
    if (!elman_proximal_opts_ok(o) || n < 0) return ELMAN_ERR_ARG;
    if (n == 0) return ELMAN_OK;
    if (!elman_distinct3(param, state, grad)) return ELMAN_ERR_ARG;
    const elman_proximal_loops *loops = elman_proximal_paths[elman_isa()];
    const int bad = loops->TY(proximal)(param, grad, state, n, (REAL)o->lr,
                                        (REAL)o->grad_scale, (REAL)o->l1, (REAL)o->l2);
    return bad ? ELMAN_ERR_NONFINITE : ELMAN_OK;
}

#else /* ---- the loops, once per REAL and instruction set ---- */

/* One thread's range; l1lr = lr * l1, l2k = 1 / (1 + lr * l2). */
static int TYPED(proximal_range_f32, proximal_range_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict s, elman_int n, REAL lr,
    REAL scale, REAL l1lr, REAL l2k)
{
    REAL chk = 0;
#pragma omp simd reduction(+:chk)
    for (elman_int i = 0; i < n; i++) {
        const REAL gi = g[i];
        const REAL x = gi * scale;
        const REAL si = s[i] + x * x;
        s[i] = si;
        const REAL v = p[i] - lr * x * ((REAL)1 / SQRT(si));
        const REAL shrunk = FABS(v) - l1lr;
        const REAL pi = COPYSIGN(!(shrunk <= 0) ? shrunk : (REAL)0, v) * l2k; /* NaN stays */
        p[i] = pi;
        chk += (gi - gi) + (pi - pi); /* the non-finite check (adagrad.c) */
    }
    return chk != 0;
}

static int TYPED(proximal_f32, proximal_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict s, elman_int n, REAL lr,
    REAL scale, REAL l1, REAL l2)
{
    const REAL l1lr = lr * l1, l2k = (REAL)1 / ((REAL)1 + lr * l2);
    if (elman_serial(n)) return TY(proximal_range)(p, g, s, n, lr, scale, l1lr, l2k);
    int bad = 0;
#pragma omp parallel reduction(|:bad)
    {
        elman_int lo, len;
        elman_split(n, &lo, &len);
        bad = TY(proximal_range)(p + lo, g + lo, s + lo, len, lr, scale, l1lr, l2k);
    }
    return bad;
}

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(proximal) = {.proximal_f32 = proximal_f32, .proximal_f64 = proximal_f64};
#endif

#endif
