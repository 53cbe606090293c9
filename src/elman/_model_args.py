"""Checks of the model kernels' arguments (inputs, states, targets, lengths, the stack),
shared by the functional API (elman.kernels), the model (ElmanRNN) and the torch layer, so
that each rule and its message has one owner. Built on the primitives of ``_validate``."""
from __future__ import annotations

import numpy as np

from ._validate import (as_array, float_array, index_array, is_integer_array, positive_int,
                        real)
from .layout import Stack, param_layout
from .rng import seed_state

NO_BIAS = object()  # rnn_backward takes no b_h


def check_stack(where, num_layers=1, bidirectional=False, dropout=0.0) -> Stack:
    """Validated Stack."""
    num_layers = positive_int(num_layers, "num_layers", where=where)
    dropout = real(dropout, "dropout", where=where, minimum=0)
    if not dropout < 1:
        raise ValueError(f"{where}: dropout must be in [0, 1), got {dropout}")
    return Stack(num_layers, bool(bidirectional), dropout)


def check_dropout_seed(seed, where) -> int:
    return positive_int(seed, "dropout_seed", where=where, minimum=0, maximum=2**64 - 1)


def check_layer_weights(where, W_xh, W_hh, b_h=NO_BIAS):
    W_hh = float_array(W_hh, "W_hh", where=where, ndim=2)
    H = W_hh.shape[0]
    W_hh = float_array(W_hh, "W_hh", where=where, shape=(H, H))
    W_xh = float_array(W_xh, "W_xh", where=where, dtype=W_hh.dtype, shape=(None, H))
    if b_h is not NO_BIAS:
        b_h = float_array(b_h, "b_h", where=where, dtype=W_hh.dtype, shape=(H,))
    return W_xh, W_hh, b_h


def check_input(x, name, *, where, dtype, num_inputs, batch=None, steps=None, out_ids=None):
    """Token ids (T, B) -> int64 array (copied into out_ids when given and shaped alike);
    dense (T, B, I) -> checked float array. Returns (x, is_ids)."""
    arr = x if isinstance(x, np.ndarray) else as_array(x, name, where=where)
    if is_integer_array(arr):
        ids = index_array(arr, name, where=where, upper=num_inputs, shape=(steps, batch),
                          out=out_ids)
        return ids, True
    arr = float_array(x, name, where=where, dtype=dtype, shape=(steps, batch, num_inputs),
                      finite=True)
    return arr, False


def check_lengths(lengths, where, T, B, out=None):
    """Sequence lengths (B,) as an int64 array with 1 <= lengths[b] <= T (copied into
    ``out`` when given), or None."""
    if lengths is None:
        return None
    arr = index_array(lengths, "lengths", where=where, upper=T + 1, shape=(B,), out=out)
    if arr.size and arr.min() < 1:
        b = int(np.argmin(arr))
        raise ValueError(f"{where}: lengths[{b}] = {int(arr[b])}; every sequence needs at "
                         f"least one step (1 <= lengths <= T = {T})")
    return arr


def initial_state(h0, where, dtype, B, H):
    """One layer's h0 (B, H), zeros if None."""
    if h0 is None:
        return np.zeros((B, H), dtype=dtype)
    return float_array(h0, "h0", where=where, dtype=dtype, shape=(B, H), finite=True)


def check_model_params(where, params, sizes, stack):
    """(params, I, H, O): the flat buffer checked against the layout's size."""
    I, H, O = (positive_int(v, n, where=where) for v, n in
               zip(sizes, ("input_size", "hidden_size", "output_size")))
    _, n = param_layout(I, H, O, stack.num_layers, stack.bidirectional)
    params = float_array(params, "params", where=where, shape=(n,))
    return params, I, H, O


def check_targets(y, where, loss, dtype, T, B, O, last_step_only):
    if loss == "cross_entropy":
        return index_array(y, "y", where=where, upper=O,
                           shape=(B,) if last_step_only else (T, B))
    return float_array(y, "y", where=where, dtype=dtype,
                       shape=(B, O) if last_step_only else (T, B, O), finite=True)


def check_states(h, name, where, dtype, stack, B, H, *, writable=False, finite=True):
    """A stack's states (L*D, B, H); (B, H) is also accepted for one layer, one direction.
    Returned as (L*D, B, H); None stays None."""
    if h is None:
        return None
    S = stack.states
    arr = float_array(h, name, where=where, dtype=dtype, writable=writable, finite=finite)
    if arr.shape == (S, B, H):
        return arr
    if S == 1 and arr.shape == (B, H):
        return arr.reshape(1, B, H)
    raise ValueError(f"{where}: {name} has shape {arr.shape}, expected ({S}, {B}, {H})"
                     + (f" or ({B}, {H})" if S == 1 else "")
                     + " (num_layers * directions, B, H)")


def check_sample_args(where, I, O, n, first, first_name, temperature, batch=None):
    """(n, first, temperature, B) of a sampling call, checked against I inputs, O outputs.

    batch None: one stream, first an id (returned as an int) and B None. batch = B: first
    is one id (an int) for every stream or an array of B ids, returned as a (B,) int64
    array (an array of another shape, a 0-d one included, is refused by its shape)."""
    if O > I:
        raise ValueError(f"{where}: sampling feeds each output id back as an input id, so "
                         f"output_size ({O}) must be <= input_size ({I})")
    n = positive_int(n, "n", where=where, minimum=0)
    B = None if batch is None else positive_int(batch, "batch", where=where)
    if B is not None and (isinstance(first, np.ndarray) or np.ndim(first) != 0):
        first = index_array(first, first_name, where=where, upper=I, shape=(B,))
    else:
        first = positive_int(first, first_name, where=where, minimum=0)
        if first >= I:
            raise ValueError(f"{where}: {first_name}={first} is not a token id in [0, {I})")
        if B is not None:
            first = np.full(B, first, np.int64)
    return n, first, real(temperature, "temperature", where=where, minimum=0), B


def check_seed(seed, where) -> int:
    """A 64-bit generator state from an int seed, a SeedSequence, or fresh entropy."""
    if seed is not None and not isinstance(seed, np.random.SeedSequence):
        seed = positive_int(seed, "seed", where=where, minimum=0)
    return seed_state(seed)


def check_seeds(seed, where, B) -> np.ndarray:
    """(B,) uint64 generator states of B sampling streams: stream b's is the state of
    :func:`stream_seed` (seed, b), the int seed, SeedSequence or fresh entropy's child b."""
    if seed is None:
        seed = np.random.SeedSequence()
    elif not isinstance(seed, np.random.SeedSequence):
        seed = np.random.SeedSequence(positive_int(seed, "seed", where=where, minimum=0))
    return np.array([seed_state(stream_seed(seed, b)) for b in range(B)], np.uint64)


def stream_seed(seed, b: int) -> np.random.SeedSequence:
    """Stream b's SeedSequence under ``seed`` (an int >= 0 or a SeedSequence): its child
    with spawn key + (b,), made without spawning, so a caller's SeedSequence is unchanged.
    A one-stream call seeded with it draws from the same generator as stream b of a
    batched call (the same ids, up to the products' rounding: see ElmanRNN.sample)."""
    if not isinstance(seed, np.random.SeedSequence):
        seed = np.random.SeedSequence(seed)
    return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (b,),
                                  pool_size=seed.pool_size)
