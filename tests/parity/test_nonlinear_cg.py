"""NonlinearCG and its strong-Wolfe line search: convergence on a convex quadratic (every
beta, and the n-iteration termination of exact-line-search CG), on Rosenbrock, against
scipy.optimize.minimize(method="CG") on a small ElmanRNN's loss; each beta formula read
back from the state; the line search on More & Thuente's test functions; non-finite
trials; exact resumption from a state_dict; float32; argument errors."""
import math
import pickle

import numpy as np
import pytest
from scipy.optimize import brentq, minimize, rosen, rosen_der

import elman
from elman.ncg import BETAS, NonlinearCG, strong_wolfe

N = 20


@pytest.fixture(scope="module")
def quadratic():
    """0.5 x'Ax - b'x with A's eigenvalues spread evenly over [1, 10]."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    A = Q @ np.diag(np.linspace(1.0, 10.0, N)) @ Q.T
    return A, rng.standard_normal(N)


def quadratic_problem(A, b, dtype=np.float64):
    """(params, grads, closure) of the quadratic, starting at 0."""
    x, g = np.zeros(N, dtype), np.zeros(N, dtype)
    A_, b_ = A.astype(dtype), b.astype(dtype)

    def closure():
        g[...] = A_ @ x - b_
        return float(0.5 * x @ A_ @ x - b_ @ x)
    return x, g, closure


def rosenbrock(x0):
    p, g = np.array(x0, dtype=np.float64), np.zeros(len(x0))

    def closure():
        g[...] = rosen_der(p)
        return rosen(p)
    return p, g, closure


def counted(closure):
    """closure, counting its calls in .calls."""
    def wrapper():
        wrapper.calls += 1
        return closure()
    wrapper.calls = 0
    return wrapper


# --- a small ElmanRNN's loss: MSE against a teacher's noisy outputs, plus L2 -----------

LAM = 1e-2      # the L2 term gives the loss an isolated minimum (up to the hidden units'
                # symmetries, which a local method starting from one point does not cross)


@pytest.fixture(scope="module")
def rnn_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 3))                               # (T, B, I)
    teacher = elman.ElmanRNN(3, 5, 2, dtype="float64", seed=1)
    y = teacher.forward(x)[0] + 0.1 * rng.standard_normal((8, 16, 2))  # (T, B, O)
    return x, y


def rnn_closure(model, x, y):
    def closure():
        loss = model.forward_backward(x, y, loss="mse")[0]
        g = model.grads
        g += LAM * model.params
        return loss + 0.5 * LAM * float(model.params @ model.params)
    return closure


# --- convergence ----------------------------------------------------------------------

@pytest.mark.parametrize("beta", BETAS)
def test_each_beta_solves_the_quadratic(quadratic, beta):
    A, b = quadratic
    x, g, closure = quadratic_problem(A, b)
    opt = NonlinearCG((x, g), beta=beta, max_iter=200, tolerance_grad=1e-9,
                      tolerance_change=0.0)
    first = opt.step(closure)
    assert first == 0.0                       # step returns the loss at the start
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(g, A @ x - b)   # grads are those of the point reached
    assert opt.last_loss == closure()
    assert opt.n_iter <= 40


def test_exact_line_searches_make_every_beta_one_method_ending_in_n_iterations(quadratic):
    """On a quadratic the cubic interpolation finds the line minimum exactly, so the five
    formulas give the same iterates and CG ends in about n iterations; steepest descent
    (a restart at every iteration) is still far from the solution then."""
    A, b = quadratic

    def run(iters, **kw):
        x, g, closure = quadratic_problem(A, b)
        opt = NonlinearCG((x, g), max_iter=iters, tolerance_grad=0.0, tolerance_change=0.0,
                          **kw)
        opt.step(closure)
        return x, opt
    after5 = {beta: run(5, beta=beta)[0] for beta in BETAS}
    for beta in BETAS:
        np.testing.assert_allclose(after5[beta], after5["PR+"], rtol=0, atol=1e-13)
        x, opt = run(N, beta=beta)
        assert np.abs(A @ x - b).max() < 1e-6, beta
        assert opt.func_evals < 4 * N
    x, opt = run(N, restart=1)
    assert np.abs(A @ x - b).max() > 1e-4
    assert opt.restarts == opt.n_iter - 1 == N - 1


def test_restart_every_iteration_is_steepest_descent_for_every_beta(quadratic):
    A, b = quadratic
    runs = []
    for beta in BETAS:
        x, g, closure = quadratic_problem(A, b)
        NonlinearCG((x, g), beta=beta, max_iter=15, restart=1).step(closure)
        runs.append(x)
    for x in runs[1:]:
        np.testing.assert_array_equal(x, runs[0])


@pytest.mark.parametrize("x0", [[-1.2, 1.0], [1.3, 0.7, 0.8, 1.9, 1.2]], ids=["2d", "5d"])
def test_pr_plus_reaches_the_rosenbrock_minimum(x0):
    """From Rosenbrock's start, and from scipy's tutorial's in 5-D (for n >= 4 the function
    also has a local minimum near (-1, 1, ..., 1), which other starts can reach)."""
    p, g, closure = rosenbrock(x0)
    opt = NonlinearCG((p, g), max_iter=2000, max_eval=6000, tolerance_grad=1e-8,
                      tolerance_change=0.0)
    opt.step(closure)
    np.testing.assert_allclose(p, 1.0, rtol=0, atol=1e-6)
    assert rosen(p) < 1e-12
    assert opt.stop_reason == "tolerance_grad"


def test_same_minimum_as_scipy_cg_on_an_elman_rnn(rnn_data):
    x, y = rnn_data
    model = elman.ElmanRNN(3, 5, 2, dtype="float64", seed=0)
    w0 = model.params.copy()
    closure = rnn_closure(model, x, y)

    def fun(w):
        model.params[...] = w
        return closure(), model.grads.copy()
    ref = minimize(fun, w0, jac=True, method="CG", options=dict(gtol=1e-7, maxiter=5000))
    assert ref.success
    model.params[...] = w0
    opt = NonlinearCG(model, max_iter=5000, max_eval=20000, tolerance_grad=1e-7,
                      tolerance_change=0.0)
    start = opt.step(closure)
    assert opt.stop_reason == "tolerance_grad"
    assert np.abs(model.grads).max() <= 1e-7
    assert ref.fun < 0.2 * start              # a minimum well below the start
    np.testing.assert_allclose(opt.last_loss, ref.fun, rtol=1e-8)
    # both stop at |g| ~ 1e-7 of one isolated minimum, whose conditioning (~1e3) leaves
    # the parameters ~1e-4 apart
    np.testing.assert_allclose(model.params, ref.x, rtol=0, atol=2e-3)
    assert opt.func_evals < ref.nfev


@pytest.mark.parametrize("beta,seed", [(b, 0) for b in BETAS] + [("PR", 8), ("PR+", 8)])
def test_each_beta_formula_read_back_from_the_state(beta, seed):
    """After two iterations the state holds d_1 = -g_1 + beta_1 d_0 with d_0 = -g_0; on
    seed 8 the Polak-Ribiere value is negative, so PR+ restarts."""
    p, g, f = rosenbrock(np.random.default_rng(seed).standard_normal(6))
    seen = []

    def closure():
        value = f()
        seen.append(g.copy())
        return value
    opt = NonlinearCG((p, g), beta=beta, max_iter=2, powell=None)
    opt.step(closure)
    g0, g1, d0 = seen[0], opt.state["prev_grad"], -seen[0]
    y = g1 - g0
    want = {"FR": g1 @ g1 / (g0 @ g0), "PR": g1 @ y / (g0 @ g0),
            "PR+": max(0.0, g1 @ y / (g0 @ g0)), "HS": g1 @ y / (d0 @ y),
            "DY": g1 @ g1 / (d0 @ y)}[beta]
    assert (want < 0) == (beta == "PR" and seed == 8)
    assert opt.n_iter == 2 and opt.restarts == (want == 0)
    np.testing.assert_allclose(opt.state["direction"], -g1 + want * d0, rtol=1e-12,
                               atol=1e-14)


def test_powell_restarts_count_and_can_be_turned_off():
    runs = {}
    for powell in (0.2, None):
        p, g, closure = rosenbrock([-1.2, 1.0, 0.3, -0.7])
        runs[powell] = NonlinearCG((p, g), max_iter=60, restart=10**6, powell=powell)
        runs[powell].step(closure)
    assert runs[0.2].restarts > runs[None].restarts


# --- the line search ------------------------------------------------------------------

def _mt3(a, beta=0.01, l=39):
    """More & Thuente's function 3: |1 - a| smoothed, plus a wiggle of l/2 periods."""
    if a <= 1 - beta:
        f0, d0 = 1 - a, -1.0
    elif a >= 1 + beta:
        f0, d0 = a - 1, 1.0
    else:
        f0, d0 = (a - 1) ** 2 / (2 * beta) + beta / 2, (a - 1) / beta
    w = l * math.pi / 2
    return (f0 + 2 * (1 - beta) / (l * math.pi) * math.sin(w * a),
            d0 + (1 - beta) * math.cos(w * a))


