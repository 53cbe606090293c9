"""The second-order sections: what a Gauss-Newton product costs next to a forward_backward
(``curvature``), and the long-range problems trained to the papers' criterion by the
first-order methods and by Hessian-free optimization (``long-range``)."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

import elman
from elman.task_train import TaskTrainer
from elman.train import TrainConfig

# (label, I, H, O, T, B, loss, last_step_only, ids) of the curvature section
CURVATURE_SHAPES = {
    "full": (("char S1", 65, 100, 65, 25, 1, "cross_entropy", False, True),
             ("char S2", 65, 256, 65, 64, 32, "cross_entropy", False, True),
             ("adding T=100 (HF's curvature batch)", 2, 100, 1, 100, 100, "mse", True, False),
             ("adding T=100, B=1000", 2, 100, 1, 100, 1000, "mse", True, False)),
    "quick": (("char S1", 65, 100, 65, 25, 1, "cross_entropy", False, True),
              ("char S2q", 65, 128, 65, 32, 16, "cross_entropy", False, True),
              ("adding T=100 (HF's curvature batch)", 2, 100, 1, 100, 100, "mse", True,
               False)),
    "tiny": (("tiny ids", 11, 8, 11, 4, 2, "cross_entropy", False, True),
             ("tiny adding", 2, 6, 1, 12, 3, "mse", True, False)),
}


def curvature(worker, preset):
    """Seconds of forward_backward and of one Gauss-Newton product (the operator prepared,
    as CG uses it), with structural damping on, at each shape; their ratio."""
    rows = []
    for label, I, H, O, T, B, loss, last, ids in CURVATURE_SHAPES[preset]:
        rng = np.random.default_rng(0)
        x = rng.integers(0, I, (T, B)) if ids else rng.standard_normal((T, B, I), np.float32)
        if loss == "cross_entropy":
            y = rng.integers(0, O, B if last else (T, B))
        else:
            y = rng.standard_normal((B, O) if last else (T, B, O), np.float32)
        m = elman.ElmanRNN(I, H, O, seed=0)
        kw = dict(loss=loss, last_step_only=last)

        def fb():
            return lambda: m.forward_backward(x, y, **kw)

        def product():
            G = m.gauss_newton(x, **kw)
            v = rng.standard_normal(m.num_params).astype(np.float32)
            out = np.empty_like(v)
            G.matvec(v, out=out)
            return lambda: G.matvec(v, damping=0.5, structural_damping=0.1, out=out)

        a = worker.time(f"curvature {label}: forward_backward", fb)
        b = worker.time(f"curvature {label}: Gauss-Newton product", product)
        row = dict(shape=label, I=I, H=H, O=O, T=T, B=B, loss=loss, fb=a, product=b)
        if a["status"] == b["status"] == "ok":
            row["ratio"] = b["seconds"] / a["seconds"]
        rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class LongRange:
    """The long-range section's grid and budget."""
    tasks: tuple
    lengths: tuple
    budget: float          # seconds of training per cell, at most
    eval_sequences: int
    hidden: int = 100


LONG_RANGE = {
    "full": LongRange(("adding", "multiplication", "temporal_order"), (20, 50, 100, 200),
                      1800.0, 10_000),
    "quick": LongRange(("adding",), (20, 50), 120.0, 10_000),
    "tiny": LongRange(("adding",), (11,), 1.0, 200, hidden=6),
}

# name -> (label, TrainConfig settings): the methods compared, at one budget
METHODS = {
    "sgd": ("SGD + clipping (lr 0.01, norm 1)",
            dict(optimizer="sgd", lr=0.01, clip=1.0, batch=100)),
    "adagrad": ("Adagrad + clipping (lr 0.01, norm 1)",
                dict(optimizer="adagrad", lr=0.01, clip=1.0, batch=100)),
    "hf": ("HF (no structural damping)",
           dict(optimizer="hf", structural_damping=0.0, batch=1000, curvature=0.1)),
    "hf_sd": ("HF + structural damping (mu = 1/30)",
              dict(optimizer="hf", structural_damping=1 / 30, batch=1000, curvature=0.1)),
}


def train_cell(task, T, method, grid, *, log=None, seed=0):
    """Train one (task, T, method) cell within grid.budget seconds of training (evaluation
    not counted), scoring grid.eval_sequences fixed test sequences every tenth of the
    budget and stopping once fewer than 1% are wrong. Returns the cell's record."""
    label, settings = METHODS[method]
    batch = settings["batch"] if grid.hidden >= 50 else min(settings["batch"], 50)
    cfg = TrainConfig(task=task, length=T, hidden=grid.hidden, seed=seed,
                      eval_sequences=grid.eval_sequences, steps=10**9,
                      **{**settings, "batch": batch})
    trainer = TaskTrainer(cfg)
    trained, best, solved_at, evals = 0.0, 0.0, None, []
    next_eval = grid.budget / 10
    while True:
        start = time.perf_counter()
        trainer.train_step()
        trained += time.perf_counter() - start
        last = trained >= grid.budget
        if trained >= next_eval or last:
            next_eval += grid.budget / 10
            right = trainer.evaluate()
            evals.append([trainer.step, round(trained, 2), right])
            best = max(best, right)
            if log:
                log(f"long-range {task} T={T} {method}: step {trainer.step}, "
                    f"{trained:.0f} s, {100 * right:.2f}% right")
            if right > 0.99:
                solved_at = trained
                break
        if last:
            break
    return dict(task=task, T=T, method=method, label=label, right=evals[-1][2], best=best,
                solved=solved_at is not None, seconds=trained, steps=trainer.step,
                sequences=trainer.sequences, evals=evals, budget=grid.budget)


