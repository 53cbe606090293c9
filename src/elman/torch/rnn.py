"""elman.torch.ElmanRNN: torch.nn.RNN whose forward and backward are elman's C kernels."""
from __future__ import annotations

import numbers

import torch
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ._layer import (CStack, compiled_layer, dropout_masks, needs_torch_ops, run_stack,
                     torch_layer)
from ._tensors import _DTYPES

__all__ = ["ElmanRNN"]

_WHERE = "elman.torch.ElmanRNN"
_DEVICES = ("cpu", "meta")   # meta: built for its shapes, then .to_empty(device="cpu")


class ElmanRNN(torch.nn.RNNBase):
    """torch.nn.RNN on elman's C kernels.

    The same constructor (positional order, defaults, argument checks and their exception
    types), parameters (``weight_ih_l{k}`` (H, I or D*H), ``weight_hh_l{k}`` (H, H),
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (H,), ``..._reverse``), initialization
    (U(-1/sqrt(H), 1/sqrt(H))), members (``mode``, ``all_weights``, ``_flat_weights``,
    ``_flat_weights_names``, ``check_forward_args``, ``get_expected_hidden_size``,
    ``permute_hidden``, ...: it is a ``torch.nn.RNNBase``), call and results as
    torch.nn.RNN, for tanh or relu, any num_layers, batch_first, bidirectional and dropout
    between layers (torch's F.dropout, so torch's RNG draws the masks; for a
    PackedSequence elman drops on the padded tensor, so those masks differ from
    torch.nn.RNN's under the same seed).

    forward(input, hx=None) -> (output, h_n):
        input (T, B, I), (B, T, I) with batch_first, (T, I) unbatched, or a PackedSequence
        (padded steps are skipped, through elman's lengths); hx (L*D, B, H) or (L*D, H)
        unbatched, zeros when None. output (T, B, D*H) (batch_first: (B, T, D*H)) or a
        PackedSequence; h_n (L*D, B, H).

    Where the work runs:
        - plain calls (the training loop): elman's C kernels, the whole stack (layers,
          directions, dropout) in one C call forward and one backward;
        - a backward that must itself be differentiable (``create_graph=True``: double
          backward, gradient penalties) or that receives batched gradients
          (``is_grads_batched=True``, vmap over a backward): the backward recomputes the
          layer in torch ops and differentiates that, so it gives torch's result;
        - under torch.func transforms (vmap, grad, jvp, jacrev, functional ensembles),
          forward-mode AD, and on meta tensors: the layer in torch ops throughout;
        - inside torch.compile: the custom op ``torch.ops.elman.rnn_layer`` (C kernels,
          with a shape function and a backward op), so the graph has no break at the RNN.

    Tensors are CPU (or meta) float32 or float64; ``proj_size`` is 0 (torch.nn.RNN has no
    projections either). Mistakes raise what torch.nn.RNN raises for them: TypeError for an
    argument of the wrong type, ValueError for a bad value, an input of the wrong rank or
    dtype; RuntimeError for a feature count, hx shape, hx dtype or device that does not
    match, and for an input with no steps.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"{_WHERE}: Unknown nonlinearity {nonlinearity!r}; select "
                             f"'tanh' or 'relu'")
        if not isinstance(proj_size, numbers.Integral) or isinstance(proj_size, bool):
            raise TypeError(f"{_WHERE}: proj_size should be an int, got "
                            f"{type(proj_size).__name__}")
        if proj_size != 0:
            raise ValueError(f"{_WHERE}: proj_size={proj_size}: projections are an LSTM "
                             f"feature (torch.nn.RNN refuses them too); leave proj_size=0")
        if not isinstance(num_layers, numbers.Integral) or isinstance(num_layers, bool):
            raise TypeError(f"{_WHERE}: num_layers should be of type int, got "
                            f"{type(num_layers).__name__}")
        if not isinstance(bidirectional, numbers.Integral):
            raise TypeError(f"{_WHERE}: bidirectional should be of type bool, got "
                            f"{type(bidirectional).__name__}")
        if bidirectional not in (0, 1):
            raise ValueError(f"{_WHERE}: bidirectional must be True or False, got "
                             f"{bidirectional!r}")
        where_to = torch.device(device) if device is not None else torch.get_default_device()
        if where_to.type not in _DEVICES:
            raise RuntimeError(f"{_WHERE}: elman runs on the CPU, not {where_to}; use "
                               f"torch.nn.RNN on {where_to.type}")
        resolved = dtype if dtype is not None else torch.get_default_dtype()
        if resolved not in _DTYPES:
            raise TypeError(f"{_WHERE}: dtype {resolved}: elman computes in float32 and "
                            f"float64; use torch.nn.RNN for {resolved}")
        super().__init__("RNN_RELU" if nonlinearity == "relu" else "RNN_TANH", input_size,
                         hidden_size, num_layers=num_layers, bias=bias,
                         batch_first=batch_first, dropout=dropout,
                         bidirectional=bool(bidirectional), proj_size=0, device=device,
                         dtype=dtype)
        self.nonlinearity = nonlinearity

    def flatten_parameters(self):
        """Does nothing, and needs nothing: elman reads every weight where it lies. (In
        torch.nn.RNN it packs the weights for cuDNN, and is a no-op on the CPU too; it is
        here for the scripts that call it after ``.to()``.)"""

    def extra_repr(self):
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")

    # ---- checks: torch.nn.RNN's members and exception types, elman's messages ----------

    def check_input(self, input, batch_sizes):
        """The input against the module: ValueError for a dtype other than the weights',
        RuntimeError for a rank other than 3 (2 for a packed sequence's data, when
        batch_sizes is given) or a feature count other than input_size."""
        w = self._flat_weights[0]
        if input.dtype != w.dtype:
            # in the words torch.nn.RNN uses, which scripts and test suites match on
            raise ValueError(f"{_WHERE}: RNN input dtype ({input.dtype}) does not match "
                             f"weight dtype ({w.dtype}). Convert input: "
                             f"input.to({w.dtype}), or convert model: "
                             f"model.to({input.dtype})")
        rank = 2 if batch_sizes is not None else 3
        if input.dim() != rank:
            raise RuntimeError(f"{_WHERE}: the input must have {rank} dimensions here, "
                               f"got {input.dim()} (shape {tuple(input.shape)})")
        if input.size(-1) != self.input_size:
            raise RuntimeError(f"{_WHERE}: the input has {input.size(-1)} features, the "
                               f"module input_size={self.input_size}")

    def check_hidden_size(self, hx, expected_hidden_size, msg=None):
        """RuntimeError unless hx has the shape expected_hidden_size; ``msg`` (torch's
        argument), if given, is formatted with the expected and actual shapes."""
        if hx.size() != expected_hidden_size:
            if msg is not None:
                raise RuntimeError(msg.format(expected_hidden_size, list(hx.size())))
            raise RuntimeError(f"{_WHERE}: hx has shape {tuple(hx.size())}, expected "
                               f"{tuple(expected_hidden_size)} (num_layers * num_directions, "
                               f"batch, hidden_size)")

    def _check_runnable(self, x, hx):
        """What elman can compute on: CPU or meta tensors of float32 or float64, hx of the
        input's dtype, and at least one step."""
        w = self._flat_weights[0]
        if not (x.device.type == hx.device.type == w.device.type == "cpu"):
            kinds = {t.device.type for t in [x, hx] + self._flat_weights}
            if kinds == {"cpu", "meta"}:
                raise RuntimeError(f"{_WHERE}: some tensors are on meta, others on the CPU; "
                                   f"materialize a meta module with "
                                   f".to_empty(device='cpu') and reset_parameters()")
            for what, t in (("the input", x), ("hx", hx), ("the weights", w)):
                if t.device.type not in _DEVICES:
                    raise RuntimeError(f"{_WHERE}: {what} is on {t.device}; elman runs on "
                                       f"the CPU (use torch.nn.RNN on {t.device.type})")
        if w.dtype not in _DTYPES:
            raise RuntimeError(f"{_WHERE}: the module is {w.dtype}; elman computes in "
                               f"float32 and float64 (module.float(), or torch.nn.RNN for "
                               f"{w.dtype})")
        if hx.dtype != x.dtype:
            raise RuntimeError(f"{_WHERE}: hx is {hx.dtype}, the input {x.dtype}; they must "
                               f"match")
        if x.shape[0] == 0:
            raise RuntimeError(f"{_WHERE}: the input has 0 steps; an RNN needs at least one "
                               f"(torch.nn.RNN refuses it too)")

    # ---- forward -----------------------------------------------------------------------

    def forward(self, input, hx=None):
        D = 2 if self.bidirectional else 1
        packed = isinstance(input, PackedSequence)
        lengths = None
        unbatched = False
        if packed:
            # padded (T, B, I) in the batch's original order, as hx and h_n are
            x, lengths = pad_packed_sequence(input)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{_WHERE}: the input must be (T, B, I), (B, T, I) with "
                                 f"batch_first, or (T, I) unbatched; got shape "
                                 f"{tuple(input.shape)}")
            unbatched = input.dim() == 2
            rank = 2 if unbatched else 3
            if hx is not None and hx.dim() != rank:
                raise RuntimeError(f"{_WHERE}: a {rank}-D input needs a {rank}-D hx, got "
                                   f"shape {tuple(hx.shape)}")
            if unbatched:
                x = input.unsqueeze(1)
                hx = None if hx is None else hx.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
        self.check_input(x, None)
        B = x.shape[1]
        expected = (self.num_layers * D, B, self.hidden_size)
        if hx is None:
            hx = x.new_zeros(expected)
        else:
            self.check_hidden_size(hx, expected)
        self._check_runnable(x, hx)
        flat = [getattr(self, n) for names in self._all_weights for n in names]
        relu = self.nonlinearity == "relu"
        if torch.compiler.is_compiling():
            layer = torch_layer if B == 0 else compiled_layer
        elif B == 0 or needs_torch_ops(x, hx, flat[0]):
            layer = torch_layer
        else:
            layer = None   # the whole stack in one C call
        dropping = self.dropout > 0 and self.training and self.num_layers > 1
        if layer is None:
            masks = None
            if dropping:
                masks = dropout_masks((self.num_layers - 1, x.shape[0], B,
                                       D * self.hidden_size), self.dropout, x)
            layer_in, h_n = CStack.apply(x, hx, masks, lengths, D, relu, *flat)
        else:
            drop = (lambda y, l: torch.nn.functional.dropout(y, self.dropout, True)) \
                if dropping else None
            layer_in, h_n = run_stack(layer, x, hx, flat, D, relu, lengths, drop)
        if packed:  # the input's packing: its batch_sizes and order, as torch.nn.RNN returns
            order = (input.sorted_indices if input.sorted_indices is not None
                     else torch.arange(B))
            data = torch.cat([layer_in[t].index_select(0, order[:n])
                              for t, n in enumerate(input.batch_sizes.tolist())])
            return type(input)(data, input.batch_sizes, input.sorted_indices,
                               input.unsorted_indices), h_n
        if unbatched:
            return layer_in.squeeze(1), h_n.squeeze(1)
        return (layer_in.transpose(0, 1) if self.batch_first else layer_in), h_n
