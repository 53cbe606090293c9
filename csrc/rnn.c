/* The Elman layer: forward over T steps and backprop through time.
 *
 *     A_t = X_t @ W_xh + H_{t-1} @ W_hh + b_h,   H_t = f(A_t)        f = tanh or relu
 *
 *     dA_t  = (dH_t + dA_{t+1} @ W_hh^T) * f'(A_t)
 *     dW_hh = sum_t H_{t-1}^T dA_t,   dW_xh = sum_t X_t^T dA_t,   db_h = sum_t dA_t
 *     dh0   = dA_1 @ W_hh^T,          dx_t  = dA_t @ W_xh^T
 *
 * (in reverse, t+1 and t-1 trade places; elman.h states lengths and the buffers' layout),
 * and the forward pass of the R-operator (the directional derivative along a direction V of
 * the parameters, for Gauss-Newton products):
 *
 *     R{A_t} = R{X_t} @ W_xh + X_t @ V_xh + R{H_{t-1}} @ W_hh + H_{t-1} @ V_hh + v_b
 *     R{H_t} = f'(A_t) * R{A_t},   R{h0} = 0
 *
 * Reference twins: elman.reference.rnn_forward, rnn_backward and rnn_rforward, 30, 43 and
 * 30 lines of NumPy: the place to learn the algorithm. Every product off the recurrence is one
 * GEMM over all T*B rows (blas.c); only H_{t-1} @ W_hh and dA_{t+1} @ W_hh^T run step by
 * step, on elman's own kernel with the activation fused (gemm_small.c).
 */
#ifndef ELMAN_TYPED
#include "loops.h"

/* Whether the per-step products go to elman's step kernel (gemm_small.c) rather than the
 * BLAS: always on the paths where it is fast, on the generic path up to a size (tuning.h). */
static inline int elman_own_step_kernel(const elman_gemm_small_loops *gs, elman_int B,
                                        elman_int H)
{
    return gs->fast || B <= 2 || B * H * H <= ELMAN_GENERIC_STEP_MAX_FMAS;
}

#define ELMAN_TYPED_FILE "rnn.c"
#include "typed.h"

#else /* ---- once per REAL ---- */

/* dst (rows, cols) = src^T in square tiles, so that both sides' accesses stay within a
 * few pages (row by row, one of them would stride a row apart: a page at 1024 floats). */
void TYPED(elman_transpose_f32, elman_transpose_f64)(REAL *restrict dst,
                                                     const REAL *restrict src, elman_int rows,
                                                     elman_int cols)
{
    enum { TILE = 32 };
    for (elman_int i0 = 0; i0 < rows; i0 += TILE)
        for (elman_int j0 = 0; j0 < cols; j0 += TILE) {
            const elman_int i1 = i0 + TILE < rows ? i0 + TILE : rows;
            const elman_int j1 = j0 + TILE < cols ? j0 + TILE : cols;
            for (elman_int j = j0; j < j1; j++)
                for (elman_int i = i0; i < i1; i++) dst[i * cols + j] = src[j * rows + i];
        }
}

/* The bfloat16 step and its packed weight (bf16.c), float32 only: the double entry points
 * have no bf16 workspace (bf == NULL) and never call these. */
static int TYPED(bf16_pack_f32, bf16_pack_f64)(const elman_bf16_work *bf, const REAL *W,
                                               int transpose)
{
#if ELMAN_LAST_PASS
    (void)bf, (void)W, (void)transpose;
    return ELMAN_ERR_ARG;
#else
    return elman_bf16_pack_weight(bf, W, transpose);
#endif
}

static int TYPED(bf16_step_f32, bf16_step_f64)(const elman_bf16_work *bf, REAL *C,
                                               const REAL *A, const REAL *Y, elman_int B,
                                               int nonlinearity, int backward)
{
#if ELMAN_LAST_PASS
    (void)bf, (void)C, (void)A, (void)Y, (void)B, (void)nonlinearity, (void)backward;
    return ELMAN_ERR_ARG;
#else
    return elman_bf16_step(bf, C, A, Y, B, nonlinearity, backward);
#endif
}

