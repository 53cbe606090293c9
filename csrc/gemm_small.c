/* The small dense products of the recurrence, on elman's own register-blocked kernel:
 *
 *     gemm_nn:  C (M, N) += A (M, K) @ W (K, N)                      row-major, dense
 *     step:     C (B, H)  = f(C + A @ W)            (forward)        the recurrence's step,
 *               C (B, H)  = (C + A @ W) * f'(Y)     (backward)       activation fused
 *
 * For the per-step product H_{t-1} @ W_hh (rnn.c) this beats a BLAS call at the shapes of
 * an RNN step: no repacking of W_hh at every step, no call overhead (tuning.h). Reference
 * twin: numpy's matmul (elman.reference.rnn_forward does the step as h @ W_hh).
 * elman_step_gemm exposes gemm_nn for the benchmarks and for callers with small products.
 */
#ifndef ELMAN_TYPED
#include "loops.h"
#include "vecmath.h"

/* Vectors of columns in one panel of the four-row kernel (tuning.h). */
#if ELMAN_VEC_BYTES >= 64
#define ELMAN_NV ELMAN_GEMM_PANEL_VECTORS_512
#else
#define ELMAN_NV ELMAN_GEMM_PANEL_VECTORS
#endif

#define ELMAN_TYPED_FILE "gemm_small.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry point, once per REAL ---- */

int TYPED(elman_step_gemm_f32, elman_step_gemm_f64)(
    REAL *C, const REAL *A, const REAL *W, elman_int M, elman_int K, elman_int N)
{
    if (M < 0 || K < 0 || N < 0) return ELMAN_ERR_ARG;
    if (elman_mul(M, N) < 0 || elman_mul(M, K) < 0 || elman_mul(K, N) < 0)
        return ELMAN_ERR_TOO_LARGE;
    if (M == 0 || N == 0 || K == 0) return ELMAN_OK;
    if (C == NULL || A == NULL || W == NULL) return ELMAN_ERR_ARG;
    elman_gemm_small_paths[elman_isa()]->TY(gemm_nn)(C, A, W, M, K, N);
    return ELMAN_OK;
}

#else /* ---- the loops, once per REAL and instruction set ---- */

/* The small-shape GEMMs. Each output row of C = A @ W is a sum of W's rows scaled by A's
 * entries, so the inner loops run along contiguous memory. The accumulators are explicit
 * vector registers (GCC/Clang vector extensions, as wide as this path's registers):
 * a panel of 4 vectors of columns, with separate sums for even and odd k so that the FMA
 * units have 8 independent chains in flight; then 1-vector panels; then the last columns
 * as one more full panel that overlaps the ones before it (only its new lanes are added),
 * or, for rows narrower than one vector, scalar sums with independent chains. */
/* c (w,) += a (K,) @ W[:, :w] for a few columns w < one vector (ldw: W's row stride): four
 * partial sums per column, so that no column waits on one chain of K dependent FMAs. */
static inline void TYPED(narrow_nn_f32, narrow_nn_f64)(
    REAL *restrict c, const REAL *restrict a, const REAL *restrict W, elman_int K,
    elman_int ldw, elman_int w)
{
    for (elman_int j = 0; j < w; j++) {
        REAL s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        elman_int k = 0;
        for (; k + 4 <= K; k += 4) {
            s0 += a[k] * W[k * ldw + j];
            s1 += a[k + 1] * W[(k + 1) * ldw + j];
            s2 += a[k + 2] * W[(k + 2) * ldw + j];
            s3 += a[k + 3] * W[(k + 3) * ldw + j];
        }
        for (; k < K; k++) s0 += a[k] * W[k * ldw + j];
        c[j] += (s0 + s1) + (s2 + s3);
    }
}

#if ELMAN_VECTOR_EXT
typedef REAL TY(vreg) __attribute__((vector_size(ELMAN_VEC_BYTES)));
enum { TY(V) = ELMAN_VEC_BYTES / sizeof(REAL) };

static inline TY(vreg) TYPED(vload_f32, vload_f64)(const REAL *p)
{
    TY(vreg) v;
    memcpy(&v, p, sizeof v); /* an unaligned load */
    return v;
}

