/* Elementwise nonlinearities of the hidden layer and their derivatives. */
#include "vec.h"

#define REAL float
#define SFX(name) name##_f32
#include "act.inc"
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_f64
#include "act.inc"
#undef REAL
#undef SFX
