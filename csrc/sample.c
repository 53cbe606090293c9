/* Sampling from a trained model, one token at a time (a character model's text):
 *
 *     h_l = f(b_h + h_{l-1} @ W_xh + h_l @ W_hh)     (layer 0: W_xh[id] + b_h + h_0 @ W_hh)
 *     z = h_{L-1} @ W_hy + b_y
 *     id = argmax z                                     (temperature 0)
 *        or a draw from softmax(z / temperature)        (splitmix64 generator, rng.h)
 *
 * Reference twin: elman.reference.model_sample, which draws the same ids from the same
 * generator state. The products are one row each: elman's own small GEMM (gemm_small.c).
 */
#ifndef ELMAN_TYPED
#include "layout.h"
#include "loops.h"
#include "rng.h"

/* splitmix64: a 64-bit counter through the mixer; fast, and plenty for sampling. */
static inline uint64_t elman_next_u64(uint64_t *state)
{
    return elman_mix64(*state += ELMAN_GOLDEN_GAMMA);
}

#define ELMAN_TYPED_FILE "sample.c"
#include "typed.h"

#else /* ---- once per REAL ---- */

int TYPED(elman_model_sample_f32, elman_model_sample_f64)(
    elman_int *out,     /* (n,) out: sampled ids */
    REAL *h,            /* (L, H) in: h0; out: the last states */
    REAL *work,         /* (H + O) workspace */
    uint64_t *rng,      /* in/out: generator state */
    elman_int n, elman_int first, double temperature,
    const REAL *params, /* flat layout */
    const elman_model_shape *s)
{
    if (s == NULL || (out == NULL && n > 0)) return ELMAN_ERR_ARG;
    if (n < 0 || rng == NULL || params == NULL || h == NULL || work == NULL) return ELMAN_ERR_ARG;
    if (s->rnn.nonlinearity != ELMAN_TANH && s->rnn.nonlinearity != ELMAN_RELU) return ELMAN_ERR_ARG;
    if (s->num_layers < 0 || s->bidirectional != 0) return ELMAN_ERR_ARG;
    const elman_int I = s->rnn.I, H = s->rnn.H, O = s->O, L = elman_model_layers(s);
    if (I < 1 || H < 1 || O < 1 || O > I) return ELMAN_ERR_ARG;
    if (!(temperature >= 0) || !(temperature <= DBL_MAX)) return ELMAN_ERR_ARG;
    if (elman_model_num_params(s) < 0 || elman_mul(L, H) < 0) return ELMAN_ERR_TOO_LARGE;
    if (first < 0 || first >= I) return ELMAN_ERR_TARGET;

    const int isa = elman_isa();
    const elman_gemm_small_loops *gs = elman_gemm_small_paths[isa];
    const elman_act_loops *act = elman_act_paths[isa];
    const elman_softmax_loops *sm = elman_softmax_paths[isa];
    const REAL *W_hy = params + elman_head_offset(s), *b_y = W_hy + H * O;
    REAL *a = work, *z = work + H;
    /* 1/temperature; 0 (greedy) for temperature 0 or one so small that 1/t overflows; the
     * smallest normal number when t is so large that 1/t underflows (then nearly uniform) */
    const double kd = temperature > 0 ? 1.0 / temperature : 0;
    const int greedy = !(kd > 0 && kd <= REAL_MAX);
    REAL k = (REAL)kd;
    if (!greedy && k < REAL_MIN) k = REAL_MIN;
    elman_int id = first;
    for (elman_int i = 0; i < n; i++) {
        /* layer 0: a = W_xh[id] + b_h + h_0 @ W_hh; layer l: a = b_h + h_{l-1} @ W_xh
         * + h_l @ W_hh; h_l = f(a). Then z = h_{L-1} @ W_hy + b_y. */
        for (elman_int l = 0; l < L; l++) {
            const REAL *W_xh = params + elman_layer_offset(s, l, 0);
            const REAL *W_hh = W_xh + (l == 0 ? I : H) * H, *b_h = W_hh + H * H;
            REAL *h_l = h + l * H;
            if (l == 0) {
                const REAL *w = W_xh + id * H;
                for (elman_int j = 0; j < H; j++) a[j] = w[j] + b_h[j];
            } else {
                memcpy(a, b_h, (size_t)H * sizeof(REAL));
                gs->TY(gemm_nn)(a, h_l - H, W_xh, 1, H, H);
            }
            gs->TY(gemm_nn)(a, h_l, W_hh, 1, H, H);
            act->TY(act_forward)(h_l, a, H, s->rnn.nonlinearity);
        }
        memcpy(z, b_y, (size_t)O * sizeof(REAL));
        gs->TY(gemm_nn)(z, h + (L - 1) * H, W_hy, 1, H, O);
        REAL m = z[0];
        elman_int best = 0;
        int bad = !(FABS(z[0]) <= REAL_MAX);
        for (elman_int j = 1; j < O; j++) {
            bad |= !(FABS(z[j]) <= REAL_MAX); /* a NaN would be skipped by the comparison */
            if (z[j] > m) m = z[j], best = j;
        }
        if (bad) return ELMAN_ERR_NONFINITE;
        if (greedy) {
            id = best;
        } else {
            /* softmax(z / temperature), then the first id whose running sum passes u */
            const double sum = sm->TY(exp_shift)(z, z, O, m, k);
            if (!(sum >= 1 && sum <= DBL_MAX)) return ELMAN_ERR_NONFINITE;
            const double u = (double)(elman_next_u64(rng) >> 11) * 0x1.0p-53 * sum;
            double run = 0;
            id = best; /* where rounding leaves u past the last sum: the likeliest id */
            for (elman_int j = 0; j < O; j++) {
                run += (double)z[j];
                if (u < run) {
                    id = j;
                    break;
                }
            }
        }
        out[i] = id;
    }
    return ELMAN_OK;
}

#endif
