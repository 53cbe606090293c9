/* GEMM shim: row-major calls on top of a column-major Fortran BLAS handed in at import.
 *
 * A row-major matrix is the column-major matrix of its transpose, so the row-major product
 * C = op(A) @ op(B) is computed as the column-major C^T = op(B)^T @ op(A)^T: swap the operands
 * (and their transpose flags and sizes), keep the leading dimensions.
 */
#include "vec.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static elman_sgemm_fn elman_sgemm_ptr;
static elman_dgemm_fn elman_dgemm_ptr;

void elman_set_blas(elman_sgemm_fn sgemm, elman_dgemm_fn dgemm)
{
    elman_sgemm_ptr = sgemm;
    elman_dgemm_ptr = dgemm;
}

int elman_has_blas(void) { return elman_sgemm_ptr != NULL && elman_dgemm_ptr != NULL; }

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

static int elman_fits_int(elman_int v) { return v >= 0 && v <= INT_MAX; }

/* Threads for one GEMM: one below ELMAN_GEMM_MIN_FMAS multiply-adds per thread (waking a
 * thread costs microseconds), and no more than there are blocks of 16 rows. */
#define ELMAN_GEMM_MIN_FMAS 2097152
static int elman_gemm_threads(elman_int M, elman_int N, elman_int K)
{
#ifdef _OPENMP
    const int max = omp_get_max_threads();
    if (max < 2 || omp_in_parallel() || elman_forked()) return 1;
    const double fmas = (double)M * (double)N * (double)K;
    elman_int t = (elman_int)(fmas / ELMAN_GEMM_MIN_FMAS);
    if (t > M / 16) t = M / 16;
    if (t > max) t = max;
    return t < 1 ? 1 : (int)t;
#else
    (void)M, (void)N, (void)K;
    return 1;
#endif
}

#define REAL float
#define SFX(name) name##_f32
#define GEMM_PTR elman_sgemm_ptr
#include "blas.inc"
#undef REAL
#undef SFX
#undef GEMM_PTR

#define REAL double
#define SFX(name) name##_f64
#define GEMM_PTR elman_dgemm_ptr
#include "blas.inc"
#undef REAL
#undef SFX
#undef GEMM_PTR
