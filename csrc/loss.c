/* Losses fused with their gradients: softmax cross-entropy and mean squared error. */
#include "vec.h"

#define REAL float
#define SFX(name) name##_f32
#include "loss.inc"
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_f64
#include "loss.inc"
#undef REAL
#undef SFX
