/* bfloat16 products with float32 accumulation: every product of a model whose compute
 * dtype is bfloat16 (elman_model_shape.compute, elman.h):
 *
 *     gemm:  C (M, N) = [C +] bf16(op(A)) @ bf16(op(B))         op = transpose when asked
 *     step:  C (B, H) = f(C + bf16(A) @ Wp)          (forward)    the recurrence's step,
 *            C (B, H) = (C + bf16(A) @ Wp) * f'(Y)   (backward)   Wp = bf16(W) packed once
 *
 * bf16(x) rounds float32 to the nearest bfloat16 (8-bit significand), ties to even; a NaN
 * stays a NaN. The product of two bfloat16 numbers is exact in float32, so the only
 * rounding after the operands' is the float32 accumulation. Three kernels (elman.h,
 * elman_bf16_kernel): on a CPU with AMX-BF16, tdpbf16ps on 16 x 16 tiles of C (below); with
 * AVX512_BF16, vdpbf16ps, two products per 32-bit lane (both treat denormal inputs and
 * outputs as zero); elsewhere the same sums in float arithmetic on the rounded values (the
 * emulated kernel: same results up to the order of the sums, several times slower).
 * Reference twin: the bf16 rounding model of elman.reference (operands rounded by
 * bf16_round, then a float matmul).
 *
 * Layout. An operand is rounded once and packed in pairs along K, one 32-bit word per pair
 * (low half: the even k), zero-padded where the kernel reads past the data:
 *   A (row-major along k): each row's pairs in order, which is the row in bfloat16;
 *   A (transposed): blocks of MR rows; in a block, the MR words of k-pair p are contiguous;
 *   B: panels of NR columns; in a panel, the NR words of k-pair p are contiguous.
 * so that each packing loop reads and writes along memory. The kernel runs on whole panels
 * and writes only the valid rows and columns of its tile. (The AMX kernel reads A by rows
 * only and pads both operands to whole tiles: its section below.)
 * The vdpbf16ps and emulated kernels keep an MR x NR tile of C in registers (tuning.h: ELMAN_BF16_MR, _NR). A
 * large GEMM is cut into blocks of ELMAN_BF16_KC rows of K and ELMAN_BF16_NC columns
 * (the packed B block stays in L2) and its rows shared among threads; the step packs its
 * weight once per layer call and shares column panels among threads.
 */
#include "loops.h"

#ifndef ELMAN_ISA /* ---- the checked entry points, once ---- */

/* The workspace of the bf16 products, in 32-bit words, for a batch of B rows, hidden size
 * H (the step's packed weight and packed state rows). */
static elman_int elman_bf16_round_up(elman_int n, elman_int unit)
{
    return (n + unit - 1) / unit * unit;
}

elman_int elman_bf16_work_words(elman_int B, elman_int H)
{
    /* sized for every kernel: the AMX kernel rounds the k-pairs up to 16 and the rows of
     * the step's input up to 16 (48: a multiple of both 16 and MR = 12) */
    const elman_int Kp = elman_bf16_round_up((H + 1) / 2, 16);
    const elman_int gemm = elman_add(
        elman_mul(ELMAN_BF16_KC / 2, ELMAN_BF16_NC),
        elman_mul(ELMAN_BF16_MAX_THREADS, elman_mul(ELMAN_BF16_MC, ELMAN_BF16_KC / 2)));
    const elman_int w = elman_mul(Kp, elman_bf16_round_up(H, ELMAN_BF16_NR));
    const elman_int a = elman_mul(elman_bf16_round_up(B, 48), Kp);
    return elman_add(elman_add(gemm, w), a);
}

int elman_bf16_carve(elman_bf16_work *w, void *base, elman_int B, elman_int H)
{
    if (w == NULL || base == NULL || ((uintptr_t)base & 3) != 0 || B < 0 || H < 0)
        return ELMAN_ERR_ARG;
    w->kernel = elman_bf16_kernel();
    w->wkp = elman_bf16_panel_pairs(w->kernel, H);
    uint32_t *p = base;
    w->bblock = p;
    p += (ELMAN_BF16_KC / 2) * ELMAN_BF16_NC;
    w->ablocks = p;
    p += ELMAN_BF16_MAX_THREADS * ELMAN_BF16_MC * (ELMAN_BF16_KC / 2);
    w->wpack = p;
    p += w->wkp * elman_bf16_round_up(H, ELMAN_BF16_NR);
    w->stepa = p;
    w->B = B;
    w->H = H;
    return ELMAN_OK;
}

/* The kernel the CPU runs on the path in use, and the ceiling elman_set_bf16_kernel sets
 * (-1: none). */
static int elman_bf16_best(void)
{
    const unsigned f = elman_cpu_features();
    const int held = elman_bf16_paths[elman_isa()]->kernels;
    if (held >= ELMAN_BF16_AMX && (f & ELMAN_CPU_AMXBF16) && elman_amx_permitted())
        return ELMAN_BF16_AMX;
    if (held >= ELMAN_BF16_VDPBF16PS && (f & ELMAN_CPU_AVX512BF16)) return ELMAN_BF16_VDPBF16PS;
    return ELMAN_BF16_EMULATED;
}

static int elman_bf16_ceiling = -1;

int elman_bf16_kernel(void)
{
    const int best = elman_bf16_best();
    const int ceiling = ELMAN_LOAD(elman_bf16_ceiling);
    return ceiling >= 0 && ceiling < best ? ceiling : best;
}

