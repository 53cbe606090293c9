/* The hidden layer's nonlinearity and its derivative, elementwise, in place allowed:
 *
 *     forward:  y = tanh(a)            or relu(a) = max(a, 0) (NaN stays NaN, as torch)
 *     backward: dA = dH * (1 - y^2)    or dH * [y > 0]        (f' from the output y)
 *
 * Reference twins: elman.reference.activation, elman.reference.activation_backward.
 */
#ifndef ELMAN_TYPED
#include "loops.h"
#include "vecmath.h"

#define ELMAN_TYPED_FILE "act.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry points, once per REAL ---- */

int TYPED(elman_act_forward_f32, elman_act_forward_f64)(
    REAL *y, const REAL *a, elman_int n, int nonlinearity)
{
    if (n < 0) return ELMAN_ERR_ARG;
    if (nonlinearity != ELMAN_TANH && nonlinearity != ELMAN_RELU) return ELMAN_ERR_ARG;
    if (n == 0) return ELMAN_OK;
    if (y == NULL || a == NULL) return ELMAN_ERR_ARG;
    elman_act_paths[elman_isa()]->TY(act_forward)(y, a, n, nonlinearity);
    return ELMAN_OK;
}

int TYPED(elman_act_backward_f32, elman_act_backward_f64)(
    REAL *dA, const REAL *dH, const REAL *y, elman_int n, int nonlinearity)
{
    if (n < 0) return ELMAN_ERR_ARG;
    if (nonlinearity != ELMAN_TANH && nonlinearity != ELMAN_RELU) return ELMAN_ERR_ARG;
    if (n == 0) return ELMAN_OK;
    if (dA == NULL || dH == NULL || y == NULL) return ELMAN_ERR_ARG;
    elman_act_paths[elman_isa()]->TY(act_backward)(dA, dH, y, n, nonlinearity);
    return ELMAN_OK;
}

#else /* ---- the loops, once per REAL and instruction set ---- */

/* tanh on one thread (float: vecmath.h's elman_tanhf, so that the loop vectorizes) */
static void TYPED(tanh_f32, tanh_f64)(REAL *y, const REAL *a, elman_int n)
{
#pragma omp simd
    for (elman_int i = 0; i < n; i++) y[i] = TANH(a[i]);
}

static void TYPED(act_forward_f32, act_forward_f64)(
    REAL *y, const REAL *a, elman_int n, int nonlinearity)
{
    if (nonlinearity == ELMAN_TANH && elman_serial(n)) {
        TY(tanh)(y, a, n);
    } else if (nonlinearity == ELMAN_TANH) {
#pragma omp parallel
        {
            elman_int lo, len;
            elman_split(n, &lo, &len);
            TY(tanh)(y + lo, a + lo, len);
        }
    } else {
        /* a < 0 ? 0 : a keeps NaN as NaN, as torch.relu does */
#pragma omp simd
        for (elman_int i = 0; i < n; i++) y[i] = a[i] < 0 ? (REAL)0 : a[i];
    }
}

static void TYPED(act_backward_f32, act_backward_f64)(
    REAL *dA, const REAL *dH, const REAL *y, elman_int n, int nonlinearity)
{
    if (nonlinearity == ELMAN_TANH) { /* tanh'(a) = 1 - tanh(a)^2 */
#pragma omp simd
        for (elman_int i = 0; i < n; i++) dA[i] = dH[i] * ((REAL)1 - y[i] * y[i]);
    } else { /* relu'(a) = [a > 0] = [y > 0] */
#pragma omp simd
        for (elman_int i = 0; i < n; i++) dA[i] = dH[i] * (REAL)(y[i] > 0);
    }
}

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(act) = {.act_forward_f32 = act_forward_f32, .act_forward_f64 = act_forward_f64,
                       .act_backward_f32 = act_backward_f32,
                       .act_backward_f64 = act_backward_f64,
                       .tanh_f32 = tanh_f32, .tanh_f64 = tanh_f64};
#endif

#endif