def _yok(b1, b2):
    """More & Thuente's functions 4-6 (Yanai, Ozawa and Kaneko)."""
    gam = lambda b: math.sqrt(1 + b * b) - b                          # noqa: E731
    return lambda a: (gam(b1) * math.sqrt((1 - a) ** 2 + b2 ** 2)
                      + gam(b2) * math.sqrt(a ** 2 + b1 ** 2),
                      -gam(b1) * (1 - a) / math.sqrt((1 - a) ** 2 + b2 ** 2)
                      + gam(b2) * a / math.sqrt(a ** 2 + b1 ** 2))


# More & Thuente, "Line search algorithms with guaranteed sufficient decrease" (1994),
# table 1: (phi, c1, c2)
MT_FUNCTIONS = {
    "1": (lambda a: (-a / (a * a + 2), (a * a - 2) / (a * a + 2) ** 2), 1e-3, 0.1),
    "2": (lambda a: ((a + 0.004) ** 5 - 2 * (a + 0.004) ** 4,
                     5 * (a + 0.004) ** 4 - 8 * (a + 0.004) ** 3), 0.1, 0.1 + 1e-9),
    "3": (_mt3, 0.1, 0.1 + 1e-9),
    "4": (_yok(0.001, 0.001), 1e-3, 1e-3 + 1e-9),
    "5": (_yok(0.01, 0.001), 1e-3, 1e-3 + 1e-9),
    "6": (_yok(0.001, 0.01), 1e-3, 1e-3 + 1e-9),
}


