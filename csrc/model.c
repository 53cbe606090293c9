/* A whole model step in one call: stacked Elman layers (rnn.c), the output projection
 * (linear.c), the loss (softmax_xent.c or mse.c) and BPTT back down the stack, over the
 * flat parameter layout (layout.h), with dropout between layers:
 *
 *     H^0 = x;  H^l = rnn_forward(dropout(H^{l-1}))  for each layer and direction
 *     Y = H^{L-1} @ W_hy + b_y;  loss, dY = xent(Y, y) or mse(Y, y)
 *     dH^{L-1} = dY @ W_hy^T;  rnn_backward layer by layer from the top
 *
 * and the train step: that, the global-norm clip and an optimizer update (adagrad.c,
 * sgd.c). No allocation: the caller owns the workspace (hs, Y, dA, and work, sized by
 * elman_model_work_bytes). Reference twins: elman.reference.model_forward and
 * elman.reference.model_forward_backward.
 */
#ifndef ELMAN_TYPED
#include "layout.h"
#include "loops.h"
#include "rng.h"

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
    if (s->compute != ELMAN_COMPUTE_FLOAT32 && s->compute != ELMAN_COMPUTE_BFLOAT16)
        return ELMAN_ERR_ARG;
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
    elman_int bf16;  /* the bfloat16 products' packed operands (compute bfloat16, bf16.c) */
    elman_int wpack; /* (H, H) W_hh packed in column panels, one layer at a time (float32
                        compute, W_hh larger than ELMAN_PACK_MIN_BYTES) */
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
    elman_work_plan w = {-1, -1, -1, -1, -1, -1, -1, -1, -1, 0};
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
    if (s->compute == ELMAN_COMPUTE_BFLOAT16)
        w.bf16 = elman_plan_part(&w.total, elman_bf16_work_words(s->rnn.B, s->rnn.H), 4);
    else if ((double)s->rnn.H * (double)s->rnn.H * (double)rb > (double)ELMAN_PACK_MIN_BYTES)
        w.wpack = elman_plan_part(&w.total, elman_mul(s->rnn.H, s->rnn.H), rb);
    return w;
}

elman_int elman_model_work_bytes(const elman_model_shape *s, int real_bytes)
{
    if (s == NULL || (real_bytes != 4 && real_bytes != 8)) return -1;
    if (elman_model_check(s) != ELMAN_OK) return -1;
    if (real_bytes == 8 && s->compute != ELMAN_COMPUTE_FLOAT32) return -1;
    return elman_model_plan(s, real_bytes).total;
}

int elman_model_buffer_sizes(elman_model_sizes *out, const elman_model_shape *s,
                             int real_bytes)
{
    if (out == NULL || s == NULL || (real_bytes != 4 && real_bytes != 8)) return ELMAN_ERR_ARG;
    ELMAN_TRY(elman_model_check(s));
    if (real_bytes == 8 && s->compute != ELMAN_COMPUTE_FLOAT32) return ELMAN_ERR_ARG;
    const elman_int S = elman_model_layers(s) * elman_model_dirs(s);
    const elman_int T = s->rnn.T, B = s->rnn.B, H = s->rnn.H;
    const elman_int N = s->last_step_only ? B : elman_mul(T, B);
    out->params = elman_model_num_params(s);
    out->hs = elman_mul(elman_mul(S, T + 1), elman_mul(B, H));
    out->Y = elman_mul(N, s->O);
    out->dA = elman_mul(elman_mul(S, T), elman_mul(B, H));
    out->states = elman_mul(S, elman_mul(B, H));
    out->work_bytes = elman_model_plan(s, real_bytes).total;
    if (out->hs < 0 || out->Y < 0 || out->dA < 0 || out->work_bytes < 0)
        return ELMAN_ERR_TOO_LARGE;
    return ELMAN_OK;
}

elman_int elman_model_param_offset(const elman_model_shape *s, elman_int l, elman_int d)
{
    if (elman_model_num_params(s) < 0) return -1;
    const elman_int L = elman_model_layers(s), D = elman_model_dirs(s);
    if (l == L && d == 0) return elman_head_offset(s);
    if (l < 0 || l >= L || d < 0 || d >= D) return -1;
    return elman_layer_offset(s, l, d);
}

/* The dropout decision of element e of layer l's output: kept when this is 0. */
static inline int elman_dropped(uint64_t seed, elman_int l, elman_int e, uint64_t threshold)
{
    const uint64_t z = elman_mix64(seed + ((((uint64_t)l) << 48) | (uint64_t)e) * ELMAN_GOLDEN_GAMMA);
    return (z >> 11) < threshold;
}

/* u < p, u = k * 2^-53, k < 2^53 integer  <=>  k < ceil(p * 2^53) */
static uint64_t elman_dropout_threshold(double p)
{
    return (uint64_t)ceil(p * 0x1.0p53);
}