static inline void TYPED(vstore_f32, vstore_f64)(REAL *p, TY(vreg) v)
{
    memcpy(p, &v, sizeof v);
}

/* c (N,) += a (K,) @ W (K, N), one output row */
static inline void TYPED(row_nn_f32, row_nn_f64)(
    REAL *restrict c, const REAL *restrict a, const REAL *restrict W, elman_int K, elman_int N)
{
    enum { V = TY(V) };
    const TY(vreg) zero = {0};
    elman_int j = 0;
    for (; j + 4 * V <= N; j += 4 * V) {
        TY(vreg) e0 = TY(vload)(c + j), e1 = TY(vload)(c + j + V);
        TY(vreg) e2 = TY(vload)(c + j + 2 * V), e3 = TY(vload)(c + j + 3 * V);
        TY(vreg) o0 = zero, o1 = zero, o2 = zero, o3 = zero;
        elman_int k = 0;
        for (; k + 2 <= K; k += 2) {
            const REAL *w = W + k * N + j, *x = w + N;
            const REAL ak = a[k], al = a[k + 1];
            e0 += ak * TY(vload)(w);
            e1 += ak * TY(vload)(w + V);
            e2 += ak * TY(vload)(w + 2 * V);
            e3 += ak * TY(vload)(w + 3 * V);
            o0 += al * TY(vload)(x);
            o1 += al * TY(vload)(x + V);
            o2 += al * TY(vload)(x + 2 * V);
            o3 += al * TY(vload)(x + 3 * V);
        }
        if (k < K) {
            const REAL *w = W + k * N + j;
            const REAL ak = a[k];
            e0 += ak * TY(vload)(w);
            e1 += ak * TY(vload)(w + V);
            e2 += ak * TY(vload)(w + 2 * V);
            e3 += ak * TY(vload)(w + 3 * V);
        }
        TY(vstore)(c + j, e0 + o0);
        TY(vstore)(c + j + V, e1 + o1);
        TY(vstore)(c + j + 2 * V, e2 + o2);
        TY(vstore)(c + j + 3 * V, e3 + o3);
    }
    for (; j + V <= N; j += V) {
        TY(vreg) e0 = TY(vload)(c + j), o0 = zero;
        elman_int k = 0;
        for (; k + 2 <= K; k += 2) {
            e0 += a[k] * TY(vload)(W + k * N + j);
            o0 += a[k + 1] * TY(vload)(W + (k + 1) * N + j);
        }
        if (k < K) e0 += a[k] * TY(vload)(W + k * N + j);
        TY(vstore)(c + j, e0 + o0);
    }
    if (j < N && N >= V) {
        /* the last N - j columns: one full panel ending at column N, summed from zero, of
         * which only the lanes not done above are added (every load stays in bounds) */
        const elman_int t = N - V;
        TY(vreg) e0 = zero, o0 = zero;
        elman_int k = 0;
        for (; k + 2 <= K; k += 2) {
            e0 += a[k] * TY(vload)(W + k * N + t);
            o0 += a[k + 1] * TY(vload)(W + (k + 1) * N + t);
        }
        if (k < K) e0 += a[k] * TY(vload)(W + k * N + t);
        e0 += o0;
        for (elman_int l = j - t; l < V; l++) c[t + l] += e0[l];
    } else {
        TY(narrow_nn)(c + j, a, W + j, K, N, N - j);
    }
}
#else /* no vector extensions: a plain loop for the compiler to vectorize as it can */
static inline void TYPED(row_nn_f32, row_nn_f64)(
    REAL *restrict c, const REAL *restrict a, const REAL *restrict W, elman_int K, elman_int N)
{
    for (elman_int k = 0; k < K; k++) {
        const REAL ak = a[k];
        const REAL *w = W + k * N;
        for (elman_int j = 0; j < N; j++) c[j] += ak * w[j];
    }
}
#endif