int elman_set_bf16_kernel(int kernel)
{
    if (kernel < -1 || kernel > ELMAN_BF16_AMX) return ELMAN_ERR_ARG;
    if (kernel > ELMAN_BF16_EMULATED) {
        /* the kernel must exist on some path this CPU runs: the best path holds them all */
        const unsigned f = elman_cpu_features();
        const unsigned need = kernel == ELMAN_BF16_AMX ? ELMAN_CPU_AMXBF16 : ELMAN_CPU_AVX512BF16;
        int held = 0;
        for (int isa = 0; isa < ELMAN_NUM_ISAS; isa++)
            if (elman_bf16_paths[isa] != NULL && elman_bf16_paths[isa]->kernels > held)
                held = elman_bf16_paths[isa]->kernels;
        if ((f & need) == 0 || held < kernel) return ELMAN_ERR_CPU;
        if (kernel == ELMAN_BF16_AMX && !elman_amx_permitted()) return ELMAN_ERR_CPU;
    }
    ELMAN_STORE(elman_bf16_ceiling, kernel);
    return ELMAN_OK;
}

int elman_bf16_native(void) { return elman_bf16_kernel() != ELMAN_BF16_EMULATED; }

int elman_bf16_gemm(const elman_bf16_work *w, int trans_a, int trans_b, elman_int M,
                    elman_int N, elman_int K, const float *A, elman_int lda, const float *B,
                    elman_int ldb, int accumulate, float *C, elman_int ldc)
{
    if (w == NULL || M < 0 || N < 0 || K < 0 || lda < 0 || ldb < 0 || ldc < 0)
        return ELMAN_ERR_ARG;
    if (M == 0 || N == 0) return ELMAN_OK;
    if (C == NULL || ldc < N) return ELMAN_ERR_ARG;
    if (K == 0) {
        if (!accumulate)
            for (elman_int r = 0; r < M; r++) memset(C + r * ldc, 0, (size_t)N * sizeof(float));
        return ELMAN_OK;
    }
    if (A == NULL || B == NULL || lda < (trans_a ? M : K) || ldb < (trans_b ? K : N))
        return ELMAN_ERR_ARG;
    elman_bf16_paths[elman_isa()]->gemm(w, trans_a, trans_b, M, N, K, A, lda, B, ldb,
                                        accumulate, C, ldc);
    return ELMAN_OK;
}

int elman_bf16_pack_weight(const elman_bf16_work *w, const float *W, int transpose)
{
    if (w == NULL || (w->H > 0 && W == NULL)) return ELMAN_ERR_ARG;
    elman_bf16_paths[elman_isa()]->pack_b(w->wpack, W, w->H, transpose, 0, w->H, 0, w->H,
                                          w->wkp);
    return ELMAN_OK;
}

/* One peak loop on every thread: the FLOPs done and the sum of the sinks. */
static int elman_bf16_peak(double (*peak)(elman_int, double *), elman_int iters, double *flops,
                           double *sink)
{
    if (iters < 0 || flops == NULL || sink == NULL) return ELMAN_ERR_ARG;
    if (peak == NULL) return ELMAN_ERR_CPU;
    double total = 0, sum = 0;
#pragma omp parallel reduction(+:total, sum) if (elman_can_thread())
    sum += peak(iters, &total);
    *flops = total;
    *sink = sum;
    return ELMAN_OK;
}

int elman_bf16_probe(elman_int iters, double *flops, double *sink)
{
    const unsigned f = elman_cpu_features();
    const elman_bf16_loops *l = elman_bf16_paths[elman_isa()];
    return elman_bf16_peak(f & ELMAN_CPU_AVX512BF16 ? l->peak : NULL, iters, flops, sink);
}

int elman_bf16_amx_probe(elman_int iters, double *flops, double *sink)
{
    const unsigned f = elman_cpu_features();
    const elman_bf16_loops *l = elman_bf16_paths[elman_isa()];
    const int ok = (f & ELMAN_CPU_AMXBF16) && elman_amx_permitted();
    return elman_bf16_peak(ok ? l->peak_amx : NULL, iters, flops, sink);
}

int elman_bf16_step(const elman_bf16_work *w, float *C, const float *A, const float *Y,
                    elman_int B, int nonlinearity, int backward)
{
    if (w == NULL || B < 0 || B > w->B || C == NULL || A == NULL || (backward && Y == NULL))
        return ELMAN_ERR_ARG;
    elman_bf16_paths[elman_isa()]->step(w, C, A, Y, B, nonlinearity, backward);
    return ELMAN_OK;
}

#else /* ---- the loops, once per instruction set ---- */
#include "vecmath.h"

enum { MR = ELMAN_BF16_MR, NR = ELMAN_BF16_NR };

/* The workspace holds the AMX kernel's padded blocks only while a block of A rows is whole
 * row tiles (MC a multiple of 16), a block of K is whole 16-pair tiles (KC a multiple of
 * 32), and a panel is two column tiles (NR = 32): a compile error otherwise. */
typedef char elman_bf16_amx_layout_check[(ELMAN_BF16_MC % 16 == 0 && ELMAN_BF16_KC % 32 == 0 &&
                                          ELMAN_BF16_NR == 32) ? 1 : -1];

/* float32 -> bfloat16 bits, to nearest, ties to even; NaN -> a quiet NaN of the same sign.
 * Branch-free, so that the packing loops vectorize. */
