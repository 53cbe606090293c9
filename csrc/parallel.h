/* When a kernel may start OpenMP threads, and how it cuts [0, n) among them: the one
 * threading predicate of csrc/. Private to csrc/. */
#ifndef ELMAN_PARALLEL_H
#define ELMAN_PARALLEL_H

#include "internal.h"
#include "tuning.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Nonzero in a process forked from one whose OpenMP threads had started (dispatch.c):
 * GNU OpenMP's pool does not survive fork, and a parallel region there would wait forever
 * for threads that are not in the child. */
int elman_forked(void);

/* Nonzero where a parallel region may run and help: OpenMP built in, more than one thread,
 * not inside a region already, not in such a forked child. */
static inline int elman_can_thread(void)
{
#ifdef _OPENMP
    return !elman_forked() && !omp_in_parallel() && omp_get_max_threads() > 1;
#else
    return 0;
#endif
}

/* An elementwise loop over n elements runs on the calling thread alone. Not even an
 * inactive parallel region is entered then: it costs about 0.3 us. */
static inline int elman_serial(elman_int n)
{
    return n < ELMAN_PAR_MIN_ELEMENTS || !elman_can_thread();
}

/* This thread's part of [0, n): *lo and *len, in whole multiples of unit. Outside a
 * parallel region (or without OpenMP) the whole range. */
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

/* This thread's number in the parallel region (0 outside one). */
static inline int elman_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The same for an elementwise loop: whole cache lines per thread. */
static inline void elman_split(elman_int n, elman_int *lo, elman_int *len)
{
    elman_split_rows(n, ELMAN_SPLIT_UNIT, lo, len);
}

#endif /* ELMAN_PARALLEL_H */
