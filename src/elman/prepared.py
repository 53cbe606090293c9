"""``elman.TrainStep``: :func:`elman.train_step` prepared for one shape, so that a training
loop's steady state pays for little more than the C work.

``train_step`` checks and converts every argument on every call (any integer dtype of ids,
lists, batch-first layouts, strided arrays, lengths), which costs tens of microseconds: a
quarter of a small model's step. A ``TrainStep`` fixes the model, the optimizer, (T, B) and
the loss options once, owns its workspace, and on each call only checks that the arrays are
exactly what it was prepared for (their type, dtype, shape and C order: a handful of
attribute reads). The values are checked where C reads them (token ids and class targets
against their ranges, before anything is updated), and every input it does not take as it
is goes through ``train_step`` itself, so that any call gives the same result, bit for bit,
and the same errors.
"""
from __future__ import annotations

import time

import numpy as np

from . import _c_backend
from ._dispatch import current
from ._validate import NonFiniteError, choice, positive_int
from .kernels import LOSSES, REDUCTIONS
from .model import check_pair, run_train_step

__all__ = ["TrainStep"]

_INT64 = np.dtype(np.int64)


class TrainStep:
    """``train_step`` for batches of T steps and B sequences, with the shapes, buffers and
    options checked once, here: ``step(x, y, h0=None, *, h_out=None) -> (loss, h_T)`` is
    ``train_step(model, opt, x, y, h0, loss=..., reduction=..., last_step_only=...,
    h_out=h_out)``.

    Parameters
    ----------
    model : ElmanRNN
    opt : Adagrad or SGD
        The optimizer of ``model``; one that updates in one fused pass (not an Adagrad with
        ``lr_scales`` or ``sparse_rows``). Its settings (``lr`` and the rest) and step count
        are read at every call, so schedules that set ``opt.lr`` keep working.
    T, B : int
        Steps and sequences of every batch.
    loss, reduction, last_step_only :
        As in :meth:`ElmanRNN.forward_backward`.

    Raises
    ------
    TypeError, ValueError
        For a model or optimizer ``train_step`` refuses, an optimizer that does not update
        in one pass, or bad T, B or options.

    Examples
    --------
    >>> import numpy as np, elman
    >>> m = elman.ElmanRNN(20, 16, 20)
    >>> opt = elman.Adagrad(m, lr=0.05)
    >>> step = elman.TrainStep(m, opt, T=8, B=4)
    >>> x = np.random.default_rng(0).integers(0, 20, size=(9, 4))
    >>> loss, h = step(x[:-1], x[1:])
    >>> loss, h = step(x[:-1], x[1:], h)    # stateful: carry the state on
    >>> opt.steps, h.shape
    (2, (1, 4, 16))
    """

    def __init__(self, model, opt, T, B, *, loss="cross_entropy", reduction="mean",
                 last_step_only=False):
        where = "TrainStep"
        check_pair(where, model, opt)
        if opt.fused_update() is None:
            raise ValueError(f"{where}: this optimizer updates in several passes or by rows "
                             f"(lr_scales or sparse_rows); call model.forward_backward(...) "
                             f"and opt.step() instead")
        T = positive_int(T, "T", where=where)
        B = positive_int(B, "B", where=where)
        choice(loss, "loss", tuple(LOSSES), where=where)
        choice(reduction, "reduction", tuple(REDUCTIONS), where=where)
        self.model, self.opt, self.T, self.B = model, opt, T, B
        self.loss, self.reduction, self.last_step_only = loss, reduction, bool(last_step_only)
        I, H, O = model.input_size, model.hidden_size, model.output_size
        stack = model._stack
        dt = model.dtype
        S, D = model.num_states, stack.directions
        xent = loss == "cross_entropy"
        last = self.last_step_only
        self._dt, self._D, self._S = dt, D, S
        self._ids_shape, self._dense_shape = (T, B), (T, B, I)
        self._y = (_INT64 if xent else dt,
                   ((B,) if last else (T, B)) if xent else ((B, O) if last else (T, B, O)))
        self._xent = xent
        self._h_shape = (S, B, H)
        # C-contiguous strides of the prepared arrays: comparing a tuple is cheaper than
        # building an array's flags (a stricter test: a view that is contiguous with other
        # strides on a length-1 axis goes the long way, with the same result)
        isz = dt.itemsize
        self._ids_strides = (B * 8, 8)
        self._dense_strides = (B * I * isz, I * isz, isz)
        yshape = self._y[1]
        ysz = self._y[0].itemsize
        self._y_strides = tuple(int(np.prod(yshape[k + 1:], dtype=np.int64)) * ysz
                                for k in range(len(yshape)))
        self._h_strides = (B * H * isz, H * isz, isz)
        self._checked_out = None   # the last h_out found apart from params and grads
        state, u = opt.fused_update()
        self._state = state
        self._compute = model.compute_dtype
        self._prepared = _c_backend.PreparedTrainStep(
            dt, T, B, input_size=I, hidden_size=H, output_size=O,
            nonlinearity=model.nonlinearity, num_layers=stack.num_layers,
            bidirectional=stack.bidirectional, dropout=stack.dropout,
            dropout_lanes=model.dropout_lanes, loss=loss, reduction=reduction,
            last_step_only=last, params=model.params, grads=model.grads, state=state,
            optimizer=u["optimizer"], **model._compute_kwargs())

    def _general(self, x, y, h0, h_out):
        return run_train_step("TrainStep", self.model, self.opt, x, y, h0, loss=self.loss,
                              reduction=self.reduction, last_step_only=self.last_step_only,
                              h_out=h_out)

    def _state_ok(self, h, writable=False):
        """Whether h is None or a (L*D, B, H) array the prepared path can take."""
        if h is None:
            return True
        if type(h) is not np.ndarray or h.dtype != self._dt or h.shape != self._h_shape or \
                h.strides != self._h_strides:
            return False
        if not writable:
            return True
        if h is self._checked_out:   # held here, so its memory is the one checked
            return h.flags.writeable
        ok = h.flags.writeable and not (np.may_share_memory(h, self.model.params)
                                        or np.may_share_memory(h, self.model.grads))
        if ok:
            self._checked_out = h
        return ok

    def _is_ids(self, x, y, h0, h_out):
        """True (token ids) or False (dense input) when the arrays are exactly what this
        step was prepared for, else None (the long way)."""
        if type(x) is not np.ndarray or type(y) is not np.ndarray or \
                current() is not _c_backend or self.model._compute != self._compute or \
                not self._state_ok(h0) or not self._state_ok(h_out, writable=True):
            return None
        ydt, yshape = self._y
        if y.dtype != ydt or y.shape != yshape or y.strides != self._y_strides or \
                (not self._xent and np.may_share_memory(y, self.model.grads)):
            return None
        if x.dtype == _INT64 and x.shape == self._ids_shape and x.strides == self._ids_strides:
            return True
        if x.dtype == self._dt and x.shape == self._dense_shape and \
                x.strides == self._dense_strides and not np.may_share_memory(x, self.model.grads):
            return False
        return None

    def __call__(self, x, y, h0=None, *, h_out=None):
        """One training step.

        Parameters
        ----------
        x : ndarray, (T, B) int64 token ids or (T, B, I) floats of the model's dtype
        y : ndarray, (T, B) int64 class ids ((B,) with ``last_step_only``) for
            cross-entropy; (T, B, O) floats ((B, O)) for MSE
        h0 : ndarray (L*D, B, H) of the model's dtype, or None for zeros
        h_out : writable ndarray (L*D, B, H) of the model's dtype, or None
            Where to write h_T (it may be h0: a stateful loop then allocates nothing).

        These, time-major and C-contiguous, take the prepared path; anything else
        ``train_step`` accepts (other dtypes, lists, strided views, (B, H) states, another
        T) is handed to ``train_step``, with the same result.

        Returns
        -------
        loss : float
        h_T : ndarray (L*D, B, H), a new array or ``h_out``

        Raises
        ------
        TypeError, ValueError, NonFiniteError
            As ``train_step`` raises them, naming ``TrainStep``.
        """
        model, opt = self.model, self.opt
        # the prepared path takes exactly what it was made for; the rest goes the long way
        is_ids = self._is_ids(x, y, h0, h_out)
        fused = None if is_ids is None else opt.fused_update()
        if fused is None or fused[0] is not self._state:
            return self._general(x, y, h0, h_out)
        u = fused[1]
        if not model._busy.acquire(blocking=False):
            return self._general(x, y, h0, h_out)   # which raises: the model is in use
        out = np.empty(self._h_shape, self._dt) if h_out is None else h_out
        try:
            calls = model.dropout_calls
            seed = model._dropout_draw()["dropout_seed"] if model.dropout > 0 else 0
            model._grad_h0 = None
            try:
                value, norm, stage = self._prepared.run(x, is_ids, y, h0, out, u, seed)
            except ValueError:
                # an id or target out of range (checked by C before anything is updated)
                stage = None
        finally:
            model._busy.release()
        if stage is None or stage == 1:
            # nothing was updated: the long way, from the same dropout draw, raises what
            # train_step raises (naming the argument: an id out of range, a NaN in h0)
            model.dropout_calls = calls
            return self._general(x, y, h0, h_out)
        where = "TrainStep"
        opt.record_fused_step(None if u["max_grad_norm"] is None else norm,
                              applied=stage != 2)
        if stage == 2:
            raise NonFiniteError(f"{where}: the gradient norm is {norm}; nothing was updated")
        if stage == 3:
            raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                                 f"parameter non-finite (the update was applied)")
        return value, out

    def c_seconds(self, x, y, n=1000):
        """Seconds per step of the C work alone (for benchmarks: what a call costs beyond
        it is the Python layer's): the step run n times on this batch from zero states in
        one binding call, the model trained and ``opt.steps`` advanced n steps. x and y
        must be arrays the prepared path takes."""
        n = positive_int(n, "n", where="TrainStep.c_seconds")
        is_ids = self._is_ids(x, y, None, None)
        fused = None if is_ids is None else self.opt.fused_update()
        if fused is None or fused[0] is not self._state:
            raise ValueError("TrainStep.c_seconds: x and y must be C-contiguous arrays of "
                             "the prepared shapes and dtypes, on the C backend")
        model, opt = self.model, self.opt
        u = fused[1]
        seed = model._dropout_draw()["dropout_seed"] if model.dropout > 0 else 0
        with model._exclusive("TrainStep.c_seconds"):
            t0 = time.perf_counter()
            _, _, stage = self._prepared.run(x, is_ids, y, None, None, u, seed, repeat=n)
            seconds = time.perf_counter() - t0
        if stage:
            raise NonFiniteError("TrainStep.c_seconds: a step was not finite")
        for _ in range(n):
            opt.record_fused_step(None, applied=True)
        return seconds / n