/* Checks an elman_rnn_shape and returns T*B and T*B*H through the pointers. */
static int TYPED(rnn_check_f32, rnn_check_f64)(
    const elman_rnn_shape *s, const REAL *x, const elman_int *ids, elman_int *TB,
    elman_int *TBH)
{
    if (s == NULL || s->T < 0 || s->B < 0 || s->I < 0 || s->H < 0) return ELMAN_ERR_ARG;
    if (s->nonlinearity != ELMAN_TANH && s->nonlinearity != ELMAN_RELU) return ELMAN_ERR_ARG;
    if (s->reverse != 0 && s->reverse != 1) return ELMAN_ERR_ARG;
    if (s->lengths != NULL)
        for (elman_int b = 0; b < s->B; b++)
            if (s->lengths[b] < 1 || s->lengths[b] > s->T) return ELMAN_ERR_ARG;
    *TB = elman_mul(s->T, s->B);
    *TBH = elman_mul(*TB, s->H);
    if (*TBH < 0 || elman_mul(*TB, s->I) < 0 || elman_mul(s->I, s->H) < 0 ||
        elman_mul(elman_add(*TB, s->B), s->H) < 0)
        return ELMAN_ERR_TOO_LARGE;
    /* At most one input kind; none only when there is no input to read (T*B*I == 0). */
    if (x != NULL && ids != NULL) return ELMAN_ERR_ARG;
    if (x == NULL && ids == NULL && *TB * s->I > 0) return ELMAN_ERR_ARG;
    if (ids != NULL)
        for (elman_int r = 0; r < *TB; r++)
            if (ids[r] < 0 || ids[r] >= s->I) return ELMAN_ERR_TARGET;
    return ELMAN_OK;
}

int TYPED(elman_rnn_forward_f32, elman_rnn_forward_f64)(
    REAL *hs, const REAL *x, const elman_int *ids, const REAL *W_xh, const REAL *W_hh,
    const REAL *b_h, const elman_rnn_shape *s)
{
    return TY(elman_rnn_forward_mm)(hs, x, ids, W_xh, W_hh, b_h, s, NULL, NULL);
}

/* The forward with its products in bfloat16 when bf is not NULL (internal.h); with room
 * for W_hh packed in column panels (wpack, H*H, or NULL), the per-step product reads that
 * copy. The caller passes the room where packing pays (model.c: a W_hh larger than
 * ELMAN_PACK_MIN_BYTES, tuning.h). */
