/* A whole model step in one call: Elman layer, output projection, loss and BPTT, over the
 * flat parameter layout W_xh | W_hh | b_h | W_hy | b_y. No allocation: the caller owns the
 * workspace (hs, Y, dA), sized once for a shape and reused. */
#include "vec.h"

static elman_int elman_model_layers(const elman_model_shape *s)
{
    return s->num_layers == 0 ? 1 : s->num_layers;
}

static elman_int elman_model_dirs(const elman_model_shape *s)
{
    return s->bidirectional ? 2 : 1;
}

/* Parameters of one direction of layer l: W_xh (I_l, H) | W_hh (H, H) | b_h (H,). */
static elman_int elman_layer_params(const elman_model_shape *s, elman_int l)
{
    const elman_int H = s->rnn.H;
    const elman_int in = l == 0 ? s->rnn.I : elman_mul(elman_model_dirs(s), H);
    return elman_add(elman_add(elman_mul(in, H), elman_mul(H, H)), H);
}

/* Offset of W_xh of layer l, direction d, in the flat layout (sizes already checked). */
static elman_int elman_layer_offset(const elman_model_shape *s, elman_int l, elman_int d)
{
    const elman_int D = elman_model_dirs(s);
    elman_int off = l == 0 ? 0 : D * elman_layer_params(s, 0) + (l - 1) * D * elman_layer_params(s, 1);
    return off + d * elman_layer_params(s, l);
}

elman_int elman_model_num_params(const elman_model_shape *s)
{
    if (s == NULL || s->num_layers < 0 || (s->bidirectional != 0 && s->bidirectional != 1))
        return -1;
    const elman_int L = elman_model_layers(s), D = elman_model_dirs(s);
    const elman_int H = s->rnn.H, O = s->O;
    elman_int n = elman_mul(D, elman_layer_params(s, 0));
    if (L > 1) n = elman_add(n, elman_mul(elman_mul(L - 1, D), elman_layer_params(s, 1)));
    n = elman_add(n, elman_mul(elman_mul(D, H), O));
    return elman_add(n, O);
}

/* The lanes of the batch dropout numbers its elements in (this call's B unless set). */
static elman_int elman_dropout_lanes(const elman_model_shape *s)
{
    return s->dropout_batch > 0 ? s->dropout_batch : s->rnn.B;
}

static int elman_model_check(const elman_model_shape *s)
{
    if (s == NULL || s->O < 0 || s->num_layers < 0) return ELMAN_ERR_ARG;
    if (s->bidirectional != 0 && s->bidirectional != 1) return ELMAN_ERR_ARG;
    if (!(s->dropout >= 0 && s->dropout < 1)) return ELMAN_ERR_ARG;
    if (s->loss != ELMAN_LOSS_XENT && s->loss != ELMAN_LOSS_MSE) return ELMAN_ERR_ARG;
    if (s->reduction != ELMAN_REDUCE_MEAN && s->reduction != ELMAN_REDUCE_SUM) return ELMAN_ERR_ARG;
    if (elman_model_num_params(s) < 0) return ELMAN_ERR_TOO_LARGE;
    const elman_int TB = elman_mul(s->rnn.T, s->rnn.B);
    const elman_int slabs = elman_mul(elman_model_layers(s), elman_model_dirs(s));
    if (elman_mul(TB, s->O) < 0 || elman_mul(elman_mul(elman_add(TB, s->rnn.B), s->rnn.H), slabs) < 0)
        return ELMAN_ERR_TOO_LARGE;
    /* dropout numbers the elements of a layer's output in a batch of dropout_batch lanes
     * (this call's B of them from dropout_offset), below 2^48 */
    if (s->dropout_batch < 0 || s->dropout_offset < 0) return ELMAN_ERR_ARG;
    if (s->dropout_batch > 0 && elman_add(s->dropout_offset, s->rnn.B) > s->dropout_batch)
        return ELMAN_ERR_ARG;
    if (s->dropout > 0 &&
        !(elman_mul(elman_mul(elman_mul(s->rnn.T, elman_dropout_lanes(s)), s->rnn.H), 2) >= 0 &&
          elman_mul(elman_mul(elman_mul(s->rnn.T, elman_dropout_lanes(s)), s->rnn.H), 2) <
              ((elman_int)1 << 48)))
        return ELMAN_ERR_TOO_LARGE;
    return ELMAN_OK;
}

