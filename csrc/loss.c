/* Losses fused with their gradients: softmax cross-entropy and mean squared error. */
#include "internal.h"

#define REAL float
#define SFX(name) name##_f32
#define EXP expf
#include "loss.inc"
#undef REAL
#undef SFX
#undef EXP

#define REAL double
#define SFX(name) name##_f64
#define EXP exp
#include "loss.inc"
#undef REAL
#undef SFX
#undef EXP
