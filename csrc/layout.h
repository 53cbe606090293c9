/* The flat parameter layout of a model, as offsets (elman.h states it):
 *
 *     for l in 0..L-1, for d in 0..D-1:  W_xh (I_l, H) | W_hh (H, H) | b_h (H,)
 *     then                                W_hy (D*H, O) | b_y (O,)
 *
 * with I_0 = I and I_l = D*H. Shared by model.c and sample.c; the Python views of the same
 * buffer come from elman_model_num_params and these offsets' twin, elman.layout. Private
 * to csrc/.
 */
#ifndef ELMAN_LAYOUT_H
#define ELMAN_LAYOUT_H

#include "internal.h"

static inline elman_int elman_model_layers(const elman_model_shape *s)
{
    return s->num_layers == 0 ? 1 : s->num_layers;
}

static inline elman_int elman_model_dirs(const elman_model_shape *s)
{
    return s->bidirectional ? 2 : 1;
}

/* Parameters of one direction of layer l: W_xh (I_l, H) | W_hh (H, H) | b_h (H,). */
static inline elman_int elman_layer_params(const elman_model_shape *s, elman_int l)
{
    const elman_int H = s->rnn.H;
    const elman_int in = l == 0 ? s->rnn.I : elman_mul(elman_model_dirs(s), H);
    return elman_add(elman_add(elman_mul(in, H), elman_mul(H, H)), H);
}

/* Offset of W_xh of layer l, direction d, in the flat layout (sizes already checked). */
static inline elman_int elman_layer_offset(const elman_model_shape *s, elman_int l, elman_int d)
{
    const elman_int D = elman_model_dirs(s);
    elman_int off = l == 0 ? 0 : D * elman_layer_params(s, 0) + (l - 1) * D * elman_layer_params(s, 1);
    return off + d * elman_layer_params(s, l);
}

/* Offset of W_hy (D*H, O); b_y follows it. */
static inline elman_int elman_head_offset(const elman_model_shape *s)
{
    const elman_int L = elman_model_layers(s), D = elman_model_dirs(s);
    return elman_layer_offset(s, L - 1, D - 1) + elman_layer_params(s, L - 1);
}

#endif /* ELMAN_LAYOUT_H */
