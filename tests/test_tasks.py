"""elman.tasks: the long-range problems' generators against their papers' definitions, their
success rules, and evaluate()."""
import dataclasses
import math

import numpy as np
import pytest

import elman
from elman import tasks

NAMES = ["adding", "multiplication", "xor", "temporal_order", "temporal_order_3",
         "permutation", "memorization_5bit", "copy"]
VARIABLE_LENGTH = {"adding", "multiplication", "xor", "temporal_order", "temporal_order_3"}
E, B = 6, 7  # temporal order: start and trigger symbols


def small_T(task):
    return max(task.min_T, 24)


def T_max(task, T):
    if task.name in VARIABLE_LENGTH:
        return T + T // 10
    return T + 20 if task.name == "copy" else T


def symbols(x):
    """(T, n) ids of one-hot rows, -1 where a row is all zero (padding)."""
    ids = x.argmax(axis=2)
    return np.where(x.sum(axis=2) == 0, -1, ids)


def last_steps(b):
    n = b.x.shape[1]
    return b.lengths - 1 if b.lengths is not None else np.full(n, b.x.shape[0] - 1)


def perfect_outputs(task, b):
    """Y (T_max, n, O) that is right at every scored step (zero elsewhere, as ElmanRNN's
    outputs are at padded steps)."""
    T, n = b.x.shape[:2]
    Y = np.zeros((T, n, task.output_size), np.float32)
    cols = np.arange(n)
    if not task.last_step_only:
        Y[np.arange(T)[:, None], cols, b.y] = 5.0
    elif task.loss == "mse":
        Y[last_steps(b), cols] = b.y
    else:
        Y[last_steps(b), cols, b.y] = 5.0
    return Y


# ---- registry ------------------------------------------------------------------------------

