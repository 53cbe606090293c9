"""The Gauss-Newton matrix of a model's loss on one batch, as an operator: the curvature that
Hessian-free optimization (:class:`elman.HessianFree`) solves against with conjugate
gradient.

For parameters θ (the flat ``model.params``), scored outputs Y(θ) (the logits, or the MSE
predictions, at the steps that carry a loss) and the loss ℓ(Y) that ``forward_backward``
computes::

    G = Jᵀ H_L J        J = ∂Y/∂θ,   H_L = ∂²ℓ/∂Y²

    H_L per row, scaled as the reduction scales the loss:
        cross-entropy   diag(p) - p pᵀ    (p = softmax(Y_row));  × 1/N under "mean"
        MSE             2 I                                       × 1/(N·O) under "mean"

G is the Hessian with the terms of second derivatives of Y dropped: symmetric and positive
semi-definite everywhere, equal to the Hessian where the residual is zero. A product G v
costs one R-operator forward (the directional derivative R{H} = J_H v of every hidden state,
``elman.kernels.rnn_rforward``), H_L on R{Y}, and one backprop through time; the forward
states it linearizes about are computed once per parameter vector and reused.

Damping: ``matvec(v, damping=λ, structural_damping=μ)`` returns

    (G + λ I + λ μ c G_S) v,      G_S = J_Hᵀ J_H

where J_H is the Jacobian of the hidden states of every layer and direction at the valid
steps: G_S is the Gauss-Newton matrix of the distance ½ Σ_t,b ‖H_t(θ + v) − H_t(θ)‖² between
the states the current and the updated parameters make, and c = 1 / (number of valid (t, b)
steps: T·B, or Σ lengths) under "mean", 1 under "sum". This is Martens & Sutskever's (2011)
structural damping with squared error on the states as the distance (their paper allows any
distance whose Gauss-Newton matrix is available; squared error is defined for tanh and relu
alike and keeps G_S independent of the nonlinearity).
"""
from __future__ import annotations

import threading

import numpy as np

from ._dispatch import current
from ._model_args import check_lengths
from ._validate import NonFiniteError, as_array, choice, float_array, no_overlap, real
from .kernels import LOSSES, REDUCTIONS

__all__ = ["GaussNewton"]


