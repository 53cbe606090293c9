"""Adagrad(sparse_rows=True): after a step on token ids only the rows of W_xh those ids
used are read and written, which equals the dense update bit for bit (weight_decay 0)."""
import numpy as np
import pytest

import elman


def pair(**kw):
    models = [elman.ElmanRNN(300, 16, 300, seed=2) for _ in range(2)]
    opts = [elman.Adagrad(models[0], lr=0.05, **kw),
            elman.Adagrad(models[1], lr=0.05, sparse_rows=True, **kw)]
    return models, opts


@pytest.mark.parametrize("kw", [{}, dict(clip_value=0.01), dict(preset="keras"),
                                dict(lr_decay=0.1, maximize=True)])
def test_equals_the_dense_update_bit_for_bit(kw):
    (dense, sparse), (od, os_) = pair(**kw)
    rng = np.random.default_rng(0)
    for _ in range(8):
        x = rng.integers(0, 300, (9, 4))      # a few dozen of the 300 rows
        for m, o in ((dense, od), (sparse, os_)):
            m.forward_backward(x[:-1], x[1:])
            o.step()
    np.testing.assert_array_equal(dense.params, sparse.params)
    np.testing.assert_array_equal(od.state, os_.state)


def test_with_norm_clipping_equal_to_rounding():
    (dense, sparse), (od, os_) = pair(max_grad_norm=0.1)
    x = np.random.default_rng(1).integers(0, 300, (9, 4))
    for m, o in ((dense, od), (sparse, os_)):
        for _ in range(5):
            m.forward_backward(x[:-1], x[1:])
            o.step()
    np.testing.assert_allclose(dense.params, sparse.params, rtol=1e-5, atol=1e-7)
    assert od.last_grad_norm == pytest.approx(os_.last_grad_norm, rel=1e-6)


def test_unused_rows_and_their_state_are_not_touched():
    (_, m), (_, opt) = pair()
    x = np.array([[3, 5], [5, 7], [7, 3]])
    W = m.named_params()["W_xh"]
    before = W.copy()
    m.forward_backward(x[:-1], x[1:])
    opt.step()
    changed = np.flatnonzero((W != before).any(axis=1))
    assert set(changed) <= {3, 5, 7} and len(changed) > 0       # the inputs x[:-1]
    state = opt.state[:300 * 16].reshape(300, 16)
    assert not state[np.setdiff1d(np.arange(300), [3, 5, 7])].any()


def test_dense_input_and_weight_decay_take_the_dense_path():
    m = elman.ElmanRNN(4, 3, 2)
    opt = elman.Adagrad(m, sparse_rows=True, weight_decay=0.1)
    m.forward_backward(np.ones((2, 1, 4)), np.array([[0], [1]]))
    assert m.last_input_ids is None
    opt.step()
    assert opt.steps == 1


def test_numpy_backend_and_train_step():
    (a, b), (oa, ob) = pair()
    x = np.random.default_rng(2).integers(0, 300, (6, 3))
    elman.train_step(a, oa, x[:-1], x[1:])
    with elman.backend("numpy"):
        elman.train_step(b, ob, x[:-1], x[1:])
    np.testing.assert_allclose(a.params, b.params, rtol=1e-5, atol=1e-7)


def test_needs_the_model():
    m = elman.ElmanRNN(4, 3, 4)
    with pytest.raises(TypeError, match="sparse_rows"):
        elman.Adagrad((m.params, m.grads), sparse_rows=True)
