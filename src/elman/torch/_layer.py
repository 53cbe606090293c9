"""One direction of one Elman layer for torch autograd, three ways over the same math.

Shapes: x (T, B, I), h0 (B, H), w_ih (H, I), w_hh (H, H) (torch's column-vector
layout), b_ih and b_hh (H,) or None, lengths (B,) int64 or None. Each returns out (T, B, H)
and h_T (B, H), where::

    a_t = x_t @ w_ih.T + b_ih + h_{t-1} @ w_hh.T + b_hh,   h_t = f(a_t)   (f = tanh or relu)

run from t = T down in reverse, and, with lengths, a padded step (t >= lengths[b]) keeping
the state it was given, so that h_T is each sequence's own final state.

- ``CLayer`` (a torch.autograd.Function): elman's C kernels, forward and backward. The
  eager path, and the fast one.
- ``torch_layer``: the recurrence in torch ops, so differentiable any number of times and
  composable with every torch transform (torch.func.vmap/grad/jvp, forward-mode AD, meta
  tensors). ``CLayer.backward`` switches to it whenever the backward itself must be
  differentiable (``create_graph=True``: double backward, gradient penalties) or is given
  batched gradients (``is_grads_batched=True``, vmap over a backward, gradcheck's batched
  check): the C kernels have no second derivative and no batching rule.
- ``CStack``: the whole stack (layers, directions, dropout between layers) in one C call
  forward and one backward (elman_stack_forward / elman_stack_backward): what the module
  runs eagerly. Its differentiable backward recomputes the stack in ``torch_layer``s.
- ``torch.ops.elman.rnn_layer``: the C kernels as a torch.library custom op, with a shape
  (fake) implementation and a backward op, so that torch.compile captures the layer in its
  graph instead of breaking around it.

No ``from __future__ import annotations`` here: torch.library reads the custom ops' schemas
from their annotations.
"""
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .._dispatch import current
from ._tensors import _np

__all__ = ["CLayer", "CStack", "torch_layer", "run_stack", "torch_stack", "dropout_masks",
           "needs_torch_ops", "compiled_layer"]

_NL = {False: "tanh", True: "relu"}


