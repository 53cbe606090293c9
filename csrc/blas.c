/* Row-major GEMM on top of the column-major Fortran BLAS handed in at import (SciPy's):
 *
 *     C (M, N) = alpha * op(A) @ op(B) + beta * C          op = transpose when asked
 *
 * A row-major matrix is the column-major matrix of its transpose, so the row-major product
 * is computed as the column-major C^T = op(B)^T @ op(A)^T: swap the operands (and their
 * transpose flags and sizes), keep the leading dimensions. Large products are cut into row
 * slices, one BLAS call per thread. Reference twin: numpy's matmul.
 */
#ifndef ELMAN_TYPED
#include "loops.h"

static elman_sgemm_fn elman_sgemm_ptr;
static elman_dgemm_fn elman_dgemm_ptr;

void elman_set_blas(elman_sgemm_fn sgemm, elman_dgemm_fn dgemm)
{
    elman_sgemm_ptr = sgemm;
    elman_dgemm_ptr = dgemm;
}

int elman_has_blas(void) { return elman_sgemm_ptr != NULL && elman_dgemm_ptr != NULL; }

static int elman_fits_int(elman_int v) { return v >= 0 && v <= INT_MAX; }

/* Threads for one GEMM: one per ELMAN_GEMM_MIN_FMAS_PER_THREAD multiply-adds (waking a
 * thread costs microseconds), and no more than there are slices of
 * ELMAN_GEMM_MIN_ROWS_PER_THREAD rows (tuning.h). */
static int elman_gemm_threads(elman_int M, elman_int N, elman_int K)
{
#ifdef _OPENMP
    if (!elman_can_thread()) return 1;
    const int max = omp_get_max_threads();
    const double fmas = (double)M * (double)N * (double)K;
    elman_int t = (elman_int)(fmas / ELMAN_GEMM_MIN_FMAS_PER_THREAD);
    if (t > M / ELMAN_GEMM_MIN_ROWS_PER_THREAD) t = M / ELMAN_GEMM_MIN_ROWS_PER_THREAD;
    if (t > max) t = max;
    return t < 1 ? 1 : (int)t;
#else
    (void)M, (void)N, (void)K;
    return 1;
#endif
}

#define ELMAN_TYPED_FILE "blas.c"
#include "typed.h"

#else /* ---- once per REAL ---- */

/* One BLAS call on checked sizes that fit its int: row-major C = alpha op(A) op(B) + beta C
 * as the column-major C^T (N, M) = op(B)^T (N, K) @ op(A)^T (K, M). */
static void TYPED(blas_call_f32, blas_call_f64)(
    int trans_a, int trans_b, elman_int M, elman_int N, elman_int K, REAL alpha, const REAL *A,
    elman_int lda, const REAL *B, elman_int ldb, REAL beta, REAL *C, elman_int ldc)
{
    char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
    int m = (int)N, n = (int)M, k = (int)K;
    int la = (int)(lda > 0 ? lda : 1), lb = (int)(ldb > 0 ? ldb : 1), lc = (int)ldc;
    TYPED(elman_sgemm_ptr, elman_dgemm_ptr)(&tb, &ta, &m, &n, &k, &alpha, (REAL *)B, &lb,
                                            (REAL *)A, &la, &beta, C, &lc);
}

int TYPED(elman_gemm_f32, elman_gemm_f64)(
    int trans_a, int trans_b, elman_int M, elman_int N, elman_int K, REAL alpha, const REAL *A,
    elman_int lda, const REAL *B, elman_int ldb, REAL beta, REAL *C, elman_int ldc)
{
    if (M < 0 || N < 0 || K < 0 || lda < 0 || ldb < 0 || ldc < 0) return ELMAN_ERR_ARG;
    if (M == 0 || N == 0) return ELMAN_OK;
    if (C == NULL || ldc < N) return ELMAN_ERR_ARG;
    if (K == 0 || alpha == 0) {
        /* C = beta * C, with beta == 0 meaning "overwrite" even where C held NaN. */
        for (elman_int r = 0; r < M; r++) {
            REAL *c = C + r * ldc;
            if (beta == 0)
                for (elman_int j = 0; j < N; j++) c[j] = 0;
            else if (beta != 1)
                for (elman_int j = 0; j < N; j++) c[j] *= beta;
        }
        return ELMAN_OK;
    }
    if (A == NULL || B == NULL) return ELMAN_ERR_ARG;
    if (TYPED(elman_sgemm_ptr, elman_dgemm_ptr) == NULL) return ELMAN_ERR_NO_BLAS;
    if (!elman_fits_int(M) || !elman_fits_int(N) || !elman_fits_int(K) ||
        !elman_fits_int(lda) || !elman_fits_int(ldb) || !elman_fits_int(ldc))
        return ELMAN_ERR_TOO_LARGE;

    /* Large products: the rows of C are shared among elman's OpenMP threads, each making
     * its own BLAS call on its slice (the caller keeps the BLAS itself on one thread:
     * elman owns the cores, see elman.h). Row r of op(A) starts at A + r * lda, or at
     * A + r when A is transposed. */
    if (elman_gemm_threads(M, N, K) > 1) {
#ifdef _OPENMP
#pragma omp parallel num_threads(elman_gemm_threads(M, N, K))
        {
            const elman_int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const elman_int per = (M + nt - 1) / nt;
            const elman_int r0 = t * per < M ? t * per : M;
            const elman_int rows = M - r0 < per ? M - r0 : per;
            if (rows > 0)
                TY(blas_call)(trans_a, trans_b, rows, N, K, alpha,
                               trans_a ? A + r0 : A + r0 * lda, lda, B, ldb, beta,
                               C + r0 * ldc, ldc);
        }
        return ELMAN_OK;
#endif
    }
    TY(blas_call)(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return ELMAN_OK;
}

/* A model's product in its compute dtype: C = beta C + op(A) @ op(B) on the BLAS, or in
 * bfloat16 (bf16.c) when bf is not NULL (float32 only; beta 0 or 1 there). */
int TYPED(elman_mm_f32, elman_mm_f64)(
    const elman_bf16_work *bf, int trans_a, int trans_b, elman_int M, elman_int N,
    elman_int K, const REAL *A, elman_int lda, const REAL *B, elman_int ldb, REAL beta,
    REAL *C, elman_int ldc)
{
    if (bf == NULL)
        return TY(elman_gemm)(trans_a, trans_b, M, N, K, 1, A, lda, B, ldb, beta, C, ldc);
#if ELMAN_LAST_PASS
    return ELMAN_ERR_ARG;
#else
    if (beta != 0 && beta != 1) return ELMAN_ERR_ARG;
    return elman_bf16_gemm(bf, trans_a, trans_b, M, N, K, A, lda, B, ldb, beta != 0, C, ldc);
#endif
}

#endif
