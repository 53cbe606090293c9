/* Every tuning threshold of the kernels, with the measurement that chose it. Private to
 * csrc/. They are sizes at which one way of doing the work overtakes another on the
 * machines elman is measured on (two cores each: an AMD EPYC Zen 4 with AVX-512 on 256-bit
 * units, bench/snapshot/zen4-2026-12-03/bench.md, and an Intel Xeon with AMX-BF16 and two
 * 512-bit FMA units, bench/snapshot/bench.md); re-measure with the command given before
 * changing one.
 */
#ifndef ELMAN_TUNING_H
#define ELMAN_TUNING_H

/* Elementwise loops (the optimizer updates, tanh, sums of squares, dropout, the stream
 * probe) run on one thread below this many elements: waking the second thread costs
 * about as much as 1e5 elements of Adagrad. `python bench/run.py --only limits`: the
 * stream probe at n = 1e5 runs at 73 GB/s on one thread and 72 on two; at n = 1e6, 74 and
 * 135. 2^17 lies between. */
#define ELMAN_PAR_MIN_ELEMENTS 131072

/* The small GEMM and the fused recurrence step (gemm_small.c) share their rows among the
 * threads from this many multiply-adds, and only with 8 rows or more (two blocks of four
 * per thread). `python bench/run.py --only limits`, the step-kernel column: S2's
 * recurrence (32x256x256 = 2.1e6 multiply-adds) runs at 108 GFLOP/s on one thread and 192
 * on two; S1's (1x100x100) gains nothing from a second thread. */
#define ELMAN_PAR_MIN_FMAS 1048576
#define ELMAN_PAR_MIN_ROWS 8

/* A BLAS call (blas.c) is cut into row slices, one per thread, at one slice per this many
 * multiply-adds and at least 16 rows a slice: the BLAS itself is held to one thread (the
 * cores are elman's, see elman.h). `python bench/run.py --only limits`, the sgemm column
 * at 1 and 2 threads: the weight-gradient product of S2 (256x2048x256 = 1.3e8) goes from
 * 68 to 173 GFLOP/s; products below 2e6 do not gain. */
#define ELMAN_GEMM_MIN_FMAS_PER_THREAD 2097152
#define ELMAN_GEMM_MIN_ROWS_PER_THREAD 16

/* On the generic path (no vector extensions of 32 bytes or more) the per-step recurrence
 * product uses elman's own kernel only up to this many multiply-adds, and the BLAS above
 * (on AVX2 and AVX-512, elman's kernel always: it matches or beats the BLAS at every shape
 * of `python bench/run.py --only limits`, step-kernel column against sgemm). */
#define ELMAN_GENERIC_STEP_MAX_FMAS 262144

/* Softmax cross-entropy shares its rows among threads only with at least this many rows
 * (and ELMAN_PAR_MIN_ELEMENTS logits): fewer rows leave a thread idle while the other
 * finishes its part. `python bench/run.py --only rnn` at S1 (T*B = 25 rows) and S2. */
#define ELMAN_XENT_PAR_MIN_ROWS 64

/* Register blocking of the small GEMM (gemm_small.c): a panel of 4 rows times this many
 * vectors of columns, 4 * N accumulators: 16 of the 32 zmm registers on AVX-512, 8 of the
 * 16 ymm/xmm registers on AVX2 and SSE2 (the rest hold W's vectors and A's broadcasts). */
#define ELMAN_GEMM_PANEL_VECTORS_512 4
#define ELMAN_GEMM_PANEL_VECTORS 2
/* With 32 registers (AVX-512) blocks of eight rows take panels of 3 vectors: 24
 * accumulators, 3 of W's vectors and a broadcast. A vector of W then feeds 8 rows, not 4:
 * half the loads of W per FMA, for cores with two 512-bit FMA units a cycle (Intel Xeons,
 * Zen 5), which the four-row kernel keeps waiting on W from L2. */
#define ELMAN_GEMM_PANEL_VECTORS_8ROWS 3

/* The weight gradients' transposed product (gemm_small.c, gemm_tn: X^T @ dA over the T*B
 * rows) takes K in chunks of this many rows: a chunk's panel of dA columns (K x 64 floats,
 * 32 KiB; K x 48 for the eight-row kernel, 24 KiB) stays in L1/L2 while every block of rows
 * of C passes over it, and C is read and written once per chunk (T*B / 128 times in all).
 * elman.TrainStep, float32, one thread, Intel Xeon with AMX (48 KiB L1d, 2 MiB L2), three
 * runs each: S3 140-142 ms at 256, 128-139 at 128, 133-136 at 64; S2 9.07-9.10 / 8.61-8.67 /
 * 9.09-9.20 ms; H=384 B=16 T=50 6.98-7.11 / 6.25-6.33 / 6.83-6.88 ms. (256 was the value on
 * a Zen 4, chosen for a 64 KiB panel in its 1 MiB L2 and not compared with 128 there.) */