#if ELMAN_VECTOR_EXT
/* R rows of C += A @ W (R = 4 or 8), N columns of C (rows ld apart) and W (rows ldw
 * apart); row r of A at a + r*ar, its entry k at + k*ak: each vector of W loaded once feeds R rows, so the
 * kernel is bound by the FMA units, not by loads. Panels of NV vectors of columns keep
 * R * NV accumulators in registers (tuning.h: 4 x 4 or 8 x 3 = 16 or 24 of AVX-512's 32,
 * 4 x 2 = 8 of AVX2's and SSE2's 16). R and NV are constants in each copy. */
static ELMAN_ALWAYS_INLINE void TYPED(rows_ld_f32, rows_ld_f64)(
    REAL *restrict c, const REAL *restrict a, elman_int ar, elman_int ak,
    const REAL *restrict W, elman_int K, elman_int N, elman_int ld, elman_int ldw, const int R,
    const int NV)
{
    enum { V = TY(V), RMAX = 8, NVMAX = 4 };
    const elman_int P = NV * V;
    elman_int j = 0;
    for (; j + P <= N; j += P) {
        TY(vreg) x[RMAX][NVMAX];
        for (int r = 0; r < R; r++)
            for (int v = 0; v < NV; v++) x[r][v] = TY(vload)(c + r * ld + j + v * V);
        for (elman_int k = 0; k < K; k++) {
            const REAL *w = W + k * ldw + j;
            TY(vreg) wv[NVMAX];
            for (int v = 0; v < NV; v++) wv[v] = TY(vload)(w + v * V);
            for (int r = 0; r < R; r++) {
                const REAL b = a[r * ar + k * ak];
                for (int v = 0; v < NV; v++) x[r][v] += b * wv[v];
            }
        }
        for (int r = 0; r < R; r++)
            for (int v = 0; v < NV; v++) TY(vstore)(c + r * ld + j + v * V, x[r][v]);
    }
    for (; j + V <= N; j += V) {
        TY(vreg) x[RMAX];
        for (int r = 0; r < R; r++) x[r] = TY(vload)(c + r * ld + j);
        for (elman_int k = 0; k < K; k++) {
            const TY(vreg) wv = TY(vload)(W + k * ldw + j);
            for (int r = 0; r < R; r++) x[r] += a[r * ar + k * ak] * wv;
        }
        for (int r = 0; r < R; r++) TY(vstore)(c + r * ld + j, x[r]);
    }
    if (j < N && N >= V) { /* the last columns as in row_nn: an overlapping panel */
        const elman_int t = N - V;
        TY(vreg) x[RMAX];
        for (int r = 0; r < R; r++) x[r] = (TY(vreg)){0};
        for (elman_int k = 0; k < K; k++) {
            const TY(vreg) wv = TY(vload)(W + k * ldw + t);
            for (int r = 0; r < R; r++) x[r] += a[r * ar + k * ak] * wv;
        }
        for (int r = 0; r < R; r++)
            for (elman_int l = j - t; l < V; l++) c[r * ld + t + l] += x[r][l];
    } else {
        for (; j < N; j++) { /* rows narrower than a vector: the R rows are R chains */
            REAL x[RMAX];
            for (int r = 0; r < R; r++) x[r] = c[r * ld + j];
            for (elman_int k = 0; k < K; k++) {
                const REAL wv = W[k * ldw + j];
                for (int r = 0; r < R; r++) x[r] += a[r * ar + k * ak] * wv;
            }
            for (int r = 0; r < R; r++) c[r * ld + j] = x[r];
        }
    }
}

#if ELMAN_VEC_BYTES >= 64
#define ELMAN_ROWS8 1
#else
#define ELMAN_ROWS8 0
#endif

/* Rows [q, q1) of C (ldc apart) += A @ W in blocks of eight rows (AVX-512's 32 registers
 * only: a vector of W feeds eight rows, half the L2 traffic of four, for cores whose two
 * FMA units would otherwise wait on W), then of four with NV4 vectors a panel; row r of A
 * at A + r*ar, its entry k at + k*ak; W's rows ldw apart. Returns the first row left, fewer
 * than four before q1. */