static inline uint32_t bf16_bits(float f)
{
    const uint32_t u = elman_float_to_bits(f);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet = (u >> 16) | 0x40u;
    return (u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded;
}

static inline uint32_t bf16_pair(float even, float odd)
{
    return bf16_bits(even) | (bf16_bits(odd) << 16);
}

/* Rows [m0, m0+mc) and columns [k0, k0+kc) of op(A), packed for the kernel, which reads
 * pair p of row r at Ap[r * rs + p * ps] (a_layout gives rs, ps). op(A) = A (row-major along
 * k): each row rounded in place of its own, kp words a row (rs = kp, ps = 1), a plain
 * vectorized conversion. op(A) = A^T (k-major): blocks of MR rows whose MR words of pair p
 * lie together (rs = 1, ps = MR), so that both loads and stores run along memory. The rows
 * past mc in the last block are not written: the kernel does not read them. */
static void pack_a(uint32_t *restrict dst, const float *restrict A, elman_int lda, int trans,
                   elman_int m0, elman_int mc, elman_int k0, elman_int kc)
{
    const elman_int kp = (kc + 1) / 2, full = kc / 2;
    if (!trans) {
        /* in little-endian words the pairs of a row are its bfloat16 values in order: a
         * narrowing conversion, written as bytes (read back by a_word) */
        for (elman_int r = 0; r < mc; r++) {
            const float *a = A + (m0 + r) * lda + k0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            uint16_t *restrict d = (uint16_t *)(void *)(dst + r * kp);
            for (elman_int k = 0; k < kc; k++) d[k] = (uint16_t)bf16_bits(a[k]);
            if (kp > full) d[kc] = 0;
#else
            uint32_t *restrict d = dst + r * kp;
            for (elman_int p = 0; p < full; p++) d[p] = bf16_pair(a[2 * p], a[2 * p + 1]);
            if (kp > full) d[full] = bf16_pair(a[kc - 1], 0.0f);
#endif
        }
        return;
    }
    for (elman_int i0 = 0; i0 < mc; i0 += MR) {
        const elman_int rows = mc - i0 < MR ? mc - i0 : MR;
        uint32_t *restrict blk = dst + (i0 / MR) * kp * MR;
        const float *a = A + k0 * lda + m0 + i0; /* op(A)(m, k) = A[k, m] */
        for (elman_int p = 0; p < full; p++) {
            const float *e = a + 2 * p * lda, *o = e + lda;
            for (elman_int r = 0; r < rows; r++) blk[p * MR + r] = bf16_pair(e[r], o[r]);
        }
        if (kp > full) {
            const float *e = a + 2 * full * lda;
            for (elman_int r = 0; r < rows; r++) blk[full * MR + r] = bf16_pair(e[r], 0.0f);
        }
    }
}

/* Where row block i0 (a multiple of MR) of a packed A starts, and its strides: (rs, ps) as
 * pack_a lays it out. */
static inline const uint32_t *a_block(const uint32_t *apack, int trans, elman_int i0,
                                      elman_int kp, elman_int *rs, elman_int *ps)
{
    *rs = trans ? 1 : kp;
    *ps = trans ? MR : 1;
    return trans ? apack + (i0 / MR) * kp * MR : apack + i0 * kp;
}

/* Rows [k0, k0+kc) and columns [n0, n0+nc) of op(B) into panels of NR columns, kpad k-pairs
 * a panel (>= the kc/2 pairs, rounded up; the pairs past them and the columns past nc in the
 * last panel are zero). */
static void pack_b(uint32_t *restrict dst, const float *restrict B, elman_int ldb, int trans,
                   elman_int k0, elman_int kc, elman_int n0, elman_int nc, elman_int kpad)
{
    const elman_int kp = (kc + 1) / 2, full = kc / 2;
    for (elman_int j0 = 0; j0 < nc; j0 += NR) {
        const elman_int cols = nc - j0 < NR ? nc - j0 : NR;
        uint32_t *restrict pan = dst + (j0 / NR) * kpad * NR;
        if (!trans) { /* op(B)(k, n) = B[k, n] */
            for (elman_int p = 0; p < kp; p++) {
                const float *e = B + (k0 + 2 * p) * ldb + n0 + j0;
                const float *o = e + ldb;
                uint32_t *restrict d = pan + p * NR;
                if (p < full)
                    for (elman_int j = 0; j < cols; j++) d[j] = bf16_pair(e[j], o[j]);
                else
                    for (elman_int j = 0; j < cols; j++) d[j] = bf16_pair(e[j], 0.0f);
                for (elman_int j = cols; j < NR; j++) d[j] = 0;
            }
        } else { /* op(B)(k, n) = B[n, k]: a column of op(B) is a contiguous row of B */
            for (elman_int j = 0; j < cols; j++) {
                const float *col = B + (n0 + j0 + j) * ldb + k0;
                for (elman_int p = 0; p < full; p++)
                    pan[p * NR + j] = bf16_pair(col[2 * p], col[2 * p + 1]);
                if (kp > full) pan[full * NR + j] = bf16_pair(col[kc - 1], 0.0f);
            }
            for (elman_int p = 0; p < kp; p++)
                for (elman_int j = cols; j < NR; j++) pan[p * NR + j] = 0;
        }
        if (kpad > kp) memset(pan + kp * NR, 0, (size_t)((kpad - kp) * NR) * sizeof(uint32_t));
    }
}

/* A word of a packed A (written as 16-bit halves by pack_a's row layout) */
static inline uint32_t a_word(const uint32_t *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

static inline float bf16_lo(uint32_t w) { return elman_bits_to_float(w << 16); }
static inline float bf16_hi(uint32_t w) { return elman_bits_to_float(w & 0xffff0000u); }

/* The tile C (rows, cols) [+]= Ap (rows of the block) @ Bp (one panel) over kp k-pairs,
 * in float arithmetic: per lane the odd pair's product, then the even's, as vdpbf16ps
 * orders them. */
static ELMAN_ALWAYS_INLINE void tile_emulated_rows(
    float *restrict C, elman_int ldc, const uint32_t *restrict Ap, elman_int rs, elman_int ps,
    const uint32_t *restrict Bp, elman_int kp, const int rows, int cols, int accumulate)
{
    float acc[MR][NR];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = 0.0f;
    for (elman_int p = 0; p < kp; p++) {
        float bl[NR], bh[NR];
        for (int j = 0; j < NR; j++) {
            bl[j] = bf16_lo(Bp[p * NR + j]);
            bh[j] = bf16_hi(Bp[p * NR + j]);
        }
        for (int r = 0; r < rows; r++) {
            const uint32_t aw = a_word(Ap + r * rs + p * ps);
            const float al = bf16_lo(aw), ah = bf16_hi(aw);
            for (int j = 0; j < NR; j++) acc[r][j] = (acc[r][j] + ah * bh[j]) + al * bl[j];
        }
    }
    for (int r = 0; r < rows; r++) {
        float *c = C + r * ldc;
        if (accumulate)
            for (int j = 0; j < cols; j++) c[j] += acc[r][j];
        else
            for (int j = 0; j < cols; j++) c[j] = acc[r][j];
    }
}

static void tile_emulated(float *C, elman_int ldc, const uint32_t *Ap, elman_int rs,
                          elman_int ps, const uint32_t *Bp, elman_int kp, int rows, int cols,
                          int accumulate)
{
    /* one copy per row count, so that the row loops have constant bounds */
    switch (rows) {
#define ELMAN_BF16_ROWS(R) \
    case R: tile_emulated_rows(C, ldc, Ap, rs, ps, Bp, kp, R, cols, accumulate); break;
        ELMAN_BF16_ROWS(1) ELMAN_BF16_ROWS(2) ELMAN_BF16_ROWS(3) ELMAN_BF16_ROWS(4)
        ELMAN_BF16_ROWS(5) ELMAN_BF16_ROWS(6) ELMAN_BF16_ROWS(7) ELMAN_BF16_ROWS(8)
        ELMAN_BF16_ROWS(9) ELMAN_BF16_ROWS(10) ELMAN_BF16_ROWS(11) ELMAN_BF16_ROWS(12)
#undef ELMAN_BF16_ROWS
    default: break;
    }
}

/* The vdpbf16ps kernel: compiled on the AVX-512 path by compilers that know the
 * instruction (function-level target, so that nothing else of the path uses it), run only
 * where the CPU has it. */
#if defined(__AVX512F__) && ((defined(__GNUC__) && __GNUC__ >= 10) || defined(__clang__))
#define ELMAN_BF16_NATIVE 1
#include <immintrin.h>
#define ELMAN_BF16_TARGET __attribute__((target("avx512f,avx512bf16")))

static ELMAN_BF16_TARGET ELMAN_ALWAYS_INLINE void tile_native_rows(
    float *restrict C, elman_int ldc, const uint32_t *restrict Ap, elman_int rs, elman_int ps,
    const uint32_t *restrict Bp, elman_int kp, const int rows, const int NV, int cols,
    int accumulate)
{
    /* A tile of few rows has few accumulators, each a chain of dependent vdpbf16ps: then U
     * sets of them take the k-pairs in turn, so that at least eight chains are in flight
     * (the instruction's latency times its throughput), summed at the end. */
    enum { UMAX = 4 };
    const int U = rows * NV <= 2 ? 4 : rows * NV <= 4 ? 2 : 1;
    __m512 acc[UMAX][MR][NR / 16];
    for (int u = 0; u < U; u++)
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < NV; v++) acc[u][r][v] = _mm512_setzero_ps();
    elman_int p = 0;
#define ELMAN_BF16_PAIR(u, p)                                                                \
    do {                                                                                     \
        __m512bh b[NR / 16];                                                                 \
        for (int v = 0; v < NV; v++)                                                         \
            b[v] = (__m512bh)_mm512_loadu_si512((const void *)(Bp + (p) * NR + 16 * v));     \
        for (int r = 0; r < rows; r++) {                                                     \
            const __m512bh a =                                                               \
                (__m512bh)_mm512_set1_epi32((int)a_word(Ap + r * rs + (p) * ps));            \
            for (int v = 0; v < NV; v++)                                                     \
                acc[u][r][v] = _mm512_dpbf16_ps(acc[u][r][v], a, b[v]);                      \
        }                                                                                    \
    } while (0)
    for (; p + U <= kp; p += U)
        for (int u = 0; u < U; u++) ELMAN_BF16_PAIR(u, p + u);
    for (; p < kp; p++) ELMAN_BF16_PAIR(0, p);
#undef ELMAN_BF16_PAIR
    for (int u = 1; u < U; u++)
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < NV; v++) acc[0][r][v] = _mm512_add_ps(acc[0][r][v], acc[u][r][v]);
    for (int v = 0; v < NV; v++) {
        const int left = cols - 16 * v;
        if (left <= 0) break;
        const __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        for (int r = 0; r < rows; r++) {
            float *c = C + r * ldc + 16 * v;
            __m512 x = acc[0][r][v];
            if (accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, c));
            _mm512_mask_storeu_ps(c, m, x);
        }
    }
}