#define ELMAN_TYPED_FILE "model.c"
#include "typed.h"

#else /* ---- once per REAL ---- */

/* One direction of one layer, as pointers into the flat buffer (parameters or gradients). */
typedef struct {
    REAL *W_xh, *W_hh, *b_h;
} TY(layer_views);

static TY(layer_views) TYPED(layer_carve_f32, layer_carve_f64)(
    REAL *flat, const elman_model_shape *s, elman_int l, elman_int d)
{
    const elman_int H = s->rnn.H;
    const elman_int in = l == 0 ? s->rnn.I : elman_model_dirs(s) * H;
    TY(layer_views) v;
    v.W_xh = flat + elman_layer_offset(s, l, d);
    v.W_hh = v.W_xh + in * H;
    v.b_h = v.W_hh + H * H;
    return v;
}

/* W_hy (D*H, O) of the flat buffer; b_y follows it. */
static REAL *TYPED(head_carve_f32, head_carve_f64)(REAL *flat, const elman_model_shape *s)
{
    return flat + elman_head_offset(s);
}

/* The parts of a workspace (NULL where the plan has none). */
typedef struct {
    REAL *X, *dX, *top, *G, *dG, *tval, *wpack;
    elman_int *tgt;
    elman_bf16_work bf16;
    const elman_bf16_work *bf; /* &bf16 when the products run in bfloat16, else NULL */
} TY(work_parts);

static int TYPED(work_carve_f32, work_carve_f64)(
    TY(work_parts) *p, void *work, const elman_model_shape *s)
{
    const elman_work_plan w = elman_model_plan(s, (elman_int)sizeof(REAL));
    if (w.total < 0) return ELMAN_ERR_TOO_LARGE;
    if (w.total > 0 && (work == NULL || ((uintptr_t)work & 7) != 0)) return ELMAN_ERR_ARG;
    unsigned char *base = work;
    p->X = w.X < 0 ? NULL : (REAL *)(base + w.X);
    p->dX = w.dX < 0 ? NULL : (REAL *)(base + w.dX);
    p->top = w.top < 0 ? NULL : (REAL *)(base + w.top);
    p->G = w.G < 0 ? NULL : (REAL *)(base + w.G);
    p->dG = w.dG < 0 ? NULL : (REAL *)(base + w.dG);
    p->tval = w.tval < 0 ? NULL : (REAL *)(base + w.tval);
    p->tgt = w.tgt < 0 ? NULL : (elman_int *)(base + w.tgt);
    p->wpack = w.wpack < 0 ? NULL : (REAL *)(base + w.wpack);
    p->bf = NULL;
    if (s->compute != ELMAN_COMPUTE_FLOAT32) {
        if (sizeof(REAL) != 4 || w.bf16 < 0) return ELMAN_ERR_ARG; /* float32 only */
        ELMAN_TRY(elman_bf16_carve(&p->bf16, base + w.bf16, s->rnn.B, s->rnn.H));
        p->bf = &p->bf16;
    }
    return ELMAN_OK;
}

/* x (T, B, D*H) *= keep / (1 - p), x layer l's output (see elman.h). The elements are
 * numbered as in a batch of dropout_batch lanes of which these B start at dropout_offset,
 * so that ranks holding parts of one batch draw that batch's masks. */
static void TYPED(dropout_f32, dropout_f64)(REAL *x, elman_int l, const elman_model_shape *s)
{
    const uint64_t threshold = elman_dropout_threshold(s->dropout);
    const REAL scale = (REAL)(1.0 / (1.0 - s->dropout));
    const uint64_t seed = s->dropout_seed;
    const elman_int T = s->rnn.T, B = s->rnn.B, DH = elman_model_dirs(s) * s->rnn.H;
    const elman_int Bg = elman_dropout_lanes(s), off = s->dropout_offset;
    const elman_int rows = T * B;
#pragma omp parallel for schedule(static) if (rows * DH >= ELMAN_PAR_MIN_ELEMENTS && elman_can_thread())
    for (elman_int r = 0; r < rows; r++) {
        const elman_int t = r / B, b = r % B;
        const elman_int first = (t * Bg + off + b) * DH;
        REAL *row = x + r * DH;
        for (elman_int j = 0; j < DH; j++)
            row[j] = elman_dropped(seed, l, first + j, threshold) ? (REAL)0 : row[j] * scale;
    }
}

/* The (T+1, B, H) states of layer l, direction d, in hs. */
static REAL *TYPED(slab_f32, slab_f64)(
    REAL *hs, const elman_model_shape *s, elman_int l, elman_int d)
{
    return hs + (l * elman_model_dirs(s) + d) * (s->rnn.T + 1) * s->rnn.B * s->rnn.H;
}

