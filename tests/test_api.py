"""The public API's contract: names, shapes, views, presets, backends, configuration."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import elman
from elman import kernels
from elman.optim import PRESETS


def test_flat_buffers_and_named_views():
    m = elman.ElmanRNN(7, 5, 3)
    p, g = m.named_params(), m.named_grads()
    shapes = {"W_xh": (7, 5), "W_hh": (5, 5), "b_h": (5,), "W_hy": (5, 3), "b_y": (3,)}
    assert list(p) == list(shapes) and list(g) == list(shapes)
    assert {k: v.shape for k, v in p.items()} == shapes
    assert m.params.ndim == 1 and m.params.size == m.num_params == 7 * 5 + 25 + 5 + 15 + 3
    for name, view in p.items():
        assert np.shares_memory(view, m.params) and view.flags.writeable
        assert np.shares_memory(g[name], m.grads)
    p["W_hh"][...] = 2.0
    assert np.count_nonzero(m.params == 2.0) == 25
    assert m.params.dtype == np.float32
    assert elman.ElmanRNN(2, 2, 2, dtype="float64").params.dtype == np.float64


def test_init_schemes():
    H = 16
    u = elman.ElmanRNN(10, H, 4, seed=1)
    assert np.abs(u.params).max() <= 1 / np.sqrt(H)
    assert np.abs(u.params).max() > 0.9 / np.sqrt(H)
    n = elman.ElmanRNN(10, H, 4, seed=1, init="normal0.01")
    p = n.named_params()
    assert not p["b_h"].any() and not p["b_y"].any()
    assert 0.007 < p["W_xh"].std() < 0.013
    assert np.array_equal(elman.ElmanRNN(10, H, 4, seed=1).params, u.params)
    assert not np.array_equal(elman.ElmanRNN(10, H, 4, seed=2).params, u.params)


def test_forward_shapes_h0_and_batch_first(backend_name):
    rng = np.random.default_rng(0)
    m = elman.ElmanRNN(4, 6, 3)
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    h0 = rng.standard_normal((1, 2, 6)).astype(np.float32)
    Y, h = m.forward(x, h0)
    assert Y.shape == (5, 2, 3) and h.shape == (1, 2, 6)
    Y2, h2 = m.forward(x, h0[0])               # (B, H) h0 accepted for one layer
    np.testing.assert_array_equal(Y, Y2)
    Yb, hb = m.forward(x.swapaxes(0, 1), h0, batch_first=True)
    assert Yb.shape == (2, 5, 3)
    np.testing.assert_allclose(Yb.swapaxes(0, 1), Y, rtol=1e-6)
    np.testing.assert_allclose(hb, h, rtol=1e-6)
    # carrying h_T from one half of the sequence into the other equals one pass
    Ya, ha = m.forward(x[:3], h0)
    Yc, hc = m.forward(x[3:], ha)
    np.testing.assert_allclose(np.concatenate([Ya, Yc]), Y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hc, h, rtol=1e-5, atol=1e-6)
    # float64 input is cast to the model's dtype; non-contiguous input is accepted
    Y64, _ = m.forward(x.astype(np.float64), h0)
    np.testing.assert_allclose(Y64, Y, rtol=1e-6)
    Ync, _ = m.forward(np.asfortranarray(x), h0)
    np.testing.assert_allclose(Ync, Y, rtol=1e-6)


def test_forward_backward_batch_first_and_results_not_aliased(backend_name):
    rng = np.random.default_rng(1)
    m = elman.ElmanRNN(9, 6, 9)
    x = rng.integers(0, 9, size=(5, 3))
    loss, h = m.forward_backward(x, x)
    g = m.grads.copy()
    loss_b, h_b = m.forward_backward(x.T, x.T, batch_first=True)
    assert loss_b == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(m.grads, g, rtol=1e-5, atol=1e-7)
    # h_T is a fresh array: a later call with another shape does not change it
    h_copy = h.copy()
    m.forward_backward(x[:2], x[:2])
    np.testing.assert_array_equal(h, h_copy)
    assert m.forward_backward(x, x)[0] == pytest.approx(loss, rel=1e-6)


def test_forward_backward_overwrites_grads():
    rng = np.random.default_rng(2)
    m = elman.ElmanRNN(5, 4, 5)
    x = rng.integers(0, 5, size=(4, 2))
    m.forward_backward(x, x)
    g1 = m.grads.copy()
    m.grads[...] = 123.0
    m.forward_backward(x, x)
    np.testing.assert_array_equal(m.grads, g1)


def test_loss_reductions():
    rng = np.random.default_rng(3)
    m = elman.ElmanRNN(4, 5, 3, dtype="float64")
    x = rng.standard_normal((6, 2, 4))
    y = rng.integers(0, 3, size=(6, 2))
    mean, _ = m.forward_backward(x, y)
    total, _ = m.forward_backward(x, y, reduction="sum")
    assert total == pytest.approx(mean * 12)
    yv = rng.standard_normal((6, 2, 3))
    mean, _ = m.forward_backward(x, yv, loss="mse")
    total, _ = m.forward_backward(x, yv, loss="mse", reduction="sum")
    assert total == pytest.approx(mean * 36)
    last, _ = m.forward_backward(x, y[-1], last_step_only=True, reduction="sum")
    Y, _ = m.forward(x)
    z = Y[-1]
    expected = (np.log(np.exp(z).sum(axis=1)) - z[np.arange(2), y[-1]]).sum()
    assert last == pytest.approx(expected)


def test_adagrad_presets_and_explicit_arguments_win():
    m = elman.ElmanRNN(3, 2, 2)
    d = elman.Adagrad(m)
    assert (d.lr, d.eps, d.eps_placement, d.initial_accumulator_value, d.clip_value) == \
        (1e-2, 1e-10, "outside", 0.0, None)
    # Each framework's convention, written out independently of elman.optim.PRESETS:
    # (lr, eps, eps placement, initial accumulator, clip value)
    expected = {"torch": (1e-2, 1e-10, "outside", 0.0, None),
                "keras": (1e-3, 1e-7, "inside", 0.1, None),
                "optax": (1e-2, 1e-7, "inside", 0.1, None),
                "minchar": (1e-1, 1e-8, "inside", 0.0, 5.0)}
    assert set(expected) == set(PRESETS)
    for name, values in expected.items():
        opt = elman.Adagrad(m, preset=name)
        got = (opt.lr, opt.eps, opt.eps_placement, opt.initial_accumulator_value, opt.clip_value)
        assert got == values, name
        assert (opt.lr_decay, opt.weight_decay, opt.maximize) == (0.0, 0.0, False), name
    k = elman.Adagrad(m, preset="keras", lr=0.5, eps_placement="outside")
    assert (k.lr, k.eps, k.eps_placement, k.initial_accumulator_value) == (0.5, 1e-7,
                                                                            "outside", 0.1)
    assert np.all(k.state == np.float32(0.1))
    mc = elman.Adagrad(m, preset="minchar", clip_value=None)
    assert mc.clip_value is None and mc.lr == 0.1


def test_adagrad_step_follows_the_formula():
    """Two steps by hand, keras preset (eps inside, S0 = 0.1), with lr_decay."""
    m = elman.ElmanRNN(3, 2, 2, dtype="float64")
    rng = np.random.default_rng(4)
    opt = elman.Adagrad(m, preset="keras", lr=0.1, lr_decay=0.5)
    theta, S = m.params.copy(), np.full(m.num_params, 0.1)
    for t in (1, 2):
        m.grads[...] = rng.standard_normal(m.num_params)
        g = m.grads.copy()
        opt.step()
        S += g * g
        theta -= 0.1 / (1 + (t - 1) * 0.5) * g / np.sqrt(S + 1e-7)
        np.testing.assert_allclose(m.params, theta, rtol=1e-14)
        np.testing.assert_allclose(opt.state, S, rtol=1e-14)
    assert opt.steps == 2


def test_adagrad_max_grad_norm_and_clip_grad_norm():
    m = elman.ElmanRNN(3, 2, 2, dtype="float64")
    m.grads[...] = 3.0
    norm = np.sqrt(9.0 * m.num_params)
    g = m.grads.copy()
    assert elman.clip_grad_norm_(g, 1.0) == pytest.approx(norm)
    assert np.linalg.norm(g) == pytest.approx(1.0, rel=1e-5)
    assert elman.clip_grad_norm_(g, 10.0) == pytest.approx(1.0, rel=1e-5)  # no change
    assert np.linalg.norm(g) == pytest.approx(1.0, rel=1e-5)
    # the optimizer folds the same scale into its update
    a, b = elman.ElmanRNN(3, 2, 2, dtype="float64"), elman.ElmanRNN(3, 2, 2, dtype="float64")
    a.grads[...] = b.grads[...] = 3.0
    elman.clip_grad_norm_(b, 1.0)
    oa, ob = elman.Adagrad(a, max_grad_norm=1.0), elman.Adagrad(b)
    oa.step(), ob.step()
    np.testing.assert_allclose(a.params, b.params, rtol=1e-15)
    assert oa.last_grad_norm == pytest.approx(norm)


def test_optimizer_state_dict_round_trip():
    m = elman.ElmanRNN(3, 2, 2)
    opt = elman.Adagrad(m, lr=0.3)
    m.grads[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    other = elman.Adagrad(m)
    other.load_state_dict(sd)
    assert other.steps == 1 and other.lr == 0.3
    np.testing.assert_array_equal(other.state, opt.state)


def test_optimizers_accept_a_params_grads_pair():
    p, g = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    elman.SGD((p, g), lr=0.1).step()
    np.testing.assert_allclose(p, 0.95)


def test_backend_switching():
    assert elman.backend() == "c"
    with elman.backend("numpy") as name:
        assert name == "numpy" and elman.backend() == "numpy"
    assert elman.backend() == "c"
    env = dict(os.environ, ELMAN_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", "import elman; print(elman.backend())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "numpy"
    env["ELMAN_BACKEND"] = "fortran"
    out = subprocess.run([sys.executable, "-c", "import elman; print(elman.backend())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "c" and "ELMAN_BACKEND" in out.stderr


def test_show_config():
    buf = io.StringIO()
    elman.show_config(file=buf)
    text = buf.getvalue()
    for key in ("elman", "compiler", "kernel_path", "cpu_features", "blas", "backend"):
        assert key in text
    c = elman.config()
    assert c["elman"] == elman.__version__ and c["gemm"].startswith("scipy")


def test_reference_and_kernels_share_the_layout():
    layout, n = kernels.param_layout(4, 3, 2)
    assert [name for name, _, _ in layout] == ["W_xh", "W_hh", "b_h", "W_hy", "b_y"]
    assert n == 4 * 3 + 9 + 3 + 6 + 2
    m = elman.ElmanRNN(4, 3, 2)
    for name, shape, off in layout:
        assert m.named_params()[name].shape == shape
        assert np.shares_memory(m.named_params()[name], m.params[off:off + int(np.prod(shape))])


def test_repr():
    assert "ElmanRNN(input_size=3" in repr(elman.ElmanRNN(3, 2, 2))
    assert "Adagrad(lr=0.01" in repr(elman.Adagrad(elman.ElmanRNN(3, 2, 2)))


@pytest.mark.parametrize("module", ["kernels", "model", "optim", "layout", "_dispatch"])
def test_docstring_examples_run(module):
    import doctest
    import importlib
    mod = importlib.import_module(f"elman.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0

# An ElmanRNN(3, 2, 3, num_layers=2, dropout=0.25, seed=5) after one forward_backward,
# pickled (protocol 4) by the release before the stack had its own type (kernels.Arch).
OLD_PICKLE = (
    "gASVpwIAAAAAAACMC2VsbWFuLm1vZGVslIwIRWxtYW5STk6Uk5QpgZR9lCiMCmlucHV0X3NpemWUSwOMC2hp"
    "ZGRlbl9zaXpllEsCjAtvdXRwdXRfc2l6ZZRLA4wMbm9ubGluZWFyaXR5lIwEdGFuaJSMBWR0eXBllIwFbnVt"
    "cHmUjAVkdHlwZZSTlIwCZjSUiYiHlFKUKEsDjAE8lE5OTkr/////Sv////9LAHSUYowEaW5pdJSMB3VuaWZv"
    "cm2UjARzZWVklEsFjAVfYXJjaJSMDWVsbWFuLmtlcm5lbHOUjARBcmNolJOUKEsCiUc/0AAAAAAAAEsASwBL"
    "AHSUgZSMDl9kcm9wb3V0X2NhbGxzlEsBjA1kcm9wb3V0X2xhbmVzlEsASwCGlIwHX3BhcmFtc5SMFm51bXB5"
    "Ll9jb3JlLm11bHRpYXJyYXmUjAxfcmVjb25zdHJ1Y3SUk5RoC4wHbmRhcnJheZSTlEsAhZRDAWKUh5RSlChL"
    "AUsfhZRoEIlDfIDY3D4T+d4+3oyxPKwYm76NfiG/YOYovoKLBL7CoCS//l0jv5e4ND9vp1w+MzzAvnppvL16"
    "rCs/hPkPP/k/+T6Q0Bu+9KghvJ/ffz6kAR+/CAahPZl8pb7Lcgk/b8Udv8W9gT6B/AU/RnHFvuUqDz/IvwY/"
    "vVAuvys+lj6UdJRijAZfZ3JhZHOUaCJoJEsAhZRoJoeUUpQoSwFLH4WUaBCJQ3z1+Ww+O9wVPwAAAAC1Bzm9"
    "AAAAAAAAAAAAAAAAVMLSvAAAAADBhDG79flsPsBLCj9BmLU+ZDihPiMo8j2hxN49fPKLu1TRgrsYMZC8DsmG"
    "vL5mxj5jOq4+xYB5vfhewb2sDx8+sECdvbykZL6Kopk+mrvZPtltjL6Amxq+lHSUYowDX25slEsAdWIu"

)


def test_a_model_pickled_before_the_stack_type_loads():
    import base64
    import pickle
    m = pickle.loads(base64.b64decode("".join(OLD_PICKLE)))
    twin = elman.ElmanRNN(3, 2, 3, num_layers=2, dropout=0.25, seed=5)
    np.testing.assert_array_equal(m.params, twin.params)
    assert (m.num_layers, m.bidirectional, m.dropout) == (2, False, 0.25)
    assert m.dropout_calls == 1 and m.dropout_lanes == (0, 0)
    x = np.array([[0], [1]])
    twin.forward_backward(x, x[::-1].copy())   # the twin's first call: dropout_calls 1
    a, _ = m.forward_backward(x, x[::-1].copy())
    b, _ = twin.forward_backward(x, x[::-1].copy())
    assert a == b   # the second call's masks, the same on both


def test_names_that_moved_still_import():
    """The session's loop moved out of elman.train, train_step out of elman.step, the codes
    stayed name -> code maps: each old import still works."""
    from elman import session, train
    from elman.step import train_step
    assert train.run is session.run and train.plot is session.plot
    assert train.Interrupted is session.Interrupted
    assert train_step is elman.train_step
    assert kernels.NONLINEARITIES["relu"] == 1 and kernels.REDUCTIONS["sum"] == 1
    with pytest.raises(AttributeError):
        train.no_such_name