def test_registry_names_and_get():
    assert list(tasks.TASKS) == NAMES
    for name in NAMES:
        task = tasks.get(name)
        assert task is tasks.TASKS[name] and task.name == name
        assert task.loss in ("mse", "cross_entropy")
        assert task.loss_kwargs() == dict(loss=task.loss, last_step_only=task.last_step_only)
        assert task.source and task.description
    with pytest.raises(ValueError, match=r"get: unknown task 'adding_problem'; .*adding, "
                                         r"multiplication, xor, .*copy"):
        tasks.get("adding_problem")
    with pytest.raises(TypeError, match="get: name must be a str"):
        tasks.get(3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tasks.get("adding").threshold = 1.0


def test_sizes_losses_and_rules_as_the_papers_give_them():
    got = {n: (t.input_size, t.output_size, t.loss, t.last_step_only, t.threshold,
               t.recall_steps) for n, t in tasks.TASKS.items()}
    assert got == {
        "adding": (2, 1, "mse", True, 0.04, None),
        "multiplication": (2, 1, "mse", True, 0.04, None),
        "xor": (2, 2, "cross_entropy", True, None, None),
        "temporal_order": (8, 4, "cross_entropy", True, None, None),
        "temporal_order_3": (8, 8, "cross_entropy", True, None, None),
        "permutation": (100, 100, "cross_entropy", True, None, None),
        "memorization_5bit": (4, 3, "cross_entropy", False, None, 5),
        "copy": (10, 9, "cross_entropy", False, None, 10),
    }


# ---- shapes, dtypes, determinism -----------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shapes_and_dtypes(name, dtype):
    task = tasks.get(name)
    T, n = small_T(task), 7
    b = task.batch(n, T, seed=3, dtype=dtype)
    assert isinstance(b, tasks.Batch)
    assert b.x.shape == (T_max(task, T), n, task.input_size) and b.x.dtype == dtype
    assert np.isfinite(b.x).all()
    if not task.last_step_only:
        assert b.y.shape == (T_max(task, T), n) and b.y.dtype == np.int64
    elif task.loss == "mse":
        assert b.y.shape == (n, 1) and b.y.dtype == dtype
    else:
        assert b.y.shape == (n,) and b.y.dtype == np.int64
    if task.loss == "cross_entropy":
        assert 0 <= b.y.min() and b.y.max() < task.output_size
    if name in VARIABLE_LENGTH:
        assert b.lengths.shape == (n,) and b.lengths.dtype == np.int64
        assert (T <= b.lengths).all() and (b.lengths <= T + T // 10).all()
        steps = np.arange(b.x.shape[0])[:, None]
        assert not b.x[steps >= b.lengths].any()               # zero padding
    else:
        assert b.lengths is None


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_batch(name):
    task = tasks.get(name)
    T = small_T(task)
    a, b = task.batch(20, T, seed=11), task.batch(20, T, seed=11)
    for u, v in zip(a, b):
        assert (u is None and v is None) or np.array_equal(u, v)
    c = task.batch(20, T, seed=12)
    assert not np.array_equal(a.x, c.x)
    # seed=s is rng=default_rng(s); a generator advances from batch to batch
    d = task.batch(20, T, rng=np.random.default_rng(11))
    assert np.array_equal(a.x, d.x) and np.array_equal(a.y, d.y)
    rng = np.random.default_rng(11)
    assert not np.array_equal(task.batch(20, T, rng=rng).x, task.batch(20, T, rng=rng).x)
    # the dtype changes only the rounding of the values
    w = task.batch(20, T, seed=11, dtype="float64")
    assert np.array_equal(w.x.astype(np.float32), a.x)


@pytest.mark.parametrize("name", NAMES)
def test_batches_train_an_elman_rnn(name):
    """y and lengths have the shapes forward_backward wants for the task's loss."""
    task = tasks.get(name)
    for dtype in ("float32", "float64"):
        model = elman.ElmanRNN(task.input_size, 4, task.output_size, dtype=dtype)
        b = task.batch(3, task.min_T, seed=0, dtype=dtype)
        loss, _ = model.forward_backward(b.x, b.y, lengths=b.lengths, **task.loss_kwargs())
        assert np.isfinite(loss) and loss > 0


# ---- each problem's definition -------------------------------------------------------------

def marked_pairs(b):
    """(n, 2) sorted steps of the two pairs marked 1.0 in each sequence."""
    marked = b.x[..., 1] == 1.0
    assert (marked.sum(axis=0) == 2).all()
    cols, steps = np.nonzero(marked.T)
    return steps.reshape(-1, 2)


@pytest.mark.parametrize("name", ["adding", "multiplication", "xor"])
def test_marker_layout_of_hochreiter_schmidhuber(name):
    """H&S exp. 4: lengths in [T, T + T/10]; X1 one of the first ten pairs, X2 one of the
    first T/2 - 1 pairs still unmarked; -1 at the first and final pair."""
    task, T, n = tasks.get(name), 22, 4000
    b = task.batch(n, T, seed=5)
    assert set(b.lengths.tolist()) == {22, 23, 24}
    pos = marked_pairs(b)
    # every pair (p < q) with p among the first ten and q among the first T/2 = 11 pairs
    # occurs (X2 is drawn from the 10 unmarked ones among them), and no other
    allowed = {(p, q) for q in range(T // 2) for p in range(min(q, 10))}
    assert set(map(tuple, pos.tolist())) == allowed
    marker = b.x[..., 1]
    cols = np.arange(n)
    first_marked = marker[0] == 1.0
    assert 0 < first_marked.sum() < n
    assert (marker[0, ~first_marked] == -1).all()
    assert (marker[b.lengths - 1, cols] == -1).all()
    assert ((marker == -1).sum(axis=0) == 2 - first_marked).all()
    assert set(np.unique(marker)) <= {-1.0, 0.0, 1.0}


def marked_values(b):
    pos = marked_pairs(b)
    cols = np.arange(b.x.shape[1])
    v = b.x[..., 0].astype(np.float64)
    return v[pos[:, 0], cols], v[pos[:, 1], cols], b.x[0, :, 1] == 1.0


def test_adding_targets():
    b = tasks.get("adding").batch(3000, 40, seed=1)
    X1, X2, first_marked = marked_values(b)
    np.testing.assert_array_equal(b.y[:, 0], (0.5 + (X1 + X2) / 4).astype(np.float32))
    values = b.x[..., 0][b.x[..., 1] != -1]
    assert values.min() >= -1 and values.max() <= 1 and values.min() < -0.99
    assert first_marked.any() and (b.x[0, first_marked, 0] == 0).all()   # first pair: 0


def test_multiplication_targets():
    b = tasks.get("multiplication").batch(3000, 40, seed=2)
    X1, X2, first_marked = marked_values(b)
    np.testing.assert_array_equal(b.y[:, 0], (X1 * X2).astype(np.float32))
    valid = np.arange(b.x.shape[0])[:, None] < b.lengths
    values = b.x[..., 0][valid]
    assert values.min() >= 0 and values.max() <= 1
    assert first_marked.any() and (b.x[0, first_marked, 0] == 1).all()   # first pair: 1


def test_xor_targets():
    b = tasks.get("xor").batch(2000, 40, seed=3)
    X1, X2, _ = marked_values(b)
    valid = np.arange(b.x.shape[0])[:, None] < b.lengths
    assert set(np.unique(b.x[..., 0][valid])) == {0.0, 1.0}
    assert np.array_equal(b.y, X1.astype(int) ^ X2.astype(int))
    assert set(b.y.tolist()) == {0, 1}


@pytest.mark.parametrize("name,windows", [
    ("temporal_order", [(10, 20), (50, 60)]),
    ("temporal_order_3", [(10, 20), (33, 43), (66, 76)])])
def test_temporal_order_sequences_and_classes(name, windows):
    """H&S exp. 6a/6b at T = 100: E, distractors a-d, X/Y at t_i in the windows (1-based
    positions), the trigger B last; class from the order of the X/Ys, XX.. first."""
    task, n = tasks.get(name), 1500
    b = task.batch(n, 100, seed=4)
    ids = symbols(b.x)
    steps = np.arange(ids.shape[0])[:, None]
    valid = steps < b.lengths
    assert ((b.x.sum(axis=2) == 1) == valid).all()              # one-hot, then padding
    cols = np.arange(n)
    assert (ids[0] == E).all() and (ids[b.lengths - 1, cols] == B).all()
    assert ((ids == E).sum(axis=0) == 1).all() and ((ids == B).sum(axis=0) == 1).all()
    relevant = (ids == 4) | (ids == 5)
    assert (relevant.sum(axis=0) == len(windows)).all()
    rest = valid & ~relevant
    rest[0] = False
    rest[b.lengths - 1, cols] = False
    assert set(np.unique(ids[rest])) == {0, 1, 2, 3}
    c, t = np.nonzero(relevant.T)
    t = t.reshape(n, len(windows)) + 1                          # 1-based positions
    label = np.zeros(n, int)
    for i, (lo, hi) in enumerate(windows):
        assert set(t[:, i].tolist()) == set(range(lo, hi + 1))
        label = 2 * label + (ids[t[:, i] - 1, cols] == 5)
    assert np.array_equal(b.y, label)
    assert set(b.y.tolist()) == set(range(task.output_size))


def test_temporal_order_scales_its_windows_with_T():
    b = tasks.get("temporal_order").batch(500, 20, seed=0)
    ids = symbols(b.x)
    c, t = np.nonzero(((ids == 4) | (ids == 5)).T)
    t = t.reshape(-1, 2) + 1
    assert set(t[:, 0].tolist()) == {2, 3, 4} and set(t[:, 1].tolist()) == {10, 11, 12}


def test_permutation_sequences():
    T, n = 30, 1000
    b = tasks.get("permutation").batch(n, T, seed=5)
    assert (b.x.sum(axis=2) == 1).all()
    ids = symbols(b.x)
    assert set(ids[0].tolist()) == {0, 1} and np.array_equal(b.y, ids[0])
    assert ids[1:].min() == 2 and ids[1:].max() == 99


def test_memorization_5bit_sequences():
    T, n = 20, 200
    b = tasks.get("memorization_5bit").batch(n, T, seed=6)
    ids = symbols(b.x)
    bits = ids[:5]
    assert set(np.unique(bits)) == {0, 1}
    assert (ids[5:T - 6] == 2).all() and (ids[T - 6] == 3).all() and (ids[T - 5:] == 2).all()
    assert (b.y[:T - 5] == 2).all() and np.array_equal(b.y[T - 5:], bits)


def test_copy_sequences():
    T, n = 15, 300
    b = tasks.get("copy").batch(n, T, seed=7)
    ids = symbols(b.x)
    assert ids.shape == (T + 20, n)
    first = ids[:10]
    assert first.min() == 0 and first.max() == 7
    assert (ids[10:T + 9] == 8).all() and (ids[T + 9] == 9).all() and (ids[T + 10:] == 8).all()
    assert (b.y[:T + 10] == 8).all() and np.array_equal(b.y[T + 10:], first)
    assert tasks.get("copy").batch(2, 1, seed=0).x.shape == (21, 2, 10)   # no blank: T = 1


def test_memoryless_baseline():
    for T in (1, 100, 500):
        assert tasks.memoryless_baseline(T) == pytest.approx(10 * math.log(8) / (T + 20))
    # the cross-entropy of "blank for sure, then uniform over the 8 symbols" on real targets
    T = 30
    b = tasks.get("copy").batch(5, T, seed=0)
    p = np.zeros((T + 20, 5, 9))
    p[:T + 10, :, 8] = 1.0
    p[T + 10:, :, :8] = 1 / 8
    chosen = np.take_along_axis(p, b.y[..., None], axis=2)
    assert -np.log(chosen).mean() == pytest.approx(tasks.memoryless_baseline(T))
    with pytest.raises(ValueError, match="memoryless_baseline: T must be >= 1"):
        tasks.memoryless_baseline(0)


# ---- correct() -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_correct_on_perfect_and_perturbed_outputs(name):
    task = tasks.get(name)
    b = task.batch(6, small_T(task), seed=8)
    Y = perfect_outputs(task, b)
    assert task.correct(Y, b).dtype == bool
    assert task.correct(Y, b).all()
    last = last_steps(b)
    bad = Y.copy()
    if task.loss == "mse":
        bad[last[1], 1, 0] += 0.05
        bad[last[3], 3, 0] -= 0.03                              # within 0.04: still right
    elif task.last_step_only:
        bad[last[1], 1, (b.y[1] + 1) % task.output_size] = 10.0
    else:
        bad[-1, 1, (b.y[-1, 1] + 1) % task.output_size] = 10.0  # the last recalled symbol
        bad[0, 3, (b.y[0, 3] + 1) % task.output_size] = 10.0    # a step that is not scored
    # NaN where argmax would read it as the right class: never correct
    target4 = 0 if task.loss == "mse" else (b.y[4] if task.last_step_only else b.y[-1, 4])
    bad[last[4], 4, target4] = np.nan
    assert task.correct(bad, b).tolist() == [True, False, True, True, False, True]


@pytest.mark.parametrize("name", sorted(VARIABLE_LENGTH))
def test_correct_reads_each_sequence_at_its_own_last_step(name):
    task = tasks.get(name)
    b = task.batch(50, 30, seed=9)
    Y = perfect_outputs(task, b)
    short = np.nonzero(b.lengths < b.x.shape[0])[0]
    assert short.size
    wrong = np.zeros((short.size, task.output_size), np.float32)   # a wrong answer
    if task.loss == "mse":
        wrong[:, 0] = b.y[short, 0] + 0.5
    else:
        wrong[np.arange(short.size), (b.y[short] + 1) % task.output_size] = 5.0
    Y[-1, short] = wrong                 # the padded last step of the shorter sequences
    assert task.correct(Y, b).all()
    Y[b.lengths[short] - 1, short] = wrong
    assert not task.correct(Y, b)[short].any()


def test_the_threshold_can_be_pascanu_s():
    task = tasks.get("adding")
    b = task.batch(4, 30, seed=1)
    Y = perfect_outputs(task, b)
    Y[last_steps(b), np.arange(4), 0] += 0.1
    assert not task.correct(Y, b).any()
    assert task.correct(Y, b, threshold=0.2).all()              # squared error 0.01 < 0.04
    assert dataclasses.replace(task, threshold=0.2).correct(Y, b).all()
    with pytest.raises(ValueError, match="threshold must be > 0"):
        task.correct(Y, b, threshold=0)


def test_correct_checks_the_outputs_shape():
    task = tasks.get("temporal_order")
    b = task.batch(4, 30, seed=1)
    with pytest.raises(ValueError, match=r"Task.correct \('temporal_order'\): Y has shape "
                                         r"\(33, 4, 3\), expected \(33, 4, 4\)"):
        task.correct(np.zeros((33, 4, 3)), b)


# ---- evaluate() ----------------------------------------------------------------------------

class Oracle:
    """Reads each answer off the inputs, by the papers' rules, and puts it at each
    sequence's last step (zeros elsewhere), as an ElmanRNN's forward would."""

    def __init__(self, task, wrong=False):
        self.task, self.wrong, self.calls = task, wrong, 0

    def answers(self, x):
        name, n = self.task.name, x.shape[1]
        if name in ("adding", "multiplication", "xor"):
            cols, steps = np.nonzero((x[..., 1] == 1).T)
            v = x[steps.reshape(n, 2), np.arange(n)[:, None], 0].astype(np.float64)
            if name == "adding":
                return 0.5 + v.sum(axis=1) / 4
            if name == "multiplication":
                return v.prod(axis=1)
            return v[:, 0].astype(int) ^ v[:, 1].astype(int)
        ids = symbols(x)
        if name.startswith("temporal_order"):
            out = []
            for row in ids.T:                       # X = 0, Y = 1, in the order they come
                c = 0
                for s in row[(row == 4) | (row == 5)]:
                    c = 2 * c + int(s == 5)
                out.append(c)
            return np.array(out)
        if name == "permutation":
            return ids[0]
        return ids[:10] if name == "copy" else ids[:5]

    def forward(self, x, h0=None, *, lengths=None):
        self.calls += 1
        task, (T, n) = self.task, x.shape[:2]
        if task.name in VARIABLE_LENGTH:
            assert lengths is not None
        last = lengths - 1 if lengths is not None else np.full(n, T - 1)
        a = self.answers(x)
        Y = np.zeros((T, n, task.output_size), np.float32)
        cols = np.arange(n)
        if task.loss == "mse":
            Y[last, cols, 0] = a + (0.5 if self.wrong else 0.0)
        elif task.last_step_only:
            Y[last, cols, (a + self.wrong) % task.output_size] = 1.0
        else:
            k = task.recall_steps
            Y[T - k:][np.arange(k)[:, None], cols, (a + self.wrong) % task.output_size] = 1.0
        return Y, None


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_gives_one_to_a_model_that_is_always_right(name):
    task = tasks.get(name)
    oracle = Oracle(task)
    assert tasks.evaluate(oracle, task, n=250, T=small_T(task), batch_size=100) == 1.0
    assert oracle.calls == 3                                    # chunks of 100, 100, 50
    assert tasks.evaluate(Oracle(task, wrong=True), name, n=50, T=small_T(task)) == 0.0


def test_evaluate_a_tiny_elman_rnn():
    task = tasks.get("adding")
    model = elman.ElmanRNN(2, 4, 1, seed=3)
    a = tasks.evaluate(model, "adding", n=300, T=20, seed=1, batch_size=128)
    assert 0.0 <= a <= 1.0
    assert tasks.evaluate(model, task, n=300, T=20, seed=1, batch_size=128) == a
    # the same sequences as generating them by hand
    rng, right = np.random.default_rng(1), 0
    for m in (128, 128, 44):
        b = task.batch(m, 20, rng=rng)
        right += task.correct(model.forward(b.x, lengths=b.lengths)[0], b).sum()
    assert a == right / 300
    model64 = elman.ElmanRNN(8, 4, 4, dtype="float64")
    assert 0.0 <= tasks.evaluate(model64, "temporal_order", n=40, T=20) <= 1.0


def test_evaluate_refuses_bad_arguments():
    model = elman.ElmanRNN(2, 4, 1)
    with pytest.raises(TypeError, match="evaluate: task must be a task name or a Task"):
        tasks.evaluate(model, 3)
    with pytest.raises(ValueError, match="evaluate: unknown task 'add'; the tasks are adding"):
        tasks.evaluate(model, "add")
    with pytest.raises(ValueError, match="evaluate: the model's input_size is 2, but task "
                                         "'temporal_order' needs 8"):
        tasks.evaluate(model, "temporal_order")
    with pytest.raises(TypeError, match="evaluate: model must have a forward"):
        tasks.evaluate(object(), "adding")
    with pytest.raises(ValueError, match="evaluate: n must be >= 1, got 0"):
        tasks.evaluate(model, "adding", n=0)
    with pytest.raises(ValueError, match="evaluate: batch_size must be >= 1"):
        tasks.evaluate(model, "adding", batch_size=0)
    with pytest.raises(ValueError, match="evaluate: T must be >= 11 for task 'adding'"):
        tasks.evaluate(model, "adding", T=10)


# ---- argument errors -----------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_T_below_the_minimum_names_it(name):
    task = tasks.get(name)
    task.batch(1, task.min_T, seed=0)
    with pytest.raises(ValueError, match=rf"Task.batch \('{name}'\): T must be >= "
                                         rf"{task.min_T} for task '{name}' \(.+\), got"):
        task.batch(1, task.min_T - 1, seed=0)


def test_batch_refuses_bad_arguments():
    task = tasks.get("adding")
    where = r"Task.batch \('adding'\): "
    with pytest.raises(ValueError, match=where + "n must be >= 1, got 0"):
        task.batch(0, 30)
    with pytest.raises(TypeError, match=where + "n must be an int, got float"):
        task.batch(2.0, 30)
    with pytest.raises(TypeError, match=where + "T must be an int"):
        task.batch(2, "30")
    with pytest.raises(TypeError, match=where + "dtype must be float32 or float64, got int32"):
        task.batch(2, 30, dtype="int32")
    with pytest.raises(TypeError, match=where + "dtype must be float32 or float64"):
        task.batch(2, 30, dtype="no such dtype")
    with pytest.raises(ValueError, match=where + "pass seed or rng, not both"):
        task.batch(2, 30, seed=1, rng=np.random.default_rng(1))
    with pytest.raises(TypeError, match=where + "rng must be a numpy.random.Generator, got int"):
        task.batch(2, 30, rng=1)
    with pytest.raises(ValueError, match=where + "seed must be >= 0, got -1"):
        task.batch(2, 30, seed=-1)