/* Its T*B outputs: after h0 in the forward direction, before it in reverse. */
static REAL *TYPED(slab_outputs_f32, slab_outputs_f64)(
    REAL *hs, const elman_model_shape *s, elman_int l, elman_int d)
{
    REAL *slab = TY(slab)(hs, s, l, d);
    return d == 0 ? slab + s->rnn.B * s->rnn.H : slab;
}

/* rows (T*B) of D blocks of H -> rows of D*H, forward direction first (torch's output). */
static void TYPED(concat_f32, concat_f64)(
    REAL *out, REAL *hs, const elman_model_shape *s, elman_int l)
{
    const elman_int TB = s->rnn.T * s->rnn.B, H = s->rnn.H, D = elman_model_dirs(s);
    for (elman_int d = 0; d < D; d++) {
        const REAL *src = TY(slab_outputs)(hs, s, l, d);
        for (elman_int r = 0; r < TB; r++)
            memcpy(out + r * D * H + d * H, src + r * H, (size_t)H * sizeof(REAL));
    }
}

/* Layer l >= 1 reads a staged copy of layer l-1's outputs (concatenated, dropped out) when
 * there are two directions or dropout applies; else layer l-1's outputs themselves. */
static int TYPED(staged_f32, staged_f64)(const elman_model_shape *s, int train)
{
    return elman_model_dirs(s) == 2 || (train && s->dropout > 0);
}

static const REAL *TYPED(layer_input_f32, layer_input_f64)(
    REAL *hs, const TY(work_parts) *w, const elman_model_shape *s, elman_int l, int train)
{
    const elman_int TBDH = s->rnn.T * s->rnn.B * elman_model_dirs(s) * s->rnn.H;
    return TY(staged)(s, train) ? w->X + (l - 1) * TBDH : TY(slab_outputs)(hs, s, l - 1, 0);
}

static elman_rnn_shape TYPED(layer_shape_f32, layer_shape_f64)(
    const elman_model_shape *s, elman_int l, elman_int d)
{
    elman_rnn_shape r = s->rnn;
    r.I = l == 0 ? s->rnn.I : elman_model_dirs(s) * s->rnn.H;
    r.reverse = (int)d;
    return r;
}

/* Every layer forward; returns the last layer's outputs (T*B, D*H) through *top. */
static int TYPED(model_layers_forward_f32, model_layers_forward_f64)(
    const REAL **top, REAL *hs, const TY(work_parts) *w, const REAL *x, const elman_int *ids,
    const REAL *params, const elman_model_shape *s, int train)
{
    const elman_int L = elman_model_layers(s), D = elman_model_dirs(s);
    const elman_int TBDH = s->rnn.T * s->rnn.B * D * s->rnn.H;
    for (elman_int l = 0; l < L; l++) {
        const REAL *in = l == 0 ? x : TY(layer_input)(hs, w, s, l, train);
        for (elman_int d = 0; d < D; d++) {
            TY(layer_views) p = TY(layer_carve)((REAL *)params, s, l, d);
            const elman_rnn_shape r = TY(layer_shape)(s, l, d);
            ELMAN_TRY(TY(elman_rnn_forward_mm)(TY(slab)(hs, s, l, d), in,
                                                l == 0 ? ids : NULL, p.W_xh, p.W_hh, p.b_h,
                                                &r, w->bf, w->wpack));
        }
        if (l + 1 < L && TY(staged)(s, train)) {
            REAL *X = w->X + l * TBDH;
            TY(concat)(X, hs, s, l);
            if (train && s->dropout > 0) TY(dropout)(X, l, s);
        }
    }
    if (D == 2) {
        TY(concat)(w->top, hs, s, L - 1);
        *top = w->top;
    } else {
        *top = TY(slab_outputs)(hs, s, L - 1, 0);
    }
    return ELMAN_OK;
}

/* The rows of the top layer's outputs (T*B, D*H) that carry a loss: all T*B steps, or the
 * last step's B rows; with lengths, the valid steps' rows (or each sequence's last)
 * gathered into the workspace's G, with their targets alongside. Row i of *Hy is then the
 * i-th scored (t, b) in time-major order; *N counts them. Without targets (NULL), the rows
 * alone. */
