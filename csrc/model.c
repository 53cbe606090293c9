/* A whole model step in one call: Elman layer, output projection, loss and BPTT, over the
 * flat parameter layout W_xh | W_hh | b_h | W_hy | b_y. No allocation: the caller owns the
 * workspace (hs, Y, dA), sized once for a shape and reused. */
#include "internal.h"

elman_int elman_model_num_params(const elman_model_shape *s)
{
    if (s == NULL) return -1;
    const elman_int I = s->rnn.I, H = s->rnn.H, O = s->O;
    elman_int n = elman_add(elman_mul(I, H), elman_mul(H, H));
    n = elman_add(n, H);
    n = elman_add(n, elman_mul(H, O));
    return elman_add(n, O);
}

static int elman_model_check(const elman_model_shape *s)
{
    if (s == NULL || s->O < 0) return ELMAN_ERR_ARG;
    if (s->loss != ELMAN_LOSS_XENT && s->loss != ELMAN_LOSS_MSE) return ELMAN_ERR_ARG;
    if (s->reduction != ELMAN_REDUCE_MEAN && s->reduction != ELMAN_REDUCE_SUM) return ELMAN_ERR_ARG;
    if (elman_model_num_params(s) < 0) return ELMAN_ERR_TOO_LARGE;
    if (elman_mul(elman_mul(s->rnn.T, s->rnn.B), s->O) < 0) return ELMAN_ERR_TOO_LARGE;
    return ELMAN_OK;
}

#define REAL float
#define SFX(name) name##_f32
#include "model.inc"
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_f64
#include "model.inc"
#undef REAL
#undef SFX
