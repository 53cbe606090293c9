/* A whole torch.nn.RNN stack in one call: L layers of D directions (D = 2: bidirectional),
 * dropout between layers, in torch's layout. Layer l, direction d (index k = l*D + d):
 *
 *     X_0 = x,   X_l = Y_{l-1} * M_{l-1}   (l > 0; M a dropout mask of scales 0, 1/(1-p))
 *     A_t = X_t @ w_ih^T + b_ih + b_hh + H_{t-1} @ w_hh^T,   H_t = f(A_t)   (reverse if d = 1)
 *     Y_l = [H^(l,0) | H^(l,1)]   (T, B, D*H): the directions side by side
 *
 * Each layer-direction is one elman_rnn_forward / elman_rnn_backward (rnn.c) on weights
 * transposed once into elman's row-vector layout (w_ih^T, w_hh^T, b_ih + b_hh); the stack
 * moves the states between layers, applies the masks and returns torch-layout gradients.
 * Reference twin: a loop of elman.reference.rnn_forward / rnn_backward over the layers
 * (tests/vs_torch/test_torch_stack.py checks this against torch.nn.RNN).
 */
#ifndef ELMAN_TYPED
#include "loops.h"

/* Input width of layer l. */
static elman_int elman_stack_in(const elman_stack_shape *s, elman_int l)
{
    return l == 0 ? s->I : s->D * s->H;
}

int elman_stack_sizes(const elman_stack_shape *s, elman_int *weights, elman_int *states,
                      elman_int *inputs, elman_int *work)
{
    if (s == NULL || s->T < 0 || s->B < 0 || s->I < 0 || s->H < 0 || s->L < 1 ||
        (s->D != 1 && s->D != 2))
        return ELMAN_ERR_ARG;
    const elman_int T = s->T, B = s->B, H = s->H, L = s->L, D = s->D;
    const elman_int DH = elman_mul(D, H), TB = elman_mul(T, B);
    const elman_int wide = L > 1 && DH > s->I ? DH : s->I; /* the widest layer input */
    const elman_int per_layer0 = elman_add(elman_add(elman_mul(s->I, H), elman_mul(H, H)), H);
    const elman_int per_layer = elman_add(elman_add(elman_mul(DH, H), elman_mul(H, H)), H);
    const elman_int w = elman_mul(D, elman_add(per_layer0, elman_mul(L - 1, per_layer)));
    const elman_int hs = elman_mul(elman_mul(L, D), elman_mul(elman_add(T, 1), elman_mul(B, H)));
    const elman_int ys = elman_mul(L - 1, elman_mul(TB, DH));
    /* backward (stack_backward below): the gradients on two layers' outputs (one when
     * L = 1), for two directions their dA and dX, then dW_xh and dW_hh */
    const elman_int tbh = elman_mul(TB, H);
    elman_int wk = elman_mul(L > 1 ? 2 : 1, elman_mul(TB, DH));
    if (D == 2) wk = elman_add(wk, elman_add(tbh, elman_mul(TB, wide)));
    wk = elman_add(wk, elman_add(elman_mul(wide, H), elman_mul(H, H)));
    if (DH < 0 || TB < 0 || w < 0 || hs < 0 || ys < 0 || wk < 0 || tbh < 0 ||
        elman_mul(TB, s->I) < 0 || elman_mul(elman_mul(L, D), elman_mul(B, H)) < 0)
        return ELMAN_ERR_TOO_LARGE;
    if (weights != NULL) *weights = w;
    if (states != NULL) *states = hs;
    if (inputs != NULL) *inputs = ys;
    if (work != NULL) *work = wk;
    return ELMAN_OK;
}

#define ELMAN_TYPED_FILE "stack.c"
#include "typed.h"

#else /* ---- once per REAL ---- */

/* Layer-direction k's weights in elman's layout inside wt: W_xh (I_l, H), W_hh (H, H),
 * b_h (H,), one after another in k order. */
