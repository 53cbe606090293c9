/* Sampling from a trained model, one token at a time (a character model's text), in B
 * independent streams at once:
 *
 *     h_l = f(b_h + h_{l-1} @ W_xh + h_l @ W_hh)     (layer 0: W_xh[id] + b_h + h_0 @ W_hh)
 *     z = h_{L-1} @ W_hy + b_y
 *     id = argmax z                                     (temperature 0)
 *        or a draw from softmax(z / temperature)        (splitmix64 generator, rng.h)
 *
 * every row b of h, z and id a stream of its own with its own generator state. The
 * streams' states are the rows of one (B, H) block per layer, so that each step's products
 * are (B, H) @ (H, H) and (B, H) @ (H, O) on elman's own small GEMM (gemm_small.c), rows
 * shared among threads when B is large enough. Reference twin: elman.reference.model_sample,
 * which draws the same ids from the same generator states.
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
    elman_int *out,          /* (B, n) out: sampled ids, stream b's in row b */
    REAL *h,                 /* (L, B, H) in: h0; out: the last states */
    REAL *work,              /* (B * (H + O)) workspace */
    uint64_t *rng,           /* (B,) in/out: the streams' generator states */
    elman_int n, elman_int B,
    const elman_int *first,  /* (B,) the ids fed at the first step */
    double temperature,
    const REAL *params,      /* flat layout */
    const elman_model_shape *s)
{
    if (s == NULL || n < 0 || B < 0) return ELMAN_ERR_ARG;
    if (s->rnn.nonlinearity != ELMAN_TANH && s->rnn.nonlinearity != ELMAN_RELU) return ELMAN_ERR_ARG;
    if (s->num_layers < 0 || s->bidirectional != 0 || s->compute != ELMAN_COMPUTE_FLOAT32)
        return ELMAN_ERR_ARG;
    const elman_int I = s->rnn.I, H = s->rnn.H, O = s->O, L = elman_model_layers(s);
    if (I < 1 || H < 1 || O < 1 || O > I) return ELMAN_ERR_ARG;
    if (!(temperature >= 0) || !(temperature <= DBL_MAX)) return ELMAN_ERR_ARG;
    if (elman_model_num_params(s) < 0 || elman_mul(elman_mul(L, B), H) < 0
        || elman_mul(B, n) < 0 || elman_mul(B, H + O) < 0)
        return ELMAN_ERR_TOO_LARGE;
    if (B == 0) return ELMAN_OK;
    if (rng == NULL || params == NULL || h == NULL || work == NULL || first == NULL
        || (out == NULL && n > 0))
        return ELMAN_ERR_ARG;
    for (elman_int b = 0; b < B; b++)
        if (first[b] < 0 || first[b] >= I) return ELMAN_ERR_TARGET;

    const int isa = elman_isa();
    const elman_gemm_small_loops *gs = elman_gemm_small_paths[isa];
    const elman_act_loops *act = elman_act_paths[isa];
    const elman_softmax_loops *sm = elman_softmax_paths[isa];
    const REAL *W_hy = params + elman_head_offset(s), *b_y = W_hy + H * O;
    REAL *a = work, *z = work + B * H;
    /* 1/temperature; 0 (greedy) for temperature 0 or one so small that 1/t overflows; the
     * smallest normal number when t is so large that 1/t underflows (then nearly uniform) */
    const double kd = temperature > 0 ? 1.0 / temperature : 0;
    const int greedy = !(kd > 0 && kd <= REAL_MAX);
    REAL k = (REAL)kd;
    if (!greedy && k < REAL_MIN) k = REAL_MIN;
    for (elman_int i = 0; i < n; i++) {
        /* layer 0: a = W_xh[id] + b_h + h_0 @ W_hh; layer l: a = b_h + h_{l-1} @ W_xh
         * + h_l @ W_hh; h_l = f(a). Then z = h_{L-1} @ W_hy + b_y. Row b is stream b. */
        for (elman_int l = 0; l < L; l++) {
            const REAL *W_xh = params + elman_layer_offset(s, l, 0);
            const REAL *W_hh = W_xh + (l == 0 ? I : H) * H, *b_h = W_hh + H * H;
            REAL *h_l = h + l * B * H;
            for (elman_int b = 0; b < B; b++) {
                REAL *ab = a + b * H;
                if (l == 0) {
                    const elman_int prev = i == 0 ? first[b] : out[b * n + i - 1];
                    const REAL *w = W_xh + prev * H;
                    for (elman_int j = 0; j < H; j++) ab[j] = w[j] + b_h[j];
                } else {
                    memcpy(ab, b_h, (size_t)H * sizeof(REAL));
                }
            }
            if (l > 0) gs->TY(gemm_nn)(a, h_l - B * H, W_xh, B, H, H);
            gs->TY(gemm_nn)(a, h_l, W_hh, B, H, H);
            act->TY(act_forward)(h_l, a, B * H, s->rnn.nonlinearity);
        }
        for (elman_int b = 0; b < B; b++) memcpy(z + b * O, b_y, (size_t)O * sizeof(REAL));
        gs->TY(gemm_nn)(z, h + (L - 1) * B * H, W_hy, B, H, O);
        for (elman_int b = 0; b < B; b++) {
            REAL *zb = z + b * O;
            REAL m = zb[0];
            elman_int best = 0;
            int bad = !(FABS(zb[0]) <= REAL_MAX);
            for (elman_int j = 1; j < O; j++) {
                bad |= !(FABS(zb[j]) <= REAL_MAX); /* a NaN would be skipped by the comparison */
                if (zb[j] > m) m = zb[j], best = j;
            }
            if (bad) return ELMAN_ERR_NONFINITE;
            elman_int id = best;
            if (!greedy) {
                /* softmax(z / temperature), then the first id whose running sum passes u */
                const double sum = sm->TY(exp_shift)(zb, zb, O, m, k);
                if (!(sum >= 1 && sum <= DBL_MAX)) return ELMAN_ERR_NONFINITE;
                const double u = (double)(elman_next_u64(rng + b) >> 11) * 0x1.0p-53 * sum;
                double run = 0;
                /* where rounding leaves u past the last sum: the likeliest id */
                for (elman_int j = 0; j < O; j++) {
                    run += (double)zb[j];
                    if (u < run) {
                        id = j;
                        break;
                    }
                }
            }
            out[b * n + i] = id;
        }
    }
    return ELMAN_OK;
}

#endif