@pytest.mark.parametrize("t0", [1e-3, 1e-1, 1e1, 1e3])
@pytest.mark.parametrize("name", sorted(MT_FUNCTIONS))
def test_the_line_search_returns_a_strong_wolfe_point(name, t0):
    fn, c1, c2 = MT_FUNCTIONS[name]
    calls, best = [], []
    f0, g0 = fn(0.0)
    phi = lambda t: (calls.append(t), fn(t))[1]                     # noqa: E731
    r = strong_wolfe(phi, f0, g0, t0, c1=c1, c2=c2, max_evals=40,
                     on_best=lambda: best.append(calls[-1]))
    assert r.wolfe and r.step > 0 and r.evals == len(calls) <= 40
    f, g = fn(r.step)                                      # checked independently
    assert (f, g) == (r.value, r.slope)
    assert f <= f0 + c1 * r.step * g0
    assert abs(g) <= c2 * abs(g0)
    assert best[-1] == r.step == calls[-1]


def test_the_line_search_interpolates_a_quadratic_exactly():
    r = strong_wolfe(lambda t: ((t - 2.7) ** 2, 2 * (t - 2.7)), 2.7 ** 2, -5.4, 1.0)
    assert r.evals == 2 and r.wolfe and abs(r.step - 2.7) < 1e-12


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_the_line_search_shrinks_past_non_finite_values(bad):
    """phi is NaN or infinite beyond t = 0.5; the first trial lands there."""
    def phi(t):
        return (bad, bad) if t > 0.5 else ((t - 1) ** 2, 2 * (t - 1))
    r = strong_wolfe(phi, 1.0, -2.0, 100.0, c1=1e-4, c2=0.9)
    assert r.wolfe and 0 < r.step <= 0.5 and math.isfinite(r.value)