def long_range(worker, preset, budget=None, lengths=None, tasks=None, methods=None):
    """Every (task, T, method) cell of the preset's grid (budget, lengths, tasks and methods
    overridden when given), the lengths of a task in increasing order. A method that did
    not solve a task at one T is not trained at the longer ones: its cells there are
    recorded as skipped, and the longest T it solved is the one to report."""
    grid = LONG_RANGE[preset]
    if tasks is not None:
        grid = dataclasses.replace(grid, tasks=tuple(tasks))
    if budget is not None:
        grid = dataclasses.replace(grid, budget=float(budget))
    if lengths is not None:
        grid = dataclasses.replace(grid, lengths=tuple(lengths))
    methods = tuple(METHODS) if methods is None else tuple(methods)
    cells = []
    for task in grid.tasks:
        unsolved = {}                       # method -> the shortest T it did not solve
        for T in sorted(grid.lengths):
            for method in methods:
                if method in unsolved:
                    cells.append(dict(task=task, T=T, method=method,
                                      label=METHODS[method][0], skipped=unsolved[method]))
                    continue
                try:
                    cell = train_cell(task, T, method, grid, log=worker.log)
                except Exception as err:  # noqa: BLE001 (reported in the table)
                    worker.log(f"long-range {task} T={T} {method}: error {err}")
                    cell = dict(task=task, T=T, method=method, label=METHODS[method][0],
                                error=str(err))
                cells.append(cell)
                if not cell.get("solved"):
                    unsolved[method] = T
    return {"grid": {**dataclasses.asdict(grid), "methods": list(methods)}, "cells": cells}


# ---- markdown -----------------------------------------------------------------------------

PAPERS = (
    "Martens & Sutskever (2011): HF with structural damping, 100 tanh units, gradient on "
    "10,000 sequences and curvature on 1,000 per iteration, at most 300 CG steps; the "
    "pathological problems solved up to T = 200.",
    "Pascanu, Mikolov & Bengio (2013): SGD with lr 0.01 and gradient clipping at 1, 50 "
    "units: 100% success up to T = 200 on temporal order with their regularizer.",
    "A problem counts as solved when fewer than 1% of fresh test sequences are wrong. "
    "elman counts an adding or multiplication sequence right when the absolute error is "
    "below 0.04 (Hochreiter & Schmidhuber 1997); Pascanu et al. use squared error < 0.04.",
)


def curvature_md(runs, label, table):
    lines = ["## Gauss-Newton products", "",
             "Seconds of one `forward_backward` and of one Gauss-Newton product (structural "
             "damping on, the operator prepared as CG uses it: R-operator forward, the loss's "
             "Hessian, BPTT), float32, and the product's cost in forward_backwards.", ""]
    rows = []
    for run in runs:
        for r in run["curvature"]:
            cell = [label(run), r["shape"], f"T={r['T']} B={r['B']} H={r['H']}"]
            for key in ("fb", "product"):
                cell.append(f"{r[key]['seconds'] * 1e3:.3g} ms" if r[key]["status"] == "ok"
                            else r[key]["status"])
            cell.append(f"{r['ratio']:.2f}" if "ratio" in r else "—")
            rows.append(cell)
    return lines + table(["threads", "problem", "sizes", "forward_backward",
                          "G v product", "product / forward_backward"], rows)


def long_range_md(runs, label, table):
    lines = ["## Long-range problems", ""]
    for run in runs:
        lr = run["long_range"]
        g = lr["grid"]
        lines += [f"{label(run)} thread(s); a {g['hidden']}-unit tanh RNN per cell, at most "
                  f"{g['budget']:.0f} s of training (evaluation not counted), scored every "
                  f"tenth of it on the same {g['eval_sequences']:,} fresh test sequences; a "
                  f"cell stops once fewer than 1% are wrong (solved). A method that did not "
                  f"solve a task at one T is not trained at the longer ones.", ""]
        rows = []
        for c in lr["cells"]:
            if "error" in c:
                rows.append([c["task"], c["T"], c["label"], "error", "", "", "", ""])
                continue
            if "skipped" in c:
                rows.append([c["task"], c["T"], c["label"],
                             f"not trained (not solved at T = {c['skipped']})", "no", "",
                             "", ""])
                continue
            rows.append([c["task"], c["T"], c["label"], f"{100 * c['right']:.2f}%",
                         "yes" if c["solved"] else "no", f"{c['seconds']:.0f} s",
                         f"{c['steps']:,}", f"{c['sequences']:,}"])
        lines += table(["task", "T", "method", "test sequences right", "solved (< 1% wrong)",
                        "training time", "steps", "sequences seen"], rows)
    lines += ["The papers' figures:", ""] + [f"- {p}" for p in PAPERS] + [""]
    return lines
