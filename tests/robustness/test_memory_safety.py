"""Inputs that once crashed the process or silently produced NaN. Crash-prone cases run in a
child interpreter, so that a regression shows up as a failed test, not a dead test run."""
import copy
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import elman
from elman import kernels


def run_child(code, timeout=120):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"child exited with {out.returncode}:\n{out.stderr[-2000:]}"
    return out.stdout


def test_core_targets_aliasing_the_gradient_output_do_not_crash():
    """softmax_xent writes dlogits while targets live in the same memory: C re-checks each
    target where it reads it."""
    out = run_child("""
        import numpy as np
        from elman import _core
        N, O = 64, 4
        buf = np.zeros(N * O)
        t = buf.view(np.int64)[:N]
        t[:] = 0
        try:
            _core.softmax_xent(buf, np.zeros(N * O), t, N, O, 1.0)
            print("returned")
        except ValueError as e:
            print("refused:", e)
    """)
    assert "returned" in out or "out of range" in out


def test_core_ids_aliasing_the_bptt_output_do_not_crash():
    """rnn_backward writes dA before it scatters into dW_xh by ids living in dA."""
    out = run_child("""
        import numpy as np
        from elman import _core
        T, B, I, H = 4, 4, 3, 8
        dA = np.zeros(T * B * H)
        ids = dA.view(np.int64)[:T * B]
        ids[:] = 1
        E = np.zeros(0)
        try:
            _core.rnn_backward(np.zeros(I * H), np.zeros(H * H), np.zeros(H), E, E, dA,
                               np.ones(T * B * H), E, np.full((T + 1) * B * H, 0.5), E, ids,
                               np.ones(I * H), np.ones(H * H), T, B, I, H, 0, True)
            print("returned")
        except ValueError as e:
            print("refused:", e)
    """)
    assert "returned" in out or "out of range" in out


@pytest.mark.parametrize("call", ["model", "rnn_backward"])
def test_token_ids_rewritten_by_another_thread_do_not_crash(call):
    """Another thread flips one id out of range while the kernels run without the GIL."""
    out = run_child(f"""
        import threading
        import numpy as np
        import elman
        from elman import kernels
        T, B, V, H = 64, 16, 20, 48
        x = np.zeros((T, B), np.int64)
        m = elman.ElmanRNN(V, H, V)
        rng = np.random.default_rng(0)
        W_xh, W_hh = rng.standard_normal((V, H)), 0.1 * rng.standard_normal((H, H))
        hs = kernels.rnn_forward(x, None, W_xh, W_hh, np.zeros(H))
        dH = rng.standard_normal((T, B, H))
        stop = False
        def flip():
            flat = x.reshape(-1)
            while not stop:
                flat[-1] = 1 << 40
                flat[-1] = 0
        t = threading.Thread(target=flip)
        t.start()
        refused = 0
        try:
            for _ in range(150):
                try:
                    if "{call}" == "model":
                        m.forward_backward(x, x % V)
                    else:
                        kernels.rnn_backward(dH, hs, x, W_xh, W_hh)
                except ValueError:
                    refused += 1
        finally:
            stop = True
            t.join()
        print("survived", refused)
    """)
    assert "survived" in out


def test_adagrad_eps_zero_without_an_initial_accumulator_is_refused():
    m = elman.ElmanRNN(5, 3, 5)
    for placement in ("outside", "inside"):
        with pytest.raises(ValueError, match="eps=0"):
            elman.Adagrad(m, eps=0, eps_placement=placement)
    elman.Adagrad(m, eps=0, initial_accumulator_value=0.1)  # well defined


def test_adagrad_kernel_reports_a_parameter_it_made_nan(backend_name):
    """eps = 0 and a zero state where the gradient is 0: 0/0. The kernel says so."""
    p = np.ones(5)
    g = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    with pytest.raises(elman.NonFiniteError, match="non-finite"):
        kernels.adagrad_update(p, g, np.zeros(5), lr=0.1, step=1, eps=0.0)
    assert np.isnan(p[1])  # the update was applied, as documented


def test_optimizer_load_state_dict_is_validated():
    m = elman.ElmanRNN(3, 2, 2)
    opt = elman.Adagrad(m)
    sd = opt.state_dict()
    for key, bad in (("lr", -1.0), ("eps_placement", "Inside"), ("eps", float("nan"))):
        broken = dict(sd, settings=dict(sd["settings"], **{key: bad}))
        with pytest.raises(ValueError, match=key):
            opt.load_state_dict(broken)
    assert opt.lr == 1e-2 and opt.eps_placement == "outside"  # nothing was half-applied
    with pytest.raises(ValueError, match="state"):
        opt.load_state_dict(dict(sd, state=np.zeros(3)))
    with pytest.raises(ValueError, match="state"):
        opt.load_state_dict(dict(sd, state=-np.ones_like(sd["state"])))


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
                         ids=["deepcopy", "pickle"])
def test_copies_of_a_model_keep_their_views_on_their_own_buffer(clone):
    m = elman.ElmanRNN(4, 3, 2, seed=5)
    c = clone(m)
    np.testing.assert_array_equal(c.params, m.params)
    for name, view in c.named_params().items():
        assert np.shares_memory(view, c.params), name
        assert not np.shares_memory(view, m.params), name
    c.named_params()["W_hh"][...] = 7.0
    assert np.count_nonzero(c.params == 7.0) == 9 and not np.any(m.params == 7.0)
    x = np.zeros((2, 1), np.int64)
    c.forward_backward(x, x % 2)  # the copy computes with its own workspace
    assert np.shares_memory(c.named_grads()["W_xh"], c.grads)


def test_unaligned_arrays_are_refused():
    raw = np.zeros(8 * 10 + 1, np.uint8)
    a = np.frombuffer(raw.data, dtype=np.float64, count=10, offset=1)
    assert not a.flags.aligned
    with pytest.raises(ValueError, match="x.*aligned"):
        kernels.sum_squares(a)


def test_c_backend_runs_the_compiled_kernels(monkeypatch):
    """A model step and an optimizer step on the "c" backend go through elman._core, and on
    the "numpy" backend they do not (a broken dispatch would pass every parity test)."""
    calls = []
    for name in ("model_forward_backward", "adagrad_update", "model_forward", "sgd_update"):
        real = getattr(elman._core, name)
        monkeypatch.setattr(elman._core, name,
                            lambda *a, _n=name, _f=real, **k: (calls.append(_n), _f(*a, **k))[1])
    m = elman.ElmanRNN(4, 3, 4)
    opt, sgd = elman.Adagrad(m), elman.SGD(m, lr=0.1, momentum=0.9)
    x = np.zeros((3, 2), np.int64)
    with elman.backend("numpy"):
        m.forward_backward(x, x)
        opt.step()
        sgd.step()
        m.forward(x)
    assert calls == []
    m.forward_backward(x, x)
    opt.step()
    sgd.step()
    m.forward(x)
    assert calls == ["model_forward_backward", "adagrad_update", "sgd_update", "model_forward"]