int TYPED(elman_rnn_forward_mm_f32, elman_rnn_forward_mm_f64)(
    REAL *hs,             /* (T+1, B, H) in: hs[0] = h0; out: H_t */
    const REAL *x,        /* (T, B, I) or NULL */
    const elman_int *ids, /* (T, B) or NULL */
    const REAL *W_xh,     /* (I, H) */
    const REAL *W_hh,     /* (H, H) */
    const REAL *b_h,      /* (H,) */
    const elman_rnn_shape *s, const elman_bf16_work *bf, REAL *wpack)
{
    elman_int TB, TBH;
    ELMAN_TRY(TY(rnn_check)(s, x, ids, &TB, &TBH));
    const elman_int T = s->T, B = s->B, I = s->I, H = s->H, BH = B * H;
    if (TBH == 0) return ELMAN_OK;
    ELMAN_NEED(hs, TBH);
    ELMAN_NEED(W_xh, I * H);
    ELMAN_NEED(W_hh, H * H);
    ELMAN_NEED(b_h, H);

    /* Input projection for every step at once, written where A_t will accumulate (the
     * output rows): b_h + X @ W_xh (one GEMM over T*B rows), or a row gather for ids. */
    const int rev = s->reverse;
    REAL *A = rev ? hs : hs + BH;
    for (elman_int r = 0; r < TB; r++) {
        REAL *a = A + r * H;
        if (ids != NULL) {
            /* Checked again where it is used: the ids may live in memory that another
             * thread (or an aliased output) changes after the check above. */
            const elman_int id = ids[r];
            if (id < 0 || id >= I) return ELMAN_ERR_TARGET;
            const REAL *w = W_xh + id * H;
            for (elman_int j = 0; j < H; j++) a[j] = w[j] + b_h[j];
        } else {
            for (elman_int j = 0; j < H; j++) a[j] = b_h[j]; /* rows too short for memcpy */
        }
    }
    const int isa = elman_isa();
    const elman_gemm_small_loops *gs = elman_gemm_small_paths[isa];
    if (ids == NULL && bf == NULL && gs->fast) {
        /* elman's kernel: the BLAS's packing of W_xh costs more than it saves at I << H */
        if (I > 0) gs->TY(gemm_nn)(A, x, W_xh, TB, I, H);
    } else if (ids == NULL) {
        ELMAN_TRY(TY(elman_mm)(bf, 0, 0, TB, H, I, x, I, W_xh, H, 1, A, H));
    }
    if (bf != NULL) ELMAN_TRY(TY(bf16_pack)(bf, W_hh, 0));

    /* The recurrence: A_t += H_prev @ W_hh; H_t = f(A_t), in place. Step t (1-based) has
     * its output at A + (t-1)*BH and reads the previous state one block before (forward)
     * or after (reverse) it. */
    const elman_act_loops *act = elman_act_paths[isa];
    const int own = elman_own_step_kernel(gs, B, H);
    /* (from four rows: fewer take the single-row loops, which stream a large W_hh by its
     * own rows faster than they chain down a panel) */
    const int packed = bf == NULL && own && gs->fast && wpack != NULL && T > 1 && B >= 4;
    if (packed) gs->TY(pack_panels)(wpack, W_hh, H, H, 0);
    const elman_int *len = s->lengths;
    for (elman_int k = 1; k <= T; k++) {
        const elman_int t = rev ? T - k + 1 : k;
        REAL *h = A + (t - 1) * BH;
        const REAL *prev = rev ? h + BH : h - BH;
        if (bf != NULL) {
            ELMAN_TRY(TY(bf16_step)(bf, h, prev, NULL, B, s->nonlinearity, 0));
        } else if (packed) {
            gs->TY(step_packed)(h, prev, wpack, NULL, B, H, s->nonlinearity, 0);
        } else if (own) {
            gs->TY(step)(h, prev, W_hh, NULL, B, H, s->nonlinearity, 0);
        } else {
            ELMAN_TRY(TY(elman_gemm)(0, 0, B, H, H, 1, prev, H, W_hh, H, 1, h, H));
            act->TY(act_forward)(h, h, BH, s->nonlinearity);
        }
        if (len != NULL) /* padding carries the state through unchanged */
            for (elman_int b = 0; b < B; b++)
                if (t > len[b]) memcpy(h + b * H, prev + b * H, (size_t)H * sizeof(REAL));
    }
    return ELMAN_OK;
}

int TYPED(elman_rnn_backward_f32, elman_rnn_backward_f64)(
    REAL *dW_xh, REAL *dW_hh, REAL *db_h, REAL *dh0, REAL *dx, REAL *dA, const REAL *dH,
    const REAL *dh_T, const REAL *hs, const REAL *x, const elman_int *ids, const REAL *W_xh,
    const REAL *W_hh, const elman_rnn_shape *s)
{
    return TY(elman_rnn_backward_mm)(dW_xh, dW_hh, db_h, dh0, dx, dA, dH, dh_T, hs, x, ids,
                                     W_xh, W_hh, s, NULL);
}