/* One copy per row count and panel width: a last panel of at most 16 columns (O = 97
 * leaves one) runs on one vector of accumulators, not two. */
static ELMAN_BF16_TARGET void tile_native(float *C, elman_int ldc, const uint32_t *Ap,
                                          elman_int rs, elman_int ps, const uint32_t *Bp,
                                          elman_int kp, int rows, int cols, int accumulate)
{
    switch (rows + (cols <= 16 ? 16 : 0)) {
#define ELMAN_BF16_ROWS(R) \
    case R: tile_native_rows(C, ldc, Ap, rs, ps, Bp, kp, R, 2, cols, accumulate); break; \
    case R + 16: tile_native_rows(C, ldc, Ap, rs, ps, Bp, kp, R, 1, cols, accumulate); break;
        ELMAN_BF16_ROWS(1) ELMAN_BF16_ROWS(2) ELMAN_BF16_ROWS(3) ELMAN_BF16_ROWS(4)
        ELMAN_BF16_ROWS(5) ELMAN_BF16_ROWS(6) ELMAN_BF16_ROWS(7) ELMAN_BF16_ROWS(8)
        ELMAN_BF16_ROWS(9) ELMAN_BF16_ROWS(10) ELMAN_BF16_ROWS(11) ELMAN_BF16_ROWS(12)
#undef ELMAN_BF16_ROWS
    default: break;
    }
}

/* The bfloat16 peak probe's loop on this thread: iters rounds of ELMAN_FMA_CHAINS
 * independent vdpbf16ps (64 FLOPs each: 16 lanes, two products and two sums); adds the
 * FLOPs to *flops and returns a sink. The ceiling the bfloat16 products are shares of. */
