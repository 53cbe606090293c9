/* Elementwise nonlinearities of the hidden layer and their derivatives. */
#include "internal.h"

#define REAL float
#define SFX(name) name##_f32
#define TANH tanhf
#include "act.inc"
#undef REAL
#undef SFX
#undef TANH

#define REAL double
#define SFX(name) name##_f64
#define TANH tanh
#include "act.inc"
#undef REAL
#undef SFX
#undef TANH
