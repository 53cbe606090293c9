/* The choice of kernel path: CPU features (cpuid + xgetbv), the path in use, the fork
 * handler, the thread count, and every operation's registered loops gathered per path.
 *
 * Each operation's loops exist once per instruction set (its file, compiled per path, ends
 * with ELMAN_REGISTER; see loops.h). The best path the CPU runs is picked on first use, or
 * the one named by elman_set_kernel_path (ELMAN_CPU from Python). */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* syscall(), for the AMX permission, under -std=c99 */
#endif
#include "loops.h"

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

#if defined(ELMAN_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
/* Linux hands the AMX tile registers' state (XTILEDATA, 8 KiB a thread) only to a process
 * that asks: 1 once granted. */
static int elman_amx_request(void)
{
    enum { REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}
#else
static int elman_amx_request(void) { return 0; }
#endif

/* Asked once, on first use of the AMX kernel (not at import: a granted permission makes
 * the kernel refuse signal stacks too small for the tile state, process-wide). */
static int elman_amx_answer; /* 0: not asked, 1: granted, -1: refused */

int elman_amx_permitted(void)
{
    if ((elman_cpu_features() & ELMAN_CPU_AMXBF16) == 0) return 0;
    int a = ELMAN_LOAD(elman_amx_answer);
    if (a == 0) {
        a = elman_amx_request() ? 1 : -1; /* asking twice is harmless */
        ELMAN_STORE(elman_amx_answer, a);
    }
    return a == 1;
}

/* cpuid traps to the hypervisor in a virtual machine (microseconds): asked once. */
static unsigned elman_cpu_features_uncached(void);
static int elman_features_known;
static unsigned elman_features;

unsigned elman_cpu_features(void)
{
#if defined(__GNUC__) || defined(__clang__)
    if (__atomic_load_n(&elman_features_known, __ATOMIC_ACQUIRE))
        return __atomic_load_n(&elman_features, __ATOMIC_RELAXED);
    const unsigned f = elman_cpu_features_uncached();
    __atomic_store_n(&elman_features, f, __ATOMIC_RELAXED);
    __atomic_store_n(&elman_features_known, 1, __ATOMIC_RELEASE);
    return f;
#else
    return elman_cpu_features_uncached();
#endif
}

static unsigned elman_cpu_features_uncached(void)
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
        /* EDX bits 22 (AMX-BF16) and 24 (AMX-TILE); XCR0 bits 17 and 18 (the tile
         * configuration and data). The process's permission is asked apart, on first use
         * (elman_amx_permitted). */
        const unsigned amx = (1u << 22) | (1u << 24);
        if ((f & ELMAN_CPU_AVX512F) && (d & amx) == amx && (xcr0 & 0x60000) == 0x60000)
            f |= ELMAN_CPU_AMXBF16;
        const unsigned subleaves = a; /* leaf 7's last subleaf */
        if (subleaves >= 1) {
            __cpuid_count(7, 1, a, b, c, d); /* subleaf 1, EAX bit 5: AVX512_BF16 */
            if ((f & ELMAN_CPU_AVX512F) && (a & (1u << 5))) f |= ELMAN_CPU_AVX512BF16;
        }
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

/* ---- kernel paths ---------------------------------------------------------------------- */

#ifdef ELMAN_X86_PATHS
#define ELMAN_PATHS_OF(op) {&elman_##op##_generic, &elman_##op##_avx2, &elman_##op##_avx512}
static const char *const elman_isa_names[ELMAN_NUM_ISAS] = {"generic", "avx2", "avx512"};
#else
#define ELMAN_PATHS_OF(op) {&elman_##op##_generic, NULL, NULL}
static const char *const elman_isa_names[ELMAN_NUM_ISAS] = {"generic", NULL, NULL};
#endif
const elman_adagrad_loops *const elman_adagrad_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(adagrad);
const elman_proximal_loops *const elman_proximal_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(proximal);
const elman_rowwise_loops *const elman_rowwise_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(rowwise);
const elman_sgd_loops *const elman_sgd_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(sgd);
const elman_norm_loops *const elman_norm_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(norm);
const elman_act_loops *const elman_act_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(act);
const elman_softmax_loops *const elman_softmax_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(softmax);
const elman_gemm_small_loops *const elman_gemm_small_paths[ELMAN_NUM_ISAS] =
    ELMAN_PATHS_OF(gemm_small);
const elman_probe_loops *const elman_probe_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(probe);
const elman_bf16_loops *const elman_bf16_paths[ELMAN_NUM_ISAS] = ELMAN_PATHS_OF(bf16);

/* The index of a compiled path's name, or -1. */
static int elman_isa_of(const char *name)
{
    for (int i = 0; i < ELMAN_NUM_ISAS; i++)
        if (elman_isa_names[i] != NULL && strcmp(name, elman_isa_names[i]) == 0) return i;
    return -1;
}

int elman_kernel_path_supported(const char *name)
{
    const int isa = name == NULL ? -1 : elman_isa_of(name);
    if (isa < 0) return 0;
    const unsigned f = elman_cpu_features();
    const unsigned avx2 = ELMAN_CPU_AVX2 | ELMAN_CPU_FMA;
    if (isa == ELMAN_ISA_AVX2) return (f & avx2) == avx2;
    if (isa == ELMAN_ISA_AVX512)
        return (f & (avx2 | ELMAN_CPU_AVX512F)) == (avx2 | ELMAN_CPU_AVX512F);
    return 1;
}

static int elman_best_isa(void)
{
    for (int isa = ELMAN_NUM_ISAS - 1; isa > ELMAN_ISA_GENERIC; isa--)
        if (elman_isa_names[isa] != NULL && elman_kernel_path_supported(elman_isa_names[isa]))
            return isa;
    return ELMAN_ISA_GENERIC;
}

/* Set once, read by every kernel call: atomic where the compiler offers it. -1: not yet
 * chosen. */
static int elman_current = -1;

int elman_isa(void)
{
    int isa = ELMAN_LOAD(elman_current);
    if (isa < 0) {
        elman_register_fork_handler();
        isa = elman_best_isa();
        ELMAN_STORE(elman_current, isa);
    }
    return isa;
}

int elman_set_kernel_path(const char *name)
{
    elman_register_fork_handler();
    if (name == NULL || strcmp(name, "auto") == 0) {
        ELMAN_STORE(elman_current, elman_best_isa());
        return ELMAN_OK;
    }
    const int isa = elman_isa_of(name);
    if (isa < 0) return ELMAN_ERR_ARG;
    if (!elman_kernel_path_supported(name)) return ELMAN_ERR_CPU;
    ELMAN_STORE(elman_current, isa);
    return ELMAN_OK;
}

const char *elman_kernel_path(void) { return elman_isa_names[elman_isa()]; }

const char *elman_kernel_paths(void)
{
#ifdef ELMAN_X86_PATHS
    return "generic avx2 avx512";
#else
    return "generic";
#endif
}

/* ---- caches ---------------------------------------------------------------------------- */

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

static elman_int elman_stream_bytes; /* 0: not yet asked */

elman_int elman_stream_weight_bytes(void)
{
    elman_int v = ELMAN_LOAD(elman_stream_bytes);
    if (v > 0) return v;
    long l2 = -1;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    v = l2 > 0 ? (elman_int)l2 / 2 : (elman_int)512 * 1024;
    ELMAN_STORE(elman_stream_bytes, v);
    return v;
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