def test_the_line_search_stops_at_max_evals_with_its_best_armijo_point():
    calls, best = [], []

    def phi(t):                        # decreasing with a steep slope everywhere
        calls.append(t)
        return -t, -1.0
    r = strong_wolfe(phi, 0.0, -1.0, 1.0, max_evals=4)
    assert not r.wolfe and r.evals == len(calls) == 4 and r.step == max(calls)
    calls.clear()                      # a wiggly valley: the 4th trial is worse than the 3rd
    fn = lambda t: ((t - 1) ** 4 + 0.1 * math.sin(7 * t),                # noqa: E731
                    4 * (t - 1) ** 3 + 0.7 * math.cos(7 * t))
    f0, g0 = fn(0.0)
    r = strong_wolfe(lambda t: (calls.append(t), fn(t))[1], f0, g0, 2.0, c2=1e-9,
                     max_evals=4, on_best=lambda: best.append(calls[-1]))
    armijo = [t for t in calls if fn(t)[0] <= f0 + 1e-4 * t * g0]
    assert not r.wolfe and r.evals == 4 and r.step != calls[-1]
    assert r.step == min(armijo, key=lambda t: fn(t)[0]) == best[-1]
    r = strong_wolfe(lambda t: (1.0, 1.0), 0.0, -1.0, 1.0, max_evals=5)  # never a decrease
    assert (r.step, r.value, r.slope, r.evals, r.wolfe) == (0.0, 0.0, -1.0, 5, False)


# --- the optimizer's contract ---------------------------------------------------------

def test_the_accepted_point_holds_its_own_gradient_and_evaluations_are_counted(rnn_data):
    x, y = rnn_data
    model = elman.ElmanRNN(3, 5, 2, dtype="float64", seed=0)
    closure = counted(rnn_closure(model, x, y))
    opt = NonlinearCG(model, max_iter=30)
    losses = []
    for _ in range(3):
        before = closure.calls
        losses.append(opt.step(closure))
        assert closure.calls - before <= 3 * opt.max_iter     # the default max_eval
        assert opt.stop_reason == "max_iter"
    assert opt.func_evals == closure.calls and opt.steps == 3 and opt.n_iter == 90
    assert losses[0] > losses[1] > losses[2] > opt.last_loss   # step returns its start's
    assert opt.last_step_size > 0 and opt.last_grad_norm > 0
    twin = elman.ElmanRNN(3, 5, 2, dtype="float64", seed=0)
    twin.params[...] = model.params
    assert rnn_closure(twin, x, y)() == opt.last_loss
    np.testing.assert_array_equal(twin.grads, model.grads)


def test_the_invariant_holds_when_line_searches_are_cut_short():
    """With max_ls=2 and c2=0.01 most searches end without a Wolfe point, at their best
    trial rather than their last: params and grads must still be that point's."""
    p, g, closure = rosenbrock([-1.2, 1.0, 0.3, -0.7])
    opt = NonlinearCG((p, g), max_iter=1, max_ls=2, c2=0.01)
    losses = []
    for _ in range(40):
        losses.append(opt.step(closure))
        np.testing.assert_array_equal(g, rosen_der(p))
        assert opt.last_loss == rosen(p)
    assert losses == sorted(losses, reverse=True) and rosen(p) < 0.2 * losses[0]