static ELMAN_BF16_TARGET double peak_native(elman_int iters, double *flops)
{
    __m512 a[ELMAN_FMA_CHAINS];
    for (int j = 0; j < ELMAN_FMA_CHAINS; j++) a[j] = _mm512_set1_ps((float)j);
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80); /* (1, 1) */
    const __m512bh y = (__m512bh)_mm512_set1_epi32(0x00010001); /* tiny: no overflow */
    for (elman_int i = 0; i < iters; i++) {
        for (int j = 0; j < ELMAN_FMA_CHAINS; j++) a[j] = _mm512_dpbf16_ps(a[j], x, y);
        __asm__ volatile("" : "+v"(x)); /* x unknown to the compiler: no hoisting */
    }
    double sum = 0;
    for (int j = 0; j < ELMAN_FMA_CHAINS; j++) sum += _mm512_reduce_add_ps(a[j]);
    *flops += 64.0 * ELMAN_FMA_CHAINS * (double)iters;
    return sum;
}
#define ELMAN_BF16_PEAK peak_native
#else
#define ELMAN_BF16_NATIVE 0
#define ELMAN_BF16_PEAK NULL
#endif

/* The AMX kernel: tdpbf16ps on 16 x 16 tiles of C. Compiled on the AVX-512 path by
 * compilers that know the tile instructions, for Linux (which grants the tile state,
 * dispatch.c), run only where the CPU has AMX-BF16.
 *
 * Layout. A tile of A is 16 rows of 16 k-pairs, read with the row stride of the packed A;
 * a tile of B is 16 k-pairs of 16 columns, half a panel of pack_b (stride NR words). So
 * the AMX kernel packs A row by row with its k-pairs rounded up to kpa, a multiple of 16
 * (zero pairs past the data), and its rows to a multiple of 16 (zero rows); and B as the
 * other kernels do with kpa pairs a panel. A block of C is up to 32 rows (two row tiles)
 * by one panel (two column tiles): with two A and two B tiles, the 8 tile registers. A
 * block's C tiles go through memory once: loaded (or zeroed) before the k loop, stored
 * after it; a tile of C that runs past the matrix's edge goes through a 16 x 16 buffer. */
#if ELMAN_BF16_NATIVE && defined(__linux__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define ELMAN_BF16_HAS_AMX 1
#define ELMAN_AMX_TARGET __attribute__((target("avx512f,avx512bf16,amx-tile,amx-bf16")))
/* GCC's tile loads (inline assembly) do not tell the compiler that they read memory: a
 * compiler barrier on each side keeps the stores that fill the tile's memory before the
 * load, and the stores that refill it after. */
#define AMX_LOAD(t, base, stride)                                                          \
    do {                                                                                   \
        __asm__ volatile("" ::: "memory");                                                 \
        _tile_loadd(t, base, stride);                                                      \
        __asm__ volatile("" ::: "memory");                                                 \
    } while (0)

/* Tile configuration (palette 1): every tile 16 rows of 64 bytes. Loaded by each thread
 * before its products (it zeroes the tiles) and released after them, so that a thread
 * keeps no tile state between calls. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

static ELMAN_AMX_TARGET void amx_begin(void)
{
    amx_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    __asm__ volatile("" ::: "memory"); /* the whole of c is read, as for the loads */
    _tile_loadconfig(&c);
}

static ELMAN_AMX_TARGET void amx_end(void) { _tile_release(); }

/* Rows [m0, m0+mc) and columns [k0, k0+kc) of op(A) for the AMX kernel: row r's k-pairs
 * at dst[r * kpa + p], kpa >= (kc+1)/2 a multiple of 16, zero past the data; the rows past
 * mc, up to a multiple of 16, zero. */
static void pack_a_amx(uint32_t *restrict dst, const float *restrict A, elman_int lda,
                       int trans, elman_int m0, elman_int mc, elman_int k0, elman_int kc,
                       elman_int kpa)
{
    const elman_int kp = (kc + 1) / 2, full = kc / 2;
    if (!trans) {
        /* little-endian (x86): a row's pairs are its bfloat16 values in order */
        for (elman_int r = 0; r < mc; r++) {
            const float *a = A + (m0 + r) * lda + k0;
            uint16_t *restrict d = (uint16_t *)(void *)(dst + r * kpa);
            for (elman_int k = 0; k < kc; k++) d[k] = (uint16_t)bf16_bits(a[k]);
            memset(d + kc, 0, (size_t)(2 * kpa - kc) * sizeof(uint16_t));
        }
    } else { /* op(A)(m, k) = A[k, m]: two rows of A give row r's pair p */
        for (elman_int p = 0; p < full; p++) {
            const float *e = A + (k0 + 2 * p) * lda + m0, *o = e + lda;
            for (elman_int r = 0; r < mc; r++) dst[r * kpa + p] = bf16_pair(e[r], o[r]);
        }
        if (kp > full) {
            const float *e = A + (k0 + 2 * full) * lda + m0;
            for (elman_int r = 0; r < mc; r++) dst[r * kpa + full] = bf16_pair(e[r], 0.0f);
        }
        for (elman_int r = 0; r < mc; r++)
            memset(dst + r * kpa + kp, 0, (size_t)(kpa - kp) * sizeof(uint32_t));
    }
    const elman_int rows = (mc + 15) / 16 * 16;
    if (rows > mc) memset(dst + mc * kpa, 0, (size_t)((rows - mc) * kpa) * sizeof(uint32_t));
}

/* Tile t of a block: C's rows [16 ti, 16 ti + 16) and columns [16 tj, 16 tj + 16), clipped
 * to rows x cols, in: loaded from C (accumulate) or zero; out: stored to C. */
#define AMX_EDGE(ti, tj)                                                                   \
    const int er = rows - 16 * (ti) < 16 ? rows - 16 * (ti) : 16;                          \
    const int ec = cols - 16 * (tj) < 16 ? cols - 16 * (tj) : 16;                          \
    float *const ct = C + 16 * (ti) * ldc + 16 * (tj)
