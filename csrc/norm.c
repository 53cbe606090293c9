/* The squared L2 norm of a buffer (global-norm clipping), and the finiteness check the
 * binding runs on inputs:
 *
 *     elman_sumsq:      *out = sum_i x_i^2, accumulated in double
 *     elman_all_finite: 1 when no x_i is NaN or +-inf
 *
 * Reference twins: elman.reference.sum_squares, numpy.isfinite(x).all().
 */
#ifndef ELMAN_TYPED
#include "loops.h"

#define ELMAN_TYPED_FILE "norm.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry points, once per REAL ---- */

int TYPED(elman_sumsq_f32, elman_sumsq_f64)(double *out, const REAL *x, elman_int n)
{
    if (out == NULL || n < 0) return ELMAN_ERR_ARG;
    if (n > 0 && x == NULL) return ELMAN_ERR_ARG;
    *out = n > 0 ? elman_norm_paths[elman_isa()]->TY(sumsq)(x, n) : 0.0;
    return ELMAN_OK;
}

int TYPED(elman_all_finite_f32, elman_all_finite_f64)(const REAL *x, elman_int n)
{
    if (n <= 0) return 1;
    if (x == NULL) return 0;
    return !elman_norm_paths[elman_isa()]->TY(nonfinite)(x, n);
}

#else /* ---- the loops, once per REAL and instruction set ---- */

static inline double TYPED(sumsq_range_f32, sumsq_range_f64)(const REAL *x, elman_int n)
{
    double acc = 0;
#pragma omp simd reduction(+:acc)
    for (elman_int i = 0; i < n; i++) acc += (double)x[i] * (double)x[i];
    return acc;
}

static double TYPED(sumsq_f32, sumsq_f64)(const REAL *x, elman_int n)
{
    if (elman_serial(n)) return TY(sumsq_range)(x, n);
    double acc = 0;
#pragma omp parallel reduction(+:acc)
    {
        elman_int lo, len;
        elman_split(n, &lo, &len);
        acc = TY(sumsq_range)(x + lo, len);
    }
    return acc;
}

static int TYPED(nonfinite_f32, nonfinite_f64)(const REAL *x, elman_int n)
{
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (elman_int i = 0; i < n; i++) bad |= !(FABS(x[i]) <= REAL_MAX);
    return bad;
}

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(norm) = {.sumsq_f32 = sumsq_f32, .sumsq_f64 = sumsq_f64,
                        .nonfinite_f32 = nonfinite_f32, .nonfinite_f64 = nonfinite_f64};
#endif

#endif
