"""elman_adagrad_update_many (the multi-tensor Adagrad behind elman.torch.Adagrad): the same
bits as one elman_adagrad_update per tensor, on one thread and when the small tensors are
shared among threads; bad lists are refused."""
import numpy as np
import pytest

import elman
from elman import _core, kernels


def buffers(sizes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return ([rng.standard_normal(n).astype(dtype) for n in sizes],
            [np.abs(rng.standard_normal(n)).astype(dtype) for n in sizes],
            [rng.standard_normal(n).astype(dtype) for n in sizes])


# 40 small tensors (shared among threads: 40 * 5000 > 131,072), one large (split), one empty
SIZES = [5000] * 40 + [300_000, 0, 7]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_equals_one_by_one(threads, dtype):
    ps, ss, gs = buffers(SIZES, dtype)
    qs, ts = [p.copy() for p in ps], [s.copy() for s in ss]
    for p, s, g in zip(qs, ts, gs):
        kernels.adagrad_update(p, g, s, lr=0.1, step=3, lr_decay=0.01, weight_decay=0.02,
                               eps=1e-8, maximize=True)
    n = elman.get_num_threads()
    elman.set_num_threads(threads)
    try:
        bad = _core.adagrad_update_many(ps, gs, ss, dtype == np.float64, 0.1, 0.01, 0.02,
                                        1e-8, 3, True)
    finally:
        elman.set_num_threads(n)
    assert bad is False
    for a, b in zip(ps + ss, qs + ts):
        np.testing.assert_array_equal(a, b)


def test_many_reports_a_non_finite_gradient_after_updating_everything():
    ps, ss, gs = buffers([10, 10], np.float32)
    gs[1][3] = np.nan
    before = ps[0].copy()
    assert _core.adagrad_update_many(ps, gs, ss, False, 0.1, 0, 0, 1e-10, 1, False) is True
    assert not np.array_equal(ps[0], before) and np.isnan(ps[1][3])


def test_many_refuses_bad_lists():
    ps, ss, gs = buffers([4, 4], np.float32)
    with pytest.raises(ValueError, match="differ in number"):
        _core.adagrad_update_many(ps, gs, ss[:1], False, 0.1, 0, 0, 1e-10, 1, False)
    with pytest.raises(ValueError, match="grad"):
        _core.adagrad_update_many(ps, [gs[0], gs[1][:3]], ss, False, 0.1, 0, 0, 1e-10, 1, False)
    with pytest.raises(ValueError):  # float64 buffers for the float32 kernel
        _core.adagrad_update_many([p.astype(np.float64) for p in ps], gs, ss, False, 0.1, 0,
                                  0, 1e-10, 1, False)
    ro = ps[0].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _core.adagrad_update_many([ro, ps[1]], gs, ss, False, 0.1, 0, 0, 1e-10, 1, False)
    with pytest.raises(ValueError):  # a parameter passed as its own state
        _core.adagrad_update_many(ps, gs, [ps[0], ss[1]], False, 0.1, 0, 0, 1e-10, 1, False)
    with pytest.raises(ValueError):  # step 0
        _core.adagrad_update_many(ps, gs, ss, False, 0.1, 0, 0, 1e-10, 0, False)
    with pytest.raises(ValueError, match="grad"):  # None: an empty buffer
        _core.adagrad_update_many(ps, [None, gs[1]], ss, False, 0.1, 0, 0, 1e-10, 1, False)
    with pytest.raises(TypeError):
        _core.adagrad_update_many(ps, [gs[0], "x"], ss, False, 0.1, 0, 0, 1e-10, 1, False)
