/* A whole model step in one call: Elman layer, output projection, loss and BPTT, over the
 * flat parameter layout W_xh | W_hh | b_h | W_hy | b_y. No allocation: the caller owns the
 * workspace (hs, Y, dA), sized once for a shape and reused. */
#include "vec.h"

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

/* splitmix64: a 64-bit counter through a bijective mixer; fast, and plenty for sampling. */
static uint64_t elman_next_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define REAL float
#define SFX(name) name##_f32
#define FABS fabsf
#define REAL_MAX FLT_MAX
#define REAL_MIN FLT_MIN
#include "model.inc"
#undef REAL
#undef SFX

#undef FABS
#undef REAL_MAX
#undef REAL_MIN

#define REAL double
#define SFX(name) name##_f64
#define FABS fabs
#define REAL_MAX DBL_MAX
#define REAL_MIN DBL_MIN
#include "model.inc"
#undef REAL
#undef SFX
#undef FABS
#undef REAL_MAX
#undef REAL_MIN
