"""Nonlinear conjugate gradient with a strong-Wolfe line search: a full-batch optimizer
with torch.optim.LBFGS's calling convention (``loss = opt.step(closure)``).

Two parts, top to bottom: :func:`strong_wolfe`, the line search on a function of one
variable (Nocedal & Wright, Numerical Optimization, 2nd ed., Algorithms 3.5 and 3.6), and
:class:`NonlinearCG`, the CG iteration over a model's flat parameter buffer that calls it.
Everything scalar is float64; so are the optimizer's buffers, whatever the params' dtype.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._validate import NonFiniteError, all_finite, choice, positive_int, real
from .optim import Optimizer

__all__ = ["NonlinearCG", "strong_wolfe", "LineSearchResult", "BETAS"]

#: The beta formulas NonlinearCG knows, by name.
BETAS = ("PR+", "PR", "FR", "HS", "DY")


# ---------------------------------------------------------------------------------------
# The line search. phi(t) = f(x + t d), dphi(t) = grad f(x + t d) . d; t = step length.

class LineSearchResult(NamedTuple):
    """What :func:`strong_wolfe` found: the step, phi and dphi there, the number of
    evaluations it made, and whether the strong Wolfe conditions hold at the step."""
    step: float
    value: float
    slope: float
    evals: int
    wolfe: bool


def _cubic_minimizer(t1, f1, g1, t2, f2, g2):
    """Minimizer of the cubic matching phi and dphi at t1 and t2 (NW eq. 3.59), or None
    when that cubic has no local minimizer."""
    d1 = g1 + g2 - 3.0 * (f1 - f2) / (t1 - t2)
    disc = d1 * d1 - g1 * g2
    if not disc >= 0.0:        # also False for NaN
        return None
    d2 = math.copysign(math.sqrt(disc), t2 - t1)
    denom = g2 - g1 + 2.0 * d2
    if denom == 0.0:
        return None
    t = t2 - (t2 - t1) * (g2 + d2 - d1) / denom
    return t if math.isfinite(t) else None


def _quadratic_minimizer(t1, f1, g1, t2, f2):
    """Minimizer of the quadratic matching phi(t1), dphi(t1) and phi(t2) (NW eq. 3.57),
    or None when that quadratic is not convex."""
    h = t2 - t1
    curvature = f2 - f1 - g1 * h            # = a * h^2 for the quadratic's a
    if not curvature > 0.0:
        return None
    t = t1 - g1 * h * h / (2.0 * curvature)
    return t if math.isfinite(t) else None


def _interpolate(lo, hi):
    """A trial step inside the bracket [lo, hi] (each a (t, f, g) triple): the cubic's
    minimizer, else the quadratic's, else the midpoint; clamped to the middle 80% of the
    bracket, so that each trial shrinks the bracket by at least a tenth. A non-finite
    phi at hi gives the midpoint: an overflowing step is halved."""
    (tl, fl, gl), (th, fh, gh) = lo, hi
    t = None
    if math.isfinite(fh):
        if math.isfinite(gh):
            t = _cubic_minimizer(tl, fl, gl, th, fh, gh)
        if t is None:
            t = _quadratic_minimizer(tl, fl, gl, th, fh)
    a, b = min(tl, th), max(tl, th)
    if t is None:
        t = 0.5 * (a + b)
    margin = 0.1 * (b - a)
    return min(max(t, a + margin), b - margin)


def strong_wolfe(phi, value0, slope0, step, *, c1=1e-4, c2=0.1, max_evals=25,
                 min_width=0.0, on_best=None) -> LineSearchResult:
    """Find a step t > 0 satisfying the strong Wolfe conditions::

        phi(t) <= phi(0) + c1 * t * dphi(0)          (sufficient decrease, "Armijo")
        |dphi(t)| <= c2 * |dphi(0)|                   (curvature)

    by Nocedal & Wright's Algorithm 3.5 (bracketing) and 3.6 (zoom).

    phi: ``phi(t) -> (value, slope)``, the function and its derivative at step t.
    value0, slope0: phi(0) and dphi(0), with slope0 < 0 (a descent direction).
    step: the first trial step (> 0). c1, c2: 0 < c1 < c2 < 1.
    max_evals: at most this many calls of phi.
    min_width: the zoom stops once the bracket is narrower than this (in units of t).
    on_best: called with no argument right after each evaluation whose step becomes the
        one the search would return (so a caller can copy what that evaluation wrote).

    Bracketing: trial steps grow (by the cubic through the last two trials, clamped to
    [t + 0.01 (t - t_prev), 10 t]) until one fails the sufficient decrease test, does not
    improve on the previous trial, or has dphi >= 0; then [lo, hi] brackets a Wolfe step,
    lo being the best trial so far. Zoom: trials from cubic interpolation of lo and hi
    (quadratic when the cubic has no minimizer, bisection when phi(hi) is not finite),
    safeguarded to the middle 80% of the bracket. A NaN or infinite value or slope counts
    as a failed sufficient decrease test, so the step shrinks. Unlike NW's pseudocode, a
    trial that passes both conditions is accepted before it is compared with lo: close to
    a minimizer the values of lo and the trial agree to rounding, and the comparison would
    throw away a Wolfe step on noise (More & Thuente's function 2 from t = 10 took 27
    evaluations that way without finding one; 15 with this order).

    Returns a :class:`LineSearchResult`: a step passing both conditions (``wolfe`` True),
    or, when max_evals or min_width ended the search first (``wolfe`` False), the step
    with the lowest value among the evaluated ones that passed the sufficient decrease
    test (0, with value0 and slope0, if none did).

    >>> r = strong_wolfe(lambda t: ((t - 2.0) ** 2, 2.0 * (t - 2.0)), 4.0, -4.0, 1.0)
    >>> round(r.step, 12), r.wolfe
    (2.0, True)
    """
    evals = 0
    prev = (0.0, value0, slope0)       # the previous trial: the best one while bracketing
    t = step
    while evals < max_evals:
        f, g = phi(t)
        evals += 1
        cur = (t, f, g)
        armijo = math.isfinite(f) and math.isfinite(g) and f <= value0 + c1 * t * slope0
        if armijo and abs(g) <= -c2 * slope0:
            return _accept(cur, evals, on_best)
        if not armijo or f >= prev[1]:
            return _zoom(phi, prev, cur, value0, slope0, c1, c2, max_evals, evals,
                         min_width, on_best)
        if on_best is not None:
            on_best()
        if g >= 0.0:                    # passed a minimizer: the bracket is [t, t_prev]
            return _zoom(phi, cur, prev, value0, slope0, c1, c2, max_evals, evals,
                         min_width, on_best)
        # still going down: extrapolate, by the cubic through the last two trials
        guess = _cubic_minimizer(*prev, *cur)
        lower, upper = t + 0.01 * (t - prev[0]), 10.0 * t
        prev = cur
        t = 0.5 * (lower + upper) if guess is None else min(max(guess, lower), upper)
    return LineSearchResult(*prev, evals, False)


def _accept(point, evals, on_best):
    if on_best is not None:
        on_best()
    return LineSearchResult(*point, evals, True)


def _zoom(phi, lo, hi, value0, slope0, c1, c2, max_evals, evals, min_width, on_best):
    """NW Algorithm 3.6 on the bracket (lo, hi), triples (t, f, g): lo passes the
    sufficient decrease test with the lowest value so far, and a Wolfe step lies between
    lo and hi."""
    while evals < max_evals and abs(hi[0] - lo[0]) > min_width:
        t = _interpolate(lo, hi)
        f, g = phi(t)
        evals += 1
        armijo = math.isfinite(f) and math.isfinite(g) and f <= value0 + c1 * t * slope0
        if armijo and abs(g) <= -c2 * slope0:
            return _accept((t, f, g), evals, on_best)
        if not armijo or f >= lo[1]:
            hi = (t, f, g)
            continue
        if on_best is not None:
            on_best()
        if g * (hi[0] - lo[0]) >= 0.0:
            hi = lo
        lo = (t, f, g)
    return LineSearchResult(*lo, evals, False)


# ---------------------------------------------------------------------------------------
# The CG iteration. g = gradient, d = direction, k = iteration; y = g_k - g_{k-1}.

def _beta(name, g, g_prev, d):
    """beta_k of the named formula, with g = g_k, g_prev = g_{k-1}, d = d_{k-1}; None when
    its denominator is not positive (a restart)."""
    gg = float(g @ g)
    gy = gg - float(g @ g_prev)                                 # g_k . y_k
    if name in ("HS", "DY"):
        dy = float(d @ g) - float(d @ g_prev)                   # d_{k-1} . y_k
        if not dy > 0.0:
            return None
        return gy / dy if name == "HS" else gg / dy
    gg_prev = float(g_prev @ g_prev)
    if not gg_prev > 0.0:
        return None
    if name == "FR":
        return gg / gg_prev
    return gy / gg_prev if name == "PR" else max(0.0, gy / gg_prev)


def _loss_value(v, where):
    """The closure's loss as a float; a TypeError for anything that is not one number."""
    if isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "fiu":
        v = v.reshape(()).item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                              np.floating)):
        hint = (" (model.forward_backward returns (loss, h_n): return its [0])"
                if isinstance(v, tuple) else "")
        raise TypeError(f"{where}: the closure must return the loss as a number, got "
                        f"{type(v).__name__}{hint}")
    return float(v)


