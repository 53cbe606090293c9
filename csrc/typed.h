/* How every file instantiates its code for float and double: the one idiom of csrc/.
 *
 * A file with typed code defines ELMAN_TYPED_FILE as its own name and includes this header
 * once, after its untyped part; the header includes that file again, first with REAL =
 * float, then with REAL = double, with the same macro environment every time (below). The
 * file tells its passes apart by ELMAN_TYPED (defined during the two typed passes) and, in
 * the files with hot loops, by ELMAN_ISA (defined in the copies CMake compiles once per
 * instruction set, see loops.h). So an operation's checked entry point, its loops and
 * their registration all live in the one file named after the operation:
 *
 *     #ifndef ELMAN_TYPED                      untyped helpers, then
 *     #define ELMAN_TYPED_FILE "adagrad.c"     the two typed passes
 *     #include "typed.h"
 *     #elif !defined(ELMAN_ISA)                checked entry points (once per REAL)
 *     #else                                    loops (once per REAL and instruction set),
 *     #if ELMAN_LAST_PASS                      and after the double pass, this path's
 *     ELMAN_REGISTER(adagrad) = {...};         loops registered by name (loops.h)
 *     #endif
 *     #endif
 *
 * Definitions spell both real names, TYPED(elman_adagrad_update_f32,
 * elman_adagrad_update_f64): grep finds them, and go-to-definition lands on them (a name
 * pasted together with ## has no spelling in the source). References inside typed code may
 * use TY(name), which pastes this pass's suffix.
 */
#ifndef ELMAN_TYPED_FILE
#error "define ELMAN_TYPED_FILE as the including file's name before including typed.h"
#endif
#ifdef ELMAN_TYPED
#error "typed.h included from a typed pass"
#endif

#define ELMAN_TYPED 1

/* ---- float ---------------------------------------------------------------------------- */
#define REAL float
#define TYPED(f32, f64) f32
#define ELMAN_LAST_PASS 0 /* 1 in the double pass: both dtypes' code then exists */
#define TY(name) name##_f32
#define REAL_MAX FLT_MAX
#define REAL_MIN FLT_MIN
#define FABS fabsf
#define SQRT sqrtf
#define COPYSIGN copysignf
#define EXP elman_expf   /* vecmath.h: branch-free, a few ulp, vectorizes */
#define TANH elman_tanhf
#include ELMAN_TYPED_FILE
#include "typed_end.h"

/* ---- double: libm, the precision path ------------------------------------------------- */
#define REAL double
#define TYPED(f32, f64) f64
#define ELMAN_LAST_PASS 1
#define TY(name) name##_f64
#define REAL_MAX DBL_MAX
#define REAL_MIN DBL_MIN
#define FABS fabs
#define SQRT sqrt
#define COPYSIGN copysign
#define EXP exp
#define TANH tanh
#include ELMAN_TYPED_FILE
#include "typed_end.h"

#undef ELMAN_TYPED
#undef ELMAN_TYPED_FILE