def torch_layer(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, lengths):
    """The layer in torch ops (differentiable, batchable); returns (out, h_T)."""
    act = torch.relu if relu else torch.tanh
    T = x.shape[0]
    a_x = torch.matmul(x, w_ih.t())  # every step's input term in one product
    if b_ih is not None:
        a_x = a_x + (b_ih + b_hh)
    valid = None if lengths is None else \
        (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(2)  # (T, B, 1)
    outs = [None] * T
    h = h0
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        new = act(a_x[t] + torch.matmul(h, w_hh.t()))
        h = new if valid is None else torch.where(valid[t], new, h)
        outs[t] = h
    return torch.stack(outs), h


def _batched(t):
    """Whether t is a vmap (functorch or legacy) batched tensor or another functorch
    wrapper, which has no NumPy memory to hand to C."""
    return t is not None and (torch._C._functorch.is_functorch_wrapped_tensor(t)
                              or torch._C._functorch.is_legacy_batchedtensor(t))


def needs_torch_ops(x, hx, weight):
    """Whether a forward over the input x, the initial state hx and the weights (of which
    ``weight`` is one) must run in torch ops: under a torch.func transform or forward-mode
    AD, or on batched, wrapped or meta tensors. (Weights are wrapped only under a
    transform, and share a device.)"""
    return (torch._C._are_functorch_transforms_active()
            or torch.autograd.forward_ad._current_level >= 0
            or x.is_meta or weight.is_meta or _batched(x) or _batched(hx))


def _check_shapes(where, x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    """(T, B, I, H) once the tensors agree, else RuntimeError: the custom ops are callable
    with anything, and the module has checked already (this costs a few tuple compares)."""
    if x.dim() != 3 or w_hh.dim() != 2:
        raise RuntimeError(f"{where}: x must be (T, B, I) and w_hh (H, H); got "
                           f"{tuple(x.shape)} and {tuple(w_hh.shape)}")
    T, B, I = x.shape
    H = w_hh.shape[0]
    want = {"h0": (h0, (B, H)), "w_ih": (w_ih, (H, I)), "w_hh": (w_hh, (H, H)),
            "b_ih": (b_ih, (H,)), "b_hh": (b_hh, (H,)), "lengths": (lengths, (B,))}
    for name, (t, shape) in want.items():
        if t is not None and tuple(t.shape) != shape:
            raise RuntimeError(f"{where}: {name} has shape {tuple(t.shape)}, expected {shape}")
    if (b_ih is None) != (b_hh is None):
        raise RuntimeError(f"{where}: give both biases or neither")
    _same_device(where, x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    return T, B, I, H


def _same_device(where, *tensors):
    """Every tensor on one device: a meta tensor among CPU ones would otherwise send the
    custom ops to their shape functions, which return uninitialized memory."""
    kinds = {t.device.type for t in tensors if t is not None}
    if len(kinds) > 1:
        raise RuntimeError(f"{where}: the tensors are on {' and '.join(sorted(kinds))}; "
                           f"they must share one device (materialize a meta module with "
                           f".to_empty(device='cpu') and reset_parameters())")


def _lengths(lengths):
    return None if lengths is None else _np(lengths.contiguous())


def _c_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, lengths):
    """hs (T+1, B, H) as a torch tensor, and elman's (I, H), (H, H) weight copies.

    Shapes are checked here on the tensors' metadata, so this calls the backend's
    rnn_forward, not elman.kernels' array-by-array validation; the binding still checks
    every buffer's size and dtype and the kernel the lengths' values. NaNs pass through,
    as in torch."""
    T, B, I, H = _check_shapes("elman::rnn_layer", x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    W_xh = _np(w_ih).T.copy()   # elman's row-vector convention
    W_hh = _np(w_hh).T.copy()
    dt = W_hh.dtype
    b = np.zeros(H, dt) if b_ih is None else _np(b_ih) + _np(b_hh)
    hs = current().rnn_forward(_np(x.contiguous()), _np(h0), W_xh, W_hh, b,
                               nonlinearity=_NL[relu], reverse=reverse,
                               lengths=_lengths(lengths), out=np.empty((T + 1, B, H), dt))
    return torch.from_numpy(hs), (W_xh, W_hh)


def _c_backward(d_out, d_hT, hs, x, W_xh, W_hh, relu, reverse, lengths, need_dx):
    """(dx or None, dh0, dw_ih, dw_hh, db) from elman's BPTT kernel, as torch tensors.
    The gradients have the outputs' shapes (autograd, or the backward op, checked them)."""
    T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    dH = np.zeros((T, B, H), W_hh.dtype) if d_out is None else _np(d_out.contiguous())
    g = current().rnn_backward(dH, _np(hs), _np(x.contiguous()), W_xh, W_hh,
                               nonlinearity=_NL[relu],
                               dh_T=None if d_hT is None else _np(d_hT.contiguous()),
                               need_dx=need_dx, reverse=reverse, lengths=_lengths(lengths))
    return (None if g.x is None else torch.from_numpy(g.x), torch.from_numpy(g.h0),
            torch.from_numpy(g.W_xh.T.copy()), torch.from_numpy(g.W_hh.T.copy()),
            torch.from_numpy(g.b_h))


class CLayer(torch.autograd.Function):
    """The layer on elman's C kernels: apply(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse,
    lengths) -> (out, h_T).

    ``out`` shares the state slab's memory without being a torch view of it, so that, as
    with torch.nn.RNN, it may be modified in place; it is saved for backward, so a
    backward after such a change raises torch's "modified by an inplace operation" error
    instead of reading the changed states. Gradients reaching ``out`` at padded steps
    (t >= lengths[b]) are ignored: those steps are not outputs (a PackedSequence has
    none)."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, lengths):
        hs, weights = _c_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, lengths)
        slab = hs.numpy()
        out = torch.from_numpy(slab[:-1] if reverse else slab[1:])
        h_T = torch.from_numpy(slab[0 if reverse else -1].copy())
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out)
        ctx.hs = hs
        ctx.weights = weights
        ctx.options = (relu, reverse, lengths)
        return out, h_T

    @staticmethod
    def backward(ctx, d_out, d_hT):
        x, h0, w_ih, w_hh, b_ih, b_hh, _ = ctx.saved_tensors   # checks out's version
        relu, reverse, lengths = ctx.options
        if torch.is_grad_enabled() or _batched(d_out) or _batched(d_hT) or \
                torch.autograd.forward_ad._current_level >= 0:
            return _differentiable_backward(ctx, (x, h0, w_ih, w_hh, b_ih, b_hh), d_out, d_hT)
        dx, dh0, dw_ih, dw_hh, db = _c_backward(d_out, d_hT, ctx.hs, x, *ctx.weights, relu,
                                                reverse, lengths, ctx.needs_input_grad[0])
        has_bias = b_ih is not None
        return (dx, dh0, dw_ih, dw_hh, db if has_bias else None,
                db.clone() if has_bias else None, None, None, None)


def _differentiable_backward(ctx, inputs, d_out, d_hT):
    """The backward as torch ops: the forward recomputed from the saved inputs and
    differentiated by autograd, with a graph of its own when one is being recorded
    (create_graph=True), so that it can be differentiated again."""
    relu, reverse, lengths = ctx.options
    need = ctx.needs_input_grad[:6]
    wrt = [t for t, n in zip(inputs, need) if n]
    with torch.enable_grad():
        out, h_T = torch_layer(*inputs, relu, reverse, lengths)
        grads = iter(torch.autograd.grad((out, h_T), wrt, (d_out, d_hT), allow_unused=True,
                                         create_graph=torch.is_grad_enabled()))
    return tuple(next(grads) if n else None for n in need) + (None, None, None)


# ---- the whole stack in one C call ---------------------------------------------------------

def dropout_masks(shape, p, like):
    """(L-1, T, B, D*H) scales 0 or 1/(1-p) for the inputs of layers 1..L-1, drawn as
    torch.nn.functional.dropout draws them (one bernoulli_ per layer, in layer order), so
    that a seeded run drops what torch.nn.RNN drops."""
    masks = like.new_empty(shape)
    if p >= 1:
        return masks.zero_()
    for m in masks:
        m.bernoulli_(1 - p)
    return masks.div_(1 - p)


def run_stack(layer, x, hx, weights, D, relu, lengths, between=None):
    """The stack, one ``layer`` call (torch_layer, compiled_layer) per layer-direction:
    weights the module's flat list, per layer-direction [w_ih, w_hh] or [w_ih, w_hh, b_ih,
    b_hh]; ``between(y, l)`` passes layer l's outputs on to layer l + 1 (dropout), or None.
    Returns (out, h_n)."""
    per = len(weights) // hx.shape[0]
    layer_in, finals = x, []
    L = hx.shape[0] // D
    for l in range(L):
        outs = []
        for d in range(D):
            k = l * D + d
            w = list(weights[k * per:(k + 1) * per]) + [None] * (4 - per)
            out, h_T = layer(layer_in, hx[k], *w, relu, bool(d), lengths)
            outs.append(out)
            finals.append(h_T)
        layer_in = torch.cat(outs, dim=2) if D == 2 else outs[0]
        if between is not None and l + 1 < L:
            layer_in = between(layer_in, l)
    return layer_in, torch.stack(finals)


def torch_stack(x, hx, weights, masks, D, relu, lengths):
    """The stack in torch ops (differentiable any number of times) with the given dropout
    masks (or None); returns (out, h_n)."""
    return run_stack(torch_layer, x, hx, weights, D, relu, lengths,
                     None if masks is None else (lambda y, l: y * masks[l]))


class CStack(torch.autograd.Function):
    """The stack on elman's C kernels: apply(x (T, B, I), hx (L*D, B, H), masks
    ((L-1, T, B, D*H) or None), lengths ((B,) or None), D, relu, *weights) -> (out
    (T, B, D*H), h_n (L*D, B, H)); weights as in torch_stack.

    ``out`` shares the forward's state memory, saved for backward, as CLayer's does, so an
    in-place change of it makes the backward raise torch's inplace error."""

    @staticmethod
    def forward(ctx, x, hx, masks, lengths, D, relu, *weights):
        per = len(weights) // hx.shape[0]
        ws = [_np(w.contiguous()) for w in weights]
        run = current().stack_forward(
            _np(x.contiguous()), _np(hx.contiguous()), ws[0::per], ws[1::per],
            ws[2::per] if per == 4 else None, ws[3::per] if per == 4 else None,
            directions=D, nonlinearity=_NL[relu], lengths=_lengths(lengths),
            masks=None if masks is None else _np(masks.contiguous()))
        out, h_n = torch.from_numpy(run.out), torch.from_numpy(run.h_n)
        ctx.save_for_backward(x, hx, masks, out, *weights)
        ctx.run = run.saved
        ctx.options = (D, relu, lengths, per)
        return out, h_n

    @staticmethod
    def backward(ctx, d_out, d_hn):
        x, hx, masks, _, *weights = ctx.saved_tensors   # checks out's version
        D, relu, lengths, per = ctx.options
        if torch.is_grad_enabled() or _batched(d_out) or _batched(d_hn) or \
                torch.autograd.forward_ad._current_level >= 0:
            return _differentiable_stack_backward(ctx, x, hx, masks, weights, d_out, d_hn)
        g = current().stack_backward(
            ctx.run, None if d_out is None else _np(d_out.contiguous()),
            None if d_hn is None else _np(d_hn.contiguous()), need_dx=ctx.needs_input_grad[0])
        grads = []
        for k in range(hx.shape[0]):
            grads += [torch.from_numpy(g.w_ih[k]), torch.from_numpy(g.w_hh[k])]
            if per == 4:
                db = torch.from_numpy(g.b[k])
                grads += [db, db.clone()]
        dx = None if g.x is None else torch.from_numpy(g.x)
        return (dx, torch.from_numpy(g.h0), None, None, None, None, *grads)


def _differentiable_stack_backward(ctx, x, hx, masks, weights, d_out, d_hn):
    """CStack's backward in torch ops: the stack recomputed from the saved inputs (with the
    forward's masks) and differentiated by autograd, with a graph of its own under
    create_graph=True."""
    D, relu, lengths, _ = ctx.options
    need = ctx.needs_input_grad
    inputs = (x, hx, *weights)
    flags = (need[0], need[1], *need[6:])
    wrt = [t for t, n in zip(inputs, flags) if n]
    with torch.enable_grad():
        out, h_n = torch_stack(x, hx, weights, masks, D, relu, lengths)
        got = iter(torch.autograd.grad((out, h_n), wrt, (d_out, d_hn), allow_unused=True,
                                       create_graph=torch.is_grad_enabled()))
    grads = [next(got) if n else None for n in flags]
    return (grads[0], grads[1], None, None, None, None, *grads[2:])


# ---- the custom op torch.compile sees -----------------------------------------------------

@torch.library.custom_op("elman::rnn_layer", mutates_args=(), device_types="cpu")
def _rnn_layer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor],
               b_hh: Optional[Tensor], relu: bool, reverse: bool,
               lengths: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """(hs (T+1, B, H), h_T (B, H)) on elman's C kernels."""
    hs, _ = _c_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, lengths)
    return hs, (hs[0] if reverse else hs[-1]).clone()


