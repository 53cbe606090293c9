/* Adagrad over one flat buffer, PyTorch's semantics (elman.h states the options):
 *
 *     g   = clip(grad * grad_scale, -clip_value, clip_value), negated if maximize
 *     g  += weight_decay * theta
 *     clr = lr / (1 + (step - 1) * lr_decay)
 *     S  += g * g
 *     theta -= clr * g / (sqrt(S) + eps)        or clr * g / sqrt(S + eps) (eps_inside)
 *
 * Reference twin: elman.reference.adagrad_update. Also here: the same update over many
 * buffers at once (elman_adagrad_update_many) and over some rows of a matrix
 * (elman_adagrad_rows_update).
 *
 * The non-finite check fused into every optimizer loop: summing (g - g) + (p - p) over the
 * elements gives exactly 0 when every gradient and updated parameter is finite, and NaN as
 * soon as one is not (inf - inf and NaN - NaN are NaN, and a NaN survives any order of
 * additions). Three additions per element instead of two compares and a mask reduction,
 * which cost a quarter of Adagrad's time on AVX-512.
 */
#ifndef ELMAN_TYPED
#include "loops.h"

/* The options every Adagrad entry point accepts. */
static inline int elman_adagrad_opts_ok(const elman_adagrad_opts *o)
{
    return o != NULL && o->step >= 1 && o->clip_value > 0 && o->eps >= 0;
}

#define ELMAN_TYPED_FILE "adagrad.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry points, once per REAL ---- */

/* The per-step scalars, computed once per call in double and rounded to REAL. Clipping is
 * symmetric, clip(-g) = -clip(g), so maximize rides exactly on the scale's sign. */
typedef struct {
    REAL clr, scale, clip, wd, eps_in, eps_out;
} TY(adagrad_scalars);

static TY(adagrad_scalars) TYPED(adagrad_prepare_f32, adagrad_prepare_f64)(
    const elman_adagrad_opts *o)
{
    TY(adagrad_scalars) k;
    const REAL eps = (REAL)o->eps;
    k.clr = (REAL)(o->lr / (1.0 + (double)(o->step - 1) * o->lr_decay));
    k.scale = (REAL)(o->maximize ? -o->grad_scale : o->grad_scale);
    k.clip = (REAL)o->clip_value; /* +inf: no clipping */
    k.wd = (REAL)o->weight_decay;
    k.eps_in = o->eps_inside ? eps : 0;
    k.eps_out = o->eps_inside ? 0 : eps;
    return k;
}

/* One buffer's update with prepared scalars on the given path's loop; nonzero when it met
 * a NaN or infinity. */
static int TYPED(adagrad_run_f32, adagrad_run_f64)(
    const elman_adagrad_loops *loops, const TY(adagrad_scalars) *k, REAL *param,
    const REAL *grad, REAL *state, elman_int n)
{
    return loops->TY(adagrad)(param, grad, state, n, k->clr, k->scale, k->clip, k->wd,
                              k->eps_in, k->eps_out);
}

int TYPED(elman_adagrad_update_f32, elman_adagrad_update_f64)(
    REAL *param, const REAL *grad, REAL *state, elman_int n, const elman_adagrad_opts *o)
{
    if (!elman_adagrad_opts_ok(o) || n < 0) return ELMAN_ERR_ARG;
    if (n == 0) return ELMAN_OK;
    if (!elman_distinct3(param, state, grad)) return ELMAN_ERR_ARG;
    const TY(adagrad_scalars) k = TY(adagrad_prepare)(o);
    const elman_adagrad_loops *loops = elman_adagrad_paths[elman_isa()];
    return TY(adagrad_run)(loops, &k, param, grad, state, n) ? ELMAN_ERR_NONFINITE : ELMAN_OK;
}

int TYPED(elman_adagrad_update_many_f32, elman_adagrad_update_many_f64)(
    REAL *const *params, const REAL *const *grads, REAL *const *states, const elman_int *ns,
    elman_int count, const elman_adagrad_opts *o)
{
    if (!elman_adagrad_opts_ok(o) || count < 0) return ELMAN_ERR_ARG;
    if (count == 0) return ELMAN_OK;
    if (params == NULL || states == NULL || grads == NULL || ns == NULL) return ELMAN_ERR_ARG;
    elman_int small = 0;
    for (elman_int i = 0; i < count; i++) {
        const elman_int n = ns[i];
        if (n < 0) return ELMAN_ERR_ARG;
        if (n == 0) continue;
        if (!elman_distinct3(params[i], states[i], grads[i])) return ELMAN_ERR_ARG;
        if (n < ELMAN_PAR_MIN_ELEMENTS) small = elman_add(small, n);
    }
    const TY(adagrad_scalars) k = TY(adagrad_prepare)(o);
    const elman_adagrad_loops *loops = elman_adagrad_paths[elman_isa()];
    int bad = 0;
    /* Large buffers one after another, each split among the threads; the small ones (each
     * too small to split) shared among the threads a buffer at a time, when together they
     * are worth it. */
    for (elman_int i = 0; i < count; i++)
        if (ns[i] >= ELMAN_PAR_MIN_ELEMENTS)
            bad |= TY(adagrad_run)(loops, &k, params[i], grads[i], states[i], ns[i]);
#pragma omp parallel for schedule(dynamic, 1) reduction(|:bad) \
    if (small >= ELMAN_PAR_MIN_ELEMENTS && elman_can_thread())
    for (elman_int i = 0; i < count; i++)
        if (ns[i] > 0 && ns[i] < ELMAN_PAR_MIN_ELEMENTS)
            bad |= TY(adagrad_run)(loops, &k, params[i], grads[i], states[i], ns[i]);
    return bad ? ELMAN_ERR_NONFINITE : ELMAN_OK;
}

