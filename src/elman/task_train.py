"""``elman train --task adding|multiplication|...``: training on the long-range problems of
:mod:`elman.tasks`, with Hessian-free optimization (``--optimizer hf``) or the first-order
optimizers with gradient clipping.

Every step draws a fresh batch of the task's sequences (from the run's seed and the step
number, so a resumed run sees the batches an uninterrupted one would) and makes one update:
one HF iteration, or one Adagrad/SGD step. Each report scores the model on the same
``eval_sequences`` (10,000 by default) sequences, generated from a seed no training batch
uses: the fraction right by the task's own rule, the figure the papers report.

The model starts from the sparse initialization of Martens (2010): each unit draws 15
nonzero incoming weights (all of them when it has fewer inputs) from N(0, 1); W_hh is then
rescaled to spectral radius 1.2 (a little above 1, so that the states neither die out nor
blow up over the first steps of a long sequence), and the biases are zero. Both scales are
settings (``--spectral-radius``, ``--input-scale``: W_xh times that factor).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import checkpoint, tasks
from .distributed import LocalComm
from .hf import HessianFree
from .model import ElmanRNN
from .optim import SGD, Adagrad
from .train import LossHistory, TrainConfig, refuse_finished, restore_first_order

EVAL_SEED = 2**31 - 1        # the test sequences' seed; training batches use (seed, step)
SPARSE_CONNECTIONS = 15      # incoming weights per unit of the sparse initialization


def sparse_init(model, seed, *, spectral_radius=TrainConfig.spectral_radius,
                input_scale=TrainConfig.input_scale):
    """Martens' sparse initialization (module docstring), in place: W_hh rescaled to
    ``spectral_radius``, W_xh multiplied by ``input_scale``."""
    rng = np.random.default_rng(seed)
    for name, W in model.named_params().items():
        if name.startswith("b_"):
            W[...] = 0
            continue
        fan_in, units = W.shape
        W[...] = 0
        k = min(SPARSE_CONNECTIONS, fan_in)
        for j in range(units):
            rows = rng.choice(fan_in, size=k, replace=False)
            W[rows, j] = rng.standard_normal(k)
        if name.startswith("W_hh"):
            radius = float(np.max(np.abs(np.linalg.eigvals(W.astype(np.float64)))))
            if radius > 0:
                W *= spectral_radius / radius
        elif name.startswith("W_xh"):
            W *= input_scale


class TaskTrainer:
    """A model, its optimizer and the state of one run on a long-range task; the interface
    elman.session.run drives (train_step, evaluate, save, ...)."""

    text = False

    def __init__(self, cfg, *, state=None, comm=None):
        comm = LocalComm() if comm is None else comm
        if comm.distributed:
            raise ValueError("the long-range tasks train in one process (no mpiexec)")
        self.cfg, self.comm, self.is_root = cfg, comm, True
        self.stop_requested = False
        self.task = tasks.get(cfg.task)
        self.T = cfg.length if cfg.length is not None else self.task.default_T
        self.task._check_T(self.T, "elman train --length")
        if cfg.layers != 1 or cfg.dropout:
            raise ValueError("the long-range tasks train one layer without dropout")
        t = self.task
        self.model = ElmanRNN(t.input_size, cfg.hidden, t.output_size, dtype=cfg.dtype,
                              seed=cfg.seed, compute_dtype=cfg.compute_dtype)
        sparse_init(self.model, cfg.seed, spectral_radius=cfg.spectral_radius,
                    input_scale=cfg.input_scale)
        if cfg.optimizer == "hf":
            self.opt = HessianFree(
                self.model, damping=cfg.damping,
                structural_damping=(cfg.structural_damping if cfg.structural_damping
                                    is not None else 1 / 30),
                max_cg_iters=cfg.cg_iters, seed=cfg.seed)
            self.lr = None
        elif cfg.optimizer == "adagrad":
            self.opt = Adagrad(self.model, lr=cfg.lr if cfg.lr is not None else 0.01,
                               max_grad_norm=cfg.clip)
            self.lr = self.opt.lr
        elif cfg.optimizer == "sgd":
            self.opt = SGD(self.model, lr=cfg.lr if cfg.lr is not None else 0.01,
                           max_grad_norm=cfg.clip)
            self.lr = self.opt.lr
        else:
            raise ValueError(f"optimizer must be 'hf', 'adagrad' or 'sgd', got "
                             f"{cfg.optimizer!r}")
        self.total = cfg.steps if cfg.steps is not None else (
            500 if cfg.optimizer == "hf" else 50_000)
        self.step = 0
        self.skipped = 0
        self.sequences = 0     # training sequences seen
        self.last = None       # the last HFStep (hf)
        self.history = LossHistory()
        self.evals = []        # [step, fraction right]
        self.tokens_per_step = cfg.batch * self.T
        self.data = _TaskData(self.task, self.T)
        if state is not None:
            self._restore(*state)

    # ---- one step ---------------------------------------------------------------------

    def batch(self, step):
        """The training batch of a step: (seed, step) seeds it."""
        rng = np.random.default_rng([self.cfg.seed, step])
        return self.task.batch(self.cfg.batch, self.T, rng=rng, dtype=self.cfg.dtype)

    def train_step(self) -> float:
        b = self.batch(self.step)
        kw = self.task.loss_kwargs()
        if isinstance(self.opt, HessianFree):
            curvature = min(1.0, self.cfg.curvature)
            info = self.opt.step(b.x, b.y, lengths=b.lengths, curvature=curvature, **kw)
            self.last = info
            loss = info.new_loss
        else:
            loss, _ = self.model.forward_backward(b.x, b.y, lengths=b.lengths, **kw)
            self.opt.step()
        self.step += 1
        self.sequences += self.cfg.batch
        self.history.append(self.step, loss)
        return loss

    def postfix(self, loss, steps_per_s):
        """The progress bar's text after a step."""
        text = f"loss {loss:.4g}"
        if self.last is not None:
            s = self.last
            text += (f", λ {s.next_damping:.3g}, ρ {s.rho:.2f}, CG {s.cg_iters}"
                     f" (kept {s.backtrack}), α {s.step_size:.2g}")
        if self.evals:
            text += f", right {100 * self.evals[-1][1]:.2f}%"
        return text + f", {steps_per_s:.2f} steps/s"

    # ---- evaluation ---------------------------------------------------------------------

    def evaluate(self) -> float:
        """The fraction of the cfg.eval_sequences test sequences the model gets right."""
        return tasks.evaluate(self.model, self.task, n=self.cfg.eval_sequences, T=self.T,
                              seed=EVAL_SEED)

    def baseline(self) -> float:
        """What outputs that ignore the input score on the test sequences: the mean target
        (mse tasks) or the most frequent class at every scored step."""
        b = self.task.batch(min(self.cfg.eval_sequences, 2000), self.T, seed=EVAL_SEED,
                            dtype="float64")
        T_max, n = b.x.shape[:2]
        Y = np.zeros((T_max, n, self.task.output_size))
        if self.task.loss == "mse":
            Y[...] = np.mean(b.y, axis=0)
        else:
            ys = b.y.reshape(-1)
            Y[..., np.bincount(ys, minlength=self.task.output_size).argmax()] = 1
        return float(np.mean(self.task.correct(Y, b)))

    def report(self, metric):
        """The lines printed at each report."""
        solved = " (solved: < 1% wrong)" if metric > 0.99 else ""
        line = (f"step {self.step}/{self.total}: {100 * metric:.2f}% of "
                f"{self.cfg.eval_sequences:,} test sequences right{solved}; "
                f"{self.sequences:,} training sequences seen")
        return [line]

    # ---- checkpoints --------------------------------------------------------------------

    def save(self, location):
        return self.write(location, None)

    def gather_state(self):
        return None

    def write(self, location, h):
        arrays = {"params": self.model.params}
        meta = {"config": dataclasses.asdict(self.cfg), "step": self.step,
                "total": self.total, "sequences": self.sequences, "skipped": self.skipped,
                "evals": self.evals, "data_name": self.data.name, **self.history.state()}
        if isinstance(self.opt, HessianFree):
            sd = self.opt.state_dict()
            if sd["direction"] is not None:
                arrays["opt_state"] = sd["direction"]
            meta["hf"] = {"damping": sd["damping"], "steps": sd["steps"],
                          "rng": _jsonable(sd["rng"])}
        else:
            sd = self.opt.state_dict()
            buf = sd.get("state", sd.get("momentum_buffer"))
            if buf is not None:
                arrays["opt_state"] = buf
            meta["opt_steps"] = sd["steps"]
        return checkpoint.save(location, arrays, meta)

    def _restore(self, arrays, meta):
        missing = {"step", "history", "evals"} - set(meta)
        if missing or "params" not in arrays:
            raise checkpoint.CheckpointError(
                f"not a checkpoint of elman train --task {self.task.name}: lacks "
                f"{sorted(missing) or 'arrays'}")
        try:
            self.model.params[...] = arrays["params"]
        except ValueError as e:
            raise checkpoint.CheckpointError(f"the checkpoint does not fit this model: {e}") \
                from None
        if isinstance(self.opt, HessianFree):
            hf = meta.get("hf")
            if hf is None:
                raise checkpoint.CheckpointError("the checkpoint lacks the HF state")
            self.opt.load_state_dict({"damping": hf["damping"], "steps": hf["steps"],
                                      "direction": arrays.get("opt_state"),
                                      "rng": _from_json(hf["rng"])})
        else:
            restore_first_order(self.opt, arrays, meta)
        self.step, self.sequences = meta["step"], meta.get("sequences", 0)
        self.skipped = meta.get("skipped", 0)
        self.history, self.evals = LossHistory.from_meta(meta), meta["evals"]
        refuse_finished(self.step, self.total)


class _TaskData:
    """What the session and the command line read of a run's data: its name."""

    def __init__(self, task, T):
        self.name = f"{task.name} (T = {T})"


def _jsonable(state):
    """A NumPy bit generator's state with its integers as strings (JSON has no 128-bit
    integers)."""
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, int) and not isinstance(state, bool):
        return {"int": str(state)}
    return state


def _from_json(state):
    if isinstance(state, dict):
        if set(state) == {"int"}:
            return int(state["int"])
        return {k: _from_json(v) for k, v in state.items()}
    return state