static int TYPED(gather_scored_rows_f32, gather_scored_rows_f64)(
    const REAL **Hy, const elman_int **tg, const REAL **tv, elman_int *N, const REAL *top,
    const TY(work_parts) *w, const elman_int *y_ids, const REAL *y_values,
    const elman_model_shape *s)
{
    const elman_int T = s->rnn.T, B = s->rnn.B, O = s->O;
    const elman_int DH = elman_model_dirs(s) * s->rnn.H;
    const elman_int *len = s->rnn.lengths;
    const int last = s->last_step_only;
    *tg = y_ids;
    *tv = y_values;
    if (len == NULL) {
        *N = last ? B : T * B;
        *Hy = last ? top + (T - 1) * B * DH : top;
    } else if (last) {
        *N = B;
        for (elman_int b = 0; b < B; b++) {
            const elman_int L_b = len[b]; /* read once, checked where used (as the ids) */
            if (L_b < 1 || L_b > T) return ELMAN_ERR_ARG;
            memcpy(w->G + b * DH, top + ((L_b - 1) * B + b) * DH, (size_t)DH * sizeof(REAL));
        }
        *Hy = w->G;
    } else {
        elman_int n = 0;
        for (elman_int t = 0; t < T; t++)
            for (elman_int b = 0; b < B; b++) {
                if (t >= len[b]) continue;
                const elman_int r = t * B + b;
                memcpy(w->G + n * DH, top + r * DH, (size_t)DH * sizeof(REAL));
                if (s->loss == ELMAN_LOSS_XENT && y_ids != NULL)
                    w->tgt[n] = y_ids[r];
                else if (s->loss == ELMAN_LOSS_MSE && y_values != NULL)
                    memcpy(w->tval + n * O, y_values + r * O, (size_t)O * sizeof(REAL));
                n++;
            }
        *N = n;
        *Hy = w->G;
        *tg = w->tgt;
        *tv = w->tval;
    }
    return ELMAN_OK;
}

/* The inverse of the gather: each scored row's gradient dG (N, D*H) into its step's row of
 * every direction's dA (D, T, B, H) of the top layer; the other rows get zero. */
static void TYPED(scatter_scored_grads_f32, scatter_scored_grads_f64)(
    REAL *dA_top, const REAL *dG, const elman_model_shape *s)
{
    const elman_int T = s->rnn.T, B = s->rnn.B, H = s->rnn.H, D = elman_model_dirs(s);
    const elman_int DH = D * H, TBH = T * B * H;
    const elman_int *len = s->rnn.lengths;
    const int last = s->last_step_only;
    memset(dA_top, 0, (size_t)(D * TBH) * sizeof(REAL));
    elman_int i = 0;
    for (elman_int t = 0; t < T; t++)
        for (elman_int b = 0; b < B; b++) {
            const int scored = len == NULL ? (!last || t == T - 1)
                                           : (last ? t == len[b] - 1 : t < len[b]);
            if (!scored) continue;
            const elman_int row = last ? b : i++;
            for (elman_int d = 0; d < D; d++)
                memcpy(dA_top + d * TBH + (t * B + b) * H, dG + row * DH + d * H,
                       (size_t)H * sizeof(REAL));
        }
}

/* The lengths, checked again here: the gathers and scatters index by them. */
static int TYPED(check_lengths_f32, check_lengths_f64)(const elman_model_shape *s)
{
    if (s->rnn.lengths != NULL)
        for (elman_int b = 0; b < s->rnn.B; b++)
            if (s->rnn.lengths[b] < 1 || s->rnn.lengths[b] > s->rnn.T) return ELMAN_ERR_ARG;
    return ELMAN_OK;
}

/* From dY (N, O), the gradient on the scored outputs Y = Hy @ W_hy + b_y, down to every
 * parameter (grads, overwritten) and initial state (dh0, or NULL): the head's gradient, then
 * BPTT layer by layer from the top, in place over dA. With Rhs (the structural damping of a
 * Gauss-Newton product), coef * R{H} of each layer joins the gradient arriving on its
 * outputs. */
