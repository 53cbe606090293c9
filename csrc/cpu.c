/* CPU features (cpuid + xgetbv) and build information. The kernels are portable C compiled
 * for the baseline ISA; the features are reported so that users and benchmarks can see
 * what the machine offers. */
#include "internal.h"

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

const char *elman_kernel_path(void) { return "generic"; }

#ifndef ELMAN_BUILD_FLAGS
#define ELMAN_BUILD_FLAGS "unknown"
#endif

const char *elman_build_info(void)
{
#if defined(__clang__)
    return "clang " __clang_version__ "; flags: " ELMAN_BUILD_FLAGS;
#elif defined(__GNUC__)
    return "gcc " __VERSION__ "; flags: " ELMAN_BUILD_FLAGS;
#else
    return "unknown compiler; flags: " ELMAN_BUILD_FLAGS;
#endif
}
