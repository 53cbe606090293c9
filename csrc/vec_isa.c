/* One instruction set's copy of the hot loops. CMake compiles this file once per path with
 * ELMAN_ISA set to its name (generic, avx2, avx512) and the matching -m flags; the code is
 * portable C written so that the compiler vectorizes it (OpenMP simd pragmas, branch-free
 * bodies, no libm call in a float loop), and each copy fills one elman_vec_ops table.
 *
 * float math: exp and tanh below are evaluated in float with a few ulp of error (the test
 * suite bounds it against NumPy). double math calls libm: float64 is the precision path. */
#include "vec.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef ELMAN_ISA
#error "ELMAN_ISA must name the instruction set this copy is compiled for"
#endif
/* Bytes in one vector register of this path (sizes the GEMM panels). */
#if defined(__AVX512F__)
#define ELMAN_VEC_BYTES 64
#elif defined(__AVX__)
#define ELMAN_VEC_BYTES 32
#else
#define ELMAN_VEC_BYTES 16
#endif

/* GCC and Clang vector extensions: registers as C values, for the small GEMMs. */
#if defined(__GNUC__) || defined(__clang__)
#define ELMAN_VECTOR_EXT 1
#else
#define ELMAN_VECTOR_EXT 0
#endif

#define ELMAN_CAT_(a, b) a##b
#define ELMAN_CAT(a, b) ELMAN_CAT_(a, b)
#define ELMAN_STR_(a) #a
#define ELMAN_STR(a) ELMAN_STR_(a)

/* This thread's part of [0, n): *lo and *len, in whole multiples of unit (elman_split: 16
 * elements, a 64-byte line of float). Outside a parallel region (or without OpenMP) the
 * whole range. */
static inline void elman_split_rows(elman_int n, elman_int unit, elman_int *lo,
                                    elman_int *len)
{
#ifdef _OPENMP
    const elman_int threads = omp_get_num_threads(), me = omp_get_thread_num();
#else
    const elman_int threads = 1, me = 0;
#endif
    elman_int per = (n + threads - 1) / threads;
    per = (per + unit - 1) / unit * unit;
    const elman_int start = me * per < n ? me * per : n;
    *lo = start;
    *len = n - start < per ? n - start : per;
}

/* True where a parallel region would not help or must not run: inside one already, one
 * thread, or in a child forked after the parent's OpenMP threads started (GNU OpenMP's
 * pool does not survive fork: a region there would wait forever for threads that are
 * not in the child). */
static inline int elman_one_thread(void)
{
#ifdef _OPENMP
    return elman_forked() || omp_in_parallel() || omp_get_max_threads() < 2;
#else
    return 1;
#endif
}

/* An elementwise loop over n runs on one thread (below the threshold, or as above). */
static inline int elman_serial(elman_int n)
{
    return n < ELMAN_OMP_MIN_N || elman_one_thread();
}

static inline void elman_split(elman_int n, elman_int *lo, elman_int *len)
{
    elman_split_rows(n, 16, lo, len);
}

/* ---- float exp and tanh, branch-free ------------------------------------------------- */

static inline float elman_bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t elman_float_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* c ? a : b as bit operations: GCC if-converts some ternaries and not others (it would
 * rather branch around a costly operand), and a branch stops vectorization. */
static inline float elman_select(int c, float a, float b)
{
    const uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    return elman_bits_to_float((elman_float_to_bits(a) & m) | (elman_float_to_bits(b) & ~m));
}

/* exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln 2 / 2, exp(r) by its Taylor series
 * to r^7 (truncation below 6e-9 relative). 2^n is applied as two factors so that results
 * in the subnormal range and overflow to +inf come out right. NaN stays NaN. */
static inline float elman_expf(float x)
{
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);
    xc = elman_select(x == x, xc, 0.0f);
    const float t = xc * 1.44269504f + shift;
    const float fn = t - shift;
    const int32_t n = (int32_t)(elman_float_to_bits(t) - elman_float_to_bits(shift));
    /* Cody-Waite: ln 2 split in a part exact in float times n and the rest */
    const float r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t n1 = n / 2, n2 = n - n1; /* each in [-75, 64]: normal exponents */
    const float s1 = elman_bits_to_float((uint32_t)(n1 + 127) << 23);
    const float s2 = elman_bits_to_float((uint32_t)(n2 + 127) << 23);
    const float e = p * s1 * s2;
    return elman_select(x == x, e, x);
}

/* tanh: the odd Taylor series to x^15 below |x| = 0.5 (truncation below 1e-8 relative),
 * 1 - 2 / (exp(2|x|) + 1) with x's sign above. Saturates to +-1; NaN stays NaN. */
static inline float elman_tanhf(float x)
{
    const float ax = fabsf(x);
    const float z = x * x;
    float q = -929569.0f / 638512875.0f;
    q = q * z + 21844.0f / 6081075.0f;
    q = q * z + -1382.0f / 155925.0f;
    q = q * z + 62.0f / 2835.0f;
    q = q * z + -17.0f / 315.0f;
    q = q * z + 2.0f / 15.0f;
    q = q * z + -1.0f / 3.0f;
    const float small = copysignf(x + x * z * q, x); /* keeps tanh(-0) = -0 */
    const float e = elman_expf(2.0f * ax);
    const float big = copysignf(1.0f - 2.0f / (e + 1.0f), x);
    return elman_select(ax < 0.5f, small, big);
}

/* ---- typed loops ---------------------------------------------------------------------- */

#define REAL float
#define SFX(name) name##_f32
#define REAL_MAX FLT_MAX
#define FABS fabsf
#define SQRT sqrtf
#define EXP elman_expf
#define TANH elman_tanhf
#define COPYSIGN copysignf
#include "vec.inc"
#undef REAL
#undef SFX
#undef REAL_MAX
#undef FABS
#undef SQRT
#undef EXP
#undef TANH
#undef COPYSIGN

#define REAL double
#define SFX(name) name##_f64
#define REAL_MAX DBL_MAX
#define FABS fabs
#define SQRT sqrt
#define EXP exp
#define TANH tanh
#define COPYSIGN copysign
#include "vec.inc"
#undef REAL
#undef SFX
#undef REAL_MAX
#undef FABS
#undef SQRT
#undef EXP
#undef TANH
#undef COPYSIGN

#define ELMAN_VEC_ENTRIES(sfx)                                                              \
    adagrad_##sfx, proximal_##sfx, rowwise_##sfx, sgd_##sfx, sumsq_##sfx, nonfinite_##sfx, act_forward_##sfx, act_backward_##sfx,           \
        xent_rows_##sfx, exp_shift_##sfx, gemm_nn_##sfx, step_##sfx, stream_##sfx

const elman_vec_ops ELMAN_CAT(elman_vec_, ELMAN_ISA) = {
    ELMAN_STR(ELMAN_ISA),
    ELMAN_VECTOR_EXT && ELMAN_VEC_BYTES >= 32,
    ELMAN_VEC_ENTRIES(f32),
    ELMAN_VEC_ENTRIES(f64),
};
