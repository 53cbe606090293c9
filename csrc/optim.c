/* Optimizer updates over one flat buffer: Adagrad, SGD (with momentum), and the squared
 * norm used for global-norm clipping. Formulas and their order: elman.h. */
#include "vec.h"

/* The options every Adagrad entry point accepts (elman.h). */
static int elman_adagrad_opts_ok(const elman_adagrad_opts *o)
{
    return o != NULL && o->step >= 1 && o->clip_value > 0 && o->eps >= 0;
}

#define REAL float
#define SFX(name) name##_f32
#define REAL_MAX FLT_MAX
#define FABS fabsf
#define SQRT sqrtf
#include "optim.inc"
#undef REAL
#undef SFX
#undef REAL_MAX
#undef FABS
#undef SQRT

#define REAL double
#define SFX(name) name##_f64
#define REAL_MAX DBL_MAX
#define FABS fabs
#define SQRT sqrt
#include "optim.inc"
#undef REAL
#undef SFX
#undef REAL_MAX
#undef FABS
#undef SQRT