static ELMAN_ALWAYS_INLINE elman_int TYPED(row_blocks_f32, row_blocks_f64)(
    REAL *restrict C, const REAL *restrict A, elman_int ar, elman_int ak,
    const REAL *restrict W, elman_int K, elman_int N, elman_int ldc, elman_int ldw,
    elman_int q, elman_int q1, const int NV4)
{
#if ELMAN_ROWS8
    for (; q + 8 <= q1; q += 8)
        TY(rows_ld)(C + q * ldc, A + q * ar, ar, ak, W, K, N, ldc, ldw, 8,
                    ELMAN_GEMM_PANEL_VECTORS_8ROWS);
#endif
    for (; q + 4 <= q1; q += 4)
        TY(rows_ld)(C + q * ldc, A + q * ar, ar, ak, W, K, N, ldc, ldw, 4, NV4);
    return q;
}
#endif

#if ELMAN_VECTOR_EXT
/* c (N,) += a (K,) @ W (K, N), one output row, with W read once from start to end: four
 * rows of W at a time added into c, which stays in L1. For a W larger than the L2 cache
 * (elman_stream_weight_bytes): row_nn's panels walk down W's columns a row stride apart,
 * a stride the hardware prefetchers do not follow across pages, where this loop streams. */
static void TYPED(row_stream_nn_f32, row_stream_nn_f64)(
    REAL *restrict c, const REAL *restrict a, const REAL *restrict W, elman_int K, elman_int N)
{
    enum { V = TY(V) };
    elman_int k = 0;
    for (; k + 4 <= K; k += 4) {
        const REAL a0 = a[k], a1 = a[k + 1], a2 = a[k + 2], a3 = a[k + 3];
        const REAL *w0 = W + k * N, *w1 = w0 + N, *w2 = w1 + N, *w3 = w2 + N;
        elman_int j = 0;
        for (; j + V <= N; j += V) {
            TY(vreg) x = TY(vload)(c + j);
            x += a0 * TY(vload)(w0 + j) + a1 * TY(vload)(w1 + j);
            x += a2 * TY(vload)(w2 + j) + a3 * TY(vload)(w3 + j);
            TY(vstore)(c + j, x);
        }
        for (; j < N; j++) c[j] += (a0 * w0[j] + a1 * w1[j]) + (a2 * w2[j] + a3 * w3[j]);
    }
    for (; k < K; k++) {
        const REAL ak = a[k];
        const REAL *w = W + k * N;
        for (elman_int j = 0; j < N; j++) c[j] += ak * w[j];
    }
}
#endif

/* C (M, N) += A (M, K) @ W^T, W (N, K) row-major: each output a dot product of a row of A
 * with a row of W, four rows of W at a time, so that W is read once per row of A from start
 * to end (the backward step of a small batch with a large W_hh, which then needs no
 * transposed copy: a copy strides a row apart on one side, a page at H = 1024). */
static void TYPED(gemm_nt_f32, gemm_nt_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict W, elman_int M, elman_int K,
    elman_int N)
{
    for (elman_int r = 0; r < M; r++) {
        const REAL *a = A + r * K;
        REAL *c = C + r * N;
        elman_int j = 0;
#if ELMAN_VECTOR_EXT
        enum { V = TY(V) };
        for (; j + 4 <= N; j += 4) {
            const REAL *w0 = W + j * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
            TY(vreg) x0 = {0}, x1 = {0}, x2 = {0}, x3 = {0};
            elman_int k = 0;
            for (; k + V <= K; k += V) {
                const TY(vreg) av = TY(vload)(a + k);
                x0 += av * TY(vload)(w0 + k);
                x1 += av * TY(vload)(w1 + k);
                x2 += av * TY(vload)(w2 + k);
                x3 += av * TY(vload)(w3 + k);
            }
            REAL s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int l = 0; l < V; l++) s0 += x0[l], s1 += x1[l], s2 += x2[l], s3 += x3[l];
            for (; k < K; k++) {
                s0 += a[k] * w0[k];
                s1 += a[k] * w1[k];
                s2 += a[k] * w2[k];
                s3 += a[k] * w3[k];
            }
            c[j] += s0, c[j + 1] += s1, c[j + 2] += s2, c[j + 3] += s3;
        }
#endif
        for (; j < N; j++) {
            const REAL *w = W + j * K;
            REAL s = 0;
            for (elman_int k = 0; k < K; k++) s += a[k] * w[k];
            c[j] += s;
        }
    }
}