/* The backward with its products in bfloat16 when bf is not NULL (internal.h). */
int TYPED(elman_rnn_backward_mm_f32, elman_rnn_backward_mm_f64)(
    REAL *dW_xh,          /* (I, H) out */
    REAL *dW_hh,          /* (H, H) out */
    REAL *db_h,           /* (H,) out */
    REAL *dh0,            /* (B, H) out, or NULL */
    REAL *dx,             /* (T, B, I) out, or NULL */
    REAL *dA,             /* (T, B, H) out; may equal dH */
    const REAL *dH,       /* (T, B, H) */
    const REAL *dh_T,     /* (B, H) or NULL */
    const REAL *hs,       /* (T+1, B, H) from the forward */
    const REAL *x,        /* (T, B, I) or NULL */
    const elman_int *ids, /* (T, B) or NULL */
    const REAL *W_xh,     /* (I, H) */
    const REAL *W_hh,     /* (H, H) */
    const elman_rnn_shape *s, const elman_bf16_work *bf)
{
    elman_int TB, TBH;
    ELMAN_TRY(TY(rnn_check)(s, x, ids, &TB, &TBH));
    const elman_int T = s->T, B = s->B, I = s->I, H = s->H, BH = B * H;
    if (dx != NULL && ids != NULL) return ELMAN_ERR_ARG;
    ELMAN_NEED(dW_xh, I * H);
    ELMAN_NEED(dW_hh, H * H);
    ELMAN_NEED(db_h, H);
    ELMAN_NEED(dA, TBH);
    ELMAN_NEED(dH, TBH);
    ELMAN_NEED(hs, TBH + B * H);
    ELMAN_NEED(W_hh, H * H);
    if (dx != NULL) ELMAN_NEED(W_xh, I * H);

    /* dA_t = (dH_t [+ dh_T where the final state was made] + dA_next @ W_hh^T) * f'(A_t),
     * in the order opposite to the forward's; dA_next is the step that read H_t. */
    const int isa = elman_isa();
    const elman_gemm_small_loops *gs = elman_gemm_small_paths[isa];
    const elman_act_loops *act = elman_act_paths[isa];
    const int rev = s->reverse;
    const elman_int *len = s->lengths;
    const REAL *outs = rev ? hs : hs + BH; /* H_t of step t at outs + (t-1)*BH */
    /* A batch of under four rows with a W_hh larger than the streaming size reads W_hh's
     * rows as dot products (no transposed copy: elman_stream_weight_bytes, gemm_small.c) */
    const int dots = bf == NULL && gs->fast && B < 4 && T > 1 &&
                     (double)H * (double)H * sizeof(REAL) > (double)elman_stream_weight_bytes();
    const int own = bf == NULL && !dots && elman_own_step_kernel(gs, B, H) && T > 1;
    if (bf != NULL && T > 1) ELMAN_TRY(TY(bf16_pack)(bf, W_hh, 1)); /* W_hh^T */
    if (own) {
        /* dA_next @ W_hh^T as a plain product with W_hh^T, packed in column panels and held
         * meanwhile in dW_hh (an output, written only after the loop): the row kernel then
         * reads each panel from start to end. */
        gs->TY(pack_panels)(dW_hh, W_hh, H, H, 1);
    }
    for (elman_int k = 1; k <= T && BH > 0; k++) {
        const elman_int t = rev ? k : T - k + 1; /* backward order */
        REAL *da = dA + (t - 1) * BH;
        const REAL *dh = dH + (t - 1) * BH;
        const REAL *next = rev ? da - BH : da + BH; /* dA of the step that read H_t */
        if (da != dh) memcpy(da, dh, (size_t)BH * sizeof(REAL));
        if (len == NULL) {
            if (dh_T != NULL && k == 1)
                for (elman_int i = 0; i < BH; i++) da[i] += dh_T[i];
        } else {
            for (elman_int b = 0; b < B; b++) {
                REAL *row = da + b * H;
                if (t > len[b]) {
                    memset(row, 0, (size_t)H * sizeof(REAL)); /* padding: no gradient */
                } else if (dh_T != NULL && t == (rev ? 1 : len[b])) {
                    for (elman_int j = 0; j < H; j++) row[j] += dh_T[b * H + j];
                }
            }
        }
        if (k > 1 && bf != NULL) {
            ELMAN_TRY(TY(bf16_step)(bf, da, next, outs + (t - 1) * BH, B, s->nonlinearity, 1));
        } else if (k > 1 && own) {
            gs->TY(step_packed)(da, next, dW_hh, outs + (t - 1) * BH, B, H, s->nonlinearity,
                                1);
        } else if (k > 1 && dots) {
            gs->TY(gemm_nt)(da, next, W_hh, B, H, H);
            act->TY(act_backward)(da, da, outs + (t - 1) * BH, BH, s->nonlinearity);
        } else {
            if (k > 1)
                ELMAN_TRY(TY(elman_gemm)(0, 1, B, H, H, 1, next, H, W_hh, H, 1, da, H));
            act->TY(act_backward)(da, da, outs + (t - 1) * BH, BH, s->nonlinearity);
        }
        if (len != NULL && rev) /* the reverse's padded steps got dA_next @ W_hh^T: h0's */
            for (elman_int b = 0; b < B; b++)
                if (t > len[b]) memset(da + b * H, 0, (size_t)H * sizeof(REAL));
    }

    /* dW_hh = sum_t H_prev(t)^T @ dA_t: one GEMM with K = T*B (the previous states are
     * hs[0..T-1] forward, hs[1..T] in reverse). */
    if (bf == NULL && gs->fast)
        gs->TY(gemm_tn)(dW_hh, rev ? hs + BH : hs, dA, H, TB, H, H);
    else
        ELMAN_TRY(TY(elman_mm)(bf, 1, 0, H, H, TB, rev ? hs + BH : hs, H, dA, H, 0, dW_hh, H));

    /* dW_xh = X^T @ dA, or a scatter-add of dA's rows into the rows the ids used. */
    if (ids != NULL) {
        if (I * H > 0) memset(dW_xh, 0, (size_t)(I * H) * sizeof(REAL));
        for (elman_int r = 0; r < TB; r++) {
            const elman_int id = ids[r]; /* read once, checked at use (see the forward) */
            if (id < 0 || id >= I) return ELMAN_ERR_TARGET;
            REAL *w = dW_xh + id * H;
            const REAL *da = dA + r * H;
            for (elman_int j = 0; j < H; j++) w[j] += da[j];
        }
    } else if (bf == NULL && gs->fast) {
        gs->TY(gemm_tn)(dW_xh, x, dA, I, TB, H, I);
    } else {
        ELMAN_TRY(TY(elman_mm)(bf, 1, 0, I, H, TB, x, I, dA, H, 0, dW_xh, H));
    }

    /* db_h = sum over all T*B rows of dA */
    for (elman_int j = 0; j < H; j++) db_h[j] = 0;
    for (elman_int r = 0; r < TB; r++) {
        const REAL *da = dA + r * H;
        for (elman_int j = 0; j < H; j++) db_h[j] += da[j];
    }

    /* dh0 = dA_first @ W_hh^T, first = 1 (T in reverse); with lengths the reverse starts
     * sequence b at its own length. When T = 0, h_T = h0 itself. */
    if (dh0 != NULL) {
        if (T == 0) {
            for (elman_int i = 0; i < BH; i++) dh0[i] = dh_T != NULL ? dh_T[i] : (REAL)0;
        } else if (rev && len != NULL) {
            for (elman_int b = 0; b < B; b++) {
                const elman_int L_b = len[b]; /* read once, checked where used (as the ids) */
                if (L_b < 1 || L_b > T) return ELMAN_ERR_ARG;
                ELMAN_TRY(TY(elman_mm)(bf, 0, 1, 1, H, H, dA + (L_b - 1) * BH + b * H, H,
                                       W_hh, H, 0, dh0 + b * H, H));
            }
        } else {
            ELMAN_TRY(TY(elman_mm)(bf, 0, 1, B, H, H, rev ? dA + (T - 1) * BH : dA, H, W_hh,
                                   H, 0, dh0, H));
        }
    }
    /* dx = dA @ W_xh^T, the gradient a layer below would receive */
    if (dx != NULL)
        ELMAN_TRY(TY(elman_mm)(bf, 0, 1, TB, I, H, dA, H, W_xh, H, 0, dx, I));
    return ELMAN_OK;
}