class GaussNewton:
    """The (damped) Gauss-Newton matrix of ``model``'s loss on the batch ``x``, an
    (n, n) operator over the flat parameters (n = ``model.num_params``).

    Made by :meth:`elman.ElmanRNN.gauss_newton`; the arguments are those of
    ``forward_backward`` less the targets, which G does not depend on (for cross-entropy it
    depends on the softmax of the outputs, for MSE on nothing but J).

    The forward at the model's current parameters is computed at the first product and
    kept: later products reuse it while ``model.params`` hold the same values (they are
    compared with a copy at every product, so an optimizer step between products is
    noticed and the forward redone). With dropout, every product uses one set of masks,
    drawn when the operator is made (as ``forward_backward`` draws them).

    Attributes: ``shape`` (n, n), ``dtype``, ``forwards`` (how many forwards were run).
    """

    def __init__(self, model, x, h0=None, *, loss="cross_entropy", reduction="mean",
                 last_step_only=False, lengths=None, batch_first=False,
                 where="ElmanRNN.gauss_newton"):
        choice(loss, "loss", tuple(LOSSES), where=where)
        choice(reduction, "reduction", tuple(REDUCTIONS), where=where)
        self._matvec_where = "GaussNewton.matvec" if where == "ElmanRNN.gauss_newton" else where
        self.model = model
        x, _ = model._input(x, where, batch_first)
        T, B = x.shape[:2]
        self._x = np.array(x, copy=True)  # the batch is the operator's: later edits of x
        h0 = model._h0(h0, where, B)      # do not change G
        self._h0 = None if h0 is None else np.array(h0, copy=True)
        lengths = check_lengths(lengths, where, T, B)
        self._lengths = None if lengths is None else np.array(lengths, np.int64, copy=True)
        self.loss, self.reduction = loss, reduction
        self.last_step_only = bool(last_step_only)
        self._dropout = model._dropout_draw()
        self._ws = {}
        self._busy = threading.Lock()  # one product at a time: the workspace is shared
        self._cache = None
        self._seen = None     # the parameters the cache was made at
        self._backend = None  # and the backend that made it
        self.forwards = 0
        n = model.num_params
        self.shape = (n, n)
        self.dtype = model.dtype

    def _prepared(self):
        m = self.model
        backend = current()
        if self._cache is not None and self._backend is backend and self._unchanged():
            return self._cache
        # a prepare that fails may have overwritten the buffers the old cache points to
        self._cache = self._backend = None
        try:
            cache = backend.model_gauss_newton_prepare(
                m.params, self._x, self._h0, loss=self.loss,
                last_step_only=self.last_step_only, lengths=self._lengths, workspace=self._ws,
                **m._shape_kwargs(), **self._dropout)
        except NonFiniteError as err:
            raise err.renamed(self._matvec_where) from None
        self._cache = cache
        if self._seen is None:
            self._seen = m.params.copy()
            self._differs = np.empty(m.params.shape, bool)
        else:
            self._seen[...] = m.params
        self._backend = backend
        self.forwards += 1
        return self._cache

    def _unchanged(self):
        """Whether the parameters hold the bits they held at the prepare (NaN included),
        compared without allocating: a product allocates nothing once its shapes are
        known."""
        bits = np.uint32 if self.dtype == np.float32 else np.uint64
        np.not_equal(self._seen.view(bits), self.model.params.view(bits), out=self._differs)
        return not self._differs.any()

    def matvec(self, v, *, damping=0.0, structural_damping=0.0, out=None):
        """(G + λ I + λ μ c G_S) v (see the module docstring), λ = ``damping`` >= 0,
        μ = ``structural_damping`` >= 0.

        v: (n,) floats in the layout of ``model.params`` (cast to the model's dtype).
        out: an (n,) array of the model's dtype to write the product into (not v).
        Returns the (n,) product, an array of the model's dtype (``out`` if given).
        Raises NonFiniteError when the model's outputs on this batch are not finite.
        """
        where = self._matvec_where
        n = self.shape[0]
        v = as_array(v, "v", where=where)
        if v.dtype.kind != "f":
            raise TypeError(f"{where}: v must hold floats, got dtype {v.dtype}")
        if v.shape != (n,):  # before any copy: a broadcast view may be huge
            raise ValueError(f"{where}: v has shape {v.shape}, expected ({n},) (the flat "
                             f"layout of the model's params)")
        v = float_array(np.ascontiguousarray(v, dtype=self.dtype), "v", where=where,
                        shape=(n,), finite=True)
        damping = real(damping, "damping", where=where, minimum=0)
        structural_damping = real(structural_damping, "structural_damping", where=where,
                                  minimum=0)
        if out is not None:
            out = float_array(out, "out", where=where, dtype=self.dtype, shape=(n,),
                              writable=True)
            no_overlap(where, {"out": out}, {"v": v, "params": self.model.params})
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"{where}: this operator is computing a product in another "
                               f"thread (its workspace is shared); give each thread its own "
                               f"operator (model.gauss_newton(...))")
        try:
            cache = self._prepared()
            return current().model_gauss_newton_product(
                self.model.params, v, cache, reduction=self.reduction, damping=damping,
                structural_damping=structural_damping, out=out)
        finally:
            self._busy.release()

    __call__ = matvec

    def as_linear_operator(self, *, damping=0.0, structural_damping=0.0):
        """The damped matrix as a ``scipy.sparse.linalg.LinearOperator`` (for
        ``scipy.sparse.linalg.cg`` and friends)."""
        from scipy.sparse.linalg import LinearOperator

        def mv(v):
            return self.matvec(np.ravel(v), damping=damping,
                               structural_damping=structural_damping)
        return LinearOperator(self.shape, matvec=mv, rmatvec=mv, dtype=self.dtype)

    def __repr__(self):
        return (f"GaussNewton(n={self.shape[0]}, loss={self.loss!r}, "
                f"reduction={self.reduction!r}, T={self._x.shape[0]}, B={self._x.shape[1]})")