/* Rows [r0, r1) of C (M, N) += A (M, K) @ W (K, N) */
static void TYPED(gemm_nn_rows_f32, gemm_nn_rows_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict W, elman_int r0,
    elman_int r1, elman_int K, elman_int N)
{
    elman_int r = r0;
#if ELMAN_VECTOR_EXT
    if (r1 - r >= 8 && (double)K * (double)N * sizeof(REAL) > (double)elman_stream_weight_bytes()) {
        /* W larger than the streaming size: its columns a slab at a time (K x slab, half
         * the streaming size, in L2) for every block of four rows, so that each step reads
         * W once from L3, not once per block of rows */
        enum { P = ELMAN_NV * TY(V) };
        elman_int slab = elman_stream_weight_bytes() / 2 / ((elman_int)sizeof(REAL) * K) / P * P;
        if (slab < P) slab = P;
        const elman_int r4 = r + (r1 - r) / 4 * 4;
        for (elman_int j0 = 0; j0 < N; j0 += slab) {
            const elman_int w = N - j0 < slab ? N - j0 : slab;
            TY(row_blocks)(C + j0, A, K, 1, W + j0, K, w, N, N, r, r4, ELMAN_NV);
        }
        r = r4;
    }
    r = TY(row_blocks)(C, A, K, 1, W, K, N, N, N, r, r1, ELMAN_NV);
#endif
#if ELMAN_VECTOR_EXT
    if (r < r1 && (double)K * (double)N * sizeof(REAL) > (double)elman_stream_weight_bytes()) {
        for (; r < r1; r++) TY(row_stream_nn)(C + r * N, A + r * K, W, K, N);
        return;
    }
#endif
    for (; r < r1; r++) TY(row_nn)(C + r * N, A + r * K, W, K, N);
}

/* C (M, N) += A (M, K) @ W (K, N); the rows are shared among threads, in blocks of four,
 * when the product is large enough to pay for waking them. */
static void TYPED(gemm_nn_f32, gemm_nn_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict W, elman_int M, elman_int K,
    elman_int N)
{
    if (M < ELMAN_PAR_MIN_ROWS || M * K * N < ELMAN_PAR_MIN_FMAS || !elman_can_thread()) {
        TY(gemm_nn_rows)(C, A, W, 0, M, K, N);
        return;
    }
#pragma omp parallel
    {
        elman_int lo, len;
        elman_split_rows(M, 4, &lo, &len);
        TY(gemm_nn_rows)(C, A, W, lo, lo + len, K, N);
    }
}

/* Rows [r0, r1) of C (M, N) = A^T @ W, A (K, M) with rows lda apart, W (K, N) row-major,
 * C overwritten: K (the T*B rows of a weight gradient, long) in chunks, and within a chunk
 * W's columns in slabs that stay in L2 (half the streaming size) for every block of four
 * rows of C; the last rows (all of them without vector extensions) one at a time, their
 * column of the chunk gathered first. */
