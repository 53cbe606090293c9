/* CPU features (cpuid + xgetbv), the choice of kernel path, threads, build information.
 *
 * The hot loops exist once per instruction set (vec_isa.c); the best one the CPU runs is
 * picked on first use, or the one named by elman_set_kernel_path (ELMAN_CPU from Python). */
#include "vec.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define ELMAN_X86 1
/* The OS saves the extended registers only if XCR0 says so; CPUID alone is not enough. */
static unsigned long long elman_xgetbv(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

unsigned elman_cpu_features(void)
{
    unsigned f = 0;
#ifdef ELMAN_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (d & (1u << 26)) f |= ELMAN_CPU_SSE2;
    const int osxsave = (c & (1u << 27)) != 0;
    const unsigned long long xcr0 = osxsave ? elman_xgetbv() : 0;
    const int ymm = (xcr0 & 0x6) == 0x6;    /* XMM and YMM state */
    const int zmm = (xcr0 & 0xe6) == 0xe6;  /* plus opmask and ZMM state */
    if (ymm && (c & (1u << 28))) f |= ELMAN_CPU_AVX;
    if (ymm && (c & (1u << 12))) f |= ELMAN_CPU_FMA;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (ymm && (b & (1u << 5))) f |= ELMAN_CPU_AVX2;
        if (zmm && (b & (1u << 16))) f |= ELMAN_CPU_AVX512F;
    }
#endif
    return f;
}

/* ---- fork ------------------------------------------------------------------------------- */

/* fork() copies the calling thread only: the child has no OpenMP pool, and a parallel region
 * would wait for threads that do not exist there. A child handler marks the child, whose
 * kernels then run on one thread. Registered when the kernels are first used. */
static volatile int elman_is_fork_child;

#if defined(_OPENMP) && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>
static void elman_mark_child(void) { elman_is_fork_child = 1; }
static void elman_register_fork_handler(void)
{
    static int registered;
    if (!registered) {
        registered = 1;
        pthread_atfork(NULL, NULL, elman_mark_child);
    }
}
#else
static void elman_register_fork_handler(void) {}
#endif

int elman_forked(void) { return elman_is_fork_child; }

int elman_can_thread(void)
{
#ifdef _OPENMP
    return !elman_is_fork_child && !omp_in_parallel() && omp_get_max_threads() > 1;
#else
    return 0;
#endif
}

/* ---- kernel paths ---------------------------------------------------------------------- */

static const elman_vec_ops *elman_path_table(const char *name)
{
    if (strcmp(name, "generic") == 0) return &elman_vec_generic;
#ifdef ELMAN_X86_PATHS
    if (strcmp(name, "avx2") == 0) return &elman_vec_avx2;
    if (strcmp(name, "avx512") == 0) return &elman_vec_avx512;
#endif
    return NULL;
}

int elman_kernel_path_supported(const char *name)
{
    if (name == NULL || elman_path_table(name) == NULL) return 0;
    const unsigned f = elman_cpu_features();
    const unsigned avx2 = ELMAN_CPU_AVX2 | ELMAN_CPU_FMA;
    if (strcmp(name, "avx2") == 0) return (f & avx2) == avx2;
    if (strcmp(name, "avx512") == 0) return (f & (avx2 | ELMAN_CPU_AVX512F)) == (avx2 | ELMAN_CPU_AVX512F);
    return 1;
}

static const elman_vec_ops *elman_best_path(void)
{
    static const char *const order[] = {"avx512", "avx2"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (elman_kernel_path_supported(order[i])) return elman_path_table(order[i]);
    return &elman_vec_generic;
}

/* Set once, read by every kernel call: atomic where the compiler offers it, so that a
 * kernel running in another thread sees one whole table or the other. */
static const elman_vec_ops *elman_current;

#if defined(__GNUC__) || defined(__clang__)
#define ELMAN_LOAD(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define ELMAN_STORE(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#else
#define ELMAN_LOAD(p) (p)
#define ELMAN_STORE(p, v) ((p) = (v))
#endif

const elman_vec_ops *elman_ops(void)
{
    const elman_vec_ops *v = ELMAN_LOAD(elman_current);
    if (v == NULL) {
        elman_register_fork_handler();
        v = elman_best_path();
        ELMAN_STORE(elman_current, v);
    }
    return v;
}

int elman_set_kernel_path(const char *name)
{
    elman_register_fork_handler();
    if (name == NULL || strcmp(name, "auto") == 0) {
        ELMAN_STORE(elman_current, elman_best_path());
        return ELMAN_OK;
    }
    if (elman_path_table(name) == NULL) return ELMAN_ERR_ARG;
    if (!elman_kernel_path_supported(name)) return ELMAN_ERR_CPU;
    ELMAN_STORE(elman_current, elman_path_table(name));
    return ELMAN_OK;
}

const char *elman_kernel_path(void) { return elman_ops()->name; }

const char *elman_kernel_paths(void)
{
#ifdef ELMAN_X86_PATHS
    return "generic avx2 avx512";
#else
    return "generic";
#endif
}

/* ---- threads ---------------------------------------------------------------------------- */



int elman_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void elman_set_num_threads(int n)
{
#ifdef _OPENMP
    if (n >= 1) omp_set_num_threads(n);
#else
    (void)n;
#endif
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
