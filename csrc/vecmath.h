/* Float math for the loops of the per-instruction-set copies: the register width of the
 * path being compiled, and exp and tanh in float, branch-free so that loops calling them
 * vectorize (libm's expf and tanhf are calls). Their error is a few ulp; the test suite
 * bounds it against NumPy (tests/test_paths.py). double loops call libm: float64 is the
 * precision path. Private to csrc/.
 */
#ifndef ELMAN_VECMATH_H
#define ELMAN_VECMATH_H

#include "internal.h"

/* Bytes in one vector register of the path being compiled (sizes the GEMM panels). */
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

#endif /* ELMAN_VECMATH_H */