static void TYPED(gemm_tn_rows_f32, gemm_tn_rows_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict W, elman_int r0,
    elman_int r1, elman_int K, elman_int N, elman_int lda)
{
    enum { KC = ELMAN_TN_K_CHUNK };
    if (r1 > r0) memset(C + r0 * N, 0, (size_t)((r1 - r0) * N) * sizeof(REAL));
#if ELMAN_VECTOR_EXT
    const elman_int r4 = r0 + (r1 - r0) / 4 * 4; /* blocks of four rows, then one at a time */
#else
    const elman_int r4 = r0; /* no four-row kernel: every row one at a time */
#endif
    for (elman_int k0 = 0; k0 < K; k0 += KC) {
        const elman_int kc = K - k0 < KC ? K - k0 : KC;
        const REAL *a = A + k0 * lda, *w = W + k0 * N;
#if ELMAN_VECTOR_EXT
        enum { P = ELMAN_NV * TY(V) };
        elman_int slab = elman_stream_weight_bytes() / 2 / ((elman_int)sizeof(REAL) * kc) / P * P;
        if (slab < P) slab = P;
        for (elman_int j0 = 0; j0 < N; j0 += slab) {
            const elman_int width = N - j0 < slab ? N - j0 : slab;
            /* row q of A^T is column q of A: entry k at a + q + k*lda, no transposed copy */
            TY(row_blocks)(C + j0, a, 1, lda, w + j0, kc, width, N, N, r0, r4, ELMAN_NV);
        }
#endif
        for (elman_int q = r4; q < r1; q++) {
            REAL col[KC];
            for (elman_int k = 0; k < kc; k++) col[k] = a[k * lda + q];
            TY(row_nn)(C + q * N, col, w, kc, N);
        }
    }
}

/* C (M, N) = A^T @ W (see gemm_tn_rows); the rows of C shared among threads in blocks of
 * four when the product pays for waking them. */
static void TYPED(gemm_tn_f32, gemm_tn_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict W, elman_int M, elman_int K,
    elman_int N, elman_int lda)
{
    if (M == 0 || N == 0) return; /* C is empty (and may be NULL) */
    if (M < ELMAN_PAR_MIN_ROWS || M * K * N < ELMAN_PAR_MIN_FMAS || !elman_can_thread()) {
        TY(gemm_tn_rows)(C, A, W, 0, M, K, N, lda);
        return;
    }
#pragma omp parallel
    {
        elman_int lo, len;
        elman_split_rows(M, 4, &lo, &len);
        TY(gemm_tn_rows)(C, A, W, lo, lo + len, K, N, lda);
    }
}

/* ---- a weight packed in column panels ---------------------------------------------------
 *
 * W (K, N) as panels of PW columns: panel p (columns [p PW, p PW + PW)) is a dense (K, PW)
 * block at Wp + p K PW, and the last N mod PW columns a dense (K, N mod PW) block after the
 * whole panels: K N elements in all, the space W takes. A block of rows of C then reads each
 * panel from start to end, where W's own rows would take it down the columns a row of W
 * apart (a page apart at H = 1024): the per-step product of a large W_hh reads its packed
 * copy, made once per layer call. The sums are those of the unpacked kernels, each
 * element's products added in the order of k. */
#if ELMAN_VECTOR_EXT && ELMAN_ROWS8
#define ELMAN_PW (ELMAN_GEMM_PANEL_VECTORS_8ROWS * TY(V))
#elif ELMAN_VECTOR_EXT
#define ELMAN_PW (ELMAN_NV * TY(V))
#else
#define ELMAN_PW 16
#endif

/* Wp = W packed (or W^T, for W (N, K), when transpose), K x N elements */
static void TYPED(pack_panels_f32, pack_panels_f64)(
    REAL *restrict Wp, const REAL *restrict W, elman_int K, elman_int N, int transpose)
{
    const elman_int PW = ELMAN_PW;
    for (elman_int j0 = 0; j0 < N; j0 += PW) {
        const elman_int w = N - j0 < PW ? N - j0 : PW;
        REAL *restrict dst = Wp + j0 * K; /* whole panels before it: j0 / PW of K x PW */
        if (!transpose) {
            for (elman_int k = 0; k < K; k++)
                memcpy(dst + k * w, W + k * N + j0, (size_t)w * sizeof(REAL));
        } else { /* (k, j) of W^T is W[j, k]: column j of the panel is row j0 + j of W */
            for (elman_int j = 0; j < w; j++) {
                const REAL *row = W + (j0 + j) * K;
                for (elman_int k = 0; k < K; k++) dst[k * w + j] = row[k];
            }
        }
    }
}

/* Rows [r0, r1) of C (M, N) += A (M, K) @ W, W packed: panel by panel, every block of rows
 * of C over the panel while it is in cache */
