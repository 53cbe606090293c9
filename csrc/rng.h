/* splitmix64's output function (Steele, Lea and Flood 2014): a bijective mixer of 64-bit
 * words. Dropout hashes an element's number through it (model.c); the sampler's generator
 * runs a counter through it (sample.c). Twin: elman.rng.mix64. Private to csrc/. */
#ifndef ELMAN_RNG_H
#define ELMAN_RNG_H

#include <stdint.h>

static inline uint64_t elman_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The golden-ratio increment splitmix64 adds to its counter. */
#define ELMAN_GOLDEN_GAMMA 0x9E3779B97F4A7C15ull

#endif /* ELMAN_RNG_H */
