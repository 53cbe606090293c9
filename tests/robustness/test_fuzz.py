"""Random combinations of bad arguments for every functional kernel: each call either works
or raises a clear Python exception; none crashes the process (a crash fails the run).

test_bad_input.py changes one thing at a time, systematically; here hypothesis changes one
to three arguments at once, each in one of many ways (dtypes from bool to object, float16
and complex, 0-size and extra dimensions, negative strides, broadcast and transposed views,
a leading dimension beyond 2**31 (a broadcast view, no memory behind it), read-only memory,
NaN and infinities, aliasing one argument to another)."""
import os
import pickle
import warnings

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

import elman
from elman.layout import param_layout
from specs import SPECS, make

CLEAN = (TypeError, ValueError, OverflowError, FloatingPointError, IndexError)
DTYPES = [np.bool_, np.int8, np.int32, np.int64, np.uint64, np.float16, np.float32,
          np.float64, np.complex64, object]


def mutate(a, how, other, draw):
    if a is None:
        return other if how == "alias" else None
    if how == "dtype":
        dt = draw(st.sampled_from(DTYPES))
        try:
            return a.astype(dt)
        except (TypeError, ValueError):
            return a
    if how == "empty":
        return a[:0] if a.ndim else a
    if how == "extra_dim":
        return a[None]
    if how == "drop_dim":
        return a[0] if a.ndim else a
    if how == "negative_stride":
        return a[::-1]
    if how == "transpose":
        return a.T
    if how == "broadcast":
        return np.broadcast_to(a[:1] if a.ndim else a, a.shape)
    if how == "huge_leading_dim" and a.ndim and a.size and a.dtype.kind == "f":
        # a view with no memory behind it; float inputs are never copied, so this checks the
        # size arithmetic (ids and targets are copied privately: a huge view of those would
        # really allocate, as NumPy would)
        return np.broadcast_to(a[:1], (2**31 + 3,) + a.shape[1:])
    if how == "read_only":
        b = a.copy()
        b.flags.writeable = False
        return b
    if how == "nonfinite" and a.dtype.kind == "f" and a.size:
        b = a.copy()
        b.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf]))
        return b
    if how == "huge_values":
        return (a * 1e30).astype(a.dtype) if a.dtype.kind == "f" else a
    if how == "alias" and other is not None:
        return other
    if how == "scalar":
        return 3.0
    if how == "list":
        return a.tolist()
    return a


HOWS = ["dtype", "empty", "extra_dim", "drop_dim", "negative_stride", "transpose",
        "broadcast", "huge_leading_dim", "read_only", "nonfinite", "huge_values", "alias",
        "scalar", "list"]


# ELMAN_FUZZ_EXAMPLES=20000 for a longer hunt
@settings(max_examples=int(os.environ.get("ELMAN_FUZZ_EXAMPLES", "400")), deadline=None)
@given(data=st.data(), spec=st.sampled_from(sorted(SPECS)),
       backend=st.sampled_from(["c", "numpy"]), ids=st.booleans(),
       dt=st.sampled_from([np.float32, np.float64]))
def test_random_bad_arguments_never_crash(data, spec, backend, ids, dt):
    fn, kwargs, roles = SPECS[spec]
    args = make(spec, dt=dt, ids=ids)
    names = sorted(args)
    with np.errstate(all="ignore"), warnings.catch_warnings():  # the mutations' own casts
        warnings.simplefilter("ignore")
        for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3,
                                       unique=True)):
            how = data.draw(st.sampled_from(HOWS))
            other = args[data.draw(st.sampled_from(names))]
            args[name] = mutate(args[name], how, other, data.draw)
    with elman.backend(backend), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn(**args, **kwargs)
        except CLEAN as err:
            assert str(err), f"{type(err).__name__} without a message"


# ---- the model API ------------------------------------------------------------------------

MODEL_HOWS = HOWS + ["lengths"]
GAUSS_NEWTON = ("gauss_newton", "gauss_newton_product")