def test_a_direction_that_is_not_a_descent_direction_is_restarted():
    """Polak-Ribiere with c2 = 0.9 from this start gives, at iteration 8, a d with g.d > 0
    (computed here from the state); the optimizer uses -g instead and counts a restart."""
    p, g, closure = rosenbrock(np.random.default_rng(0).standard_normal(4) * 1.5)
    opt = NonlinearCG((p, g), beta="PR", max_iter=1, c2=0.9, powell=None, restart=10**6)
    for _ in range(7):
        opt.step(closure)
    d, g_prev, restarts = opt.state["direction"], opt.state["prev_grad"], opt.restarts
    g_now = rosen_der(p)
    pr = -g_now + g_now @ (g_now - g_prev) / (g_prev @ g_prev) * d
    assert g_now @ pr > 0
    opt.step(closure)
    assert opt.restarts == restarts + 1 and opt.n_iter == 8
    np.testing.assert_array_equal(opt.state["direction"], -g_now)


def test_max_eval_is_a_ceiling_per_step(quadratic):
    A, b = quadratic
    x, g, closure = quadratic_problem(A, b)
    closure = counted(closure)
    opt = NonlinearCG((x, g), max_iter=100, max_eval=7, tolerance_change=0.0)
    opt.step(closure)
    assert closure.calls == 7 and opt.stop_reason == "max_eval"
    np.testing.assert_array_equal(g, A @ x - b)


def test_steps_continue_one_cg_sequence(rnn_data):
    """Two steps of 10 iterations are one step of 20 (each step evaluates its start once
    more)."""
    x, y = rnn_data
    runs = []
    for steps, iters in ((1, 20), (2, 10)):
        model = elman.ElmanRNN(3, 5, 2, dtype="float64", seed=0)
        opt = NonlinearCG(model, max_iter=iters, max_eval=1000)
        for _ in range(steps):
            opt.step(rnn_closure(model, x, y))
        runs.append((model.params.copy(), opt))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1].n_iter == runs[1][1].n_iter == 20
    assert runs[1][1].func_evals == runs[0][1].func_evals + 1


def test_resuming_from_a_state_dict_is_an_uninterrupted_run(rnn_data):
    x, y = rnn_data

    def fresh():
        model = elman.ElmanRNN(3, 5, 2, dtype="float64", seed=0)
        return model, NonlinearCG(model, beta="HS", max_iter=7, restart=5)
    model, opt = fresh()
    losses = [opt.step(rnn_closure(model, x, y)) for _ in range(6)]
    model_a, opt_a = fresh()
    losses_a = [opt_a.step(rnn_closure(model_a, x, y)) for _ in range(3)]
    saved = pickle.loads(pickle.dumps((model_a.params.copy(), opt_a.state_dict())))
    opt_a.step(rnn_closure(model_a, x, y))           # state_dict() took copies
    for with_state in (True, False):
        model_b, opt_b = fresh()
        model_b.params[...] = saved[0]
        if with_state:
            opt_b.load_state_dict(saved[1])
        losses_b = [opt_b.step(rnn_closure(model_b, x, y)) for _ in range(3)]
        same = np.array_equal(model_b.params, model.params)
        assert same == with_state                     # without the state it differs
    model_b, opt_b = fresh()
    model_b.params[...] = saved[0]
    opt_b.load_state_dict(saved[1])
    losses_b = [opt_b.step(rnn_closure(model_b, x, y)) for _ in range(3)]
    np.testing.assert_array_equal(model_b.params, model.params)
    np.testing.assert_array_equal(model_b.grads, model.grads)
    assert losses_a + losses_b == losses
    for key in ("n_iter", "func_evals", "restarts", "last_loss", "last_step_size", "steps"):
        assert getattr(opt_b, key) == getattr(opt, key), key
    np.testing.assert_array_equal(opt_b.state["direction"], opt.state["direction"])


def test_float32_reaches_the_float64_minimum(rnn_data, quadratic):
    x, y = rnn_data
    losses = {}
    for dtype in ("float64", "float32"):
        model = elman.ElmanRNN(3, 5, 2, dtype=dtype, seed=0)
        opt = NonlinearCG(model, max_iter=3000, max_eval=10000, tolerance_grad=1e-5)
        opt.step(rnn_closure(model, x.astype(dtype), y.astype(dtype)))
        assert model.params.dtype == dtype and opt.state["direction"].dtype == np.float64
        losses[dtype] = opt.last_loss
    np.testing.assert_allclose(losses["float32"], losses["float64"], rtol=1e-4)
    A, b = quadratic
    p, g, closure = quadratic_problem(A, b, np.float32)
    NonlinearCG((p, g), max_iter=100).step(closure)
    assert p.dtype == np.float32       # float32 loss values resolve x to ~sqrt(eps) = 3e-4
    np.testing.assert_allclose(p, np.linalg.solve(A, b), rtol=0, atol=1e-3)