static void TYPED(gemm_packed_rows_f32, gemm_packed_rows_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict Wp, elman_int r0,
    elman_int r1, elman_int K, elman_int N)
{
    const elman_int PW = ELMAN_PW;
    for (elman_int j0 = 0; j0 < N; j0 += PW) {
        const elman_int w = N - j0 < PW ? N - j0 : PW;
        const REAL *pan = Wp + j0 * K;
        elman_int r = r0;
#if ELMAN_VECTOR_EXT
        /* four-row blocks as wide as the panel */
        r = TY(row_blocks)(C + j0, A, K, 1, pan, K, w, N, w, r, r1, ELMAN_PW / TY(V));
#endif
        for (; r < r1; r++) TY(row_nn)(C + r * N + j0, A + r * K, pan, K, w);
    }
}

/* One step of the recurrence on rows [r0, r1) of the batch, the activation fused in while
 * the rows are in cache: forward C = f(C + A @ W); backward C = (C + A @ W) * f'(Y). W as it
 * is, or packed in column panels (packed: pack_panels). */
static void TYPED(step_rows_f32, step_rows_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict W, const REAL *restrict Y,
    elman_int r0, elman_int r1, elman_int H, int nonlinearity, int backward, int packed)
{
    if (packed)
        TY(gemm_packed_rows)(C, A, W, r0, r1, H, H);
    else
        TY(gemm_nn_rows)(C, A, W, r0, r1, H, H);
    REAL *c = C + r0 * H;
    const elman_int n = (r1 - r0) * H;
    const elman_act_loops *act = &ELMAN_THIS_PATH(act); /* act.c, this path's copy */
    if (backward)
        act->TY(act_backward)(c, c, Y + r0 * H, n, nonlinearity);
    else if (nonlinearity == ELMAN_TANH)
        act->TY(tanh)(c, c, n);
    else
        for (elman_int i = 0; i < n; i++) c[i] = c[i] < 0 ? (REAL)0 : c[i];
}

/* The step over the batch, its rows shared among threads when the product pays for waking
 * them. */
static void TYPED(step_any_f32, step_any_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict W, const REAL *restrict Y,
    elman_int B, elman_int H, int nonlinearity, int backward, int packed)
{
    if (B < ELMAN_PAR_MIN_ROWS || B * H * H < ELMAN_PAR_MIN_FMAS || !elman_can_thread()) {
        TY(step_rows)(C, A, W, Y, 0, B, H, nonlinearity, backward, packed);
        return;
    }
#pragma omp parallel
    {
        elman_int lo, len;
        elman_split_rows(B, 4, &lo, &len);
        if (len > 0)
            TY(step_rows)(C, A, W, Y, lo, lo + len, H, nonlinearity, backward, packed);
    }
}

static void TYPED(step_f32, step_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict W, const REAL *restrict Y,
    elman_int B, elman_int H, int nonlinearity, int backward)
{
    TY(step_any)(C, A, W, Y, B, H, nonlinearity, backward, 0);
}

static void TYPED(step_packed_f32, step_packed_f64)(
    REAL *restrict C, const REAL *restrict A, const REAL *restrict Wp, const REAL *restrict Y,
    elman_int B, elman_int H, int nonlinearity, int backward)
{
    TY(step_any)(C, A, Wp, Y, B, H, nonlinearity, backward, 1);
}
#undef ELMAN_PW

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(gemm_small) = {.fast = ELMAN_VECTOR_EXT && ELMAN_VEC_BYTES >= 32,
                              .gemm_nn_f32 = gemm_nn_f32, .gemm_nn_f64 = gemm_nn_f64,
                              .gemm_nt_f32 = gemm_nt_f32, .gemm_nt_f64 = gemm_nt_f64,
                              .gemm_tn_f32 = gemm_tn_f32, .gemm_tn_f64 = gemm_tn_f64,
                              .step_f32 = step_f32, .step_f64 = step_f64,
                              .pack_panels_f32 = pack_panels_f32,
                              .pack_panels_f64 = pack_panels_f64,
                              .step_packed_f32 = step_packed_f32,
                              .step_packed_f64 = step_packed_f64};
#endif

#endif