int TYPED(elman_adagrad_rows_update_f32, elman_adagrad_rows_update_f64)(
    REAL *param, const REAL *grad, REAL *state, const elman_int *ids, elman_int m, elman_int V,
    elman_int H, unsigned char *mask, const elman_adagrad_opts *o)
{
    if (!elman_adagrad_opts_ok(o) || m < 0 || V < 0 || H < 0) return ELMAN_ERR_ARG;
    if (elman_mul(V, H) < 0) return ELMAN_ERR_TOO_LARGE;
    if (m == 0 || H == 0) return ELMAN_OK;
    if (!elman_distinct3(param, state, grad) || ids == NULL || mask == NULL)
        return ELMAN_ERR_ARG;
    const TY(adagrad_scalars) k = TY(adagrad_prepare)(o);
    const elman_adagrad_loops *loops = elman_adagrad_paths[elman_isa()];
    int bad = 0, status = ELMAN_OK;
    elman_int done = 0;
    /* each distinct row once: the mask (V bytes, zero on entry and on return) marks them */
    for (; done < m; done++) {
        const elman_int id = ids[done];
        if (id < 0 || id >= V) {
            status = ELMAN_ERR_TARGET;
            break;
        }
        if (mask[id]) continue;
        mask[id] = 1;
        bad |= TY(adagrad_run)(loops, &k, param + id * H, grad + id * H, state + id * H, H);
    }
    for (elman_int r = 0; r < done; r++) mask[ids[r]] = 0;
    if (status != ELMAN_OK) return status;
    return bad ? ELMAN_ERR_NONFINITE : ELMAN_OK;
}

#else /* ---- the loops, once per REAL and instruction set ---- */

/* One thread's range. with_wd is a literal at each call below: the compiler makes a copy
 * of the loop without the weight-decay term (GCC does not vectorize one of the two cases
 * when the test stays inside the loop). */
static ELMAN_ALWAYS_INLINE int TYPED(adagrad_range_f32, adagrad_range_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict s, elman_int n, REAL clr,
    REAL scale, REAL clip, REAL wd, REAL eps_in, REAL eps_out, const int with_wd)
{
    REAL chk = 0;
#pragma omp simd reduction(+:chk)
    for (elman_int i = 0; i < n; i++) {
        const REAL gi = g[i];
        REAL x = gi * scale;
        x = x > clip ? clip : (x < -clip ? -clip : x);
        if (with_wd) x = x + wd * p[i]; /* L2 penalty, as PyTorch */
        const REAL si = s[i] + x * x;   /* S += g^2 (accumulate first) */
        s[i] = si;
        const REAL pi = p[i] - clr * x / (SQRT(si + eps_in) + eps_out);
        p[i] = pi;
        chk += (gi - gi) + (pi - pi);   /* the non-finite check (head comment) */
    }
    return chk != 0;
}

static int TYPED(adagrad_plain_f32, adagrad_plain_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict s, elman_int n, REAL clr,
    REAL scale, REAL clip, REAL eps_in, REAL eps_out)
{
    return TY(adagrad_range)(p, g, s, n, clr, scale, clip, 0, eps_in, eps_out, 0);
}

static int TYPED(adagrad_decay_f32, adagrad_decay_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict s, elman_int n, REAL clr,
    REAL scale, REAL clip, REAL wd, REAL eps_in, REAL eps_out)
{
    return TY(adagrad_range)(p, g, s, n, clr, scale, clip, wd, eps_in, eps_out, 1);
}

static int TYPED(adagrad_f32, adagrad_f64)(
    REAL *restrict p, const REAL *restrict g, REAL *restrict s, elman_int n, REAL clr,
    REAL scale, REAL clip, REAL wd, REAL eps_in, REAL eps_out)
{
    if (elman_serial(n))
        return wd != 0 ? TY(adagrad_decay)(p, g, s, n, clr, scale, clip, wd, eps_in, eps_out)
                       : TY(adagrad_plain)(p, g, s, n, clr, scale, clip, eps_in, eps_out);
    int bad = 0;
#pragma omp parallel reduction(|:bad)
    {
        elman_int lo, len;
        elman_split(n, &lo, &len);
        bad = wd != 0 ? TY(adagrad_decay)(p + lo, g + lo, s + lo, len, clr, scale, clip, wd,
                                          eps_in, eps_out)
                      : TY(adagrad_plain)(p + lo, g + lo, s + lo, len, clr, scale, clip,
                                          eps_in, eps_out);
    }
    return bad;
}

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(adagrad) = {.adagrad_f32 = adagrad_f32, .adagrad_f64 = adagrad_f64};
#endif

#endif