static int TYPED(model_backward_f32, model_backward_f64)(
    REAL *grads, REAL *dh0, REAL *dA, REAL *hs, const TY(work_parts) *w, const REAL *x,
    const elman_int *ids, const REAL *dh_T, const REAL *params, const elman_model_shape *s,
    const REAL *Hy, const REAL *dY, elman_int N, REAL *Rhs, REAL coef)
{
    const elman_int T = s->rnn.T, B = s->rnn.B, H = s->rnn.H, O = s->O;
    const elman_int L = elman_model_layers(s), D = elman_model_dirs(s), DH = D * H;
    const elman_int BH = B * H, TB = T * B, TBH = TB * H;
    const elman_int *len = s->rnn.lengths;
    const int last = s->last_step_only;
    REAL *W_hy = TY(head_carve)((REAL *)params, s);
    REAL *gW_hy = TY(head_carve)(grads, s);

    /* dW_hy, db_y, and dHy = dY @ W_hy^T. One direction without lengths: straight into the
     * top layer's dA rows (the steps without a loss get no gradient from above). Else into
     * dG, then scattered into each direction's dA. */
    REAL *dA_top = dA + (L - 1) * D * TBH;
    if (len == NULL && D == 1) {
        REAL *dHy = last ? dA_top + (T - 1) * BH : dA_top;
        if (last) memset(dA_top, 0, (size_t)((T - 1) * BH) * sizeof(REAL));
        ELMAN_TRY(TY(elman_linear_backward_mm)(gW_hy, gW_hy + DH * O, dHy, dY, Hy, W_hy, N, DH,
                                               O, w->bf));
    } else {
        ELMAN_TRY(TY(elman_linear_backward_mm)(gW_hy, gW_hy + DH * O, w->dG, dY, Hy, W_hy, N,
                                               DH, O, w->bf));
        TY(scatter_scored_grads)(dA_top, w->dG, s);
    }

    /* BPTT, layer by layer from the top, in place over dA; each layer above hands the one
     * below the gradient of its input, dX = sum_d dA_d @ W_xh_d^T. */
    for (elman_int l = L - 1; l >= 0; l--) {
        const REAL *in = l == 0 ? x : TY(layer_input)(hs, w, s, l, 1);
        if (Rhs != NULL)
            for (elman_int d = 0; d < D; d++) {
                REAL *da = dA + (l * D + d) * TBH;
                const REAL *rh = TY(slab_outputs)(Rhs, s, l, d);
                for (elman_int i = 0; i < TBH; i++) da[i] += coef * rh[i];
            }
        for (elman_int d = 0; d < D; d++) {
            const elman_int k = l * D + d;
            TY(layer_views) p = TY(layer_carve)((REAL *)params, s, l, d);
            TY(layer_views) g = TY(layer_carve)(grads, s, l, d);
            const elman_rnn_shape r = TY(layer_shape)(s, l, d);
            ELMAN_TRY(TY(elman_rnn_backward_mm)(g.W_xh, g.W_hh, g.b_h,
                                                 dh0 != NULL ? dh0 + k * BH : NULL, NULL,
                                                 dA + k * TBH, dA + k * TBH,
                                                 dh_T != NULL ? dh_T + k * BH : NULL,
                                                 TY(slab)(hs, s, l, d), in,
                                                 l == 0 ? ids : NULL, p.W_xh, p.W_hh, &r,
                                                 w->bf));
        }
        if (l == 0) break;
        REAL *below = dA + (l - 1) * D * TBH;
        if (!TY(staged)(s, 1)) {
            TY(layer_views) p = TY(layer_carve)((REAL *)params, s, l, 0);
            ELMAN_TRY(TY(elman_mm)(w->bf, 0, 1, TB, H, H, dA + l * TBH, H, p.W_xh, H, 0, below,
                                   H));
        } else {
            for (elman_int d = 0; d < D; d++) {
                TY(layer_views) p = TY(layer_carve)((REAL *)params, s, l, d);
                ELMAN_TRY(TY(elman_mm)(w->bf, 0, 1, TB, DH, H, dA + (l * D + d) * TBH, H, p.W_xh,
                                       H, d == 0 ? 0 : 1, w->dX, DH));
            }
            if (s->dropout > 0) TY(dropout)(w->dX, l - 1, s);
            for (elman_int d = 0; d < D; d++)
                for (elman_int r = 0; r < TB; r++)
                    memcpy(below + d * TBH + r * H, w->dX + r * DH + d * H,
                           (size_t)H * sizeof(REAL));
        }
    }
    return ELMAN_OK;
}

int TYPED(elman_model_forward_f32, elman_model_forward_f64)(
    REAL *Y,              /* (T, B, O) out */
    REAL *hs,             /* (L*D, T+1, B, H) in: h0; out: H_t */
    void *work,           /* elman_model_work_bytes */
    const REAL *x,        /* (T, B, I) or NULL */
    const elman_int *ids, /* (T, B) or NULL */
    const REAL *params,   /* flat layout */
    const elman_model_shape *s)
{
    ELMAN_TRY(elman_model_check(s));
    if (params == NULL) return ELMAN_ERR_ARG;
    const elman_int T = s->rnn.T, B = s->rnn.B, O = s->O;
    const elman_int DH = elman_model_dirs(s) * s->rnn.H;
    TY(work_parts) w;
    ELMAN_TRY(TY(work_carve)(&w, work, s));
    const REAL *top;
    ELMAN_TRY(TY(model_layers_forward)(&top, hs, &w, x, ids, params, s, 0));
    /* Y = top @ W_hy + b_y, one GEMM over T*B rows */
    const REAL *W_hy = TY(head_carve)((REAL *)params, s);
    ELMAN_TRY(TY(elman_linear_forward_mm)(Y, top, W_hy, W_hy + DH * O, T * B, DH, O, w.bf));
    if (s->rnn.lengths != NULL) /* padded steps have no output */
        for (elman_int t = 0; t < T; t++)
            for (elman_int b = 0; b < B; b++)
                if (t >= s->rnn.lengths[b])
                    memset(Y + (t * B + b) * O, 0, (size_t)O * sizeof(REAL));
    return ELMAN_OK;
}

