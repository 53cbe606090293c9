"""Bad input never crashes the process and is rejected with a message naming the argument:
the private Cython layer elman._core, called directly with inconsistent sizes. The
calls run in a child interpreter (one for the whole table, restarted after a crash), so
that a segfault is reported as a failing test instead of killing the session.

The contract (DESIGN.md, "Errors and trust"): every public entry point validates dtype,
shape, contiguity, aliasing, finiteness and target range before any pointer reaches C; bad
input raises TypeError or ValueError (NonFiniteError subclasses ValueError and
FloatingPointError) whose message names the offending argument; nothing crashes.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest



# Each case: (id, code, outcome). outcome "raises": the code must raise ValueError,
# OverflowError or TypeError; "nonfinite": FloatingPointError; "survives": it may also
# return normally, but must not crash.
# Names used by the code: np, math, C (elman._core), f64(n), f32(n), i64(*values), E (empty).
CORE_CASES = [
    # sumsq / activations
    ("sumsq-strided", "C.sumsq(f64(6)[::2])", "raises"),
    ("sumsq-2d", "C.sumsq(f64(6).reshape(2, 3))", "raises"),
    ("sumsq-int", "C.sumsq(np.ones(3, np.int64))", "raises"),
    ("sumsq-list", "C.sumsq([1.0, 2.0])", "raises"),
    ("act_forward-y-short", "C.act_forward(f64(3), f64(4), 0)", "raises"),
    ("act_forward-y-long", "C.act_forward(f64(5), f64(4), 0)", "raises"),
    ("act_forward-nl-2", "C.act_forward(f64(3), f64(3), 2)", "raises"),
    ("act_forward-nl-neg", "C.act_forward(f64(3), f64(3), -1)", "raises"),
    ("act_forward-nl-huge", "C.act_forward(f64(3), f64(3), 2**40)", "raises"),
    ("act_forward-mixed", "C.act_forward(f32(3), f64(3), 0)", "raises"),
    ("act_forward-readonly", "y = f64(3); y.flags.writeable = False; C.act_forward(y, f64(3), 0)",
     "raises"),
    ("act_backward-dH-short", "C.act_backward(f64(4), f64(3), f64(4), 0)", "raises"),
    ("act_backward-dA-short", "C.act_backward(f64(3), f64(4), f64(4), 1)", "raises"),
    # optimizers
    ("adagrad-state-short", "C.adagrad_update(f64(4), f64(4), f64(3), .1, 0, 0, 1e-10, math.inf,"
                            " 1., 1, False, False)", "raises"),
    ("adagrad-grad-short", "C.adagrad_update(f64(4), f64(0), f64(4), .1, 0, 0, 1e-10, math.inf,"
                           " 1., 1, False, False)", "raises"),
    ("adagrad-grad-none", "C.adagrad_update(f64(4), None, f64(4), .1, 0, 0, 1e-10, math.inf,"
                          " 1., 1, False, False)", "raises"),
    ("adagrad-step-0", "C.adagrad_update(f64(4), f64(4), f64(4), .1, 0, 0, 1e-10, math.inf, 1.,"
                       " 0, False, False)", "raises"),
    ("adagrad-step-2**63", "C.adagrad_update(f64(4), f64(4), f64(4), .1, 0, 0, 1e-10, math.inf,"
                           " 1., 2**63, False, False)", "raises"),
    ("adagrad-eps-nan", "C.adagrad_update(f64(4), f64(4), f64(4), .1, 0, 0, math.nan, math.inf,"
                        " 1., 1, False, False)", "raises"),
    ("adagrad-clip-0", "C.adagrad_update(f64(4), f64(4), f64(4), .1, 0, 0, 1e-10, 0., 1., 1,"
                       " False, False)", "raises"),
    ("adagrad-mixed", "C.adagrad_update(f64(4), f64(4), f32(4), .1, 0, 0, 1e-10, math.inf, 1.,"
                      " 1, False, False)", "raises"),
    ("sgd-momentum-buf-missing", "C.sgd_update(f64(4), f64(4), E, .1, .9, 0, math.inf, 1., False)",
     "raises"),
    ("sgd-momentum-nan-buf-missing", "C.sgd_update(f64(4), f64(4), E, .1, math.nan, 0, math.inf,"
                                     " 1., False)", "raises"),
    ("sgd-grad-short", "C.sgd_update(f64(4), f64(3), E, .1, 0., 0, math.inf, 1., False)",
     "raises"),
    ("sgd-clip-negative", "C.sgd_update(f64(4), f64(4), E, .1, 0., 0, -1., 1., False)", "raises"),
    # stack_forward(wt, hs, ys, out, h_n, x, h0, w_ih, w_hh, b_ih, b_hh, masks, T, B, I, H, L, D, nl)
    ('stack_forward-valid', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'survives'),
    ('stack_forward-bias-valid', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [f64(2)], [f64(2)], E, 2, 1, 1, 2, 1, 1, 0)',
     'survives'),
    ('stack_forward-wt-short', 'C.stack_forward(f64(7), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-hs-short', 'C.stack_forward(f64(8), f64(5), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-out-for-one-direction', 'C.stack_forward(f64(8), f64(6), E, f64(4), f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-h_n-short', 'C.stack_forward(f64(8), f64(6), E, E, f64(1), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-x-empty', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), E, f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-w_ih-two-for-one', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2), f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-w_ih-none', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-w_ih-size', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(3)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-w_hh-dtype', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f32(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-w_hh-not-array', "C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], ['abcd'], [], [], E, 2, 1, 1, 2, 1, 1, 0)",
     'raises'),
    ('stack_forward-b_hh-missing', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [f64(2)], [], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-b_ih-size', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [f64(3)], [f64(2)], E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-masks-for-one-layer', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], f64(4), 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_forward-L-zero', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 0, 1, 0)',
     'raises'),
    ('stack_forward-D-three', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 3, 0)',
     'raises'),
    ('stack_forward-nl-bad', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 7)',
     'raises'),
    ('stack_forward-lengths-past-T', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0, i64(3))',
     'raises'),
    ('stack_forward-lengths-zero', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2, 1, 1, 2, 1, 1, 0, i64(0))',
     'raises'),
    ('stack_forward-T-huge', 'C.stack_forward(f64(8), f64(6), E, E, f64(2), f64(2), f64(2), [f64(2)], [f64(4)], [], [], E, 2305843009213693952, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-valid', 'C.stack_backward([f64(2)], [f64(4)], f64(2), f64(2), E, f64(10), E, E, f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'survives'),
    ('stack_backward-work-short', 'C.stack_backward([f64(2)], [f64(4)], f64(2), f64(2), E, f64(9), E, E, f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-dw_ih-readonly', 'a = f64(2); a.flags.writeable = False; C.stack_backward([a], [f64(4)], f64(2), f64(2), E, f64(10), E, E, f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-dw_hh-size', 'C.stack_backward([f64(2)], [f64(3)], f64(2), f64(2), E, f64(10), E, E, f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-dw_hh-two', 'C.stack_backward([f64(2)], [f64(4), f64(4)], f64(2), f64(2), E, f64(10), E, E, f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-dx-size', 'C.stack_backward([f64(2)], [f64(4)], f64(2), f64(2), f64(3), f64(10), E, E, f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-d_out-size', 'C.stack_backward([f64(2)], [f64(4)], f64(2), f64(2), E, f64(10), f64(3), E, f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-dh_n-size', 'C.stack_backward([f64(2)], [f64(4)], f64(2), f64(2), E, f64(10), E, f64(3), f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-hs-short', 'C.stack_backward([f64(2)], [f64(4)], f64(2), f64(2), E, f64(10), E, E, f64(8), f64(5), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    ('stack_backward-db-dtype', 'C.stack_backward([f64(2)], [f64(4)], f32(2), f64(2), E, f64(10), E, E, f64(8), f64(6), E, f64(2), E, 2, 1, 1, 2, 1, 1, 0)',
     'raises'),
    # rnn_forward(hs, x, ids, W_xh, W_hh, b_h, T, B, I, H, nl, use_ids)
    ("rnn_forward-hs-short", "C.rnn_forward(f64(5), E, i64(0), f64(3), f64(9), f64(3), 1, 1, 1,"
                             " 3, 0, True)", "raises"),
    ("rnn_forward-x-short", "C.rnn_forward(f64(6), f64(3), i64(), f64(12), f64(9), f64(3), 1, 1,"
                            " 4, 3, 0, False)", "raises"),
    ("rnn_forward-ids-short", "C.rnn_forward(f64(9), E, i64(0), f64(3), f64(9), f64(3), 2, 1,"
                              " 1, 3, 0, True)", "raises"),
    ("rnn_forward-W_xh-short", "C.rnn_forward(f64(6), E, i64(0), f64(2), f64(9), f64(3), 1, 1,"
                               " 1, 3, 0, True)", "raises"),
    ("rnn_forward-W_hh-short", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(8), f64(3), 1, 1,"
                               " 1, 3, 0, True)", "raises"),
    ("rnn_forward-b_h-empty", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), E, 1, 1, 1, 3,"
                              " 0, True)", "raises"),
    ("rnn_forward-T-negative", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), -1, 1,"
                               " 1, 3, 0, True)", "raises"),
    ("rnn_forward-H-2**40", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), 1, 1, 1,"
                            " 2**40, 0, True)", "raises"),
    ("rnn_forward-I-2**63", "C.rnn_forward(E, E, i64(5), E, E, E, 1, 1, 2**63, 0, 0, True)",
     "raises"),
    ("rnn_forward-I-2**62-H-0", "C.rnn_forward(E, E, i64(5), E, E, E, 1, 1, 2**62, 0, 0, True)",
     "survives"),
    ("rnn_forward-id-out-of-range", "C.rnn_forward(f64(6), E, i64(1), f64(3), f64(9), f64(3), 1,"
                                    " 1, 1, 3, 0, True)", "raises"),
    ("rnn_forward-id-negative", "C.rnn_forward(f64(6), E, i64(-1), f64(3), f64(9), f64(3), 1, 1,"
                                " 1, 3, 0, True)", "raises"),
    ("rnn_forward-id-2**62", "C.rnn_forward(f64(6), E, i64(2**62), f64(3), f64(9), f64(3), 1, 1,"
                             " 1, 3, 0, True)", "raises"),
    ("rnn_forward-nl-7", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), 1, 1, 1, 3,"
                         " 7, True)", "raises"),
    ("rnn_forward-ids-flag-but-x", "C.rnn_forward(f64(6), f64(1), E.astype(np.int64), f64(3),"
                                   " f64(9), f64(3), 1, 1, 1, 3, 0, True)", "raises"),
    ("rnn_forward-T-str", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), '1', 1, 1,"
                          " 3, 0, True)", "raises"),
    ("rnn_forward-T-none", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), None, 1, 1,"
                           " 3, 0, True)", "raises"),
    ("rnn_forward-T-nan", "C.rnn_forward(f64(6), E, i64(0), f64(3), f64(9), f64(3), math.nan, 1,"
                          " 1, 3, 0, True)", "raises"),
    ("rnn_forward-ids-int32", "C.rnn_forward(f64(6), E, np.zeros(1, np.int32), f64(3), f64(9),"
                              " f64(3), 1, 1, 1, 3, 0, True)", "raises"),
    # rnn_backward(dW_xh, dW_hh, db_h, dh0, dx, dA, dH, dh_T, hs, x, ids, W_xh, W_hh,
    #              T, B, I, H, nl, use_ids) with T=1, B=1, I=2, H=3
    ("rnn_backward-ok", "C.rnn_backward(f64(6), f64(9), f64(3), f64(3), f64(2), f64(3), f64(3),"
                        " f64(3), f64(6), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0, False)",
     "survives"),
    ("rnn_backward-dA-short", "C.rnn_backward(f64(6), f64(9), f64(3), E, E, f64(2), f64(3), E,"
                              " f64(6), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0, False)",
     "raises"),
    ("rnn_backward-hs-short", "C.rnn_backward(f64(6), f64(9), f64(3), E, E, f64(3), f64(3), E,"
                              " f64(3), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0, False)",
     "raises"),
    ("rnn_backward-dh0-wrong", "C.rnn_backward(f64(6), f64(9), f64(3), f64(2), E, f64(3), f64(3),"
                               " E, f64(6), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0, False)",
     "raises"),
    ("rnn_backward-dh_T-wrong", "C.rnn_backward(f64(6), f64(9), f64(3), E, E, f64(3), f64(3),"
                                " f64(4), f64(6), f64(2), i64(), f64(6), f64(9), 1, 1, 2, 3, 0,"
                                " False)", "raises"),
    ("rnn_backward-dx-with-ids", "C.rnn_backward(f64(6), f64(9), f64(3), E, f64(2), f64(3),"
                                 " f64(3), E, f64(6), E, i64(1), f64(6), f64(9), 1, 1, 2, 3, 0,"
                                 " True)", "raises"),
    ("rnn_backward-id-out-of-range", "C.rnn_backward(f64(6), f64(9), f64(3), E, E, f64(3),"
                                     " f64(3), E, f64(6), E, i64(2), f64(6), f64(9), 1, 1, 2, 3,"
                                     " 0, True)", "raises"),
    ("rnn_backward-huge-sizes", "C.rnn_backward(*[E] * 10, i64(), E, E, 0, 0, 2**62, 2**62, 0,"
                                " False)", "raises"),
    ("rnn_backward-H-0-I-huge", "C.rnn_backward(*[E] * 10, i64(0), E, E, 1, 1, 2**62, 0, 0,"
                                " True)", "survives"),
    # linear_forward(Y, X, W, b, N, K, O) / linear_backward(dW, db, dX, dY, X, W, N, K, O)
    ("linear_forward-Y-short", "C.linear_forward(f64(3), f64(4), f64(4), E, 2, 2, 2)", "raises"),
    ("linear_forward-X-short", "C.linear_forward(f64(4), f64(3), f64(4), E, 2, 2, 2)", "raises"),
    ("linear_forward-W-long", "C.linear_forward(f64(4), f64(4), f64(5), E, 2, 2, 2)", "raises"),
    ("linear_forward-b-wrong", "C.linear_forward(f64(4), f64(4), f64(4), f64(3), 2, 2, 2)",
     "raises"),
    ("linear_forward-N-negative", "C.linear_forward(E, E, E, E, -1, 0, 0)", "raises"),
    ("linear_forward-K-2**40", "C.linear_forward(f64(4), f64(4), f64(4), E, 2, 2**40, 2)",
     "raises"),
    ("linear_forward-wraparound-np-int64",
     "B = np.int64(2**32); C.linear_forward(E, E, E, E, B, np.int64(0), B)", "raises"),
    ("linear_forward-float-sizes", "C.linear_forward(f64(5), f64(5), f64(4), E, 2.5, 2, 2)",
     "raises"),
    ("linear_forward-zero-K-huge-N", "C.linear_forward(E, E, E, E, 2**62, 0, 0)", "survives"),
    ("linear_backward-dW-short", "C.linear_backward(f64(3), E, E, f64(4), f64(4), f64(4), 2, 2,"
                                 " 2)", "raises"),
    ("linear_backward-dY-short", "C.linear_backward(f64(4), E, E, f64(3), f64(4), f64(4), 2, 2,"
                                 " 2)", "raises"),
    ("linear_backward-db-wrong", "C.linear_backward(f64(4), f64(3), E, f64(4), f64(4), f64(4), 2,"
                                 " 2, 2)", "raises"),
    ("linear_backward-dX-wrong", "C.linear_backward(f64(4), E, f64(5), f64(4), f64(4), f64(4), 2,"
                                 " 2, 2)", "raises"),
    ("linear_backward-huge", "C.linear_backward(E, f64(5), E, E, E, E, 2**62, 0, 5)", "raises"),
    # softmax_xent(dlogits, logits, targets, N, O, scale) / mse(dpred, pred, target, scale)
    ("softmax-target-O", "C.softmax_xent(E, f64(3), i64(3), 1, 3, 1.)", "raises"),
    ("softmax-target-negative", "C.softmax_xent(f64(6), f64(6), i64(0, -1), 2, 3, 1.)", "raises"),
    ("softmax-target-int64-max", "C.softmax_xent(E, f64(3), i64(2**63 - 1), 1, 3, 1.)", "raises"),
    ("softmax-targets-short", "C.softmax_xent(E, f64(6), i64(0), 2, 3, 1.)", "raises"),
    ("softmax-logits-short", "C.softmax_xent(E, f64(5), i64(0, 0), 2, 3, 1.)", "raises"),
    ("softmax-dlogits-wrong", "C.softmax_xent(f64(5), f64(6), i64(0, 0), 2, 3, 1.)", "raises"),
    ("softmax-O-0", "C.softmax_xent(E, E, i64(0, 0), 2, 0, 1.)", "raises"),
    ("softmax-scale-nan", "C.softmax_xent(E, f64(3), i64(0), 1, 3, math.nan)", "raises"),
    ("softmax-scale-negative", "C.softmax_xent(E, f64(3), i64(0), 1, 3, -1.)", "raises"),
    ("softmax-targets-float", "C.softmax_xent(E, f64(3), f64(1), 1, 3, 1.)", "raises"),
    ("mse-target-short", "C.mse(E, f64(3), f64(2), 1.)", "raises"),
    ("mse-dpred-wrong", "C.mse(f64(2), f64(3), f64(3), 1.)", "raises"),
    ("mse-scale-negative", "C.mse(E, f64(3), f64(3), -1.)", "raises"),
    # model_forward(Y, hs, work, x, ids, params, T, B, I, H, O, nl, use_ids): T=B=1, I=2,
    # H=3, O=2 -> params 2*3 + 9 + 3 + 6 + 2 = 26; U: an empty workspace (none needed)
    # model_forward_backward(grads, dh0, hs, Y, dA, work, x, ids, y_ids, y_values, dh_T,
    #                        params, T, B, I, H, O, nl, use_ids, loss, reduction, last)
    ('model_forward-ok',
     'C.model_forward(f64(2), f64(6), U, E, i64(1), f64(26), 1, 1, 2, 3, 2, 0, True)',
     'survives'),
    ('model_forward-params-short',
     'C.model_forward(f64(2), f64(6), U, E, i64(1), f64(25), 1, 1, 2, 3, 2, 0, True)',
     'raises'),
    ('model_forward-Y-short',
     'C.model_forward(f64(1), f64(6), U, E, i64(1), f64(26), 1, 1, 2, 3, 2, 0, True)',
     'raises'),
    ('model_forward-hs-short',
     'C.model_forward(f64(2), f64(3), U, E, i64(1), f64(26), 1, 1, 2, 3, 2, 0, True)',
     'raises'),
    ('model_forward-id-out-of-range',
     'C.model_forward(f64(2), f64(6), U, E, i64(2), f64(26), 1, 1, 2, 3, 2, 0, True)',
     'raises'),
    ('model_forward-I-2**62-H-0',
     'C.model_forward(f64(1), E, U, E, i64(2**62 - 1), f64(1), 1, 1, 2**62, 0, 1, 0, True)',
     'survives'),
    ('model_forward-huge-O',
     'C.model_forward(E, E, U, E, i64(), E, 0, 0, 0, 0, 2**62, 0, True)',
     'raises'),
    ('model_fb-ok',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'survives'),
    ('model_fb-T-0',
     'C.model_forward_backward(f64(26), E, f64(3), E, E, U, E, i64(), i64(), E, E, f64(26), 0, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-grads-short',
     'C.model_forward_backward(f64(25), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-y-short',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-y-out-of-range',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(2), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-y-values-short',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(), f64(1), E, f64(26), 1, 1, 2, 3, 2, 0, True, 1, 0, False)',
     'raises'),
    ('model_fb-loss-5',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(), f64(2), E, f64(26), 1, 1, 2, 3, 2, 0, True, 5, 0, False)',
     'raises'),
    ('model_fb-reduction-9',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 9, False)',
     'raises'),
    ('model_fb-dh0-wrong',
     'C.model_forward_backward(f64(26), f64(2), f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-dh_T-wrong',
     'C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, f64(2), f64(26), 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-last-step-Y-too-big',
     'C.model_forward_backward(f64(26), E, f64(9), f64(4), f64(6), U, E, i64(1, 1), i64(1, 1), E, E, f64(26), 2, 1, 2, 3, 2, 0, True, 0, 0, True)',
     'raises'),
    ('model_fb-huge',
     'C.model_forward_backward(E, E, E, E, E, U, E, i64(), i64(), E, E, E, 2**62, 2**62, 2**62, 2**62, 2**62, 0, True, 0, 0, False)',
     'raises'),
    ('model_fb-nan-params',
     'p = f64(26); p[-1] = math.nan; C.model_forward_backward(f64(26), E, f64(6), f64(2), f64(3), U, E, i64(1), i64(1), E, E, p, 1, 1, 2, 3, 2, 0, True, 0, 0, False)',
     'nonfinite'),
]

# A seeded random fuzz of the same functions: random sizes (including negative, 2**31, 2**40,
# 2**62, 2**63 and wrapping np.int64) with buffers usually, but not always, of the right
# length. Every call must return or raise one of the allowed exceptions.
CORE_FUZZ = r'''
rng = np.random.default_rng(20240601)
SIZES = [0, 1, 2, 3, 5, 2**31, 2**32, 2**40, 2**62, 2**63, -1, -2**40]
def size():
    v = SIZES[rng.integers(len(SIZES))] if rng.random() < 0.4 else int(rng.integers(0, 4))
    if rng.random() < 0.3 and -2**63 <= v < 2**63:
        v = np.int64(v)
    return v
def prod(*a):
    p = 1
    for v in a:
        p *= int(v)
    return p
def buf(want, dt):
    r = rng.random()
    n = want if (r < 0.6 and 0 <= want <= 4000) else (0 if r < 0.8 else int(rng.integers(0, 40)))
    return rng.standard_normal(n).astype(dt)
def ids(want, hi):
    n = want if (0 <= want <= 4000 and rng.random() < 0.7) else int(rng.integers(0, 10))
    return rng.integers(-2, max(int(min(hi, 10)) + 2, 1), size=n).astype(np.int64)
def stack(T, B, H):
    """A random stack (layers, directions, dropout, seed), lengths and workspace: mostly
    sound, sometimes not (lengths out of range or short, a short or misaligned workspace,
    a dropout of 1 or NaN, a negative layer count)."""
    L = int(rng.choice([1, 1, 2, 3, 0, -1]))
    D = int(rng.choice([1, 2]))
    p = float(rng.choice([0.0, 0.0, 0.5, 1.0, np.nan, -0.1]))
    arch = (L, D == 2, p, int(rng.integers(0, 2**63)))
    lens = None
    if rng.random() < 0.4:
        n = int(B) if (0 <= B <= 4000 and rng.random() < 0.8) else int(rng.integers(0, 5))
        hi = int(T) if 0 <= T <= 4000 else 3
        lens = rng.integers(-1, hi + 2, size=n).astype(np.int64)
    r = rng.random()
    nbytes = int(rng.integers(0, 20000)) if r < 0.7 else int(rng.integers(0, 64))
    work = np.zeros(nbytes + 1, np.uint8)[1 if rng.random() < 0.2 else 0:]
    return max(L, 1), D, arch, lens, work
import warnings
warnings.simplefilter("ignore")
for it in range(N_FUZZ):
    dt = np.float32 if rng.random() < 0.5 else np.float64
    f = int(rng.integers(0, 7))
    T, B, I, H, O, N, K = (size() for _ in range(7))
    nl = int(rng.integers(-1, 3)); use_ids = bool(rng.random() < 0.5)
    npar = prod(I, H) + prod(H, H) + int(H) + prod(H, O) + int(O)
    try:
        if f == 0:
            C.rnn_forward(buf(prod(T + 1, B, H), dt), buf(prod(T, B, I), dt), ids(prod(T, B), I),
                          buf(prod(I, H), dt), buf(prod(H, H), dt), buf(int(H), dt),
                          T, B, I, H, nl, use_ids)
        elif f == 1:
            C.rnn_backward(buf(prod(I, H), dt), buf(prod(H, H), dt), buf(int(H), dt),
                           buf(prod(B, H), dt), buf(prod(T, B, I), dt), buf(prod(T, B, H), dt),
                           buf(prod(T, B, H), dt), buf(prod(B, H), dt),
                           buf(prod(T + 1, B, H), dt), buf(prod(T, B, I), dt),
                           ids(prod(T, B), I), buf(prod(I, H), dt), buf(prod(H, H), dt),
                           T, B, I, H, nl, use_ids)
        elif f == 2:
            C.linear_forward(buf(prod(N, O), dt), buf(prod(N, K), dt), buf(prod(K, O), dt),
                             buf(int(O), dt), N, K, O)
        elif f == 3:
            C.linear_backward(buf(prod(K, O), dt), buf(int(O), dt), buf(prod(N, K), dt),
                              buf(prod(N, O), dt), buf(prod(N, K), dt), buf(prod(K, O), dt),
                              N, K, O)
        elif f == 4:
            C.softmax_xent(buf(prod(N, O), dt), buf(prod(N, O), dt), ids(int(N), O), N, O,
                           float(rng.choice([1.0, 0.5, -1.0, np.nan])))
        elif f == 5:
            L, D, arch, lens, work = stack(T, B, H)
            C.model_forward(buf(prod(T, B, O), dt), buf(prod(L * D, T + 1, B, H), dt), work,
                            buf(prod(T, B, I), dt), ids(prod(T, B), I), buf(npar, dt),
                            T, B, I, H, O, nl, use_ids, arch, lens)
        else:
            lso = bool(rng.random() < 0.3)
            NN = B if lso else prod(T, B)
            L, D, arch, lens, work = stack(T, B, H)
            C.model_forward_backward(
                buf(npar, dt), buf(prod(L * D, B, H), dt), buf(prod(L * D, T + 1, B, H), dt),
                buf(prod(NN, O), dt), buf(prod(L * D, T, B, H), dt), work,
                buf(prod(T, B, I), dt), ids(prod(T, B), I), ids(int(NN), O),
                buf(prod(NN, O), dt), buf(prod(L * D, B, H), dt), buf(npar, dt),
                T, B, I, H, O, nl, use_ids, int(rng.integers(-1, 3)), int(rng.integers(-1, 3)),
                lso, arch, lens)
    except (ValueError, OverflowError, TypeError, FloatingPointError):
        pass
'''

CORE_CASES.append(("random-fuzz", CORE_FUZZ.replace("N_FUZZ", "3000"), "survives"))

_RUNNER = r'''
import json, math, sys, traceback
import numpy as np
from elman import _core as C
cases = json.loads(sys.stdin.read())
E = np.zeros(0)
U = np.zeros(0, np.uint8)
def f64(n): return np.linspace(-1.0, 1.0, n)
def f32(n): return f64(n).astype(np.float32)
def i64(*v): return np.array(v, dtype=np.int64)
for cid, code in cases:
    print(json.dumps({"start": cid}), flush=True)
    ns = dict(np=np, math=math, C=C, E=E, U=U, f64=f64, f32=f32, i64=i64)
    try:
        exec(code, ns)
        res = {"id": cid, "exc": None, "msg": ""}
    except BaseException as e:  # report everything, the parent decides
        res = {"id": cid, "exc": type(e).__name__, "msg": str(e)[:300]}
    print(json.dumps(res), flush=True)
'''


@pytest.fixture(scope="module")
def core_results():
    """Run CORE_CASES in child interpreters; a crash marks its case and the rest go on in a
    fresh child."""
    results, todo = {}, [(cid, code) for cid, code, _ in CORE_CASES]
    while todo:
        proc = subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(todo),
                              capture_output=True, text=True, timeout=300)
        started = None
        for line in proc.stdout.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "start" in msg:
                started = msg["start"]
            else:
                results[msg["id"]] = msg
                started = None
        if started is None and len(results) < len(CORE_CASES) and proc.returncode != 0:
            raise RuntimeError(f"the runner failed before any case: {proc.stderr[-2000:]}")
        if started is not None:
            results[started] = {"id": started, "crash": proc.returncode,
                                "stderr": proc.stderr[-2000:]}
        todo = [(cid, code) for cid, code in todo if cid not in results]
    return results


@pytest.mark.parametrize("cid,code,outcome", CORE_CASES, ids=[c[0] for c in CORE_CASES])
def test_core_direct_calls(core_results, cid, code, outcome):
    res = core_results[cid]
    assert "crash" not in res, (f"the interpreter died (exit status {res['crash']}) running:\n"
                                f"{code}\n{res['stderr']}")
    allowed = {"ValueError", "OverflowError", "TypeError"}
    if outcome == "nonfinite":
        assert res["exc"] == "FloatingPointError", f"{code!r} gave {res['exc']}: {res['msg']}"
    elif outcome == "raises":
        assert res["exc"] in allowed, f"{code!r} gave {res['exc']}: {res['msg']}"
    else:
        assert res["exc"] is None or res["exc"] in allowed | {"FloatingPointError"}, \
            f"{code!r} gave {res['exc']}: {res['msg']}"