@_rnn_layer.register_fake
def _rnn_layer_shapes(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, lengths):
    _same_device("elman::rnn_layer", x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[0]
    return x.new_empty((T + 1, B, H)), x.new_empty((B, H))


@torch.library.custom_op("elman::rnn_layer_backward", mutates_args=(), device_types="cpu")
def _rnn_layer_backward(d_hs: Tensor, d_hT: Tensor, hs: Tensor, x: Tensor, w_ih: Tensor,
                        w_hh: Tensor, relu: bool, reverse: bool, lengths: Optional[Tensor],
                        need_dx: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx (T, B, I), or empty when not needed, dh0, dw_ih, dw_hh, db) on elman's BPTT."""
    where = "elman::rnn_layer_backward"
    if hs.dim() != 3:
        raise RuntimeError(f"{where}: hs must be (T+1, B, H), got {tuple(hs.shape)}")
    T, B, I, H = _check_shapes(where, x, hs[0], w_ih, w_hh, None, None, lengths)
    for name, t, shape in (("hs", hs, (T + 1, B, H)), ("d_hs", d_hs, (T + 1, B, H)),
                           ("d_hT", d_hT, (B, H))):
        if tuple(t.shape) != shape:
            raise RuntimeError(f"{where}: {name} has shape {tuple(t.shape)}, expected {shape}")
    W_xh, W_hh = _np(w_ih).T.copy(), _np(w_hh).T.copy()
    d_out = d_hs[:-1] if reverse else d_hs[1:]
    dx, dh0, dw_ih, dw_hh, db = _c_backward(d_out, d_hT, hs, x, W_xh, W_hh, relu, reverse,
                                            lengths, need_dx)
    dh0 += d_hs[-1] if reverse else d_hs[0]   # hs's own copy of h0
    return (x.new_empty(0) if dx is None else dx), dh0, dw_ih, dw_hh, db


@_rnn_layer_backward.register_fake
def _rnn_layer_backward_shapes(d_hs, d_hT, hs, x, w_ih, w_hh, relu, reverse, lengths,
                               need_dx):
    _same_device("elman::rnn_layer_backward", d_hs, d_hT, hs, x, w_ih, w_hh, lengths)
    return (x.new_empty(x.shape if need_dx else (0,)), d_hT.new_empty(d_hT.shape),
            w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape),
            w_hh.new_empty(w_hh.shape[0]))


