/* The Elman layer (forward, backprop through time) and the affine output projection.
 * Every product off the recurrence is one GEMM over all T*B rows; only H_{t-1} @ W_hh and
 * dA_{t+1} @ W_hh^T run step by step. */
#include "vec.h"

#define REAL float
#define SFX(name) name##_f32
#include "rnn.inc"
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_f64
#include "rnn.inc"
#undef REAL
#undef SFX
