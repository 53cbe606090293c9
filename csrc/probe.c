/* The probes of the benchmarks, the machine's limits measured on elman's own threads and
 * vector path:
 *
 * - bandwidth: Adagrad's memory traffic (read p, s, g; write p, s) with no arithmetic to
 *   speak of, s += g; p -= g, so that `elman bench` can say how close Adagrad runs to the
 *   memory system's limit. Reference twin: elman.reference.stream_probe.
 * - FMA peak: on every thread, ELMAN_FMA_CHAINS independent vectors of a = a * m + c (one
 *   fused multiply-add each where the path has FMA), enough chains to cover the FMA units'
 *   latency, so that the rate is the units' throughput: the peak the GEMMs' GFLOP/s are
 *   compared with.
 */
#ifndef ELMAN_TYPED
#include "loops.h"
#include "vecmath.h"

#define ELMAN_TYPED_FILE "probe.c"
#include "typed.h"

#elif !defined(ELMAN_ISA) /* ---- checked entry point, once per REAL ---- */

int TYPED(elman_stream_probe_f32, elman_stream_probe_f64)(
    REAL *p, REAL *s, const REAL *g, elman_int n)
{
    if (n < 0) return ELMAN_ERR_ARG;
    if (n == 0) return ELMAN_OK;
    if (!elman_distinct3(p, s, g)) return ELMAN_ERR_ARG;
    elman_probe_paths[elman_isa()]->TY(stream)(p, s, g, n);
    return ELMAN_OK;
}

int TYPED(elman_fma_probe_f32, elman_fma_probe_f64)(elman_int iters, double *flops,
                                                    double *sink)
{
    if (iters < 0 || flops == NULL || sink == NULL) return ELMAN_ERR_ARG;
    const elman_probe_loops *loops = elman_probe_paths[elman_isa()];
    double total = 0, sum = 0;
#pragma omp parallel reduction(+:total, sum) if (elman_can_thread())
    sum += loops->TY(fma)(iters, &total);
    *flops = total;
    *sink = sum;
    return ELMAN_OK;
}

#else /* ---- the loops, once per REAL and instruction set ---- */

/* iters rounds of ELMAN_FMA_CHAINS independent a = a * m + c on this path's vectors; adds
 * the FLOPs done (2 per lane and round) to *flops and returns the lanes' sum, which the
 * caller keeps so that the loop is not optimized away. */
static double TYPED(fma_f32, fma_f64)(elman_int iters, double *flops)
{
#if ELMAN_VECTOR_EXT
    typedef REAL vreg __attribute__((vector_size(ELMAN_VEC_BYTES)));
#else
    typedef REAL vreg;
#endif
    enum { LANES = sizeof(vreg) / sizeof(REAL) };
    vreg a[ELMAN_FMA_CHAINS];
    const vreg m = (vreg){0} + (REAL)0.9999999, c = (vreg){0} + (REAL)1e-7;
    for (int j = 0; j < ELMAN_FMA_CHAINS; j++) a[j] = (vreg){0} + (REAL)(j + 1);
    for (elman_int i = 0; i < iters; i++)
        for (int j = 0; j < ELMAN_FMA_CHAINS; j++) a[j] = a[j] * m + c;
    double sum = 0;
    for (int j = 0; j < ELMAN_FMA_CHAINS; j++)
        for (int l = 0; l < LANES; l++) sum += (double)((REAL *)&a[j])[l];
    *flops += 2.0 * (double)iters * ELMAN_FMA_CHAINS * LANES;
    return sum;
}

static inline void TYPED(stream_range_f32, stream_range_f64)(
    REAL *restrict p, REAL *restrict s, const REAL *restrict g, elman_int n)
{
#pragma omp simd
    for (elman_int i = 0; i < n; i++) {
        const REAL gi = g[i];
        s[i] = s[i] + gi;
        p[i] = p[i] - gi;
    }
}

static void TYPED(stream_f32, stream_f64)(
    REAL *restrict p, REAL *restrict s, const REAL *restrict g, elman_int n)
{
    if (elman_serial(n)) {
        TY(stream_range)(p, s, g, n);
        return;
    }
#pragma omp parallel
    {
        elman_int lo, len;
        elman_split(n, &lo, &len);
        TY(stream_range)(p + lo, s + lo, g + lo, len);
    }
}

/* After the double pass both dtypes' loops exist: this path's, registered by name. */
#if ELMAN_LAST_PASS
ELMAN_REGISTER(probe) = {.stream_f32 = stream_f32, .stream_f64 = stream_f64,
                         .fma_f32 = fma_f32, .fma_f64 = fma_f64};
#endif

#endif
