"""Bad input never crashes the process and is rejected with a message naming the argument:
hypothesis property tests: wrong shapes, hyperparameter ranges, targets.

The contract (DESIGN.md, "Errors and trust"): every public entry point validates dtype,
shape, contiguity, aliasing, finiteness and target range before any pointer reaches C; bad
input raises TypeError or ValueError (NonFiniteError subclasses ValueError and
FloatingPointError) whose message names the offending argument; nothing crashes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import elman
from elman import NonFiniteError
from elman import kernels as K
from specs import (B, FLOAT_DTYPES, H, HYP, I, INT_DTYPES, LAYOUTS, NONFLOAT_DTYPES, O, SPECS,
                   T, call, make, mentions, names)


FIXED_ARGS = [(spec, arg) for spec, (_, _, roles) in SPECS.items()
              for arg, role in roles.items() if "S" in role]


@HYP
@given(data=st.data())
def test_property_any_wrong_shape_of_a_fixed_argument_is_named(data):
    spec, arg = data.draw(st.sampled_from(FIXED_ARGS), label="spec/arg")
    dt = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    args = make(spec, dt)
    good = args[arg].shape
    shape = data.draw(st.lists(st.integers(0, 7), max_size=4).map(tuple)
                      .filter(lambda s: s != good), label="shape")
    args[arg] = np.zeros(shape, args[arg].dtype)
    with pytest.raises(ValueError, match=names(arg)):
        call(spec, args)


def _real_strategy():
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                     st.integers(-10**6, 10**6))


@HYP
@given(lr=_real_strategy(), eps=_real_strategy(), lr_decay=_real_strategy(),
       weight_decay=_real_strategy(), grad_scale=_real_strategy())
def test_property_adagrad_hyperparameter_ranges(lr, eps, lr_decay, weight_decay, grad_scale):
    """Each of these must be finite and >= 0; exactly the invalid ones are rejected, by name,
    before anything is written; the valid combinations run (never crash)."""
    a = make("adagrad_update")
    before = {k: v.copy() for k, v in a.items()}
    hp = dict(lr=lr, eps=eps, lr_decay=lr_decay, weight_decay=weight_decay,
              grad_scale=grad_scale)
    bad = [k for k, v in hp.items() if not (math.isfinite(v) and v >= 0)]
    if bad:
        with pytest.raises(ValueError, match="|".join(names(k) for k in bad)):
            K.adagrad_update(**a, step=1, **hp)
        for k, v in a.items():
            np.testing.assert_array_equal(v, before[k])
    else:
        with np.errstate(all="ignore"):
            try:
                K.adagrad_update(**a, step=1, **hp)
            except NonFiniteError:
                pass  # grad is finite, but may overflow through huge scales: a fine answer


@HYP
@given(targets=st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=8),
       O_=st.integers(1, 6),
       dtype=st.sampled_from([np.int64, np.int32, np.int16, np.uint32, np.uint64]))
def test_property_targets_range(targets, O_, dtype):
    info = np.iinfo(dtype)
    t = np.array([min(max(v, info.min), info.max) for v in targets], dtype=dtype)
    logits = np.zeros((t.size, O_))
    if all(0 <= int(v) < O_ for v in t):
        loss, d = K.softmax_cross_entropy(logits, t)
        assert math.isclose(loss, math.log(O_))
    else:
        with pytest.raises(ValueError, match=names("targets")):
            K.softmax_cross_entropy(logits, t)


@HYP
@given(ids=st.lists(st.integers(-5, 3 * I), min_size=T * B, max_size=T * B))
def test_property_model_token_ids_range(ids):
    m = elman.ElmanRNN(I, H, O, seed=1)
    x = np.array(ids).reshape(T, B)
    if ((x >= 0) & (x < I)).all():
        Y, _ = m.forward(x)
        assert np.isfinite(Y).all()
    else:
        with pytest.raises(ValueError, match=mentions("x")):
            m.forward(x)
        with pytest.raises(ValueError, match=mentions("x")):
            m.forward_backward(x, np.zeros((T, B), np.int64))


@HYP
@given(dtype=st.sampled_from(NONFLOAT_DTYPES + INT_DTYPES),
       spec_arg=st.sampled_from([(s, a) for s, (_, _, r) in SPECS.items()
                                 for a, ro in r.items() if "X" not in ro and "P" not in ro]),
       layout=st.sampled_from(["contiguous", "strided", "reversed"]))
def test_property_dtype_is_checked_before_layout(dtype, spec_arg, layout):
    """A wrong dtype is reported as a TypeError naming the argument, whatever its layout."""
    spec, arg = spec_arg
    args = make(spec)
    a = np.zeros(args[arg].shape, dtype=dtype)
    if layout != "contiguous":
        a = LAYOUTS[layout](a)
    args[arg] = a
    with pytest.raises(TypeError, match=names(arg)):
        call(spec, args)