/* Where the workspace's parts lie, in bytes from its start (-1: not needed). */
typedef struct {
    elman_int X;     /* (L-1, T, B, D*H) inputs of layers 1.. (concatenated, dropped out) */
    elman_int dX;    /* (T, B, D*H) their gradient */
    elman_int top;   /* (T, B, D*H) the last layer's outputs, concatenated (D = 2) */
    elman_int G;     /* (N, D*H) the rows that carry a loss, gathered (lengths) */
    elman_int dG;    /* (N, D*H) their gradient (lengths, or D = 2) */
    elman_int tgt;   /* (T*B,) class ids of the valid steps (lengths, cross-entropy) */
    elman_int tval;  /* (T*B, O) target values of the valid steps (lengths, MSE) */
    elman_int total;
} elman_work_plan;

static elman_int elman_plan_part(elman_int *at, elman_int count, elman_int bytes)
{
    const elman_int n = elman_mul(count, bytes);
    if (n < 0 || *at < 0) return *at = -1, -1;
    const elman_int here = *at;
    *at = elman_add(here, elman_mul((n + 63) / 64, 64)); /* 64-byte aligned parts */
    return here;
}

static elman_work_plan elman_model_plan(const elman_model_shape *s, elman_int rb)
{
    elman_work_plan w = {-1, -1, -1, -1, -1, -1, -1, 0};
    const elman_int L = elman_model_layers(s), D = elman_model_dirs(s);
    const elman_int TB = elman_mul(s->rnn.T, s->rnn.B);
    const elman_int TBDH = elman_mul(TB, elman_mul(D, s->rnn.H));
    const elman_int N = s->last_step_only ? s->rnn.B : TB;
    const elman_int NDH = elman_mul(N, elman_mul(D, s->rnn.H));
    const int lens = s->rnn.lengths != NULL;
    if (L > 1 && (D == 2 || s->dropout > 0)) {
        w.X = elman_plan_part(&w.total, elman_mul(L - 1, TBDH), rb);
        w.dX = elman_plan_part(&w.total, TBDH, rb);
    }
    if (D == 2) w.top = elman_plan_part(&w.total, TBDH, rb);
    if (lens) w.G = elman_plan_part(&w.total, NDH, rb);
    if (lens || D == 2) w.dG = elman_plan_part(&w.total, NDH, rb);
    if (lens && !s->last_step_only) {
        if (s->loss == ELMAN_LOSS_XENT)
            w.tgt = elman_plan_part(&w.total, TB, (elman_int)sizeof(elman_int));
        else
            w.tval = elman_plan_part(&w.total, elman_mul(TB, s->O), rb);
    }
    return w;
}

elman_int elman_model_work_bytes(const elman_model_shape *s, int real_bytes)
{
    if (s == NULL || (real_bytes != 4 && real_bytes != 8)) return -1;
    if (elman_model_check(s) != ELMAN_OK) return -1;
    return elman_model_plan(s, real_bytes).total;
}

/* The dropout decision of element e of layer l's output: kept when this is 0. */
static inline int elman_dropped(uint64_t seed, elman_int l, elman_int e, uint64_t threshold)
{
    uint64_t z = seed + ((((uint64_t)l) << 48) | (uint64_t)e) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (z >> 11) < threshold;
}

/* u < p, u = k * 2^-53, k < 2^53 integer  <=>  k < ceil(p * 2^53) */
static uint64_t elman_dropout_threshold(double p)
{
    return (uint64_t)ceil(p * 0x1.0p53);
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
