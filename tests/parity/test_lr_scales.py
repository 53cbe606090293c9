"""Adagrad's per-parameter learning rates (lr_scales): the same as one update per named
view at its own rate, with the clipping norm taken over the whole buffer; what elman train
uses by default; and clear errors."""
import numpy as np
import pytest

import elman
from elman import kernels
from elman import train as tr


def _model(dtype, layers=1, bidirectional=False):
    m = elman.ElmanRNN(7, 6, 5, num_layers=layers, bidirectional=bidirectional, dtype=dtype,
                       seed=1)
    m.grads[...] = np.random.default_rng(2).standard_normal(m.grads.shape).astype(dtype)
    return m


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_equals_one_update_per_view_at_its_rate(backend_name, dtype, layers, bidirectional,
                                                clip):
    m, ref = _model(dtype, layers, bidirectional), _model(dtype, layers, bidirectional)
    names = list(m.named_params())
    scales = {name: 0.25 * (i + 1) for i, name in enumerate(names) if i % 2}
    opt = elman.Adagrad(m, lr=0.1, max_grad_norm=clip, lr_scales=scales)
    state = np.zeros_like(ref.params)
    for step in (1, 2):
        norm = float(np.sqrt(kernels.sum_squares(ref.grads)))   # the norm the step takes
        g_scale = 1.0 if clip is None else min(1.0, clip / (norm + 1e-6))
        offset = 0
        for name, view in ref.named_params().items():
            n = view.size
            kernels.adagrad_update(ref.params[offset:offset + n], ref.grads[offset:offset + n],
                                   state[offset:offset + n], lr=0.1 * scales.get(name, 1.0),
                                   step=step, grad_scale=g_scale)
            offset += n
        opt.step()
    np.testing.assert_array_equal(m.params, ref.params)
    np.testing.assert_array_equal(opt.state, state)
    assert opt.steps == 2 and (clip is None) == (opt.last_grad_norm is None)


def test_all_ones_is_the_plain_update(dtype):
    m, ref = _model(dtype), _model(dtype)
    a = elman.Adagrad(m, lr=0.05, max_grad_norm=1.0,
                      lr_scales={name: 1.0 for name in m.named_params()})
    b = elman.Adagrad(ref, lr=0.05, max_grad_norm=1.0)
    assert a._segments == [(0, m.params.size, 1.0)]       # merged into one pass
    a.step()
    b.step()
    np.testing.assert_array_equal(m.params, ref.params)


@pytest.mark.parametrize("scales, error, message", [
    ({"W_zz": 0.5}, ValueError, "does not have"),
    ({"W_hh": -1.0}, ValueError, "lr_scales\\['W_hh'\\]"),
    ({"W_hh": float("nan")}, ValueError, "lr_scales\\['W_hh'\\]"),
    ({"W_hh": "big"}, TypeError, "lr_scales\\['W_hh'\\]"),
    ([("W_hh", 0.5)], TypeError, "must be a dict"),
])
def test_bad_lr_scales_are_clear_errors(scales, error, message):
    m = _model(np.float32)
    with pytest.raises(error, match=message):
        elman.Adagrad(m, lr_scales=scales)


def test_lr_scales_need_the_model_and_refuse_what_they_cannot_do():
    m = _model(np.float32)
    with pytest.raises(TypeError, match="needs the model itself"):
        elman.Adagrad((m.params, m.grads), lr_scales={"W_hh": 0.5})
    with pytest.raises(ValueError, match="sparse_rows"):
        elman.Adagrad(m, lr_scales={"W_hh": 0.5}, sparse_rows=True)
    opt = elman.Adagrad(m, lr_scales={"W_hh": 0.5})
    x = np.zeros((3, 2), np.int64)
    with pytest.raises(ValueError, match="several passes"):
        elman.train_step(m, opt, x, x)


@pytest.mark.parametrize("hidden, layers", [(64, 1), (256, 1), (256, 2), (512, 2), (1024, 3)])
def test_elman_train_s_default_rates(hidden, layers):
    cfg = tr.TrainConfig(hidden=hidden, layers=layers)
    m = elman.ElmanRNN(65, hidden, 65, num_layers=layers)
    matrices = min(0.1, 0.02 * 256 / hidden) / layers
    base = max(0.02, matrices)
    assert cfg.learning_rate() == pytest.approx(matrices)
    assert tr.default_base_lr(hidden, layers) == pytest.approx(base)
    scales = tr.default_lr_scales(m, layers)
    if base == matrices:   # one rate: the plain single-pass update
        assert scales == {}
        return
    assert set(scales) == {k for k in m.named_params() if k != "W_xh" and k[0] == "W"}
    for value in scales.values():
        assert base * value == pytest.approx(matrices)