#define ELMAN_TN_K_CHUNK 128

/* A model's forward packs W_hh in column panels (gemm_small.c, pack_panels) when it is
 * larger than this: the per-step product then reads each panel from start to end, not down
 * W_hh's columns a row apart (a new page at every k at H = 1024). The backward always packs
 * its W_hh^T (in place of a plain transposed copy). elman.TrainStep, float32, T = 16,
 * B = 64, one thread, Intel Xeon (2 MiB L2): H = 1024 140 ms unpacked, 84.5 ms with the
 * backward packed. */
#define ELMAN_PACK_MIN_BYTES (256 * 1024)

/* The FMA peak probe (probe.c) keeps this many independent vector chains in flight per
 * thread: two FMA units of four cycles' latency need eight, and twelve leave margin (AVX2's
 * 16 registers hold them and the two constants). */
#define ELMAN_FMA_CHAINS 12

/* Not a constant: a weight matrix larger than half the L2 cache the OS reports
 * (elman_stream_weight_bytes, dispatch.c) is streamed row by row at batches of under four
 * rows (gemm_small.c, rnn.c), where the column panels would stride a row apart across
 * pages. B = 1, H = 1024, T = 16, V = 65, one thread (Zen 4, 1 MiB L2): a step took
 * 12.1 ms in `python bench/run.py --only sweep` before, 2.8 ms after (TrainStep.c_seconds). */

/* The bfloat16 products (bf16.c). The kernel's tile of C is MR rows by NR columns: 12 x 2
 * zmm vectors of 16 = 24 accumulators of the 32 registers, the rest for the two panel
 * vectors and the broadcast. A GEMM packs B in blocks of KC rows of K by NC columns
 * (KC/2 * NC * 4 = 256 KiB, in L2 with room to spare; N up to NC packs A once) and A in blocks of MC rows per
 * thread (48 KiB); one panel of B (KC/2 * NR * 4 = 16 KiB) stays in L1 while the block's
 * rows pass over it. At most MAX_THREADS threads share a GEMM (the workspace holds that
 * many A blocks, whatever the thread count when it was sized). */
#define ELMAN_BF16_MR 12
#define ELMAN_BF16_NR 32
#define ELMAN_BF16_KC 256
#define ELMAN_BF16_NC 512
#define ELMAN_BF16_MC 96
#define ELMAN_BF16_MAX_THREADS 8

/* The recurrence's step runs on AMX tiles (bf16.c) from this many rows of the batch, and
 * on vdpbf16ps below: one row fills 1/16 of a tile, and both kernels then do the same
 * number of multiply-adds a cycle, AMX with a longer wait for each block's result.
 * elman.TrainStep, V = 65, T = 64, compute_dtype="bfloat16", one thread, on an Intel CPU
 * with AMX-BF16, under elman.bf16_kernel("amx") and ("vdpbf16ps") in turn: AMX's speed over
 * vdpbf16ps at H = 128 / 256 was 0.82x / 0.80x at B = 1, 1.02x / 1.07x at B = 2, 1.69x /
 * 1.44x at B = 4 (the whole step: its other products have T*B rows). */
#define ELMAN_BF16_AMX_MIN_ROWS 2

/* The AMX kernel's products count 1/this of their multiply-adds against the thread
 * thresholds above (ELMAN_PAR_MIN_FMAS, ELMAN_GEMM_MIN_FMAS_PER_THREAD), which are the
 * float32 kernels' work. Not the peaks' ratio (3,378 GFLOP/s of tdpbf16ps against 241 of
 * FMAs on one core of an Intel CPU with AMX-BF16, `python bench/run.py --only limits`) but
 * the rates reached at the step's shapes: 225 / 318 / 270 GFLOP/s against 107 / 95 / 95 in
 * float32 for the whole step at S2 / F1 / F2 (`--only bf16`, one thread), some 4x in the
 * products alone once the float32 work around them is taken out. At 2 threads, S2 took
 * 4.0-4.2 ms with 4 here and 4.6-4.7 ms with 16 (three runs each, one session). */
#define ELMAN_BF16_AMX_WORK_RATIO 4

/* A thread's share of an elementwise loop is a multiple of this many elements: 16 floats
 * fill one 64-byte cache line, so that two threads never write the same line. */
#define ELMAN_SPLIT_UNIT 16

#endif /* ELMAN_TUNING_H */