@pytest.mark.parametrize("raise_it", [False, True], ids=["returns-inf", "raises"])
def test_a_non_finite_trial_shrinks_the_step(raise_it):
    """A log barrier, infinite outside |x| < 1, with a first trial far outside."""
    p, g = np.full(4, 0.5), np.zeros(4)

    def closure():
        if np.abs(p).max() >= 1:
            if raise_it:
                raise elman.NonFiniteError("closure: the loss is not finite")
            g[...] = np.nan
            return math.inf
        g[...] = 2 * (p + 2) + 2 * p / (1 - p * p)
        return float(((p + 2) ** 2).sum() - np.log(1 - p * p).sum())
    start = closure()
    opt = NonlinearCG((p, g), lr=1e3, max_iter=30)
    assert opt.step(closure) == start
    assert np.abs(p).max() < 1 and opt.last_loss < start
    assert math.isfinite(opt.last_loss) and np.isfinite(g).all()
    # the minimizer of (x + 2)^2 - log(1 - x^2): (x + 2)(1 - x^2) + x = 0 in (-1, 0)
    np.testing.assert_allclose(p, brentq(lambda t: (t + 2) * (1 - t * t) + t, -0.99, 0),
                               atol=1e-6)


def test_an_exception_inside_a_line_search_puts_the_last_accepted_point_back():
    class Interrupted(Exception):
        pass
    p, g, f = rosenbrock([-1.2, 1.0])
    calls = counted(f)

    def closure():                      # the 7th call raises, once: a Ctrl-C, say
        if calls.calls == 6 and not closure.raised:
            closure.raised = True
            raise Interrupted
        return calls()
    closure.raised = False
    opt = NonlinearCG((p, g), max_iter=50, max_eval=500)
    with pytest.raises(Interrupted):
        opt.step(closure)
    assert np.array_equal(g, rosen_der(p)) and rosen(p) < rosen([-1.2, 1.0])  # accepted
    assert opt.func_evals == 7 and opt.state["restart_next"]
    opt.step(closure)
    np.testing.assert_allclose(p, 1.0, atol=1e-5)


def test_a_non_finite_start_raises_and_changes_nothing(rnn_data):
    p, g = np.array([1.0, np.inf]), np.zeros(2)
    opt = NonlinearCG((p, g))
    with pytest.raises(elman.NonFiniteError, match="NonlinearCG.step: .*starting point"):
        opt.step(lambda: float(p.sum()))
    x, y = rnn_data
    model = elman.ElmanRNN(3, 5, 2, dtype="float64", seed=0)
    model.params[0] = np.nan
    opt = NonlinearCG(model)
    with pytest.raises(elman.NonFiniteError, match="NonlinearCG.step: .*starting point"):
        opt.step(rnn_closure(model, x, y))
    assert opt.n_iter == opt.steps == 0 and opt.state["direction"] is None


# --- arguments ------------------------------------------------------------------------