int TYPED(elman_model_forward_backward_f32, elman_model_forward_backward_f64)(
    double *loss,           /* out */
    REAL *grads,            /* flat layout, overwritten */
    REAL *dh0,              /* (L*D, B, H) out, or NULL */
    REAL *hs,               /* (L*D, T+1, B, H) in: h0 */
    REAL *Y,                /* (N, O) workspace */
    REAL *dA,               /* (L*D, T, B, H) workspace */
    void *work,             /* elman_model_work_bytes */
    const REAL *x,          /* (T, B, I) or NULL */
    const elman_int *ids,   /* (T, B) or NULL */
    const elman_int *y_ids, /* (N,) for cross-entropy */
    const REAL *y_values,   /* (N, O) for MSE */
    const REAL *dh_T,       /* (L*D, B, H) or NULL */
    const REAL *params,     /* flat layout */
    const elman_model_shape *s)
{
    ELMAN_TRY(elman_model_check(s));
    const elman_int T = s->rnn.T, B = s->rnn.B, H = s->rnn.H, O = s->O;
    if (T < 1 || B < 1 || loss == NULL || params == NULL || grads == NULL || Y == NULL ||
        dA == NULL || hs == NULL)
        return ELMAN_ERR_ARG;
    if (s->loss == ELMAN_LOSS_XENT ? y_ids == NULL : y_values == NULL) return ELMAN_ERR_ARG;
    TY(work_parts) w;
    ELMAN_TRY(TY(work_carve)(&w, work, s));
    const elman_int DH = elman_model_dirs(s) * H;
    ELMAN_TRY(TY(check_lengths)(s));

    const REAL *top;
    ELMAN_TRY(TY(model_layers_forward)(&top, hs, &w, x, ids, params, s, 1));

    /* The rows that carry a loss, Hy (N, D*H), and their targets */
    const REAL *Hy;
    const elman_int *tg;
    const REAL *tv;
    elman_int N;
    ELMAN_TRY(TY(gather_scored_rows)(&Hy, &tg, &tv, &N, top, &w, y_ids, y_values, s));
    const REAL *W_hy = TY(head_carve)((REAL *)params, s);
    ELMAN_TRY(TY(elman_linear_forward_mm)(Y, Hy, W_hy, W_hy + DH * O, N, DH, O, w.bf));

    /* Loss and dY, in place over Y. "mean" averages over every target element, as torch:
     * N rows for cross-entropy, N*O values for MSE. */
    if (s->loss == ELMAN_LOSS_XENT) {
        const double scale = s->reduction == ELMAN_REDUCE_MEAN ? 1.0 / (double)N : 1.0;
        ELMAN_TRY(TY(elman_softmax_xent)(loss, Y, Y, tg, N, O, scale));
    } else {
        const double scale = s->reduction == ELMAN_REDUCE_MEAN ? 1.0 / (double)(N * O) : 1.0;
        ELMAN_TRY(TY(elman_mse)(loss, Y, Y, tv, N * O, scale));
    }

    return TY(model_backward)(grads, dh0, dA, hs, &w, x, ids, dh_T, params, s, Hy, Y, N, NULL,
                              0);
}

int TYPED(elman_model_train_step_f32, elman_model_train_step_f64)(
    double *loss, double *grad_norm, REAL *params, REAL *grads, REAL *state, REAL *hs, REAL *Y,
    REAL *dA, void *work, const REAL *x, const elman_int *ids, const elman_int *y_ids,
    const REAL *y_values, const elman_model_shape *s, const elman_optimizer *opt)
{
    if (opt == NULL || grad_norm == NULL) return ELMAN_ERR_ARG;
    if (opt->kind != ELMAN_OPT_ADAGRAD && opt->kind != ELMAN_OPT_SGD) return ELMAN_ERR_ARG;
    if (!(opt->max_grad_norm > 0)) return ELMAN_ERR_ARG;
    *grad_norm = NAN;
    const elman_int n = elman_model_num_params(s);
    if (n < 0) return ELMAN_ERR_TOO_LARGE;
    if (opt->kind == ELMAN_OPT_ADAGRAD && state == NULL) return ELMAN_ERR_ARG;
    if (opt->kind == ELMAN_OPT_SGD && opt->sgd.momentum != 0 && state == NULL)
        return ELMAN_ERR_ARG;

    ELMAN_TRY(TY(elman_model_forward_backward)(loss, grads, NULL, hs, Y, dA, work, x, ids, y_ids,
                                                y_values, NULL, params, s));
    /* torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped at 1 */
    double scale = 1.0;
    if (isfinite(opt->max_grad_norm)) {
        double ss;
        ELMAN_TRY(TY(elman_sumsq)(&ss, grads, n));
        *grad_norm = sqrt(ss);
        if (!isfinite(*grad_norm)) return ELMAN_ERR_NONFINITE;
        const double coef = opt->max_grad_norm / (*grad_norm + 1e-6);
        scale = coef < 1.0 ? coef : 1.0;
    }
    if (opt->kind == ELMAN_OPT_ADAGRAD) {
        elman_adagrad_opts o = opt->adagrad;
        o.grad_scale = scale;
        return TY(elman_adagrad_update)(params, grads, state, n, &o);
    }
    elman_sgd_opts o = opt->sgd;
    o.grad_scale = scale;
    return TY(elman_sgd_update)(params, grads, state, n, &o);
}