int TYPED(elman_rnn_rforward_f32, elman_rnn_rforward_f64)(
    REAL *Rhs,            /* (T+1, B, H) out: R{H_t} where hs has H_t, zero where it has h0 */
    const REAL *Rx,       /* (T, B, I) or NULL (the input does not depend on the parameters) */
    const REAL *hs,       /* (T+1, B, H) from the forward */
    const REAL *x,        /* (T, B, I) or NULL */
    const elman_int *ids, /* (T, B) or NULL */
    const REAL *W_xh,     /* (I, H); read only with Rx */
    const REAL *W_hh,     /* (H, H) */
    const REAL *V_xh,     /* (I, H) the direction's parts */
    const REAL *V_hh,     /* (H, H) */
    const REAL *v_b,      /* (H,) */
    const elman_rnn_shape *s)
{
    elman_int TB, TBH;
    ELMAN_TRY(TY(rnn_check)(s, x, ids, &TB, &TBH));
    const elman_int T = s->T, B = s->B, I = s->I, H = s->H, BH = B * H;
    if (Rx != NULL && ids != NULL) return ELMAN_ERR_ARG;
    if (TBH == 0) {
        if (BH > 0) {
            ELMAN_NEED(Rhs, BH);
            memset(Rhs, 0, (size_t)BH * sizeof(REAL));
        }
        return ELMAN_OK;
    }
    ELMAN_NEED(Rhs, TBH + BH);
    ELMAN_NEED(hs, TBH + BH);
    ELMAN_NEED(W_hh, H * H);
    ELMAN_NEED(V_xh, I * H);
    ELMAN_NEED(V_hh, H * H);
    ELMAN_NEED(v_b, H);
    if (Rx != NULL) ELMAN_NEED(W_xh, I * H);

    /* Every term off the recurrence for all steps at once, where R{A_t} accumulates (the
     * output rows): v_b (+ V_xh's rows for ids), then X @ V_xh, R{X} @ W_xh and
     * H_prev @ V_hh as GEMMs over T*B rows (the previous states are hs[0..T-1] forward,
     * hs[1..T] in reverse: one contiguous block either way). */
    const int rev = s->reverse;
    REAL *RA = rev ? Rhs : Rhs + BH;
    memset(rev ? Rhs + TBH : Rhs, 0, (size_t)BH * sizeof(REAL)); /* R{h0} = 0 */
    for (elman_int r = 0; r < TB; r++) {
        REAL *a = RA + r * H;
        if (ids != NULL) {
            const elman_int id = ids[r]; /* read once, checked at use (as the forward) */
            if (id < 0 || id >= I) return ELMAN_ERR_TARGET;
            const REAL *w = V_xh + id * H;
            for (elman_int j = 0; j < H; j++) a[j] = w[j] + v_b[j];
        } else {
            for (elman_int j = 0; j < H; j++) a[j] = v_b[j];
        }
    }
    if (ids == NULL)
        ELMAN_TRY(TY(elman_gemm)(0, 0, TB, H, I, 1, x, I, V_xh, H, 1, RA, H));
    if (Rx != NULL)
        ELMAN_TRY(TY(elman_gemm)(0, 0, TB, H, I, 1, Rx, I, W_xh, H, 1, RA, H));
    ELMAN_TRY(TY(elman_gemm)(0, 0, TB, H, H, 1, rev ? hs + BH : hs, H, V_hh, H, 1, RA, H));

    /* The recurrence: R{A_t} += R{H_prev} @ W_hh, then R{H_t} = R{A_t} * f'(A_t), in place:
     * the backward's step with W_hh in place of its transpose. */
    const int isa = elman_isa();
    const elman_gemm_small_loops *gs = elman_gemm_small_paths[isa];
    const elman_act_loops *act = elman_act_paths[isa];
    const int own = elman_own_step_kernel(gs, B, H);
    const REAL *outs = rev ? hs : hs + BH;
    const elman_int *len = s->lengths;
    for (elman_int k = 1; k <= T; k++) {
        const elman_int t = rev ? T - k + 1 : k;
        REAL *rh = RA + (t - 1) * BH;
        const REAL *prev = rev ? rh + BH : rh - BH;
        const REAL *h = outs + (t - 1) * BH;
        if (own) {
            gs->TY(step)(rh, prev, W_hh, h, B, H, s->nonlinearity, 1);
        } else {
            ELMAN_TRY(TY(elman_gemm)(0, 0, B, H, H, 1, prev, H, W_hh, H, 1, rh, H));
            act->TY(act_backward)(rh, rh, h, BH, s->nonlinearity);
        }
        if (len != NULL) /* padding carries the state, so its derivative too */
            for (elman_int b = 0; b < B; b++)
                if (t > len[b]) memcpy(rh + b * H, prev + b * H, (size_t)H * sizeof(REAL));
    }
    return ELMAN_OK;
}

#endif
