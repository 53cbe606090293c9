/* Softmax cross-entropy fused with its gradient, over N rows of O logits:
 *
 *     loss   = scale * sum_r (logsumexp(z_r) - z_r[y_r])
 *     dlogits = scale * (softmax(z_r) - onehot(y_r))       (when asked; may overwrite z)
 *
 * Reference twin: elman.reference.softmax_cross_entropy (scale = 1/N for "mean", 1 for
 * "sum"). Also here: the exponentials of the sampler's softmax (exp_shift).
 */
#ifndef ELMAN_TYPED
#include "loops.h"
#include "vecmath.h"

#define ELMAN_TYPED_FILE "softmax_xent.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry point, once per REAL ---- */

int TYPED(elman_softmax_xent_f32, elman_softmax_xent_f64)(
    double *loss,             /* out: scale * sum of row losses */
    REAL *dlogits,            /* (N, O) out, or NULL; may equal logits */
    const REAL *logits,       /* (N, O) */
    const elman_int *targets, /* (N,) in [0, O) */
    elman_int N, elman_int O, double scale)
{
    if (loss == NULL || N < 0 || O < 0 || !(scale >= 0)) return ELMAN_ERR_ARG;
    if (elman_mul(N, O) < 0) return ELMAN_ERR_TOO_LARGE;
    *loss = 0;
    if (N == 0) return ELMAN_OK;
    if (logits == NULL || targets == NULL) return ELMAN_ERR_ARG;
    for (elman_int r = 0; r < N; r++) /* before any write: nothing is read out of bounds */
        if (targets[r] < 0 || targets[r] >= O) return ELMAN_ERR_TARGET;

    double total = 0;
    /* Each target is read once more in the loop and checked at use: the targets may
     * change after the check above (another thread). */
    const elman_softmax_loops *loops = elman_softmax_paths[elman_isa()];
    if (loops->TY(xent_rows)(&total, dlogits, logits, targets, N, O, scale) != 0)
        return ELMAN_ERR_TARGET;
    *loss = total * scale;
    return isfinite(*loss) ? ELMAN_OK : ELMAN_ERR_NONFINITE;
}

#else /* ---- the loops, once per REAL and instruction set ---- */

/* Softmax cross-entropy over N rows of O logits: *total = sum of logsumexp(z) - z[y];
 * d = scale * (softmax(z) - onehot(y)) when d is not NULL (d may equal z). Returns nonzero
 * when a target is out of range (checked where it is read). */
static int TYPED(xent_range_f32, xent_range_f64)(
    double *total, REAL *d_all, const REAL *logits, const elman_int *targets, elman_int r0,
    elman_int r1, elman_int O, double scale)
{
    /* sum_r log(sum_r) is kept as log(prod_r sum_r): one log at the end instead of one per
     * row; the product (each factor in [1, O]) is renormalized before it can overflow. */
    double other = 0, prod = 1, ln2s = 0;
    REAL tmp[64];
    for (elman_int r = r0; r < r1; r++) {
        const REAL *z = logits + r * O;
        REAL *d = d_all != NULL ? d_all + r * O : NULL;
        const elman_int y = targets[r];
        if (y < 0 || y >= O) return 1;
        const REAL zy = z[y]; /* read before an in-place gradient overwrites it */
        REAL m = z[0];
        for (elman_int j = 1; j < O; j++) m = z[j] > m ? z[j] : m;
        /* exp(z - max) into d (or tmp, a block at a time), then their sum in double with
         * four partial sums: no vector reduction epilogue on rows of a few classes */
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (elman_int j0 = 0; j0 < O; j0 += 64) {
            const elman_int len = O - j0 < 64 ? O - j0 : 64;
            REAL *e = d != NULL ? d + j0 : tmp;
            const REAL *zz = z + j0;
#pragma omp simd
            for (elman_int j = 0; j < len; j++) e[j] = EXP(zz[j] - m);
            elman_int j = 0;
            for (; j + 4 <= len; j += 4) s0 += e[j], s1 += e[j + 1], s2 += e[j + 2], s3 += e[j + 3];
            for (; j < len; j++) s0 += e[j];
        }
        const double sum = (s0 + s1) + (s2 + s3);
        other += (double)m - (double)zy;
        prod *= sum;
        if (prod > 0x1p900) {
            int ex;
            prod = frexp(prod, &ex);
            ln2s += ex;
        }
        if (d != NULL) {
            const REAL k = (REAL)(scale / sum);
#pragma omp simd
            for (elman_int j = 0; j < O; j++) d[j] *= k;
            d[y] -= (REAL)scale;
        }
    }
    *total = other + (log(prod) + ln2s * 0.69314718055994530942);
    return 0;
}

/* The rows shared among threads when there are enough of them; each thread's part of the
 * loss is a sum of its own, added at the end. */
static int TYPED(xent_rows_f32, xent_rows_f64)(
    double *total, REAL *d_all, const REAL *logits, const elman_int *targets, elman_int N,
    elman_int O, double scale)
{
    if (N * O < ELMAN_PAR_MIN_ELEMENTS || N < ELMAN_XENT_PAR_MIN_ROWS || !elman_can_thread())
        return TY(xent_range)(total, d_all, logits, targets, 0, N, O, scale);
    double sum = 0;
    int bad = 0;
#pragma omp parallel reduction(+:sum) reduction(|:bad)
    {
        elman_int lo, len;
        elman_split_rows(N, 1, &lo, &len);
        double part = 0;
        bad = len > 0 ? TY(xent_range)(&part, d_all, logits, targets, lo, lo + len, O, scale)
                      : 0;
        sum = part;
    }
    *total = sum;
    return bad;
}

/* d[j] = exp((z[j] - m) * k), j < n, and their sum in double: the sampler's softmax at a
 * temperature (sample.c). d may equal z. */
static double TYPED(exp_shift_f32, exp_shift_f64)(
    REAL *d, const REAL *z, elman_int n, REAL m, REAL k)
{
    double sum = 0;
#pragma omp simd reduction(+:sum)
    for (elman_int j = 0; j < n; j++) {
        const REAL e = EXP((z[j] - m) * k);
        d[j] = e;
        sum += (double)e;
    }
    return sum;
}

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(softmax) = {.xent_rows_f32 = xent_rows_f32, .xent_rows_f64 = xent_rows_f64,
                           .exp_shift_f32 = exp_shift_f32, .exp_shift_f64 = exp_shift_f64};
#endif

#endif