static REAL *TYPED(stack_weights_f32, stack_weights_f64)(REAL *wt, const elman_stack_shape *s,
                                                         elman_int k)
{
    const elman_int H = s->H, D = s->D, l = k / D;
    const elman_int first = s->I * H + H * H + H, later = D * H * H + H * H + H;
    const elman_int before = l == 0 ? k * first : D * first + (k - D) * later;
    return wt + before;
}

static int TYPED(stack_check_f32, stack_check_f64)(const elman_stack_shape *s)
{
    ELMAN_TRY(elman_stack_sizes(s, NULL, NULL, NULL, NULL));
    if (s->nonlinearity != ELMAN_TANH && s->nonlinearity != ELMAN_RELU) return ELMAN_ERR_ARG;
    if (s->lengths != NULL)
        for (elman_int b = 0; b < s->B; b++)
            if (s->lengths[b] < 1 || s->lengths[b] > s->T) return ELMAN_ERR_ARG;
    return ELMAN_OK;
}

int TYPED(elman_stack_forward_f32, elman_stack_forward_f64)(
    REAL *wt,                      /* (weights) out: the transposed weights, for backward */
    REAL *hs,                      /* (L*D, T+1, B, H) out: each layer-direction's states */
    REAL *ys,                      /* (L-1, T, B, D*H) out: the masked inputs of layers 1.. */
    REAL *out,                     /* (T, B, D*H) out, or NULL when D = 1 (then hs[L-1, 1:]) */
    REAL *h_n,                     /* (L*D, B, H) out: the final states */
    const REAL *x,                 /* (T, B, I) */
    const REAL *h0,                /* (L*D, B, H) */
    const REAL *const *w_ih,       /* L*D pointers: (H, I_l) */
    const REAL *const *w_hh,       /* L*D pointers: (H, H) */
    const REAL *const *b_ih,       /* L*D pointers (H,), or NULL: no biases */
    const REAL *const *b_hh,       /* as b_ih, NULL exactly when b_ih is */
    const REAL *masks,             /* (L-1, T, B, D*H) dropout scales, or NULL */
    const elman_stack_shape *s)
{
    ELMAN_TRY(TY(stack_check)(s));
    const elman_int T = s->T, B = s->B, H = s->H, L = s->L, D = s->D;
    const elman_int BH = B * H, TB = T * B, DH = D * H, slab = (T + 1) * BH;
    elman_int nw, nh, ny;
    ELMAN_TRY(elman_stack_sizes(s, &nw, &nh, &ny, NULL));
    if ((b_ih == NULL) != (b_hh == NULL)) return ELMAN_ERR_ARG;
    if (w_ih == NULL || w_hh == NULL) return ELMAN_ERR_ARG;
    ELMAN_NEED(wt, nw);
    ELMAN_NEED(hs, nh);
    ELMAN_NEED(ys, ny);
    ELMAN_NEED(h_n, L * D * BH);
    if (D == 2) ELMAN_NEED(out, TB * DH);
    ELMAN_NEED(x, TB * s->I);
    ELMAN_NEED(h0, L * D * BH);
    for (elman_int k = 0; k < L * D; k++) {
        const elman_int I = elman_stack_in(s, k / D);
        ELMAN_NEED(w_ih[k], H * I);
        ELMAN_NEED(w_hh[k], H * H);
        if (b_ih != NULL) {
            ELMAN_NEED(b_ih[k], H);
            ELMAN_NEED(b_hh[k], H);
        }
        REAL *W_xh = TY(stack_weights)(wt, s, k), *W_hh = W_xh + I * H, *b = W_hh + H * H;
        TY(elman_transpose)(W_xh, w_ih[k], I, H);
        TY(elman_transpose)(W_hh, w_hh[k], H, H);
        for (elman_int j = 0; j < H; j++) b[j] = b_ih != NULL ? b_ih[k][j] + b_hh[k][j] : 0;
    }
    if (TB == 0 || H == 0) { /* no steps or no units: the final states are the initial ones */
        if (L * D * BH > 0) memcpy(h_n, h0, (size_t)(L * D * BH) * sizeof(REAL));
        return ELMAN_OK;
    }

    elman_rnn_shape r = {0};
    r.T = T, r.B = B, r.H = H, r.nonlinearity = s->nonlinearity, r.lengths = s->lengths;
    for (elman_int l = 0; l < L; l++) {
        const elman_int I = elman_stack_in(s, l);
        const REAL *in = l == 0 ? x : ys + (l - 1) * TB * DH;
        REAL *y = l + 1 < L ? ys + l * TB * DH : out; /* this layer's outputs side by side */
        r.I = I;
        for (elman_int d = 0; d < D; d++) {
            const elman_int k = l * D + d;
            const REAL *W_xh = TY(stack_weights)(wt, s, k), *W_hh = W_xh + I * H;
            REAL *h = hs + k * slab;
            r.reverse = (int)d;
            memcpy(h + (d ? T * BH : 0), h0 + k * BH, (size_t)BH * sizeof(REAL));
            ELMAN_TRY(TY(elman_rnn_forward)(h, in, NULL, W_xh, W_hh, W_hh + H * H, &r));
            memcpy(h_n + k * BH, h + (d ? 0 : T * BH), (size_t)BH * sizeof(REAL));
            if (y == NULL) continue; /* D = 1 at the top: the output is hs[L-1, 1:] */
            const REAL *o = h + (d ? 0 : BH); /* H_t of step t at o + (t-1)*BH */
            for (elman_int row = 0; row < TB; row++)
                memcpy(y + row * DH + d * H, o + row * H, (size_t)H * sizeof(REAL));
        }
        if (l + 1 < L && masks != NULL) {
            const REAL *m = masks + l * TB * DH;
            for (elman_int i = 0; i < TB * DH; i++) y[i] *= m[i];
        }
    }
    return ELMAN_OK;
}