def _op_setup(ctx, inputs, output):
    x, _, w_ih, w_hh, b_ih, _, relu, reverse, lengths = inputs
    ctx.save_for_backward(x, w_ih, w_hh, output[0], lengths)
    ctx.options = (relu, reverse, b_ih is not None)


def _op_backward(ctx, d_hs, d_hT):
    x, w_ih, w_hh, hs, lengths = ctx.saved_tensors
    relu, reverse, has_bias = ctx.options
    if d_hs is None:
        d_hs = torch.zeros_like(hs)
    if d_hT is None:
        d_hT = torch.zeros_like(hs[0])
    need_dx = ctx.needs_input_grad[0]
    dx, dh0, dw_ih, dw_hh, db = torch.ops.elman.rnn_layer_backward(
        d_hs, d_hT, hs, x, w_ih, w_hh, relu, reverse, lengths, need_dx)
    return (dx if need_dx else None, dh0, dw_ih, dw_hh, db if has_bias else None,
            db.clone() if has_bias else None, None, None, None)


_rnn_layer.register_autograd(_op_backward, setup_context=_op_setup)


def compiled_layer(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, lengths):
    """The layer through torch.ops.elman.rnn_layer; returns (out, h_T)."""
    hs, h_T = torch.ops.elman.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, lengths)
    return (hs[:-1] if reverse else hs[1:]), h_T
