"""The flat parameter buffer's layout and the gradients of one layer: shared by the model,
the optimizers, both backends and the torch interchange.

The layout (csrc/elman.h states it, csrc/layout.h computes it in C): for each layer l and
direction d, ``W_xh`` (I_l, H) | ``W_hh`` (H, H) | ``b_h`` (H,); then ``W_hy`` (D*H, O) |
``b_y`` (O,), with D = 2 if bidirectional else 1, I_0 = I, I_l = D*H. The names of layer l,
direction d carry torch's suffix ``_l{l}`` (and ``_reverse``), so ``W_hh_l1_reverse`` is the
second layer's backward-direction recurrence. The total size is checked against the C
kernels' own count (``elman_model_num_params``) in the test suite.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

__all__ = ["param_layout", "param_views", "layer_names", "valid_steps", "scored_rows",
           "RNNGrads", "Stack", "StackRun", "StackGrads"]


def valid_steps(lengths, T, B):
    """(T, B) bool: step t of sequence b is within its length (all True without lengths)."""
    if lengths is None:
        return np.ones((T, B), bool)
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def scored_rows(lengths, last_step_only, T, B):
    """The (t, b) index arrays of the steps that carry a loss, in the C kernels' order:
    each sequence's last step (``last_step_only``), or every valid step, time-major."""
    if last_step_only:
        t_last = (np.full(B, T) if lengths is None else np.asarray(lengths)) - 1
        return t_last, np.arange(B)
    return np.nonzero(valid_steps(lengths, T, B))


def layer_names(l: int, d: int):
    """Names of layer l, direction d's parameters: ``W_xh, W_hh, b_h`` for the first
    layer's forward direction, with the suffix ``_l{l}`` (and ``_reverse`` for d = 1) for
    the others, as torch names them."""
    if l == 0 and d == 0:
        return "W_xh", "W_hh", "b_h"
    sfx = f"_l{l}" + ("_reverse" if d else "")
    return "W_xh" + sfx, "W_hh" + sfx, "b_h" + sfx


def param_layout(input_size, hidden_size, output_size, num_layers=1, bidirectional=False):
    """Names, shapes and offsets of the flat parameter buffer, in order: for each layer l
    and direction d, W_xh (I_l, H) | W_hh (H, H) | b_h (H,); then W_hy (D*H, O) | b_y (O,),
    with D = 2 if bidirectional else 1, I_0 = I, I_l = D*H (elman.h). One layer is
    W_xh (I, H) | W_hh (H, H) | b_h (H,) | W_hy (H, O) | b_y (O,).
    Returns a list of (name, shape, offset) and the total size.

    >>> from elman.layout import param_layout
    >>> param_layout(3, 2, 3)
    ([('W_xh', (3, 2), 0), ('W_hh', (2, 2), 6), ('b_h', (2,), 10), ('W_hy', (2, 3), 12), ('b_y', (3,), 18)], 21)
    """
    I, H, O = input_size, hidden_size, output_size
    D = 2 if bidirectional else 1
    parts = []
    for l in range(num_layers):
        for d in range(D):
            nx, nh, nb = layer_names(l, d)
            parts += [(nx, (I if l == 0 else D * H, H)), (nh, (H, H)), (nb, (H,))]
    parts += [("W_hy", (D * H, O)), ("b_y", (O,))]
    layout, offset = [], 0
    for name, shape in parts:
        layout.append((name, shape, offset))
        offset += int(np.prod(shape))
    return layout, offset


def param_views(flat, input_size, hidden_size, output_size, num_layers=1, bidirectional=False):
    """Named views into a flat buffer laid out as :func:`param_layout` says."""
    layout, _ = param_layout(input_size, hidden_size, output_size, num_layers, bidirectional)
    return {name: flat[off:off + int(np.prod(shape))].reshape(shape)
            for name, shape, off in layout}


class RNNGrads(NamedTuple):
    """Gradients of one Elman layer (what ``rnn_backward`` returns), each field named after
    the thing it is the gradient of: W_xh (I, H), W_hh (H, H), b_h (H,), h0 (B, H) (dh0),
    x (T, B, I) or None (dx: token-id input, or not requested), A (T, B, H) (dA, with
    respect to the pre-activations)."""
    W_xh: np.ndarray
    W_hh: np.ndarray
    b_h: np.ndarray
    h0: np.ndarray
    x: Optional[np.ndarray]
    A: np.ndarray


class StackRun(NamedTuple):
    """What ``stack_forward`` returns: out (T, B, D*H), the top layer's outputs; h_n
    (L*D, B, H), the final states; saved, what ``stack_backward`` needs (the backend's own)."""
    out: np.ndarray
    h_n: np.ndarray
    saved: object


class StackGrads(NamedTuple):
    """Gradients of a torch-layout stack (what ``stack_backward`` returns), k = l*D + d:
    w_ih (list of L*D arrays (H, I_l)), w_hh (list of (H, H)), b (L*D, H) (the gradient of
    b_ih[k] and of b_hh[k]), h0 (L*D, B, H), x (T, B, I) or None (not requested)."""
    w_ih: list
    w_hh: list
    b: np.ndarray
    h0: np.ndarray
    x: Optional[np.ndarray]


class Stack(NamedTuple):
    """The shape of a model's stack: layers, directions, and the dropout between layers."""
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0

    @property
    def directions(self) -> int:
        """D: 2 for a bidirectional stack, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def states(self) -> int:
        """L*D: hidden states (and h0 / h_n entries) of the stack."""
        return self.num_layers * self.directions