int TYPED(elman_stack_backward_f32, elman_stack_backward_f64)(
    REAL *const *dw_ih,            /* L*D pointers: (H, I_l) out */
    REAL *const *dw_hh,            /* L*D pointers: (H, H) out */
    REAL *db,                      /* (L*D, H) out: the gradient of b_ih and of b_hh */
    REAL *dh0,                     /* (L*D, B, H) out */
    REAL *dx,                      /* (T, B, I) out, or NULL */
    REAL *work,                    /* (work) scratch */
    const REAL *d_out,             /* (T, B, D*H), or NULL: no gradient on the output */
    const REAL *dh_n,              /* (L*D, B, H), or NULL: none on the final states */
    const REAL *wt, const REAL *hs, const REAL *ys, /* from the forward */
    const REAL *x,                 /* (T, B, I) */
    const REAL *masks,             /* as in the forward */
    const elman_stack_shape *s)
{
    ELMAN_TRY(TY(stack_check)(s));
    const elman_int T = s->T, B = s->B, H = s->H, L = s->L, D = s->D;
    const elman_int BH = B * H, TB = T * B, DH = D * H, slab = (T + 1) * BH;
    const elman_int wide = L > 1 && DH > s->I ? DH : s->I;
    elman_int nw, nh, ny, nk;
    ELMAN_TRY(elman_stack_sizes(s, &nw, &nh, &ny, &nk));
    if (dw_ih == NULL || dw_hh == NULL) return ELMAN_ERR_ARG;
    ELMAN_NEED(work, nk);
    ELMAN_NEED(wt, nw);
    ELMAN_NEED(hs, nh);
    ELMAN_NEED(ys, ny);
    ELMAN_NEED(db, L * D * H);
    ELMAN_NEED(dh0, L * D * BH);
    ELMAN_NEED(x, TB * s->I);
    for (elman_int k = 0; k < L * D; k++) {
        ELMAN_NEED(dw_ih[k], H * elman_stack_in(s, k / D));
        ELMAN_NEED(dw_hh[k], H * H);
    }
    if (TB == 0 || H == 0) {
        /* no steps, no sequences or no units: no weight gradient; with no steps each final
         * state is its initial state, so dh0 = dh_n */
        for (elman_int k = 0; k < L * D; k++) {
            const elman_int nih = H * elman_stack_in(s, k / D);
            if (nih > 0) memset(dw_ih[k], 0, (size_t)nih * sizeof(REAL));
            if (H > 0) memset(dw_hh[k], 0, (size_t)(H * H) * sizeof(REAL));
        }
        if (L * D * H > 0) memset(db, 0, (size_t)(L * D * H) * sizeof(REAL));
        if (L * D * BH > 0) {
            if (dh_n != NULL)
                memcpy(dh0, dh_n, (size_t)(L * D * BH) * sizeof(REAL));
            else
                memset(dh0, 0, (size_t)(L * D * BH) * sizeof(REAL));
        }
        if (dx != NULL && TB * s->I > 0) memset(dx, 0, (size_t)(TB * s->I) * sizeof(REAL));
        return ELMAN_OK;
    }

    /* work: dY, the gradient on this layer's outputs (T, B, D*H); dY_below, on the layer
     * below's (L > 1); with two directions one direction's dA (T, B, H) and dX (T, B, I_l);
     * then dW_xh (I_l, H) and dW_hh (H, H) in elman's layout */
    REAL *dY = work, *next = work + TB * DH, *dY_below = NULL, *dA2 = NULL, *dX = NULL;
    if (L > 1) dY_below = next, next += TB * DH;
    if (D == 2) dA2 = next, dX = next + TB * H, next += TB * H + TB * wide;
    REAL *dW_xh = next, *dW_hh = next + wide * H;
    elman_rnn_shape r = {0};
    r.T = T, r.B = B, r.H = H, r.nonlinearity = s->nonlinearity, r.lengths = s->lengths;

    const REAL *above = d_out; /* the gradient on this layer's outputs: d_out, then dY */
    if (above == NULL) {
        if (TB * DH > 0) memset(dY, 0, (size_t)(TB * DH) * sizeof(REAL));
        above = dY;
    }
    for (elman_int l = L - 1; l >= 0; l--) {
        const elman_int I = elman_stack_in(s, l);
        const REAL *in = l == 0 ? x : ys + (l - 1) * TB * DH;
        const int want_dx = l > 0 || dx != NULL;
        r.I = I;
        for (elman_int d = 0; d < D; d++) {
            const elman_int k = l * D + d;
            const REAL *W_xh = TY(stack_weights)(wt, s, k), *W_hh = W_xh + I * H;
            /* one direction: dA in dY, from above (in place below the top); two: this
             * direction's columns of above gathered into dA2 */
            REAL *dA = D == 2 ? dA2 : dY;
            if (D == 2)
                for (elman_int row = 0; row < TB; row++)
                    memcpy(dA + row * H, above + row * DH + d * H, (size_t)H * sizeof(REAL));
            const REAL *dH = D == 2 ? dA : above;
            /* one direction writes its input gradient in place; two sum theirs below */
            REAL *dxk = !want_dx ? NULL : D == 2 ? dX : l == 0 ? dx : dY_below;
            r.reverse = (int)d;
            ELMAN_TRY(TY(elman_rnn_backward)(dW_xh, dW_hh, db + k * H, dh0 + k * BH, dxk, dA,
                                             dH, dh_n != NULL ? dh_n + k * BH : NULL,
                                             hs + k * slab, in, NULL, W_xh, W_hh, &r));
            TY(elman_transpose)(dw_ih[k], dW_xh, H, I);
            TY(elman_transpose)(dw_hh[k], dW_hh, H, H);
            if (!want_dx || D == 1) continue;
            REAL *acc = l == 0 ? dx : dY_below;
            const elman_int n = TB * I;
            if (d == 0)
                memcpy(acc, dX, (size_t)n * sizeof(REAL));
            else
                for (elman_int i = 0; i < n; i++) acc[i] += dX[i];
        }
        if (l > 0) { /* through the mask onto the layer below's outputs */
            if (masks != NULL) {
                const REAL *m = masks + (l - 1) * TB * DH;
                for (elman_int i = 0; i < TB * DH; i++) dY_below[i] *= m[i];
            }
            REAL *swap = dY;
            dY = dY_below, dY_below = swap, above = dY;
        }
    }
    return ELMAN_OK;
}

#endif
