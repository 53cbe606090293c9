/* Small public utilities: status strings, what the build was made with, and the range of
 * an id array (the binding's fast check of token ids). */
#include "internal.h"

const char *elman_status_string(int status)
{
    switch (status) {
    case ELMAN_OK: return "success";
    case ELMAN_ERR_ARG: return "invalid argument";
    case ELMAN_ERR_NONFINITE: return "non-finite value (NaN or infinity)";
    case ELMAN_ERR_TARGET: return "class target or token id out of range";
    case ELMAN_ERR_TOO_LARGE: return "size too large (overflow, or beyond the BLAS's 32-bit int)";
    case ELMAN_ERR_NO_BLAS: return "no BLAS has been set (elman_set_blas)";
    case ELMAN_ERR_CPU: return "kernel path not supported by this CPU";
    default: return "unknown status";
    }
}

#define ELMAN_STR_(a) #a
#define ELMAN_STR(a) ELMAN_STR_(a)
#ifndef ELMAN_BUILD_FLAGS
#define ELMAN_BUILD_FLAGS "unknown"
#endif

const char *elman_build_info(void)
{
#ifdef _OPENMP
#define ELMAN_OMP_INFO "; OpenMP " ELMAN_STR(_OPENMP)
#else
#define ELMAN_OMP_INFO "; no OpenMP"
#endif
#if defined(__clang__)
    return "clang " __clang_version__ "; flags: " ELMAN_BUILD_FLAGS ELMAN_OMP_INFO;
#elif defined(__GNUC__)
    return "gcc " __VERSION__ "; flags: " ELMAN_BUILD_FLAGS ELMAN_OMP_INFO;
#else
    return "unknown compiler; flags: " ELMAN_BUILD_FLAGS;
#endif
}

int elman_index_range(elman_int *lo, elman_int *hi, const elman_int *x, elman_int n)
{
    if (lo == NULL || hi == NULL || n < 1 || x == NULL) return ELMAN_ERR_ARG;
    elman_int a = x[0], b = x[0];
    for (elman_int i = 1; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
    return ELMAN_OK;
}