class NonlinearCG(Optimizer):
    r"""Nonlinear conjugate gradient over a model's flat parameters, full batch, with a
    strong-Wolfe line search; torch.optim.LBFGS's calling convention.

    ``loss = opt.step(closure)``: ``closure()`` recomputes the loss at the current
    ``model.params``, writes its gradient into ``model.grads`` and returns the loss as a
    number (for example ``lambda: model.forward_backward(x, y)[0]``). One step runs up to
    ``max_iter`` CG iterations, with g_k the gradient at x_k::

        d_0 = -g_0
        t_k = a step satisfying the strong Wolfe conditions along d_k (strong_wolfe)
        x_{k+1} = x_k + t_k d_k
        d_{k+1} = -g_{k+1} + beta_{k+1} d_k       (-g_{k+1}: a restart, see below)

    with y = g_{k+1} - g_k, d = d_k and beta_{k+1} by ``beta``:

    =======  ================================  ==========================================
    "FR"     |g_{k+1}|^2 / |g_k|^2             Fletcher-Reeves
    "PR"     g_{k+1}.y / |g_k|^2               Polak-Ribiere
    "PR+"    max(0, g_{k+1}.y / |g_k|^2)       Polak-Ribiere, reset at 0 (default)
    "HS"     g_{k+1}.y / d.y                   Hestenes-Stiefel
    "DY"     |g_{k+1}|^2 / d.y                 Dai-Yuan
    =======  ================================  ==========================================

    PR+ is the default: in NW's account (section 5.2) Polak-Ribiere is more robust and
    efficient than Fletcher-Reeves in practice, and clipping beta at 0 (their eq. 5.45)
    restarts it where PR would turn away from steepest descent and gives it a global
    convergence result (Gilbert & Nocedal, 1992). On a convex quadratic with exact line
    searches all five are the same method and, in exact arithmetic, end in at most n
    iterations.

    Restarts (d = -g, counted in ``restarts``; the first iteration is not one):

    - beta is reset: PR+ clips a negative value to 0; HS and DY when d.y <= 0;
    - every ``restart`` iterations since the last restart (default n, the number of
      parameters, NW's choice: it keeps quadratic termination);
    - Powell's test, ``|g_{k+1}.g_k| >= powell * |g_{k+1}|^2`` (``powell=0.2``, Powell's
      1977 value; NW suggest 0.1; None turns it off): successive gradients far from
      orthogonal mean conjugacy is lost, and on a large model the n-iteration restart never
      comes, so this is the one that acts;
    - the new direction is not a descent direction (g.d >= 0; a strong Wolfe step rules
      this out for FR with c2 < 1/2 and for DY, not for PR and HS);
    - the line search found no decrease (then the next iteration starts from -g; a failure
      along -g itself ends the step).

    Line search (``line_search="strong_wolfe"``, the only one): :func:`strong_wolfe`,
    NW's Algorithms 3.5 and 3.6 with cubic interpolation (quadratic, then bisection as
    fallbacks), at most ``max_ls`` evaluations, on phi(t) = f(x_k + t d_k) evaluated by
    writing x_k + t d_k into ``model.params`` and calling the closure. c1 = 1e-4 and
    c2 = 0.1, NW's recommendation for CG (its directions depend on the step being close
    to a line minimum, which a small c2 asks for; torch's LBFGS uses c2 = 0.9, right for
    quasi-Newton methods, too loose here). First trial step: lr * min(1, 1/|g_0|_1) on the
    very first iteration (as torch's LBFGS), afterwards NW's rule (eq. 3.60)
    t_{k-1} * (g_{k-1}.d_{k-1}) / (g_k.d_k), which assumes the first-order change along
    the line is the same as last time. A NaN or infinite loss or gradient at a trial step
    (or an elman.NonFiniteError raised by the closure there) counts as a failed sufficient
    decrease test: the step shrinks. When the line search returns, ``model.params`` hold
    the accepted point and ``model.grads`` its gradient (copied back from that point's
    evaluation when a later trial overwrote them).

    A step ends after ``max_iter`` iterations, or when ``max_eval`` closure calls are
    used up (a hard ceiling: the last line search gets only what is left), or, as in
    torch's LBFGS, when max|g| <= ``tolerance_grad``, or g.d > -``tolerance_change``, or
    the last move max|t d| or the change of the loss is below ``tolerance_change``.
    ``stop_reason`` says which. The next step continues the same CG sequence (direction,
    previous gradient and step are kept in ``state``).

    Parameters
    ----------
    model : ElmanRNN, or a (params, grads) pair of 1-D float arrays (updated in place)
    beta : {"PR+", "PR", "FR", "HS", "DY"}
    max_iter : int
        CG iterations per step (default 20, as torch's LBFGS).
    max_eval : int or None
        Closure calls per step, the start's included (default 3 * max_iter: a strong
        Wolfe search with c2 = 0.1 took 1.9 to 2.7 evaluations on average in the tests
        (a small ElmanRNN, a quadratic, Rosenbrock), where LBFGS's 5/4 * max_iter
        assumes about one).
    tolerance_grad, tolerance_change : float
        As in torch's LBFGS (defaults 1e-7 and 1e-9).
    lr : float
        Scales the very first trial step (default 1).
    line_search : "strong_wolfe"
    c1, c2 : float
        The Wolfe constants, 0 < c1 < c2 < 1 (defaults 1e-4, 0.1).
    restart : int or None
        Restart every this many iterations (None: n, the number of parameters).
    powell : float or None
        Powell's restart threshold (default 0.2; None: no Powell test).
    max_ls : int
        Evaluations per line search (default 25, as torch's LBFGS).

    Attributes, after each step
    ---------------------------
    last_loss : float, the loss at the point reached; step() returns the loss at the start
        of the step (the closure's first value), as torch's LBFGS does.
    n_iter, func_evals, restarts : int, totals over all steps (func_evals counts every
        closure call, including each step's first and any that raised).
    last_step_size : float, t of the last line search (0 if it found no decrease).
    last_grad_norm : float, |g| (L2) at the point reached.
    stop_reason : str, why the last step ended: "max_iter", "max_eval",
        "tolerance_grad", "tolerance_change" or "line_search_failed".
    state : dict, what the next step continues from; ``state_dict()`` /
        ``load_state_dict()`` save and restore it, so that a resumed run continues exactly
        as an uninterrupted one (with the same closure).

    The direction, the previous gradient and the line search's start are float64 buffers
    of n whatever the params' dtype (with float32 params, d = -g + beta d would otherwise
    round at every iteration and drift from conjugacy); the trial points are rounded to
    the params' dtype when written into them. Memory: five float64 buffers of n and one of
    the params' dtype.

    Examples
    --------
    >>> import numpy as np, elman
    >>> from elman.ncg import NonlinearCG
    >>> m = elman.ElmanRNN(3, 5, 2, dtype="float64", seed=0)
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.standard_normal((6, 8, 3)), rng.standard_normal((6, 8, 2))
    >>> closure = lambda: m.forward_backward(x, y, loss="mse")[0]
    >>> opt = NonlinearCG(m, max_iter=50)
    >>> first = opt.step(closure)
    >>> opt.last_loss < first
    True

    A (params, grads) pair works as a model; here the Rosenbrock function:

    >>> from scipy.optimize import rosen, rosen_der
    >>> p, g = np.array([-1.2, 1.0]), np.zeros(2)
    >>> def f():
    ...     g[...] = rosen_der(p)
    ...     return rosen(p)
    >>> opt = NonlinearCG((p, g), max_iter=500, max_eval=2000)
    >>> _ = opt.step(f)
    >>> np.allclose(p, 1.0, atol=1e-5)
    True
    """

    _name = "NonlinearCG"
    _SETTINGS = ("beta", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "lr",
                 "line_search", "c1", "c2", "restart", "powell", "max_ls")

    def __init__(self, model, *, beta="PR+", max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, lr=1.0, line_search="strong_wolfe", c1=1e-4, c2=0.1,
                 restart=None, powell=0.2, max_ls=25):
        where = self._name
        super().__init__(model, where)
        self._configure(dict(beta=beta, max_iter=max_iter, max_eval=max_eval,
                             tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                             lr=lr, line_search=line_search, c1=c1, c2=c2, restart=restart,
                             powell=powell, max_ls=max_ls), where)
        n = self.params.size
        self.state = {"direction": None, "prev_grad": None, "prev_step": 0.0,
                      "prev_gtd": 0.0, "loss": None, "n_iter": 0, "func_evals": 0,
                      "restarts": 0, "since_restart": 0, "restart_next": False}
        self._g = np.empty(n)                       # g at the current point, float64
        self._x0 = np.empty(n)                      # the line search's start
        self._work = np.empty(n)                    # a new direction, then the trial point
        self._best_grads = np.empty_like(self.grads)
        self.stop_reason = None

    def _configure(self, s, where):
        """Validate every setting, then set them all (nothing is set on an error)."""
        v = dict(
            beta=choice(s["beta"], "beta", BETAS, where=where),
            max_iter=positive_int(s["max_iter"], "max_iter", where=where),
            max_eval=None if s["max_eval"] is None else
            positive_int(s["max_eval"], "max_eval", where=where, minimum=2),
            tolerance_grad=real(s["tolerance_grad"], "tolerance_grad", where=where, minimum=0),
            tolerance_change=real(s["tolerance_change"], "tolerance_change", where=where,
                                  minimum=0),
            lr=real(s["lr"], "lr", where=where, minimum=0, strict=True),
            line_search=choice(s["line_search"], "line_search", ("strong_wolfe",),
                               where=where),
            c1=real(s["c1"], "c1", where=where),
            c2=real(s["c2"], "c2", where=where),
            restart=None if s["restart"] is None else
            positive_int(s["restart"], "restart", where=where),
            powell=real(s["powell"], "powell", where=where, minimum=0, strict=True,
                        allow_none=True),
            max_ls=positive_int(s["max_ls"], "max_ls", where=where),
        )
        if not 0.0 < v["c1"] < v["c2"] < 1.0:
            raise ValueError(f"{where}: the strong Wolfe constants must satisfy "
                             f"0 < c1 < c2 < 1, got c1={v['c1']}, c2={v['c2']}")
        for key, value in v.items():
            setattr(self, key, value)

    # What a user reads after a step; the counters live in state (saved with it).
    n_iter = property(lambda self: self.state["n_iter"])
    func_evals = property(lambda self: self.state["func_evals"])
    restarts = property(lambda self: self.state["restarts"])
    last_loss = property(lambda self: self.state["loss"])
    last_step_size = property(lambda self: self.state["prev_step"])

    def _call(self, closure):
        """One closure call (counted, even if it raises): its loss, with the gradient
        copied into self._g."""
        self.state["func_evals"] += 1
        value = _loss_value(closure(), self._step_name)
        self._g[...] = self.grads
        return value

    def step(self, closure):
        """Run up to max_iter CG iterations; returns the loss at the starting point.

        closure: recomputes the loss at ``model.params``, writes ``model.grads``, returns
        the loss. Raises NonFiniteError when the loss or gradient at the starting point is
        not finite (the parameters and the CG state are left as they were). Any other
        exception from the closure inside a line search propagates after the parameters
        and gradients are put back at the line search's start (the last accepted point);
        the next step then starts with steepest descent."""
        where = self._step_name
        if not callable(closure):
            raise TypeError(f"{where}: closure must be callable (it recomputes the loss at "
                            f"model.params, writes model.grads and returns the loss), got "
                            f"{type(closure).__name__}")
        try:
            loss = self._call(closure)
        except NonFiniteError as err:
            raise NonFiniteError(f"{where}: the loss at the starting point is not finite "
                                 f"({err})") from None
        if not math.isfinite(loss) or not all_finite(self._g):
            raise NonFiniteError(f"{where}: the loss ({loss}) or the gradient at the "
                                 f"starting point is not finite; nothing was changed")
        first_loss = loss
        self.steps += 1
        evals, max_eval = 1, self.max_eval or 3 * self.max_iter
        st, g = self.state, self._g
        reason = "max_iter"
        for _ in range(self.max_iter):
            if float(np.abs(g).max()) <= self.tolerance_grad:
                reason = "tolerance_grad"
                break
            d, restarted = self._direction()
            gtd = float(g @ d)
            if gtd > -self.tolerance_change:
                reason = "tolerance_change"
                break
            t = st["prev_step"] * st["prev_gtd"] / gtd
            if st["n_iter"] == 0 or not (t > 0.0 and math.isfinite(t)):
                t = self.lr * min(1.0, 1.0 / float(np.abs(g).sum()))
            # commit the new direction (a break above leaves the state as it was)
            old = st["direction"]
            st["direction"] = d
            self._work = np.empty_like(d) if old is None else old
            if st["prev_grad"] is None:
                st["prev_grad"] = np.empty_like(g)
            st["prev_grad"][...] = g
            st["restarts"] += restarted and st["n_iter"] > 0
            st["since_restart"] = 1 if restarted else st["since_restart"] + 1
            st["restart_next"] = False
            st["n_iter"] += 1
            self._x0[...] = self.params
            result = self._line_search(closure, loss, gtd, t,
                                       min(self.max_ls, max_eval - evals))
            evals += result.evals
            st["prev_step"], st["prev_gtd"] = result.step, gtd
            change = abs(result.value - loss)
            loss = result.value
            if result.step == 0.0 and not restarted:
                st["restart_next"] = True     # no decrease along d: try -g next
            elif result.step == 0.0:
                reason = "line_search_failed"
                break
            if evals >= max_eval:
                reason = "max_eval"
                break
            if float(np.abs(g).max()) <= self.tolerance_grad:
                reason = "tolerance_grad"
                break
            if result.step > 0.0 and (result.step * float(np.abs(d).max())
                                      <= self.tolerance_change
                                      or change < self.tolerance_change):
                reason = "tolerance_change"
                break
        st["loss"] = loss
        self.last_grad_norm = math.sqrt(float(g @ g))
        self.stop_reason = reason
        return first_loss

    def _direction(self):
        """(the next direction in a scratch buffer, whether it is a restart to -g)."""
        st, g, d = self.state, self._g, self._work
        old = st["direction"]
        restart = (old is None or st["restart_next"]
                   or st["since_restart"] >= (self.restart or g.size))
        if not restart and self.powell is not None:
            restart = abs(float(g @ st["prev_grad"])) >= self.powell * float(g @ g)
        beta = None if restart else _beta(self.beta, g, st["prev_grad"], old)
        if beta is None or beta == 0.0:
            np.negative(g, out=d)
            return d, True
        np.multiply(old, beta, out=d)
        d -= g                                            # d = -g + beta * d_old
        if not float(g @ d) < 0.0:                        # not a descent direction
            np.negative(g, out=d)
            return d, True
        return d, False

    def _line_search(self, closure, loss, gtd, t, max_evals):
        """strong_wolfe along state["direction"] from self._x0; leaves params at the
        accepted point, grads and self._g holding its gradient."""
        d, x, params, grads = self.state["direction"], self._work, self.params, self.grads

        def phi(step):
            np.multiply(d, step, out=x)
            np.add(x, self._x0, out=x)              # x_k + t d_k, in float64
            params[...] = x
            try:
                value = self._call(closure)
            except NonFiniteError:              # raised by the closure (ElmanRNN does)
                return math.inf, math.nan
            return value, float(self._g @ d)

        def keep():
            self._best_grads[...] = grads

        try:
            result = strong_wolfe(phi, loss, gtd, t, c1=self.c1, c2=self.c2,
                                  max_evals=max(1, max_evals),
                                  min_width=self.tolerance_change / float(np.abs(d).max()),
                                  on_best=keep)
        except BaseException:      # the closure raised (or Ctrl-C): back to the start
            params[...] = self._x0
            grads[...] = self.state["prev_grad"]
            self._g[...] = grads
            self.state["restart_next"] = True
            raise
        if result.step == 0.0:                   # back to the start, which prev_grad holds
            params[...] = self._x0
            grads[...] = self.state["prev_grad"]
        else:                                    # the same bits as when it was evaluated
            np.multiply(d, result.step, out=x)
            np.add(x, self._x0, out=x)
            params[...] = x
            grads[...] = self._best_grads
        self._g[...] = grads
        return result

    def state_dict(self) -> dict:
        """Copies of the state (direction, previous gradient and step, counters), the step
        count and the settings."""
        state = {k: v.copy() if isinstance(v, np.ndarray) else v
                 for k, v in self.state.items()}
        return {"state": state, "steps": self.steps,
                "settings": {k: getattr(self, k) for k in self._SETTINGS}}

    def load_state_dict(self, sd: dict):
        """Restore what state_dict() returned, validated (nothing is set on an error)."""
        where = f"{self._name}.load_state_dict"
        src = sd["state"]
        missing = set(self.state) - set(src)
        if missing:
            raise ValueError(f"{where}: state lacks {', '.join(sorted(missing))}")
        state = {}
        for key in ("direction", "prev_grad"):
            v = src[key]
            if v is not None:
                v = np.asarray(v)
                if v.shape != self.params.shape or v.dtype.kind != "f" or \
                        not np.isfinite(v).all():
                    raise ValueError(f"{where}: state[{key!r}] must be None or finite "
                                     f"floats of shape {self.params.shape}, got dtype "
                                     f"{v.dtype} and shape {v.shape}")
                v = v.astype(np.float64, copy=True)
            state[key] = v
        if (state["direction"] is None) != (state["prev_grad"] is None):
            raise ValueError(f"{where}: state holds one of direction and prev_grad "
                             f"without the other")
        for key in ("prev_step", "prev_gtd"):
            state[key] = real(src[key], key, where=where)
        state["loss"] = real(src["loss"], "loss", where=where, allow_none=True)
        for key in ("n_iter", "func_evals", "restarts", "since_restart"):
            state[key] = positive_int(src[key], key, where=where, minimum=0)
        state["restart_next"] = bool(src["restart_next"])
        steps = positive_int(sd["steps"], "steps", where=where, minimum=0)
        self._configure(dict({k: getattr(self, k) for k in self._SETTINGS},
                             **sd.get("settings", {})), where)
        self.state, self.steps = state, steps

    def __repr__(self):
        return (f"NonlinearCG(beta={self.beta!r}, max_iter={self.max_iter}, "
                f"max_eval={self.max_eval}, tolerance_grad={self.tolerance_grad}, "
                f"tolerance_change={self.tolerance_change}, lr={self.lr}, "
                f"line_search={self.line_search!r}, c1={self.c1}, c2={self.c2}, "
                f"restart={self.restart}, powell={self.powell}, max_ls={self.max_ls})")
