/* Private helpers shared by the kernel files. Not installed, not part of the API. */
#ifndef ELMAN_INTERNAL_H
#define ELMAN_INTERNAL_H

#include "elman.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* a * b for sizes, or -1 when either is negative or the product overflows int64. */
static inline elman_int elman_mul(elman_int a, elman_int b)
{
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > INT64_MAX / a) return -1;
    return a * b;
}

/* a + b for sizes, or -1 when either is negative or the sum overflows int64. */
static inline elman_int elman_add(elman_int a, elman_int b)
{
    if (a < 0 || b < 0 || b > INT64_MAX - a) return -1;
    return a + b;
}

/* The three buffers of an optimizer update (param, grad, state): present, and no two the
 * same (overlap is the binding's to refuse; the kernels see pointers only). */
static inline int elman_distinct3(const void *a, const void *b, const void *c)
{
    return a != NULL && b != NULL && c != NULL && a != b && a != c && b != c;
}

/* A pointer may be NULL only when the buffer it stands for holds no elements. */
#define ELMAN_NEED(ptr, count) \
    do {                                                \
        if ((count) > 0 && (ptr) == NULL)               \
            return ELMAN_ERR_ARG;                       \
    } while (0)

/* A body specialized by constant flags: each caller passes literals, and the compiler makes
 * one copy per combination, each loop free of the tests (see adagrad.c, sgd.c). */
#if defined(__GNUC__) || defined(__clang__)
#define ELMAN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ELMAN_ALWAYS_INLINE inline
#endif

/* A value set once (or rarely) and read by every call from any thread: atomic where the
 * compiler offers it (a set publishes what was written before it). */
#if defined(__GNUC__) || defined(__clang__)
#define ELMAN_LOAD(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define ELMAN_STORE(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#else
#define ELMAN_LOAD(p) (p)
#define ELMAN_STORE(p, v) ((p) = (v))
#endif

#define ELMAN_TRY(expr)                         \
    do {                                        \
        int elman_try_status_ = (expr);         \
        if (elman_try_status_ != ELMAN_OK)      \
            return elman_try_status_;           \
    } while (0)

#endif /* ELMAN_INTERNAL_H */