/* ---- Gauss-Newton products ----------------------------------------------------------- */

int TYPED(elman_model_gauss_newton_prepare_f32, elman_model_gauss_newton_prepare_f64)(
    REAL *P,              /* (N, O) out */
    REAL *hs,             /* (L*D, T+1, B, H) in: h0; out: H_t */
    void *work,           /* elman_model_work_bytes; read again by the products */
    const REAL *x,        /* (T, B, I) or NULL */
    const elman_int *ids, /* (T, B) or NULL */
    const REAL *params,   /* flat layout */
    const elman_model_shape *s)
{
    ELMAN_TRY(elman_model_check(s));
    if (s->rnn.T < 1 || s->rnn.B < 1 || P == NULL || hs == NULL || params == NULL ||
        s->compute != ELMAN_COMPUTE_FLOAT32)
        return ELMAN_ERR_ARG;
    ELMAN_TRY(TY(check_lengths)(s));
    TY(work_parts) w;
    ELMAN_TRY(TY(work_carve)(&w, work, s));
    const elman_int O = s->O, DH = elman_model_dirs(s) * s->rnn.H;
    const REAL *top, *Hy, *tv;
    const elman_int *tg;
    elman_int N;
    ELMAN_TRY(TY(model_layers_forward)(&top, hs, &w, x, ids, params, s, 1));
    ELMAN_TRY(TY(gather_scored_rows)(&Hy, &tg, &tv, &N, top, &w, NULL, NULL, s));
    const REAL *W_hy = TY(head_carve)((REAL *)params, s);
    ELMAN_TRY(TY(elman_linear_forward)(P, Hy, W_hy, W_hy + DH * O, N, DH, O));
    if (!TY(elman_all_finite)(P, N * O)) return ELMAN_ERR_NONFINITE;
    if (s->loss == ELMAN_LOSS_XENT) /* the softmax of each row, as the loss's gradient has it */
        for (elman_int r = 0; r < N; r++) {
            REAL *p = P + r * O;
            REAL m = p[0];
            for (elman_int j = 1; j < O; j++) m = p[j] > m ? p[j] : m;
            double z = 0;
            for (elman_int j = 0; j < O; j++) {
                p[j] = (REAL)exp((double)(p[j] - m));
                z += (double)p[j];
            }
            const REAL inv = (REAL)(1.0 / z);
            for (elman_int j = 0; j < O; j++) p[j] *= inv;
        }
    return ELMAN_OK;
}

