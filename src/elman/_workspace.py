"""The buffers a model computation needs, kept across calls of one shape so that a training
step allocates nothing: the states hs (L*D, T+1, B, H), the logits Y, the gradients dA and
the C kernels' byte workspace (sized by C, ``elman_model_work_bytes``). A workspace is a
plain dict owned by its caller (an ElmanRNN keeps one per kind of call)."""
from __future__ import annotations

import numpy as np

_NO_WORK = np.empty(0, np.uint8)


def aligned_bytes(nbytes):
    """nbytes of memory aligned to 8 (a float64 array's), as uint8; the empty workspace
    for 0."""
    if nbytes == 0:
        return _NO_WORK
    return np.empty((nbytes + 7) // 8, np.float64).view(np.uint8)


def work_buffer(ws, key, nbytes):
    """A byte workspace from the dict ``ws``, reused while big enough."""
    buf = ws.get(key)
    if buf is None or buf.size < nbytes:
        buf = ws[key] = aligned_bytes(nbytes)
        ws["allocations"] = ws.get("allocations", 0) + 1
    return buf


def array(ws, key, shape, dtype):
    """A workspace array reused while its shape and dtype hold."""
    buf = ws.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = ws[key] = np.empty(shape, dtype)
        ws["allocations"] = ws.get("allocations", 0) + 1
    return buf


def set_initial_states(hs, h0, D):
    """hs (L*D, T+1, B, H): each slab's h0 where elman_rnn_forward reads it, hs[k, 0]
    forward and hs[k, T] reverse (zeros if h0 is None)."""
    T = hs.shape[1] - 1
    for k in range(hs.shape[0]):
        hs[k, T if k % D else 0] = 0 if h0 is None else h0[k]


def final_states(hs, D):
    """The stack's final states from hs (L*D, T+1, B, H), a view per slab: hs[k, T]
    forward, hs[k, 0] reverse (torch's h_n order)."""
    T = hs.shape[1] - 1
    return [hs[k, 0 if k % D else T] for k in range(hs.shape[0])]