def _pair():
    return np.zeros(3), np.zeros(3)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(beta="CD"), ValueError, r"NonlinearCG: beta must be one of 'PR\+', 'PR', 'FR', "
                                  r"'HS', 'DY', got 'CD'"),
    (dict(max_iter=0), ValueError, "NonlinearCG: max_iter must be >= 1, got 0"),
    (dict(max_iter=-3), ValueError, "NonlinearCG: max_iter must be >= 1"),
    (dict(max_iter=2.0), TypeError, "NonlinearCG: max_iter must be an int"),
    (dict(max_eval=1), ValueError, "NonlinearCG: max_eval must be >= 2"),
    (dict(c1=0.0), ValueError, r"NonlinearCG: .*0 < c1 < c2 < 1, got c1=0.0, c2=0.1"),
    (dict(c1=0.2), ValueError, r"NonlinearCG: .*0 < c1 < c2 < 1, got c1=0.2, c2=0.1"),
    (dict(c1=0.5, c2=0.5), ValueError, r"0 < c1 < c2 < 1"),
    (dict(c2=1.0), ValueError, r"0 < c1 < c2 < 1"),
    (dict(c1=-1e-4), ValueError, r"0 < c1 < c2 < 1"),
    (dict(c2=math.nan), ValueError, "NonlinearCG: c2 must be finite"),
    (dict(lr=0), ValueError, "NonlinearCG: lr must be > 0"),
    (dict(line_search="backtracking"), ValueError, "NonlinearCG: line_search must be one of"),
    (dict(restart=0), ValueError, "NonlinearCG: restart must be >= 1"),
    (dict(powell=0.0), ValueError, "NonlinearCG: powell must be > 0"),
    (dict(tolerance_grad=-1.0), ValueError, "NonlinearCG: tolerance_grad must be >= 0"),
    (dict(max_ls=0), ValueError, "NonlinearCG: max_ls must be >= 1"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        NonlinearCG(_pair(), **kwargs)


def test_bad_models():
    with pytest.raises(TypeError, match="NonlinearCG: expected a model"):
        NonlinearCG(object())
    with pytest.raises(TypeError, match="NonlinearCG: grads has dtype float32"):
        NonlinearCG((np.zeros(3), np.zeros(3, np.float32)))


@pytest.mark.parametrize("closure,match", [
    (None, "NonlinearCG.step: closure must be callable"),
    (3.0, "NonlinearCG.step: closure must be callable"),
    (lambda: None, "NonlinearCG.step: the closure must return the loss as a number, got "
                   "NoneType"),
    (lambda: "1.0", "got str"),
    (lambda: True, "got bool"),
    (lambda: (1.0, None), r"got tuple \(model.forward_backward returns \(loss, h_n\)"),
    (lambda: np.zeros(2), "got ndarray"),
])
def test_bad_closures(closure, match):
    p, g = _pair()
    opt = NonlinearCG((p, g))
    with pytest.raises(TypeError, match=match):
        opt.step(closure)
    assert opt.func_evals == (0 if closure is None or closure == 3.0 else 1)
    assert opt.n_iter == opt.steps == 0 and not p.any()


def test_a_closure_may_return_numpy_scalars():
    p, g = np.array([3.0]), np.zeros(1)

    def closure():
        g[...] = 2 * p
        return np.sum(p * p)                        # np.float64
    opt = NonlinearCG((p, g))
    assert opt.step(closure) == 9.0 and abs(p[0]) < 1e-6


def test_load_state_dict_checks_what_it_loads():
    p, g, closure = rosenbrock([-1.2, 1.0])
    opt = NonlinearCG((p, g), max_iter=3)
    opt.step(closure)
    sd = opt.state_dict()
    other = NonlinearCG(_pair())
    with pytest.raises(ValueError, match=r"NonlinearCG.load_state_dict: state\['direction'\] "
                                         r"must be None or finite floats of shape \(3,\)"):
        other.load_state_dict(sd)
    bad = opt.state_dict()
    bad["settings"]["c2"] = 2.0
    with pytest.raises(ValueError, match="NonlinearCG.load_state_dict: .*0 < c1 < c2 < 1"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["n_iter"] = -1
    with pytest.raises(ValueError, match="NonlinearCG.load_state_dict: n_iter must be >= 0"):
        opt.load_state_dict(bad)
    assert opt.state["n_iter"] == 3 and opt.c2 == 0.1       # nothing was set
    opt.load_state_dict(sd)
    assert opt.state_dict()["state"]["n_iter"] == 3


def test_repr_names_the_settings():
    assert repr(NonlinearCG(_pair(), beta="DY", c2=0.2)).startswith(
        "NonlinearCG(beta='DY', max_iter=20, max_eval=None")