#define AMX_C_IN(t, ti, tj)                                                                \
    do {                                                                                   \
        AMX_EDGE(ti, tj);                                                                  \
        if (!accumulate) {                                                                 \
            _tile_zero(t);                                                                 \
        } else if (er == 16 && ec == 16) {                                                 \
            AMX_LOAD(t, ct, ldc * (elman_int)sizeof(float));                            \
        } else {                                                                           \
            memset(edge, 0, sizeof edge);                                                  \
            for (int r = 0; r < er; r++) memcpy(edge[r], ct + r * ldc, ec * sizeof(float)); \
            AMX_LOAD(t, edge, 64);                                                      \
        }                                                                                  \
    } while (0)
#define AMX_C_OUT(t, ti, tj)                                                               \
    do {                                                                                   \
        AMX_EDGE(ti, tj);                                                                  \
        if (er == 16 && ec == 16) {                                                        \
            _tile_stored(t, ct, ldc * (elman_int)sizeof(float));                           \
        } else {                                                                           \
            _tile_stored(t, edge, 64);                                                     \
            for (int r = 0; r < er; r++) memcpy(ct + r * ldc, edge[r], ec * sizeof(float)); \
        }                                                                                  \
    } while (0)

/* C (rows <= 32, cols <= NR) [+]= Ap @ Bp: Ap the block's rows (kpa words a row), Bp one
 * panel (NR words a k-pair), kpa k-pairs. TWO: rows > 16 (two row tiles); WIDE: cols > 16
 * (two column tiles); constants in each copy, so that the loop has no branch. */