def bad_lengths(draw, T, B):
    return draw(st.sampled_from([
        np.zeros(B, np.int64), np.full(B, T + 1), np.full(B, -1), np.full(B, 2**62),
        np.ones(B + 1, np.int64), np.ones(B, np.float64), np.ones((1, B), np.int64),
        np.ones(B, np.uint64), np.array([True] * B), [1] * B, None]))


def _outcome(fn):
    """("ok", result) or ("raised", exception type name); a crash fails the run. The model
    API copies inputs of any layout into its own (documented), so a huge broadcast view
    may also end in NumPy's MemoryError, before any kernel runs."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "ok", fn()
        except CLEAN + (MemoryError,) as err:
            assert str(err), f"{type(err).__name__} without a message"
            return "raised", type(err).__name__


def _flatten(result):
    if isinstance(result, tuple):
        return [np.asarray(r, dtype=np.float64) for r in result]
    return [np.asarray(result, dtype=np.float64)]


@settings(max_examples=int(os.environ.get("ELMAN_FUZZ_EXAMPLES", "400")), deadline=None)
@given(data=st.data(), L=st.integers(1, 3), bi=st.booleans(),
       p=st.sampled_from([0.0, 0.3]), ids=st.booleans(),
       method=st.sampled_from(["forward", "forward_backward", "train_step", "TrainStep",
                               "sample", *GAUSS_NEWTON]),
       dt=st.sampled_from(["float32", "float64"]))
def test_random_model_calls_never_crash_and_agree_with_the_reference(data, L, bi, p, ids,
                                                                     method, dt):
    """ElmanRNN's methods (the Gauss-Newton products too: an operator's matvec with out,
    and the one-shot product), elman.train_step and elman.TrainStep on stacked, bidirectional, dropout models
    with one to three arguments mutated (as above, plus bad lengths). Each call either raises a
    clear exception or works; when it works on the C backend, the NumPy reference given the
    same arguments gives the same result (to float tolerance)."""
    T, B, I, H, O = 4, 3, 5, 4, 5
    S = L * (2 if bi else 1)
    seed = data.draw(st.integers(0, 2**32 - 1))

    def build(draw):
        """The arguments, mutated; built twice (the C run may write into them, and aliasing
        must survive), replaying the same draws the second time."""
        rng = np.random.default_rng(seed)
        args = dict(
            x=rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dt),
            y=rng.integers(0, O, (T, B)),
            h0=rng.standard_normal((S, B, H)).astype(dt),
            lengths=rng.integers(1, T + 1, B),
            dh_T=rng.standard_normal((S, B, H)).astype(dt),
            h_out=np.zeros((S, B, H), dt),
        )
        if method in GAUSS_NEWTON:  # the direction v and the product's out
            n = param_layout(I, H, O, L, bi)[1]
            args.update(v=rng.standard_normal(n).astype(dt), out=np.zeros(n, dt))
        names = sorted(args)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in draw(st.lists(st.sampled_from(names), min_size=0, max_size=3,
                                      unique=True)):
                how = draw(st.sampled_from(MODEL_HOWS))
                if how == "lengths":
                    args[name] = bad_lengths(draw, T, B)
                else:
                    args[name] = mutate(args[name], how, args[draw(st.sampled_from(names))],
                                        draw)
        return args

    drawn = []

    def record(strategy):
        drawn.append(data.draw(strategy))
        return drawn[-1]

    a = build(record)
    model = elman.ElmanRNN(I, H, O, num_layers=L, bidirectional=bi, dropout=p, dtype=dt,
                           seed=1)
    twin = pickle.loads(pickle.dumps(model))

    def call(m, opt):
        if method == "forward":
            return m.forward(a["x"], a["h0"], lengths=a["lengths"])
        if method == "forward_backward":
            out = m.forward_backward(a["x"], a["y"], a["h0"], lengths=a["lengths"],
                                     dh_T=a["dh_T"], h_out=a["h_out"])
            return out + (m.grads, m.grad_h0)
        if method == "train_step":
            out = elman.train_step(m, opt, a["x"], a["y"], a["h0"], lengths=a["lengths"])
            return out + (m.params,)
        if method == "TrainStep":  # prepared for the unmutated shapes; no lengths
            out = elman.TrainStep(m, opt, T, B)(a["x"], a["y"], a["h0"], h_out=a["h_out"])
            return out + (m.params,)
        if method == "gauss_newton":
            G = m.gauss_newton(a["x"], a["h0"], lengths=a["lengths"])
            return G.matvec(a["v"], damping=0.1, structural_damping=0.5, out=a["out"])
        if method == "gauss_newton_product":
            return m.gauss_newton_product(a["v"], a["x"], a["h0"], loss="mse", reduction="sum",
                                          last_step_only=True, lengths=a["lengths"],
                                          damping=0.2, structural_damping=1.0)
        return m.sample(6, start=1, h0=a["h0"][:, :1] if isinstance(a["h0"], np.ndarray)
                        and a["h0"].ndim == 3 else a["h0"], seed=3, return_hidden=True)

    with elman.backend("c"):
        got = _outcome(lambda: call(model, elman.Adagrad(model, lr=0.1, max_grad_norm=1.0)))
    replay = iter(drawn)
    a = build(lambda strategy: next(replay))
    with elman.backend("numpy"):
        want = _outcome(lambda: call(twin, elman.Adagrad(twin, lr=0.1, max_grad_norm=1.0)))
    event(f"{method} {got[0]}")
    assert got[0] == want[0], f"C: {got}, reference: {want}"
    if got[0] == "raised":
        assert got[1] == want[1]
        return
    tol = dict(rtol=2e-3, atol=2e-4) if dt == "float32" else dict(rtol=1e-9, atol=1e-11)
    for g, w in zip(_flatten(got[1]), _flatten(want[1])):
        if method in GAUSS_NEWTON and w.size:  # linear in v, which may be huge: the error
            scale = max(1.0, float(np.abs(w).max()))  # is judged against the whole array
            np.testing.assert_allclose(g, w, rtol=tol["rtol"], atol=tol["atol"] * scale)
        else:
            np.testing.assert_allclose(g, w, **tol)


@settings(max_examples=int(os.environ.get("ELMAN_FUZZ_EXAMPLES", "400")) // 4, deadline=None)
@given(data=st.data(), ids=st.booleans(), last=st.booleans(),
       dt=st.sampled_from(["float32", "float64"]))
def test_random_hessian_free_steps_never_crash(data, ids, last, dt):
    """HessianFree.step with one to three of its batch arguments mutated (x, y, h0,
    lengths, curvature): a clear exception, or a step whose parameters stay finite."""
    T, B, I, H, O = 4, 6, 5, 3, 4
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    args = dict(
        x=rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I)).astype(dt),
        y=rng.integers(0, O, B if last else (T, B)), h0=np.zeros((1, B, H), dt),
        lengths=rng.integers(1, T + 1, B), curvature=rng.permutation(B)[:3])
    names = sorted(args)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3,
                                       unique=True)):
            how = data.draw(st.sampled_from(MODEL_HOWS))
            if how == "lengths":
                args[name] = bad_lengths(data.draw, T, B)
            else:
                args[name] = mutate(args[name], how, args[data.draw(st.sampled_from(names))],
                                    data.draw)
    model = elman.ElmanRNN(I, H, O, dtype=dt, seed=2)
    hf = elman.HessianFree(model, max_cg_iters=3, min_cg_iters=1, preconditioner_sequences=2)
    outcome = _outcome(lambda: hf.step(args["x"], args["y"], h0=args["h0"],
                                       lengths=args["lengths"], curvature=args["curvature"],
                                       last_step_only=last))
    event(f"hf {outcome[0]}")
    if outcome[0] == "ok":
        assert np.isfinite(model.params).all()
