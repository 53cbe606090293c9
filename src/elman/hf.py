"""Hessian-free optimization: truncated conjugate gradient on a damped Gauss-Newton system.

One iteration of :class:`HessianFree` (Martens 2010, "Deep learning via Hessian-free
optimization"; Martens & Sutskever 2011, "Learning recurrent neural networks with
Hessian-free optimization"; the practical recipe of Martens & Sutskever 2012, "Training
deep and recurrent networks with Hessian-free optimization"):

1. the loss f(θ) and its gradient g on the whole batch (``forward_backward``);
2. the curvature on a subset of its sequences: the Gauss-Newton matrix G
   (:mod:`elman.gauss_newton`), damped, A = G + λ I (+ λ μ c G_S, structural damping);
3. preconditioned conjugate gradient on A d = -g, started from the previous solution times
   ``cg_decay``, stopped by Martens' relative-progress rule: with φ(d) = ½ dᵀA d + gᵀd and
   k = max(10, 0.1 i), stop at iteration i > k when φ_i < 0 and
   (φ_i - φ_{i-k}) / φ_i < k ε (ε = ``cg_tolerance``), or after ``max_cg_iters``;
4. CG backtracking: of the iterates saved at i = ⌈1.3^j⌉ and the last, the one where the true
   loss f(θ + d) stops decreasing, going back from the last;
5. the Levenberg-Marquardt rule on λ, from the reduction ratio ρ = (f(θ + d) - f(θ)) /
   (q(d) - q(0)), q the undamped quadratic model gᵀd + ½ dᵀG d: ρ < 1/4 → λ × 3/2,
   ρ > 3/4 → λ × 2/3;
6. an Armijo backtracking line search on θ + α d (α = 1, 0.8, 0.64, ...; accept when
   f(θ + α d) <= f(θ) + c α gᵀd, c = 10⁻²); no acceptable α: the step is rejected.

The preconditioner (Martens 2010, §4.7) is M = (diag(D) + λ)^ξ, ξ = 0.75, D the mean of the
squared per-sequence gradients over (at most ``preconditioner_sequences`` of) the curvature
subset, scaled as G is (1/b under "mean", B/b under "sum"): an empirical-Fisher diagonal, the
one Martens found to work for HF.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._validate import NonFiniteError, choice, positive_int, real
from . import kernels
from .kernels import LOSSES, REDUCTIONS
from .layout import scored_rows

__all__ = ["HessianFree", "HFStep", "conjugate_gradient"]

PRECONDITIONERS = ("martens", None)


class HFStep(NamedTuple):
    """What one HessianFree iteration did (each a Python scalar)."""
    loss: float            # f(θ) before the step, on the whole batch
    new_loss: float        # f after the step (= loss when it was rejected)
    damping: float         # λ the CG system was solved with
    next_damping: float    # λ after the Levenberg-Marquardt rule
    rho: float             # the reduction ratio of the chosen iterate
    cg_iters: int          # CG iterations run
    backtrack: int         # the CG iteration whose iterate was chosen
    step_size: float       # α of the line search (0: the step was rejected)
    grad_norm: float       # ‖g‖
    predicted: float       # q(d) - q(0), the undamped model's predicted change
    cg_stop: str           # "progress", "max_iters", "residual" or "curvature"
    curvature_size: int    # sequences the curvature was computed on


def conjugate_gradient(matvec, b, x0=None, *, precondition=None, max_iters=250, min_iters=1,
                       tolerance=5e-4, save=None):
    """Preconditioned conjugate gradient on A x = b (A symmetric positive definite), with
    Martens' relative-progress stopping rule on φ(x) = ½ xᵀA x - bᵀx.

    matvec(v) -> A v; b (n,); x0 (n,) or None for zeros; precondition(r) -> M⁻¹ r or None.
    Stops at iteration i >= min_iters when i > k = max(10, ⌈0.1 i⌉), φ_i < 0 and
    (φ_i - φ_{i-k}) / φ_i < k · tolerance ("progress"), at max_iters ("max_iters"), when the
    residual is zero ("residual"), or when a direction has pᵀA p <= 0 ("curvature").
    save: a sorted list of iteration numbers whose iterates to keep.

    Returns (x, iterates, phis, reason): x the last iterate, iterates a list of (i, x_i) for
    the saved i (and the last), phis φ after each iteration (φ_0 first).
    """
    b = np.asarray(b)
    x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=b.dtype, copy=True)
    Ax = matvec(x) if x0 is not None and np.any(x) else np.zeros_like(b)
    r = b - Ax
    y = precondition(r) if precondition is not None else r
    p = y.copy()
    ry = float(np.dot(r, y))
    phi = 0.5 * float(np.dot(x, Ax)) - float(np.dot(b, x))
    phis = [phi]
    save = sorted(set(save or ()))
    iterates = []
    reason = "max_iters"
    i = 0
    while i < max_iters:
        if ry == 0.0:
            reason = "residual"
            break
        Ap = matvec(p)
        pAp = float(np.dot(p, Ap))
        if not pAp > 0:
            reason = "curvature"
            break
        alpha = ry / pAp
        x += alpha * p
        r -= alpha * Ap
        y = precondition(r) if precondition is not None else r
        ry_new = float(np.dot(r, y))
        p *= ry_new / ry
        p += y
        ry = ry_new
        i += 1
        # φ(x) = ½ xᵀ(A x) - bᵀx = -½ xᵀ(b + r), since A x = b - r
        phi = -0.5 * float(np.dot(x, b + r))
        phis.append(phi)
        if i in save:
            iterates.append((i, x.copy()))
        k = max(10, int(math.ceil(0.1 * i)))
        if i >= min_iters and i > k and phi < 0 and (phi - phis[i - k]) / phi < k * tolerance:
            reason = "progress"
            break
    if not iterates or iterates[-1][0] != i:
        iterates.append((i, x.copy()))
    return x, iterates, phis, reason


class HessianFree:
    """Hessian-free optimization of an :class:`elman.ElmanRNN` (module docstring: the
    algorithm and the papers it follows).

    Parameters
    ----------
    model : ElmanRNN
        Updated in place; its ``grads`` are overwritten by every step. Dropout must be 0
        (the objective HF compares across its evaluations must be deterministic).
    damping : float
        The initial Tikhonov damping λ > 0, adapted by the Levenberg-Marquardt rule from
        the first step on (so its start matters little; 1 by default).
    structural_damping : float
        μ >= 0: the weight of the structural damping term λ μ c G_S relative to λ
        (``elman train --task ...`` uses 1/30). 0: none.
    max_cg_iters, min_cg_iters : int
        Bounds on the CG iterations of one step: at most 250 by default (Martens &
        Sutskever 2011 allow 300), at least min(10, max_cg_iters) unless given.
    cg_decay : float
        ζ in [0, 1]: CG starts from ζ times the previous step's final CG iterate (0.95).
    cg_tolerance : float
        ε of the relative-progress stopping rule (5e-4, Martens 2010).
    preconditioner : "martens" or None
        (diag(D) + λ)^``preconditioner_exponent``, D the empirical Fisher diagonal
        (module docstring), or no preconditioning.
    preconditioner_exponent : float
        ξ, 0.75 (Martens 2010).
    preconditioner_sequences : int
        At most this many sequences of the curvature subset make D (each costs one
        forward_backward on one sequence): 100.
    line_search : bool
        Armijo backtracking on the chosen direction (True).
    armijo : float
        c of the Armijo condition (1e-2).
    min_damping : float
        λ never falls below this (1e-6), so that A stays positive definite.
    seed : int
        Seeds the draw of the curvature subsets.

    After each ``step`` the returned :class:`HFStep` is also appended to ``history``.
    """

    def __init__(self, model, *, damping=1.0, structural_damping=0.0, max_cg_iters=250,
                 min_cg_iters=None, cg_decay=0.95, cg_tolerance=5e-4, preconditioner="martens",
                 preconditioner_exponent=0.75, preconditioner_sequences=100,
                 line_search=True, armijo=1e-2, min_damping=1e-6, seed=0):
        where = "HessianFree"
        if not (hasattr(model, "gauss_newton") and hasattr(model, "forward_backward")):
            raise TypeError(f"{where}: expected an elman.ElmanRNN, got {type(model).__name__}")
        if model.dropout != 0:
            raise ValueError(f"{where}: the model has dropout {model.dropout}; Hessian-free "
                             f"steps compare losses across evaluations and need dropout=0")
        self.model = model
        self.damping = real(damping, "damping", where=where, minimum=0, strict=True)
        self.structural_damping = real(structural_damping, "structural_damping", where=where,
                                       minimum=0)
        self.max_cg_iters = positive_int(max_cg_iters, "max_cg_iters", where=where)
        self.min_cg_iters = (min(10, self.max_cg_iters) if min_cg_iters is None else
                             positive_int(min_cg_iters, "min_cg_iters", where=where, minimum=0))
        if self.min_cg_iters > self.max_cg_iters:
            raise ValueError(f"{where}: min_cg_iters ({self.min_cg_iters}) exceeds "
                             f"max_cg_iters ({self.max_cg_iters})")
        self.cg_decay = real(cg_decay, "cg_decay", where=where, minimum=0)
        if self.cg_decay > 1:
            raise ValueError(f"{where}: cg_decay must be in [0, 1], got {self.cg_decay}")
        self.cg_tolerance = real(cg_tolerance, "cg_tolerance", where=where, minimum=0,
                                 strict=True)
        choice(preconditioner, "preconditioner", PRECONDITIONERS, where=where)
        self.preconditioner = preconditioner
        self.preconditioner_exponent = real(preconditioner_exponent,
                                            "preconditioner_exponent", where=where, minimum=0)
        self.preconditioner_sequences = positive_int(preconditioner_sequences,
                                                     "preconditioner_sequences", where=where)
        self.line_search = bool(line_search)
        self.armijo = real(armijo, "armijo", where=where, minimum=0, strict=True)
        if self.armijo >= 1:
            raise ValueError(f"{where}: armijo must be in (0, 1), got {self.armijo}")
        self.min_damping = real(min_damping, "min_damping", where=where, minimum=0,
                                strict=True)
        self.seed = positive_int(seed, "seed", where=where, minimum=0)
        self._rng = np.random.default_rng(self.seed)
        self._direction = None  # the previous step's final CG iterate
        self.steps = 0
        self.history = []

    # ---- the pieces of a step ---------------------------------------------------------

    def _curvature_subset(self, curvature, B, where):
        """Indices (sorted) of the sequences the curvature is computed on."""
        if curvature is None:
            return np.arange(B)
        if isinstance(curvature, (float, np.floating)) and not isinstance(curvature, bool):
            frac = real(curvature, "curvature", where=where, minimum=0, strict=True)
            if frac > 1:
                raise ValueError(f"{where}: a curvature fraction must be in (0, 1], got {frac}")
            count = max(1, int(round(frac * B)))
        elif isinstance(curvature, (int, np.integer)) and not isinstance(curvature, bool):
            count = positive_int(curvature, "curvature", where=where)
            if count > B:
                raise ValueError(f"{where}: curvature asks for {count} sequences of a batch "
                                 f"of {B}")
        else:
            idx = np.asarray(curvature)
            if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
                raise TypeError(f"{where}: curvature must be None, a fraction in (0, 1], a "
                                f"count, or a 1-D array of sequence indices, got "
                                f"{type(curvature).__name__}")
            if idx.min() < 0 or idx.max() >= B:
                raise ValueError(f"{where}: curvature indices must lie in [0, {B})")
            return np.unique(idx)
        if count == B:
            return np.arange(B)
        return np.sort(self._rng.choice(B, size=count, replace=False))

    def _preconditioner_diag(self, x, y, h0, lengths, sub, kw, scale):
        """D: the mean squared per-sequence gradient over part of the subset, times
        ``scale`` (1 under "mean", B under "sum": scaled as G is)."""
        m = self.model
        use = sub[:self.preconditioner_sequences]
        D = np.zeros(m.num_params, np.float64)
        for b in use:
            m.forward_backward(x[:, b:b + 1], _take(y, [b], kw), _take_h0(h0, [b]),
                               lengths=None if lengths is None else lengths[b:b + 1], **kw)
            g = m.grads.astype(np.float64)
            D += g * g
        return D * (scale / len(use))

    def _loss_at(self, theta, x, y, h0, lengths, kw):
        """f(theta) on the whole batch by a forward pass alone (the model's parameters are
        left at theta); inf when the loss is not finite there. Every loss a step compares
        comes from here, so that no comparison mixes two ways of rounding."""
        m = self.model
        m.params[...] = theta
        try:
            Y, _ = m.forward(x, h0, lengths=lengths)
            return _scored_loss(Y, y, lengths, **kw)
        except NonFiniteError:
            return math.inf

    # ---- the step -----------------------------------------------------------------------

    def step(self, x, y, *, curvature=None, h0=None, lengths=None, loss="cross_entropy",
             reduction="mean", last_step_only=False, batch_first=False):
        """One Hessian-free iteration on the batch (x, y); returns an :class:`HFStep`.

        x, y, h0, lengths, loss, reduction, last_step_only, batch_first: as
        ``ElmanRNN.forward_backward`` takes them; the gradient and the losses are computed on
        the whole batch. curvature: the sequences the Gauss-Newton products use: None (all),
        a fraction in (0, 1] or a count of them (drawn afresh each step from the seeded
        generator), or an array of indices (Martens & Sutskever 2011: gradient on 10,000
        sequences, curvature on 1,000).
        """
        where = "HessianFree.step"
        m = self.model
        choice(loss, "loss", tuple(LOSSES), where=where)
        choice(reduction, "reduction", tuple(REDUCTIONS), where=where)
        x = np.asarray(x)
        y = np.asarray(y)
        last_step_only = bool(last_step_only)
        if batch_first:  # time-major from here on, so that a subset is x[:, idx]
            x = x.swapaxes(0, 1)
            if not last_step_only:
                y = y.swapaxes(0, 1)
        if x.ndim < 2:
            raise ValueError(f"{where}: x must be (T, B, I) floats or (T, B) token ids, got "
                             f"shape {x.shape}")
        B = x.shape[1]
        kw = dict(loss=loss, reduction=reduction, last_step_only=last_step_only)
        theta0 = m.params.copy()

        # 1. loss and gradient on the whole batch (which checks the batch)
        try:
            m.forward_backward(x, y, h0, lengths=lengths, **kw)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where}: {err}") from None
        g = m.grads.astype(m.dtype, copy=True)
        f0 = self._loss_at(theta0, x, y, h0, lengths, kw)
        gnorm = float(np.linalg.norm(g.astype(np.float64)))

        # 2. the curvature subset and its operator
        sub = self._curvature_subset(curvature, B, where)
        full = len(sub) == B
        xs = x if full else x[:, sub]
        ls = None if lengths is None else np.asarray(lengths)[sub]
        h0s = _take_h0(None if h0 is None else np.asarray(h0), sub)
        G = m.gauss_newton(xs, h0s, loss=loss, reduction=reduction,
                           last_step_only=last_step_only, lengths=ls)
        scale = 1.0 if reduction == "mean" else B / len(sub)  # G of the subset -> of the batch
        lam, mu = self.damping, self.structural_damping

        def A(v):
            return scale * G.matvec(v, damping=lam / scale, structural_damping=mu)

        precondition = None
        if self.preconditioner == "martens":
            D = self._preconditioner_diag(x, y, None if h0 is None else np.asarray(h0),
                                          None if lengths is None else np.asarray(lengths),
                                          sub, kw, 1.0 if reduction == "mean" else B)
            Minv = ((D + lam) ** -self.preconditioner_exponent).astype(m.dtype)
            precondition = Minv.__mul__   # r -> M^-1 r

        # 3. CG on A d = -g from the decayed previous solution
        x0 = None if self._direction is None else self.cg_decay * self._direction
        save = sorted({int(math.ceil(1.3 ** j)) for j in range(64)
                       if math.ceil(1.3 ** j) <= self.max_cg_iters})
        d, iterates, _, reason = conjugate_gradient(
            A, -g, x0, precondition=precondition, max_iters=self.max_cg_iters,
            min_iters=self.min_cg_iters, tolerance=self.cg_tolerance, save=save)
        self._direction = d.copy()
        cg_iters = iterates[-1][0]

        # 4. backtrack over the saved iterates on the true loss
        j = len(iterates) - 1
        f_best = self._loss_at(theta0 + iterates[j][1], x, y, h0, lengths, kw)
        while j > 0:
            f_prev = self._loss_at(theta0 + iterates[j - 1][1], x, y, h0, lengths, kw)
            if f_prev >= f_best:
                break
            j, f_best = j - 1, f_prev
        chosen_iter, dc = iterates[j]

        # 5. the reduction ratio against the undamped quadratic model; Levenberg-Marquardt
        m.params[...] = theta0
        Gd = scale * G.matvec(dc)
        predicted = float(np.dot(g.astype(np.float64), dc) + 0.5 * np.dot(dc, Gd))
        rho = (f_best - f0) / predicted if predicted < 0 else -math.inf
        if not math.isfinite(f_best):
            rho = -math.inf
        next_lam = lam
        if rho < 0.25:
            next_lam = lam * 1.5
        elif rho > 0.75:
            next_lam = max(lam * (2.0 / 3.0), self.min_damping)

        # 6. Armijo line search along the chosen iterate
        gd = float(np.dot(g.astype(np.float64), dc))
        alpha, f_new = 1.0, f_best
        if self.line_search:
            while not (f_new <= f0 + self.armijo * alpha * gd):
                alpha *= 0.8
                if alpha < 1e-4 or gd >= 0:
                    alpha, f_new = 0.0, f0
                    break
                f_new = self._loss_at(theta0 + alpha * dc, x, y, h0, lengths, kw)
        elif not f_new < f0:
            alpha, f_new = 0.0, f0
        m.params[...] = theta0 + alpha * dc if alpha > 0 else theta0
        self.damping = next_lam
        self.steps += 1
        info = HFStep(loss=f0, new_loss=float(f_new), damping=lam, next_damping=next_lam,
                      rho=float(rho), cg_iters=int(cg_iters), backtrack=int(chosen_iter),
                      step_size=float(alpha), grad_norm=gnorm, predicted=predicted,
                      cg_stop=reason, curvature_size=len(sub))
        self.history.append(info)
        return info

    # ---- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> dict:
        """λ, the previous CG solution, the step count and the curvature draws' generator:
        what ``load_state_dict`` needs to continue exactly as an uninterrupted run."""
        return dict(damping=self.damping, steps=self.steps,
                    direction=None if self._direction is None else self._direction.copy(),
                    rng=self._rng.bit_generator.state)

    def load_state_dict(self, sd: dict):
        where = "HessianFree.load_state_dict"
        for key in ("damping", "steps", "direction", "rng"):
            if key not in sd:
                raise ValueError(f"{where}: the state has no {key!r}")
        self.damping = real(sd["damping"], "damping", where=where, minimum=0, strict=True)
        self.steps = positive_int(sd["steps"], "steps", where=where, minimum=0)
        d = sd["direction"]
        if d is not None:
            d = np.asarray(d)
            if d.shape != (self.model.num_params,):
                raise ValueError(f"{where}: direction has shape {d.shape}, the model has "
                                 f"{self.model.num_params} parameters")
            d = d.astype(self.model.dtype, copy=True)
        self._direction = d
        self._rng.bit_generator.state = sd["rng"]

    def __repr__(self):
        return (f"HessianFree(damping={self.damping:g}, "
                f"structural_damping={self.structural_damping:g}, "
                f"max_cg_iters={self.max_cg_iters}, preconditioner={self.preconditioner!r})")


def _scored_loss(Y, y, lengths, *, loss, reduction, last_step_only):
    """forward_backward's loss from the outputs Y (T, B, O) of forward: the scored rows
    (each sequence's last step, or every valid step in time-major order) through the same
    loss kernel."""
    at = scored_rows(lengths, last_step_only, *Y.shape[:2])
    rows = np.ascontiguousarray(Y[at])
    target = y if last_step_only else y[at]
    if loss == "cross_entropy":
        return kernels.softmax_cross_entropy(rows, target.reshape(-1), reduction=reduction)[0]
    target = np.ascontiguousarray(target, dtype=rows.dtype).reshape(rows.shape)
    return kernels.mse_loss(rows, target, reduction=reduction)[0]


def _take(y, idx, kw):
    """The targets of the sequences idx (the batch axis: 0 with last_step_only, else 1)."""
    return y[idx] if kw["last_step_only"] else y[:, idx]


def _take_h0(h0, idx):
    if h0 is None:
        return None
    h0 = np.asarray(h0)
    return h0[:, idx] if h0.ndim == 3 else h0[idx]