static ELMAN_AMX_TARGET ELMAN_ALWAYS_INLINE void amx_block_of(
    float *C, elman_int ldc, const uint32_t *Ap, const uint32_t *Bp, elman_int kpa, int rows,
    int cols, int accumulate, const int TWO, const int WIDE)
{
    float edge[16][16] __attribute__((aligned(64)));
    const elman_int as = kpa * (elman_int)sizeof(uint32_t), bs = NR * (elman_int)sizeof(uint32_t);
    AMX_C_IN(0, 0, 0);
    if (WIDE) AMX_C_IN(1, 0, 1);
    if (TWO) AMX_C_IN(2, 1, 0);
    if (TWO && WIDE) AMX_C_IN(3, 1, 1);
    for (elman_int p = 0; p < kpa; p += 16) {
        AMX_LOAD(4, Ap + p, as);
        AMX_LOAD(6, Bp + p * NR, bs);
        _tile_dpbf16ps(0, 4, 6);
        if (WIDE) {
            AMX_LOAD(7, Bp + p * NR + 16, bs);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (TWO) {
            AMX_LOAD(5, Ap + 16 * kpa + p, as);
            _tile_dpbf16ps(2, 5, 6);
            if (WIDE) _tile_dpbf16ps(3, 5, 7);
        }
    }
    AMX_C_OUT(0, 0, 0);
    if (WIDE) AMX_C_OUT(1, 0, 1);
    if (TWO) AMX_C_OUT(2, 1, 0);
    if (TWO && WIDE) AMX_C_OUT(3, 1, 1);
}
#undef AMX_EDGE
#undef AMX_C_IN
#undef AMX_C_OUT

static ELMAN_AMX_TARGET void amx_block(float *C, elman_int ldc, const uint32_t *Ap,
                                       const uint32_t *Bp, elman_int kpa, int rows, int cols,
                                       int accumulate)
{
    switch ((rows > 16) * 2 + (cols > 16)) {
    case 0: amx_block_of(C, ldc, Ap, Bp, kpa, rows, cols, accumulate, 0, 0); break;
    case 1: amx_block_of(C, ldc, Ap, Bp, kpa, rows, cols, accumulate, 0, 1); break;
    case 2: amx_block_of(C, ldc, Ap, Bp, kpa, rows, cols, accumulate, 1, 0); break;
    default: amx_block_of(C, ldc, Ap, Bp, kpa, rows, cols, accumulate, 1, 1); break;
    }
}

/* Rows [0, mc) of C against every panel of a packed B block (nc columns, kpa k-pairs a
 * panel): a panel stays in L1 while the blocks of 32 rows pass over it. */
static void amx_tiles(float *C, elman_int ldc, const uint32_t *apack, const uint32_t *bpack,
                      elman_int mc, elman_int nc, elman_int kpa, int accumulate)
{
    for (elman_int j0 = 0; j0 < nc; j0 += NR) {
        const uint32_t *pan = bpack + (j0 / NR) * kpa * NR;
        const int cols = (int)(nc - j0 < NR ? nc - j0 : NR);
        for (elman_int i0 = 0; i0 < mc; i0 += 32) {
            const int rows = (int)(mc - i0 < 32 ? mc - i0 : 32);
            amx_block(C + i0 * ldc + j0, ldc, apack + i0 * kpa, pan, kpa, rows, cols,
                      accumulate);
        }
    }
}

/* The AMX peak probe's loop on this thread: iters rounds of four independent tdpbf16ps
 * (16 x 16 x 32 products and sums each: 16384 FLOPs) on zero tiles. */
static ELMAN_AMX_TARGET double peak_amx(elman_int iters, double *flops)
{
    static const uint32_t zeros[16 * 16] __attribute__((aligned(64)));
    float out[16][16] __attribute__((aligned(64)));
    amx_begin();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    AMX_LOAD(4, zeros, 64);
    AMX_LOAD(5, zeros, 64);
    AMX_LOAD(6, zeros, 64);
    AMX_LOAD(7, zeros, 64);
    for (elman_int i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    amx_end();
    *flops += 4.0 * 16384.0 * (double)iters;
    return out[0][0];
}
#define ELMAN_BF16_PEAK_AMX peak_amx
#define ELMAN_BF16_KERNELS ELMAN_BF16_AMX
#else
#define ELMAN_BF16_HAS_AMX 0
#define ELMAN_BF16_PEAK_AMX NULL
#define ELMAN_BF16_KERNELS (ELMAN_BF16_NATIVE ? ELMAN_BF16_VDPBF16PS : ELMAN_BF16_EMULATED)
#endif

typedef void (*tile_fn)(float *, elman_int, const uint32_t *, elman_int, elman_int,
                        const uint32_t *, elman_int, int, int, int);

static tile_fn pick_tile(const elman_bf16_work *w)
{
#if ELMAN_BF16_NATIVE
    if (w->kernel == ELMAN_BF16_VDPBF16PS) return tile_native;
#endif
    (void)w;
    return tile_emulated;
}

/* Rows [m0, m0+mc) of C: every tile of the packed A rows (apack) against every panel of
 * the packed B block (bpack, nc columns, kp pairs). */
static void tiles(tile_fn tile, float *C, elman_int ldc, const uint32_t *apack, int trans,
                  const uint32_t *bpack, elman_int mc, elman_int nc, elman_int kp,
                  int accumulate)
{
    for (elman_int j0 = 0; j0 < nc; j0 += NR) {
        const uint32_t *pan = bpack + (j0 / NR) * kp * NR;
        const int cols = (int)(nc - j0 < NR ? nc - j0 : NR);
        for (elman_int i0 = 0; i0 < mc; i0 += MR) {
            const int rows = (int)(mc - i0 < MR ? mc - i0 : MR);
            elman_int rs, ps;
            const uint32_t *ap = a_block(apack, trans, i0, kp, &rs, &ps);
            tile(C + i0 * ldc + j0, ldc, ap, rs, ps, pan, kp, rows, cols, accumulate);
        }
    }
}

/* Multiply-adds of the kernel in use worth one FMA's: the thread thresholds (tuning.h)
 * count FMA work, and AMX does a multiply-add in a fraction of that time. */
static double kernel_work(const elman_bf16_work *w, double fmas)
{
    return w->kernel == ELMAN_BF16_AMX ? fmas / ELMAN_BF16_AMX_WORK_RATIO : fmas;
}

static int gemm_threads(const elman_bf16_work *w, elman_int M, elman_int N, elman_int K)
{
#ifdef _OPENMP
    if (!elman_can_thread()) return 1;
    elman_int t = (elman_int)(kernel_work(w, (double)M * (double)N * (double)K) /
                              ELMAN_GEMM_MIN_FMAS_PER_THREAD);
    if (t > M / MR) t = M / MR;
    if (t > omp_get_max_threads()) t = omp_get_max_threads();
    if (t > ELMAN_BF16_MAX_THREADS) t = ELMAN_BF16_MAX_THREADS;
    return t < 1 ? 1 : (int)t;
#else
    (void)w, (void)M, (void)N, (void)K;
    return 1;
#endif
}

/* The AMX kernel's tile configuration on this thread: loaded before its products (on),
 * released after them. */
static void tiles_config(const elman_bf16_work *w, int on)
{
#if ELMAN_BF16_HAS_AMX
    if (w->kernel != ELMAN_BF16_AMX) return;
    if (on)
        amx_begin();
    else
        amx_end();
#else
    (void)w, (void)on;
#endif
}

/* Rows [lo, lo+len) of C against the packed B block (kpb k-pairs a panel), their A rows
 * packed MC at a time into this thread's slot of the workspace. */
static void gemm_rows(const elman_bf16_work *w, tile_fn tile, int trans_a, elman_int lo,
                      elman_int len, elman_int kc, elman_int k0, elman_int nc, elman_int n0,
                      elman_int kpb, const float *A, elman_int lda, int acc, float *C,
                      elman_int ldc, int slot)
{
    uint32_t *apack = w->ablocks + (elman_int)slot * ELMAN_BF16_MC * (ELMAN_BF16_KC / 2);
    for (elman_int m0 = lo; m0 < lo + len; m0 += ELMAN_BF16_MC) {
        const elman_int mc = lo + len - m0 < ELMAN_BF16_MC ? lo + len - m0 : ELMAN_BF16_MC;
#if ELMAN_BF16_HAS_AMX
        if (w->kernel == ELMAN_BF16_AMX) {
            pack_a_amx(apack, A, lda, trans_a, m0, mc, k0, kc, kpb);
            amx_tiles(C + m0 * ldc + n0, ldc, apack, w->bblock, mc, nc, kpb, acc);
            continue;
        }
#endif
        pack_a(apack, A, lda, trans_a, m0, mc, k0, kc);
        tiles(tile, C + m0 * ldc + n0, ldc, apack, trans_a, w->bblock, mc, nc, kpb, acc);
    }
}

/* k-pairs a packed panel holds for kc rows of K: the AMX kernel's tiles take 16 at a time. */
static elman_int panel_pairs(const elman_bf16_work *w, elman_int kc)
{
    /* a path without the AMX kernel packs for the others whatever w says */
    return elman_bf16_panel_pairs(ELMAN_BF16_HAS_AMX ? w->kernel : ELMAN_BF16_EMULATED, kc);
}

/* Every block of C = [C +] op(A) @ op(B) on this thread's share: the panels of each B
 * block it packs (then all wait for the block), and its rows of C. Outside a parallel
 * region, all of it. */
static void gemm_blocks(const elman_bf16_work *w, tile_fn tile, int trans_a, int trans_b,
                        elman_int M, elman_int N, elman_int K, const float *A, elman_int lda,
                        const float *B, elman_int ldb, int accumulate, float *C, elman_int ldc,
                        int threads)
{
    elman_int lo, len;
    elman_split_rows(M, MR, &lo, &len);
    for (elman_int n0 = 0; n0 < N; n0 += ELMAN_BF16_NC) {
        const elman_int nc = N - n0 < ELMAN_BF16_NC ? N - n0 : ELMAN_BF16_NC;
        for (elman_int k0 = 0; k0 < K; k0 += ELMAN_BF16_KC) {
            const elman_int kc = K - k0 < ELMAN_BF16_KC ? K - k0 : ELMAN_BF16_KC;
            const elman_int kp = panel_pairs(w, kc);
            elman_int q0, qn;
            elman_split_rows((nc + NR - 1) / NR, 1, &q0, &qn);
            if (qn > 0)
                pack_b(w->bblock + q0 * kp * NR, B, ldb, trans_b, k0, kc, n0 + q0 * NR,
                       (q0 + qn) * NR < nc ? qn * NR : nc - q0 * NR, kp);
            if (threads > 1) {
#pragma omp barrier
            }
            gemm_rows(w, tile, trans_a, lo, len, kc, k0, nc, n0, kp, A, lda,
                      accumulate || k0 > 0, C, ldc, elman_thread_num());
            if (threads > 1) { /* the next block overwrites this one */
#pragma omp barrier
            }
        }
    }
}

static void gemm(const elman_bf16_work *w, int trans_a, int trans_b, elman_int M, elman_int N,
                 elman_int K, const float *A, elman_int lda, const float *B, elman_int ldb,
                 int accumulate, float *C, elman_int ldc)
{
    const tile_fn tile = pick_tile(w);
    const int threads = gemm_threads(w, M, N, K);
    if (threads == 1) {
        tiles_config(w, 1);
        gemm_blocks(w, tile, trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc, 1);
        tiles_config(w, 0);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        tiles_config(w, 1);
        gemm_blocks(w, tile, trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc,
                    threads);
        tiles_config(w, 0);
    }
}

/* The activation of rows x cols of C (row stride H) at column j0 of row i0: forward
 * f(C), backward C * f'(Y). */
static void step_act(float *c, const float *Y, elman_int H, elman_int i0, elman_int j0,
                     int rows, int cols, int nonlinearity, int backward)
{
    const elman_act_loops *act = &ELMAN_THIS_PATH(act);
    for (int r = 0; r < rows; r++) {
        float *row = c + r * H;
        if (backward)
            act->act_backward_f32(row, row, Y + (i0 + r) * H + j0, cols, nonlinearity);
        else if (nonlinearity == ELMAN_TANH)
            act->tanh_f32(row, row, cols);
        else
            for (int j = 0; j < cols; j++) row[j] = row[j] < 0 ? 0.0f : row[j];
    }
}

/* Column panels [q0, q1) of one step (below), on AMX tiles (amx) or on the tile kernel:
 * each block of C with the activation applied while it is in cache. */
static void step_panels(const elman_bf16_work *w, tile_fn tile, int amx, float *C,
                        const float *Y, elman_int B, elman_int q0, elman_int q1,
                        int nonlinearity, int backward)
{
    const elman_int H = w->H, kp = (H + 1) / 2, pan = w->wkp * NR;
    const int block = amx ? 32 : MR;
#if ELMAN_BF16_HAS_AMX
    if (amx) amx_begin();
#endif
    for (elman_int q = q0; q < q1; q++) {
        const elman_int j0 = q * NR;
        const int cols = (int)(H - j0 < NR ? H - j0 : NR);
        for (elman_int i0 = 0; i0 < B; i0 += block) {
            const int rows = (int)(B - i0 < block ? B - i0 : block);
            float *c = C + i0 * H + j0;
#if ELMAN_BF16_HAS_AMX
            if (amx)
                amx_block(c, H, w->stepa + i0 * w->wkp, w->wpack + q * pan, w->wkp, rows,
                          cols, 1);
            else
#endif
            {
                elman_int rs, ps;
                const uint32_t *ap = a_block(w->stepa, 0, i0, kp, &rs, &ps);
                tile(c, H, ap, rs, ps, w->wpack + q * pan, kp, rows, cols, 1);
            }
            step_act(c, Y, H, i0, j0, rows, cols, nonlinearity, backward);
        }
    }
#if ELMAN_BF16_HAS_AMX
    if (amx) amx_end();
#endif
}

/* C (B, H) = f(C + bf16(A) @ Wp) or (C + bf16(A) @ Wp) * f'(Y), Wp the packed weight (H, H):
 * A packed once, the column panels shared among threads, the activation applied to each
 * tile while it is in cache. With the AMX kernel, a batch of fewer than
 * ELMAN_BF16_AMX_MIN_ROWS rows runs on vdpbf16ps where the CPU has it (a tile's 16 rows
 * would be mostly padding), reading the same packed weight over its real k-pairs. */
static void step(const elman_bf16_work *w, float *C, const float *A, const float *Y,
                 elman_int B, int nonlinearity, int backward)
{
    const elman_int H = w->H, panels = (H + NR - 1) / NR;
    tile_fn tile = pick_tile(w);
    int amx = 0;
#if ELMAN_BF16_HAS_AMX
    if (w->kernel == ELMAN_BF16_AMX) {
        amx = B >= ELMAN_BF16_AMX_MIN_ROWS ||
              (elman_cpu_features() & ELMAN_CPU_AVX512BF16) == 0;
        if (!amx) tile = tile_native;
    }
    if (amx)
        pack_a_amx(w->stepa, A, H, 0, 0, B, 0, H, w->wkp);
    else
#endif
        pack_a(w->stepa, A, H, 0, 0, B, 0, H);
    const double work = amx ? kernel_work(w, (double)B * H * H) : (double)B * H * H;
    if (work < ELMAN_PAR_MIN_FMAS || panels < 2 || !elman_can_thread()) {
        step_panels(w, tile, amx, C, Y, B, 0, panels, nonlinearity, backward);
        return;
    }
#pragma omp parallel
    {
        elman_int lo, len;
        elman_split_rows(panels, 1, &lo, &len);
        step_panels(w, tile, amx, C, Y, B, lo, lo + len, nonlinearity, backward);
    }
}

ELMAN_REGISTER(bf16) = {.kernels = ELMAN_BF16_KERNELS, .gemm = gemm, .pack_b = pack_b,
                        .step = step, .peak = ELMAN_BF16_PEAK,
                        .peak_amx = ELMAN_BF16_PEAK_AMX};

#endif
