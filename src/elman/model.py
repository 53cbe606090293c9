"""ElmanRNN: stacked Elman layers and an affine output layer over one flat parameter buffer;
and elman.train_step, the whole training step of one in one call."""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from . import _interchange, _workspace
from ._dispatch import current
from ._model_args import (check_input, check_lengths, check_sample_args, check_seed,
                          check_seeds, check_stack, check_states)
from ._validate import (NonFiniteError, as_array, choice, float_array, index_array,
                        is_integer_array, positive_int)
from .kernels import LOSSES, NONLINEARITIES, REDUCTIONS
from .layout import Stack, param_layout, param_views
from .optim import SGD, Adagrad
from .rng import GOLDEN_GAMMA, splitmix64

INITS = ("uniform", "normal0.01")
_NO_DROPOUT = {}  # the backends' defaults: no dropout
_NO_COMPUTE = {}  # and products in the model's dtype
_BF16_COMPUTE = {"compute_dtype": "bfloat16"}


class ElmanRNN:
    """An Elman recurrent network with an output layer::

        H_t = f(X_t @ W_xh + H_{t-1} @ W_hh + b_h)      f = tanh (or relu)
        Y_t = H_t @ W_hy + b_y

    stacked num_layers deep (layer l > 0 reads layer l-1's outputs), each layer optionally
    bidirectional (a second Elman layer runs from the last step to the first; the two
    outputs are concatenated, forward first, as torch.nn.RNN does).

    Parameters
    ----------
    input_size : int
        I, features per step (dense input) or vocabulary size (token-id input).
    hidden_size : int
        H, hidden units.
    output_size : int
        O, outputs per step (classes for cross-entropy).
    nonlinearity : {"tanh", "relu"}
    num_layers : int
        L, stacked layers (default 1).
    bidirectional : bool
        D = 2 directions per layer if True. Hidden states are (L*D, B, H), ordered as
        torch's h_n: layer by layer, forward before reverse.
    dropout : float
        p in [0, 1): dropout on the outputs of every layer but the last, in forward_backward
        and train_step only (``forward`` is inference). The masks come from a hash of
        ``seed``, a call counter and the element index (in C, or in elman.reference under
        ``backend("numpy")``, bit for bit the same): the same seed and calls give the same
        masks.
    dtype : {"float32", "float64"}
        The dtype of the parameters, gradients, states and every result.
    compute_dtype : {"float32", "bfloat16"} or None
        The dtype the matrix products of ``forward``, ``forward_backward``, ``train_step``
        and ``TrainStep`` run in (default: ``dtype``). "bfloat16" (float32 models only):
        each product's operands are rounded to bfloat16 and the products accumulated in
        float32, on AMX tiles where the CPU has AMX-BF16, on ``vdpbf16ps`` where it has
        AVX512_BF16, and on an emulation, several times slower, elsewhere (``elman info``
        and :func:`elman.bf16_kernel` say which); parameters, states, gradients, the loss
        and the optimizer stay float32. Faster than float32 at FLOP-bound shapes (AMX:
        2-5x; vdpbf16ps: up to 2x where it runs at twice the FMA rate, as on AMD Zen 4,
        and slower than float32 where it does not, as on Intel CPUs with AMX), for about 3
        significant digits per product.
        ``sample`` and the Gauss-Newton products always run in float32. May be set later
        (``model.compute_dtype = "float32"`` to evaluate in full precision).
    seed : int
        Seed of the initialization (NumPy's default_rng): the same seed gives the same
        parameters, bit for bit.
    init : {"uniform", "normal0.01"}
        "uniform": every parameter from U(-1/sqrt(H), 1/sqrt(H)), as torch.nn.RNN and
        torch.nn.Linear(H, O) do. "normal0.01": weights from N(0, 0.01^2), biases zero,
        as min-char-rnn does.

    Attributes
    ----------
    params, grads : ndarray (n,)
        Every parameter / gradient in one flat buffer, laid out W_xh (I, H) | W_hh (H, H) |
        b_h (H,) | W_hy (H, O) | b_y (O,) for one layer; with more layers or directions, each
        layer's W_xh | W_hh | b_h in turn (the second and later named with a suffix _l1,
        _l0_reverse, ... as torch names them; layer l > 0 has W_xh (D*H, H)), then
        W_hy (D*H, O) | b_y (O,). ``named_params()`` / ``named_grads()`` return writable
        views into them. An optimizer step is one pass over these buffers.
    dropout_calls : int
        Training calls made so far: with dropout, call k's masks come from (seed, k), so a
        resumed run sets it to where it stopped (``elman train --resume`` does).
    dropout_lanes : (int, int)
        Data-parallel training: (the whole batch's lanes, the first lane this model's
        batches hold), so that each rank draws its part of the whole batch's masks;
        (0, 0) otherwise.

    Example
    -------
    >>> import numpy as np, elman
    >>> m = elman.ElmanRNN(65, 100, 65)             # a character model, vocabulary 65
    >>> x = np.random.default_rng(0).integers(0, 65, size=(25, 1))   # token ids (T, B)
    >>> loss, h = m.forward_backward(x[:-1], x[1:])   # predict the next character
    >>> opt = elman.Adagrad(m, lr=0.1)
    >>> opt.step()
    """

    def __init__(self, input_size, hidden_size, output_size, *, nonlinearity="tanh",
                 num_layers=1, bidirectional=False, dropout=0.0, dtype="float32", seed=0,
                 init="uniform", compute_dtype=None):
        where = "ElmanRNN"
        self.input_size = positive_int(input_size, "input_size", where=where)
        self.hidden_size = positive_int(hidden_size, "hidden_size", where=where)
        self.output_size = positive_int(output_size, "output_size", where=where)
        self.nonlinearity = choice(nonlinearity, "nonlinearity", tuple(NONLINEARITIES),
                                   where=where)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"{where}: dtype must be float32 or float64, got {dtype!r}") from None
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"{where}: dtype must be float32 or float64, got {self.dtype}")
        self.init = choice(init, "init", INITS, where=where)
        self._compute = self._check_compute(compute_dtype, where)
        self.seed = positive_int(seed, "seed", where=where, minimum=0)
        self._stack = check_stack(where, num_layers, bidirectional, dropout)
        self.dropout_calls = 0
        self.dropout_lanes = (0, 0)
        sizes = self._sizes()
        _, n = param_layout(*sizes)
        if n * self.dtype.itemsize > 2**62:
            raise ValueError(f"{where}: input_size={sizes[0]}, hidden_size={sizes[1]}, "
                             f"output_size={sizes[2]} make {n} parameters, more than any "
                             f"buffer can hold")
        self._params = np.zeros(n, self.dtype)
        self._grads = np.zeros(n, self.dtype)
        self._named_params = param_views(self._params, *sizes)
        self._named_grads = param_views(self._grads, *sizes)
        self._workspace = {}
        self._busy = threading.Lock()
        self.reset_parameters(seed)

    # ---- architecture -------------------------------------------------------------------

    # read-only: the stack is fixed when the model is made
    num_layers = property(lambda self: self._stack.num_layers, doc="L: stacked layers.")
    bidirectional = property(lambda self: self._stack.bidirectional,
                             doc="Whether each layer runs in both directions (D = 2).")
    dropout = property(lambda self: self._stack.dropout,
                       doc="p: dropout between layers while training.")
    num_states = property(lambda self: self._stack.states,
                          doc="L*D: the leading dimension of hidden states, h0 and h_n.")

    COMPUTE_DTYPES = ("float32", "bfloat16")

    def _check_compute(self, compute_dtype, where):
        """compute_dtype, checked: None means the model's dtype."""
        if compute_dtype is None:
            return "float32" if self.dtype == np.float32 else "float64"
        if isinstance(compute_dtype, np.dtype) or compute_dtype in (np.float32, np.float64):
            compute_dtype = np.dtype(compute_dtype).name
        if compute_dtype == self.dtype.name:
            return compute_dtype
        choice(compute_dtype, "compute_dtype", self.COMPUTE_DTYPES, where=where)
        if self.dtype != np.float32:
            raise ValueError(f"{where}: compute_dtype={compute_dtype!r} needs a float32 model, "
                             f"this one is {self.dtype.name}")
        return compute_dtype

    @property
    def compute_dtype(self) -> str:
        """The dtype the products run in: "float32", "float64" or "bfloat16" (see the
        class docstring). Settable."""
        return self._compute

    @compute_dtype.setter
    def compute_dtype(self, value):
        self._compute = self._check_compute(value, "ElmanRNN.compute_dtype")

    def _compute_kwargs(self):
        """The compute dtype as the backends' model functions take it (nothing for the
        model's own dtype, so the float calls are unchanged)."""
        return _BF16_COMPUTE if self._compute == "bfloat16" else _NO_COMPUTE

    def _sizes(self):
        a = self._stack
        return (self.input_size, self.hidden_size, self.output_size, a.num_layers,
                a.bidirectional)

    def _shape_kwargs(self):
        """The model's shape, as the backends' model functions take it (made once; the
        sizes are plain attributes, so it is checked against them)."""
        kw = self.__dict__.get("_shape")
        sizes = (self.input_size, self.hidden_size, self.output_size, self.nonlinearity)
        if kw is None or kw[0] != sizes:
            kw = self._shape = (sizes, dict(
                input_size=sizes[0], hidden_size=sizes[1], output_size=sizes[2],
                nonlinearity=sizes[3], num_layers=self._stack.num_layers,
                bidirectional=self._stack.bidirectional))
        return kw[1]

    def _dropout_draw(self):
        """The dropout arguments of one training call: with dropout, a fresh mask seed from
        the model's seed and its call count ``dropout_calls`` (pure integers: no
        allocation), and ``dropout_lanes`` = (the whole batch's lanes, the first of them
        this model's batches hold), set by data-parallel training so that each rank draws
        its part of the whole batch's masks ((0, 0) otherwise)."""
        a = self._stack
        if a.dropout == 0:
            return _NO_DROPOUT
        self.dropout_calls += 1
        bits, _ = splitmix64((self.seed * GOLDEN_GAMMA + self.dropout_calls)
                             & 0xFFFFFFFFFFFFFFFF)
        return dict(dropout=a.dropout, dropout_seed=bits, dropout_lanes=self.dropout_lanes)

    # ---- parameters ---------------------------------------------------------------------

    @property
    def params(self) -> np.ndarray:
        """(n,) every parameter, flat. Write into it (``params[...] = v``); it cannot be
        rebound, since the named views and the optimizers hold on to this buffer."""
        return self._params

    @property
    def grads(self) -> np.ndarray:
        """(n,) every gradient, flat, in the layout of ``params``."""
        return self._grads

    @property
    def num_params(self) -> int:
        return self.params.size

    def named_params(self) -> dict:
        """Writable views into ``params``: W_xh (I, H), W_hh (H, H), b_h (H,), W_hy (H, O),
        b_y (O,); with more layers or directions also W_xh_l1, W_hh_l0_reverse, ... (see the
        class docstring), and W_hy (D*H, O)."""
        return dict(self._named_params)

    def named_grads(self) -> dict:
        """Writable views into ``grads``, named and shaped as ``named_params()``."""
        return dict(self._named_grads)

    def reset_parameters(self, seed=None):
        """Re-initialize every parameter in place (with ``seed``, or the constructor's)."""
        if seed is not None:
            seed = positive_int(seed, "seed", where="ElmanRNN.reset_parameters", minimum=0)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        H = self.hidden_size
        if self.init == "uniform":
            k = 1.0 / np.sqrt(H)
            self.params[...] = rng.uniform(-k, k, self.params.size)
        else:
            for name, view in self._named_params.items():
                if name.startswith("b_"):
                    view[...] = 0
                else:
                    view[...] = 0.01 * rng.standard_normal(view.shape)
        self.grads[...] = 0

    def zero_grad(self):
        self.grads[...] = 0

    def init_hidden(self, batch_size: int) -> np.ndarray:
        """Zeros of the hidden-state shape (num_layers * directions, B, H)."""
        return np.zeros((self.num_states, batch_size, self.hidden_size), self.dtype)

    def __getstate__(self):
        """Pickle and deepcopy: the views and the workspace are rebuilt, not copied, so that
        named_params() of a copy still look into the copy's own buffer."""
        state = dict(self.__dict__)
        for key in ("_named_params", "_named_grads", "_workspace", "_busy", "_grad_h0",
                    "_last_ids", "_shape"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        if "_arch" in state:  # pickled before the stack had its own type
            a = state.pop("_arch")
            state["_stack"] = Stack(a[0], bool(a[1]), float(a[2]))
        state.setdefault("_stack", Stack())
        state["dropout_calls"] = state.pop("_dropout_calls", state.get("dropout_calls", 0))
        state.setdefault("dropout_lanes", (0, 0))
        state.setdefault("_compute", np.dtype(state["dtype"]).name)
        state.pop("_nl", None)
        self.__dict__.update(state)
        self._busy = threading.Lock()
        sizes = self._sizes()
        self._named_params = param_views(self._params, *sizes)
        self._named_grads = param_views(self._grads, *sizes)
        self._workspace = {}

    @contextlib.contextmanager
    def _exclusive(self, where):
        """One computation at a time per model: the workspace (states, ids, targets, the
        sampler's buffer) is the model's own. A second thread is refused, not made to wait:
        it is a bug to share one model between threads (use one model per thread)."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"{where}: this model is in use by another thread (its "
                               f"workspace is shared); give each thread its own model, or "
                               f"serialize the calls with a lock")
        try:
            yield
        finally:
            self._busy.release()

    # ---- input checks -------------------------------------------------------------------

    def _own(self, arr, name, where):
        """Inputs may not live in the gradient buffer, which the step overwrites while it
        still reads them."""
        if np.may_share_memory(arr, self._grads):
            raise ValueError(f"{where}: {name} and the model's grads share memory; "
                             f"pass a copy")
        return arr

    @property
    def workspace_allocations(self) -> int:
        """How many times a workspace array was (re)made for a new shape: constant while a
        training loop keeps its shapes (no allocation per step)."""
        return sum(ws.get("allocations", 0) for ws in self._workspace.values())

    def _input(self, x, where, batch_first, ws=None):
        """x -> (time-major contiguous array, is_ids). Floats of another dtype are cast to
        the model's dtype; any layout is accepted (copied when not C-contiguous). Token ids
        are copied into the workspace ``ws`` when given."""
        arr = self._own(as_array(x, "x", where=where), "x", where)
        dense = arr.dtype.kind == "f"
        if not dense and not is_integer_array(arr):
            raise TypeError(f"{where}: x must hold floats (T, B, I) or integer token ids "
                            f"(T, B), got dtype {arr.dtype}")
        if arr.ndim != (3 if dense else 2):
            what, shape, first = (("dense x", "(T, B, I)", "(B, T, I)") if dense else
                                  ("token ids x", "(T, B)", "(B, T)"))
            raise ValueError(f"{where}: {what} must have shape {shape} "
                             f"{f'(batch_first: {first}) ' if batch_first else ''}"
                             f"{f'with I = {self.input_size}, ' if dense else ''}"
                             f"got shape {arr.shape}")
        if batch_first:
            arr = arr.swapaxes(0, 1)
        if dense:
            arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{where}: x is empty (T = {arr.shape[0]}, B = {arr.shape[1]}); "
                             f"need at least one step and one sequence")
        out = (_workspace.array(ws, "ids", arr.shape[:2], np.int64)
               if ws is not None and arr.dtype.kind != "f" else None)
        return check_input(arr, "x", where=where, dtype=self.dtype, num_inputs=self.input_size,
                           out_ids=out)

    def _h0(self, h0, where, B, name="h0"):
        """States (or a gradient on them), (L*D, B, H), or (B, H) for one layer and one
        direction, as a (L*D, B, H) array of the model's dtype; None stays None."""
        H, S = self.hidden_size, self.num_states
        if h0 is None:
            return None
        arr = self._own(as_array(h0, name, where=where), name, where)
        if arr.dtype.kind != "f":
            raise TypeError(f"{where}: {name} must hold floats, got dtype {arr.dtype}")
        if S == 1 and arr.shape == (B, H):
            arr = arr[None]
        elif arr.shape != (S, B, H):
            raise ValueError(f"{where}: {name} has shape {arr.shape}, expected "
                             f"({S}, {B}, {H})" + (f" or ({B}, {H})" if S == 1 else
                                                   " (num_layers * directions, B, H)"))
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        return float_array(arr, name, where=where, finite=True)

    def _targets(self, y, where, loss, T, B, last_step_only, batch_first, ws=None):
        arr = self._own(as_array(y, "y", where=where), "y", where)
        O = self.output_size
        if loss == "cross_entropy":
            if not is_integer_array(arr):
                raise TypeError(f"{where}: cross-entropy targets y must be integer class ids, "
                                f"got dtype {arr.dtype}")
            if batch_first and arr.ndim == 2:
                arr = arr.swapaxes(0, 1)
            shape = (B,) if last_step_only else (T, B)
            out = _workspace.array(ws, "y", shape, np.int64) if ws is not None else None
            return index_array(arr, "y", where=where, upper=O, shape=shape, out=out)
        if arr.dtype.kind != "f":
            raise TypeError(f"{where}: mse targets y must hold floats, got dtype {arr.dtype}")
        if batch_first and arr.ndim == 3:
            arr = arr.swapaxes(0, 1)
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        return float_array(arr, "y", where=where, shape=(B, O) if last_step_only else (T, B, O),
                           finite=True)

    # ---- compute ------------------------------------------------------------------------

    def forward(self, x, h0=None, *, batch_first=False, lengths=None):
        """Outputs of every step (inference: no dropout).

        x: float (T, B, I) or integer token ids (T, B) (with batch_first: (B, T, ...));
        h0: (L*D, B, H), or (B, H) for one layer and direction; zeros if None.
        lengths: (B,) ints, 1 <= lengths[b] <= T, for a batch of sequences padded to T steps:
        each sequence's state stops at its own length (torch's PackedSequence); None: all T.
        Returns (Y, h_n): Y (T, B, O) ((B, T, O) with batch_first), zero at padded steps;
        h_n (L*D, B, H), the final states (forward: at each sequence's length; reverse: at
        its first step), ordered as torch's.
        """
        where = "ElmanRNN.forward"
        with self._exclusive(where):
            return self._forward(x, h0, batch_first, lengths, where)

    def _forward(self, x, h0, batch_first, lengths, where):
        x, is_ids = self._input(x, where, batch_first)
        T, B = x.shape[:2]
        h0 = self._h0(h0, where, B)
        lengths = check_lengths(lengths, where, T, B)
        ws = self._workspace.setdefault("forward", {})
        Y, hs = current().model_forward(self.params, x, h0, lengths=lengths, workspace=ws,
                                        **self._shape_kwargs(), **self._compute_kwargs())
        return (Y.swapaxes(0, 1) if batch_first else Y), self._final_state(hs, None)

    __call__ = forward

    def forward_backward(self, x, y, h0=None, *, loss="cross_entropy", reduction="mean",
                         last_step_only=False, batch_first=False, h_out=None, dh_T=None,
                         lengths=None):
        """Forward, loss and backprop through time; overwrites ``grads``.

        x: float (T, B, I) or integer token ids (T, B).
        y: for loss="cross_entropy", integer classes (T, B), or (B,) with last_step_only;
           for loss="mse", floats (T, B, O), or (B, O) with last_step_only.
        h0: (L*D, B, H), or (B, H) for one layer and direction; zeros if None.
        batch_first: x and y are (B, T, ...).
        reduction: "mean" averages over every target element (T*B tokens, B with
        last_step_only, T*B*O values for mse), as torch does; "sum" adds them.
        lengths: (B,) ints, 1 <= lengths[b] <= T: padded steps give no loss and no gradient
        ("mean" averages over the valid steps; their targets may hold anything in range);
        with last_step_only, the output at each sequence's own last step is scored.

        h_out: a float array of the model's dtype, shaped as h0, to receive the final states
        instead of a new array (it may be h0 itself): with it, and inputs of unchanged
        shapes, a training step allocates no array at all.

        dh_T: shaped as h0, a gradient arriving on the final states from outside (a model
        chained after this one), added to the loss's. After the call ``grad_h0`` holds the
        gradient with respect to h0, to pass on to a model chained before this one.

        Dropout (if the model has it) applies here, with a new mask at every call.

        Returns (loss, h_n): the loss as a Python float and the final hidden states
        (L*D, B, H) (or h_out), to carry into the next window of truncated BPTT.
        Raises NonFiniteError when the loss is NaN or infinite (grads are then not written).
        """
        where = "ElmanRNN.forward_backward"
        with self._exclusive(where):
            return self._forward_backward(where, x, y, h0, loss, reduction, last_step_only,
                                          batch_first, h_out, dh_T, lengths)

    def _forward_backward(self, where, x, y, h0, loss, reduction, last_step_only,
                          batch_first, h_out, dh_T, lengths):
        x, is_ids, y, h0, h_out, lengths, ws = self._step_inputs(
            where, x, y, h0, loss, reduction, last_step_only, batch_first, h_out, lengths)
        B, H = x.shape[1], self.hidden_size
        dh_T = self._h0(dh_T, where, B, name="dh_T")
        dh0 = _workspace.array(ws, "dh0", (self.num_states, B, H), self.dtype)
        self._grad_h0 = None
        self._last_ids = x if is_ids else None
        value, hs = current().model_forward_backward(
            self.params, self.grads, x, y, h0, loss=loss, reduction=reduction,
            last_step_only=bool(last_step_only), dh0=dh0, dh_T=dh_T, lengths=lengths,
            workspace=ws, **self._shape_kwargs(), **self._compute_kwargs(),
            **self._dropout_draw())
        self._grad_h0 = dh0
        return value, self._final_state(hs, h_out)

    def gauss_newton(self, x, h0=None, *, loss="cross_entropy", reduction="mean",
                     last_step_only=False, lengths=None, batch_first=False):
        """The Gauss-Newton matrix G = Jᵀ H_L J of this model's loss on the batch x, as an
        operator (:class:`elman.gauss_newton.GaussNewton`): ``G.matvec(v, damping=λ,
        structural_damping=μ)`` is (G + λ I + λ μ c G_S) v for a flat v (n,) in the layout of
        ``params``. Products reuse one forward while ``params`` keep their values: the
        operator to hand conjugate gradient. Arguments as ``forward_backward``'s, without
        the targets (G does not depend on them)."""
        from .gauss_newton import GaussNewton
        return GaussNewton(self, x, h0, loss=loss, reduction=reduction,
                           last_step_only=last_step_only, lengths=lengths,
                           batch_first=batch_first)

    def gauss_newton_product(self, v, x, h0=None, *, loss="cross_entropy", reduction="mean",
                             last_step_only=False, lengths=None, batch_first=False,
                             damping=0.0, structural_damping=0.0):
        """One Gauss-Newton product, (G + damping I + damping * structural_damping * c G_S) v.

        v: (n,) floats in the layout of ``params``; x, h0, loss, reduction, last_step_only,
        lengths, batch_first: as ``forward_backward`` takes them (the loss and scoring are
        the same). G = Jᵀ H_L J, J the Jacobian of the scored outputs (logits, or MSE
        predictions) with respect to ``params`` and H_L the loss's Hessian with respect to
        those outputs (per row diag(p) - p pᵀ for softmax cross-entropy, 2 I for MSE, divided
        as the reduction divides the loss). G_S = J_Hᵀ J_H, J_H the Jacobian of the hidden
        states of every layer and direction at the valid steps, and c = 1/(valid steps)
        under "mean", 1 under "sum": the structural damping of Martens & Sutskever (2011)
        with squared error on the states (:mod:`elman.gauss_newton` has the details).

        Returns an (n,) array of the model's dtype. Each call runs the forward anew: for
        repeated products on one batch (conjugate gradient), use ``gauss_newton``.
        """
        from .gauss_newton import GaussNewton
        where = "ElmanRNN.gauss_newton_product"
        return GaussNewton(self, x, h0, loss=loss, reduction=reduction,
                           last_step_only=last_step_only, lengths=lengths,
                           batch_first=batch_first, where=where).matvec(
            v, damping=damping, structural_damping=structural_damping)

    @property
    def last_input_ids(self):
        """The token ids (T, B) of the last forward_backward (None if its input was dense, or
        before any call): the rows of W_xh whose gradient may be nonzero, which
        ``Adagrad(..., sparse_rows=True)`` updates alone."""
        return getattr(self, "_last_ids", None)

    @property
    def grad_h0(self):
        """The gradient of the last forward_backward's loss with respect to its h0,
        (L*D, B, H), read-only and valid until the next call (copy it to keep it); None before
        any call and after elman.train_step (which does not compute it)."""
        g = getattr(self, "_grad_h0", None)
        if g is None:
            return None
        view = g.view()
        view.flags.writeable = False
        return view

    def _step_inputs(self, where, x, y, h0, loss, reduction, last_step_only, batch_first,
                     h_out, lengths=None):
        """Validated (x, is_ids, y, h0 or None, h_out or None, lengths or None, workspace)
        of a training step."""
        choice(loss, "loss", tuple(LOSSES), where=where)
        choice(reduction, "reduction", tuple(REDUCTIONS), where=where)
        last_step_only = bool(last_step_only)
        ws = self._workspace.setdefault("train", {})
        x, is_ids = self._input(x, where, batch_first, ws)
        T, B = x.shape[:2]
        h0 = self._h0(h0, where, B)
        y = self._targets(y, where, loss, T, B, last_step_only, batch_first, ws)
        if lengths is not None:
            lengths = check_lengths(lengths, where, T, B,
                                    out=_workspace.array(ws, "lengths", (B,), np.int64))
        if h_out is not None:  # checked as the states are; kept as given, to be returned
            check_states(self._own(h_out, "h_out", where), "h_out", where, self.dtype,
                         self._stack, B, self.hidden_size, writable=True, finite=False)
            if np.may_share_memory(h_out, self.params):
                raise ValueError(f"{where}: h_out and the model's params share memory")
        return x, is_ids, y, h0, h_out, lengths, ws

    def _final_state(self, hs, h_out):
        """The final states (L*D, B, H) from hs ((L*D, T+1, B, H), or (T+1, B, H) for one
        slab, as the backends return it), as a new array or written into h_out."""
        S, H = self.num_states, self.hidden_size
        if hs.ndim == 3:
            hs = hs[None]
        B = hs.shape[2]
        out = np.empty((S, B, H), self.dtype) if h_out is None else h_out.reshape(S, B, H)
        for k, h in enumerate(_workspace.final_states(hs, self._stack.directions)):
            out[k] = h
        return out if h_out is None else h_out

    def sample(self, n, start=0, *, batch=None, h0=None, temperature=1.0, seed=None,
               return_hidden=False):
        """Generate n token ids, feeding each back as the next input (a character or token
        model: output_size <= input_size); with ``batch=B``, B independent streams at once.

        Parameters
        ----------
        n : int
            Ids to generate (per stream).
        start : int or array of int, shape (B,)
            The id fed at the first step (e.g. the last id of a prompt); with ``batch``, one
            id for every stream or one per stream.
        batch : int, optional
            B >= 1 streams in one C call: each step's products are (B, H) @ (H, H), so the
            streams share the weights' trips through the cache. None (default): one stream.
        h0 : array of float, optional
            The states to start from, e.g. the h_n of a forward pass over the prompt; zeros
            if None. One stream: (L, 1, H) or (L, H) ((H,) also for one layer). ``batch=B``:
            (L, B, H) ((B, H) also for one layer).
        temperature : float
            The logits are divided by it before the softmax (< 1 sharper, > 1 flatter); 0
            picks the likeliest id at every step.
        seed : int, numpy.random.SeedSequence or None
            For a reproducible draw; None for fresh entropy. With ``batch``, stream b draws
            from the child ``SeedSequence(seed, spawn_key=(b,))`` (for a SeedSequence seed,
            its spawn key extended by b), the generator of a one-stream call with that seed.
            From the same start and state that call draws the same ids up to rounding: the
            batched products sum in another order (rows go four at a time), and a model
            whose states amplify small differences can take another branch of the draw
            after some hundreds of steps (as the NumPy backend and the kernel paths can).
        return_hidden : bool
            Also return the final states.

        Returns
        -------
        ids : ndarray of int64, shape (n,), or (B, n) with ``batch``
        h_n : ndarray, shape (L, 1, H), or (L, B, H) with ``batch``
            Only with ``return_hidden``.

        Unidirectional models only. The C backend generates everything in one call.

        >>> import elman
        >>> m = elman.ElmanRNN(65, 100, 65)
        >>> m.sample(5, start=3, seed=0).shape
        (5,)
        >>> m.sample(5, start=3, batch=4, seed=0).shape
        (4, 5)
        """
        where = "ElmanRNN.sample"
        with self._exclusive(where):
            return self._sample(where, n, start, batch, h0, temperature, seed, return_hidden)

    def _sample(self, where, n, start, batch, h0, temperature, seed, return_hidden):
        I, H, O, L = self.input_size, self.hidden_size, self.output_size, self.num_layers
        if self.bidirectional:
            raise ValueError(f"{where}: a bidirectional model reads the whole sequence before "
                             f"its first output; it cannot generate one token at a time")
        n, start, temperature, B = check_sample_args(where, I, O, n, start, "start",
                                                     temperature, batch)
        rows = 1 if B is None else B
        if h0 is None:
            h = np.zeros((L, rows, H), self.dtype)
        else:
            arr = as_array(h0, "h0", where=where)
            if arr.dtype.kind != "f":
                raise TypeError(f"{where}: h0 must hold floats, got dtype {arr.dtype}")
            if B is None:
                shapes = ((L, H), (L, 1, H)) + (((H,), (1, 1, H)) if L == 1 else ())
            else:
                shapes = ((L, B, H),) + (((B, H),) if L == 1 else ())
            if arr.shape not in shapes:
                raise ValueError(f"{where}: h0 has shape {arr.shape}, expected one of "
                                 f"{', '.join(str(sh) for sh in shapes)}")
            h = float_array(np.array(arr, dtype=self.dtype).reshape(L, rows, H), "h0",
                            where=where, finite=True)
        state = check_seed(seed, where) if B is None else check_seeds(seed, where, B)
        ids, _ = current().model_sample(self.params, n, start, h, state, input_size=I,
                                        hidden_size=H, output_size=O,
                                        nonlinearity=self.nonlinearity,
                                        temperature=temperature, num_layers=L,
                                        workspace=self._workspace.setdefault("sample", {}))
        return (ids, h) if return_hidden else ids

    # ---- PyTorch interchange -------------------------------------------------------------

    @classmethod
    def from_torch(cls, rnn, linear, *, dtype=None):
        """An ElmanRNN holding the weights of ``torch.nn.RNN`` (any num_layers, either
        direction, its dropout) followed by ``torch.nn.Linear``. torch stores the transposes
        of elman's matrices and two hidden biases, which add up to ``b_h``. dtype: the
        model's (default: the torch weights', float32 or float64)."""
        return _interchange.from_torch(cls, rnn, linear, dtype=dtype)

    def to_torch(self):
        """(torch.nn.RNN, torch.nn.Linear) computing what this model computes (time-major,
        as elman; set ``rnn.batch_first`` for batch-first input), with the same num_layers,
        bidirectional and dropout. b_h goes to bias_ih; bias_hh is zero."""
        return _interchange.to_torch(self)

    def __repr__(self):
        return (f"ElmanRNN(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, nonlinearity={self.nonlinearity!r}, "
                + (f"num_layers={self.num_layers}, " if self.num_layers != 1 else "")
                + ("bidirectional=True, " if self.bidirectional else "")
                + (f"dropout={self.dropout}, " if self.dropout else "") +
                f"dtype={self.dtype.name!r}, "
                + (f"compute_dtype={self._compute!r}, " if self._compute == "bfloat16" else "")
                + f"seed={self.seed!r}, init={self.init!r}) "
                f"# {self.num_params} parameters")


def check_pair(where, model, opt):
    """That ``opt`` (an Adagrad or SGD) updates ``model`` (an ElmanRNN) in one fused pass
    with the training step (TypeError or ValueError otherwise)."""
    if not isinstance(model, ElmanRNN):
        raise TypeError(f"{where}: model must be an elman.ElmanRNN, got {type(model).__name__}")
    if not isinstance(opt, (Adagrad, SGD)):
        raise TypeError(f"{where}: opt must be an elman.Adagrad or elman.SGD, got "
                        f"{type(opt).__name__}")
    if opt.params is not model.params and not (
            np.may_share_memory(opt.params, model.params)
            and opt.params.shape == model.params.shape):
        raise ValueError(f"{where}: opt does not update this model's parameters")
    if getattr(opt, "lr_scales", None):
        raise ValueError(f"{where}: an Adagrad with lr_scales updates in several passes; "
                         f"call model.forward_backward(...) and opt.step() instead")


def train_step(model, opt, x, y, h0=None, *, loss="cross_entropy", reduction="mean",
               last_step_only=False, batch_first=False, h_out=None, lengths=None):
    """Forward, loss, backprop through time, gradient clipping and the optimizer's update,
    in one C call with no Python between the stages.

    The same, bit for bit, as::

        loss, h_T = model.forward_backward(x, y, h0, ...)   # same arguments
        opt.step()

    model: an ElmanRNN; opt: the Adagrad or SGD that updates it. Arguments and shapes as in
    ``ElmanRNN.forward_backward``. Returns (loss, h_T). Raises NonFiniteError when the loss
    or the gradient norm is not finite (nothing is updated then), or when the update made a
    parameter non-finite (the update has been applied, as ``opt.step()`` would have).

    >>> import numpy as np, elman
    >>> m = elman.ElmanRNN(20, 16, 20)
    >>> opt = elman.Adagrad(m, lr=0.05, max_grad_norm=5.0)
    >>> x = np.random.default_rng(0).integers(0, 20, size=(9, 4))
    >>> loss, h = elman.train_step(m, opt, x[:-1], x[1:])
    >>> opt.steps
    1
    """
    return run_train_step("train_step", model, opt, x, y, h0, loss=loss, reduction=reduction,
                          last_step_only=last_step_only, batch_first=batch_first,
                          h_out=h_out, lengths=lengths)


def run_train_step(where, model, opt, x, y, h0=None, *, loss="cross_entropy",
                   reduction="mean", last_step_only=False, batch_first=False, h_out=None,
                   lengths=None):
    """train_step, its errors naming ``where`` (elman.TrainStep's long way calls it)."""
    check_pair(where, model, opt)
    with model._exclusive(where):
        x, is_ids, y, h0, h_out, lengths, ws = model._step_inputs(
            where, x, y, h0, loss, reduction, last_step_only, batch_first, h_out, lengths)
        model._grad_h0 = None  # not computed by the fused step: no stale value from before
        fused = opt.fused_update()
        if fused is None:  # the sparse-row update: the two calls, unfused
            value, hs = current().model_forward_backward(
                model.params, model.grads, x, y, h0, loss=loss, reduction=reduction,
                last_step_only=bool(last_step_only), lengths=lengths, workspace=ws,
                **model._shape_kwargs(), **model._compute_kwargs(), **model._dropout_draw())
            model._last_ids = x if is_ids else None
            opt.step()
            return value, model._final_state(hs, h_out)
        state, update = fused
        value, norm, stage, hs = current().model_train_step(
            model.params, model.grads, state, x, y, h0, loss=loss, reduction=reduction,
            last_step_only=bool(last_step_only), lengths=lengths, workspace=ws,
            **model._shape_kwargs(), **model._compute_kwargs(), **model._dropout_draw(),
            **update)
        if stage == 1:
            raise NonFiniteError(f"{where}: the loss is not finite ({value}); nothing was "
                                 f"updated")
        opt.record_fused_step(norm, applied=stage != 2)
        if stage == 2:
            raise NonFiniteError(f"{where}: the gradient norm is {norm}; nothing was updated")
        if stage == 3:
            raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                                 f"parameter non-finite (the update was applied)")
        return value, model._final_state(hs, h_out)


__all__ = ["ElmanRNN", "train_step"]