int TYPED(elman_model_gauss_newton_product_f32, elman_model_gauss_newton_product_f64)(
    REAL *Gv,             /* flat layout out */
    REAL *Rhs,            /* (L*D, T+1, B, H) workspace */
    REAL *RY,             /* (N, O) workspace */
    REAL *dA,             /* (L*D, T, B, H) workspace */
    void *Rwork,          /* elman_model_work_bytes workspace */
    REAL *hs,             /* from the prepare, read */
    void *work,           /* from the prepare: its forward parts read, its gradient parts used */
    const REAL *P,        /* (N, O) from the prepare */
    const REAL *v,        /* flat layout */
    const REAL *x,        /* (T, B, I) or NULL: as given to the prepare */
    const elman_int *ids, /* (T, B) or NULL */
    const REAL *params,   /* flat layout, as given to the prepare */
    const elman_model_shape *s, double damping, double structural_damping)
{
    ELMAN_TRY(elman_model_check(s));
    const elman_int T = s->rnn.T, B = s->rnn.B, H = s->rnn.H, O = s->O;
    if (T < 1 || B < 1 || Gv == NULL || v == NULL || Gv == v || Rhs == NULL || RY == NULL ||
        dA == NULL || hs == NULL || P == NULL || params == NULL ||
        s->compute != ELMAN_COMPUTE_FLOAT32)
        return ELMAN_ERR_ARG;
    if (!(damping >= 0 && damping < INFINITY && structural_damping >= 0 &&
          structural_damping < INFINITY))
        return ELMAN_ERR_ARG;
    ELMAN_TRY(TY(check_lengths)(s));
    TY(work_parts) w, Rw;
    ELMAN_TRY(TY(work_carve)(&w, work, s));
    ELMAN_TRY(TY(work_carve)(&Rw, Rwork, s));
    const elman_int L = elman_model_layers(s), D = elman_model_dirs(s), DH = D * H;
    const elman_int TBDH = T * B * DH;
    const int staged = TY(staged)(s, 1);

    /* R{H} of every layer and direction, from the bottom: layer l > 0 reads R{X}, the
     * derivative of its input, staged (concatenated, through the same dropout masks) as the
     * forward stages X. */
    for (elman_int l = 0; l < L; l++) {
        const REAL *in = l == 0 ? x : TY(layer_input)(hs, &w, s, l, 1);
        const REAL *Rin = l == 0 ? NULL
                          : staged ? Rw.X + (l - 1) * TBDH
                                   : TY(slab_outputs)(Rhs, s, l - 1, 0);
        for (elman_int d = 0; d < D; d++) {
            TY(layer_views) p = TY(layer_carve)((REAL *)params, s, l, d);
            TY(layer_views) q = TY(layer_carve)((REAL *)v, s, l, d);
            const elman_rnn_shape r = TY(layer_shape)(s, l, d);
            ELMAN_TRY(TY(elman_rnn_rforward)(TY(slab)(Rhs, s, l, d), Rin, TY(slab)(hs, s, l, d),
                                              in, l == 0 ? ids : NULL, p.W_xh, p.W_hh, q.W_xh,
                                              q.W_hh, q.b_h, &r));
        }
        if (l + 1 < L && staged) {
            REAL *RX = Rw.X + l * TBDH;
            TY(concat)(RX, Rhs, s, l);
            if (s->dropout > 0) TY(dropout)(RX, l, s);
        }
    }
    const REAL *top = D == 2 ? w.top : TY(slab_outputs)(hs, s, L - 1, 0);
    if (D == 2) TY(concat)(Rw.top, Rhs, s, L - 1);
    const REAL *Rtop = D == 2 ? Rw.top : TY(slab_outputs)(Rhs, s, L - 1, 0);

    /* R{Y} = R{Hy} @ W_hy + Hy @ V_hy + v_y over the scored rows */
    const REAL *Hy, *RHy, *tv;
    const elman_int *tg;
    elman_int N;
    ELMAN_TRY(TY(gather_scored_rows)(&Hy, &tg, &tv, &N, top, &w, NULL, NULL, s));
    ELMAN_TRY(TY(gather_scored_rows)(&RHy, &tg, &tv, &N, Rtop, &Rw, NULL, NULL, s));
    const REAL *W_hy = TY(head_carve)((REAL *)params, s);
    const REAL *V_hy = TY(head_carve)((REAL *)v, s);
    ELMAN_TRY(TY(elman_linear_forward)(RY, RHy, W_hy, V_hy + DH * O, N, DH, O));
    ELMAN_TRY(TY(elman_gemm)(0, 0, N, O, DH, 1, Hy, DH, V_hy, O, 1, RY, O));

    /* H_L R{Y}, the loss's Hessian on the outputs (scaled as the reduction scales the loss):
     * (diag(p) - p p^T) r = p * (r - p.r) per row for softmax cross-entropy, 2 r for MSE. */
    const int mean = s->reduction == ELMAN_REDUCE_MEAN;
    if (s->loss == ELMAN_LOSS_XENT) {
        const REAL scale = (REAL)(mean ? 1.0 / (double)N : 1.0);
        for (elman_int i = 0; i < N; i++) {
            REAL *r = RY + i * O;
            const REAL *p = P + i * O;
            double pr = 0;
            for (elman_int j = 0; j < O; j++) pr += (double)p[j] * (double)r[j];
            for (elman_int j = 0; j < O; j++) r[j] = scale * p[j] * (r[j] - (REAL)pr);
        }
    } else {
        const REAL scale = (REAL)(mean ? 2.0 / (double)(N * O) : 2.0);
        for (elman_int i = 0; i < N * O; i++) RY[i] *= scale;
    }

    /* J^T of that by backprop through time, with the structural damping's term on the way:
     * lambda * mu * J_H^T J_H v over the hidden states of every layer, divided by the number
     * of valid steps under "mean". */
    double coef = damping * structural_damping;
    if (coef > 0 && mean) {
        elman_int steps = T * B;
        if (s->rnn.lengths != NULL) {
            steps = 0;
            for (elman_int b = 0; b < B; b++) steps += s->rnn.lengths[b];
        }
        coef /= (double)steps;
    }
    ELMAN_TRY(TY(model_backward)(Gv, NULL, dA, hs, &w, x, ids, NULL, params, s, Hy, RY, N,
                                 coef > 0 ? Rhs : NULL, (REAL)coef));
    if (damping > 0) {
        const elman_int n = elman_model_num_params(s);
        const REAL lam = (REAL)damping;
        for (elman_int i = 0; i < n; i++) Gv[i] += lam * v[i];
    }
    return ELMAN_OK;
}

#endif
