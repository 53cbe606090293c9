/* The bandwidth probe of the benchmarks: Adagrad's memory traffic (read p, s, g; write p,
 * s) with no arithmetic to speak of,
 *
 *     s += g;  p -= g
 *
 * on the same threads and vector path as Adagrad, so that `elman bench` can say how close
 * Adagrad runs to the memory system's limit. Reference twin: elman.reference.stream_probe.
 */
#ifndef ELMAN_TYPED
#include "loops.h"

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

#else /* ---- the loop, once per REAL and instruction set ---- */

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
ELMAN_REGISTER(probe) = {.stream_f32 = stream_f32, .stream_f64 = stream_f64};
#endif

#endif
