"""The main job: train a character language model (or a next-value regressor) with stateful
truncated backprop through time, evaluate it on held-out data, checkpoint and resume.

Batching: the training ids are cut into B lanes, each a contiguous stretch of the text;
window k of lane b is ``lane_b[k*T : k*T + T + 1]``. The hidden state of each lane is carried
from one window to the next (the gradient is not: truncated BPTT) and reset to zero when the
lanes run out and a new epoch starts. So every window continues exactly where the previous
one stopped, and a resumed run sees the same windows with the same states as an
uninterrupted one.

The loop around a Trainer (signals, progress, periodic evaluation and checkpoints, the plot)
is elman.session; the command line (``elman train``, ``elman sample``) is in elman.cli. From
Python::

    >>> from elman.train import TrainConfig, Trainer, load_data
    >>> from elman import session
    >>> cfg = TrainConfig(steps=100, hidden=64)            # doctest: +SKIP
    >>> session.run(Trainer(cfg, load_data(cfg)), "run")     # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys

import numpy as np

from . import checkpoint, kernels
from .distributed import LocalComm, shard
from .data import (BUILTIN_BUDGET, Corpus, DataError, Series, builtin_text, make_corpus,
                   make_series, read_series, read_text, synthetic_series)
from ._validate import NonFiniteError, all_finite
from .model import ElmanRNN
from .optim import SGD, Adagrad

LN2 = math.log(2.0)
SYNC_CHECK_EVERY = 100   # data-parallel runs compare the ranks' parameters this often
HISTORY_POINTS = 1024    # a run's loss curve keeps at most this many points (binned)
PYTHON = "%d.%d" % sys.version_info[:2]   # the built-in text comes from its stdlib


BASE_LR = 0.02   # elman train's Adagrad rate for the token embedding and the biases


def default_lr(hidden: int, layers: int = 1) -> float:
    """``elman train``'s Adagrad rate, when neither --lr nor --preset gives one, for the
    matrices whose fan-in is H (W_hh, the stacked layers' W_xh, W_hy):
    min(0.1, 0.02 * 256 / hidden) / layers. The token embedding (layer 0's W_xh) and the
    biases keep BASE_LR where that is higher (default_base_lr).

    Adagrad's first steps move every weight by about lr whatever its gradient's size, so a
    coherent change of an (H, H) matrix has a spectral norm near lr * H: one rate of 0.02,
    which trains H = 256, saturates tanh at H = 1024, and 0.01 did too after a 200-step
    warm-up (14.0 bits/char at step 500). Hence a rate inversely proportional to the
    fan-in, and to the depth, since each stacked layer puts two more such matrices on the
    path (3 layers of 256 at 0.02: 12 bits/char at step 250). An embedding row and a bias
    have fan-in 1, so they keep the rate that works at every size, as in the maximal-update
    parametrization: at H = 1024 the embedding and biases at 0.02 instead of 0.005 took
    held-out bits/char at step 750 from 3.365 to 3.109. Measured by bench/defaults_grid.py;
    its table is in the README."""
    return min(0.1, 0.02 * 256 / hidden) / layers


def default_base_lr(hidden: int, layers: int = 1) -> float:
    """The Adagrad rate of the token embedding and the biases: BASE_LR, or the matrices'
    rate where that is higher (small models: H = 128 with its embedding at 0.02 and its
    matrices at 0.04 spiked to 8 bits/char at step 1000, and H = 64 ended 0.3 bits/char
    worse than with one rate)."""
    return max(BASE_LR, default_lr(hidden, layers))


def default_lr_scales(model, layers: int) -> dict:
    """lr multipliers (relative to default_base_lr) of the fan-in-H matrices, for Adagrad's
    ``lr_scales``: every named parameter but layer 0's W_xh (W_xh, W_xh_reverse) and the
    biases. Empty where the two rates agree."""
    scale = default_lr(model.hidden_size, layers) / default_base_lr(model.hidden_size, layers)
    if scale == 1.0:
        return {}
    return {name: scale for name in model.named_params()
            if not name.startswith("b_") and name not in ("W_xh", "W_xh_reverse")}


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run (saved in its checkpoints)."""
    task: str = "text"            # "text": next character; "series": next value (mse);
                                  # or a long-range problem of elman.tasks ("adding", ...)
    data: "str | None" = None     # a UTF-8 text file (or CSV for series); None: built-in
    byte_level: bool = False      # text as bytes (vocabulary 256)
    column: "str | None" = None   # the CSV column of a series
    hidden: int = 256
    layers: int = 1               # stacked Elman layers
    dropout: float = 0.0          # between layers, while training
    seq_len: int = 64
    batch: int = 32
    steps: "int | None" = None    # total steps of the run; None: from epochs or the default
    epochs: "float | None" = None
    lr: "float | None" = None     # None: default_lr(hidden, layers), or the --preset's
    warmup: int = 0               # steps of linear learning-rate warm-up (0: none)
    optimizer: str = "adagrad"    # "adagrad", "sgd", or "hf" (long-range tasks)
    preset: "str | None" = None   # an Adagrad preset (elman.optim.PRESETS)
    clip: "float | None" = 5.0    # global gradient-norm clip; None: no clipping
    seed: int = 0
    dtype: str = "float32"
    compute_dtype: "str | None" = None  # the products' dtype: None (dtype's) or "bfloat16"
    every: int = 1000             # evaluate, checkpoint and print a sample every this many steps
    valid_chars: int = 100_000    # held-out symbols evaluated (the first of the split)
    sample_len: int = 200
    temperature: float = 0.8
    on_nonfinite: str = "stop"    # a NaN/inf loss or gradient: "stop" the run, or "skip" the step
    transform: str = "auto"       # series: "auto", "none" or "diff" (first differences)
    # the long-range tasks (elman.task_train)
    length: "int | None" = None   # the task's T; None: the paper's (task.default_T)
    damping: float = 1.0          # HF: the initial damping lambda
    structural_damping: "float | None" = None   # HF: mu; None: 1/30
    cg_iters: int = 250           # HF: CG iterations at most per step
    curvature: float = 0.1        # HF: the fraction of the batch the curvature uses
    eval_sequences: int = 10_000  # test sequences scored at each report
    spectral_radius: float = 1.2  # W_hh's spectral radius after the sparse initialization
    input_scale: float = 1.0      # W_xh's scale after the sparse initialization

    DEFAULT_STEPS = 12_000
    # what may differ when a run is resumed (the rest defines the model, data and trajectory)
    RESUMABLE = ("steps", "epochs", "every", "on_nonfinite", "lr", "eval_sequences",
                 "compute_dtype")

    def learning_rate(self) -> "float | None":
        """The learning rate of the run's matrices: --lr, else the preset's (None), else
        default_lr (the embedding and biases then keep BASE_LR with Adagrad)."""
        if self.lr is not None:
            return self.lr
        return None if self.preset else default_lr(self.hidden, self.layers)


    def total_steps(self, windows_per_epoch: int) -> int:
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return max(1, int(round(self.epochs * windows_per_epoch)))
        return self.DEFAULT_STEPS


def is_long_range(task: str) -> bool:
    """Whether ``task`` names one of elman.tasks' problems (trained by elman.task_train)."""
    from .tasks import TASKS
    return task in TASKS


def make_trainer(cfg: TrainConfig, *, state=None, comm=None):
    """The trainer of a config: a Trainer on text or a series, a TaskTrainer on a long-range
    problem."""
    if is_long_range(cfg.task):
        from .task_train import TaskTrainer
        return TaskTrainer(cfg, state=state, comm=comm)
    if cfg.optimizer == "hf":
        raise ValueError("--optimizer hf trains the long-range tasks (--task adding, ...); "
                         "text and series train with adagrad or sgd")
    return Trainer(cfg, load_data(cfg), state=state, comm=comm)


def load_data(cfg: TrainConfig) -> "Corpus | Series":
    """The corpus or series a config names; raises DataError with what is wrong."""
    if cfg.task == "series":
        need = 20 * cfg.seq_len * cfg.batch
        if cfg.data is None:
            return make_series(synthetic_series(max(60_000, 2 * need)), "sum of sines",
                               min_len=need, transform=cfg.transform)
        return make_series(read_series(cfg.data, cfg.column), cfg.data, min_len=need,
                           transform=cfg.transform)
    need = 20 * (cfg.seq_len + 1) * cfg.batch
    if cfg.data is None:
        text = builtin_text(max(BUILTIN_BUDGET, need))
        return make_corpus(text, "Python standard library sources", min_chars=need)
    return make_corpus(read_text(cfg.data, byte_level=cfg.byte_level), cfg.data,
                       min_chars=need, byte_level=cfg.byte_level)


class ResumeError(ValueError):
    """A resume that would not continue the run: a setting that contradicts the
    checkpoint's, other data, or a total already reached. ``clashes``: the contradicting
    settings as (name, given, the run's)."""

    def __init__(self, message, clashes=()):
        super().__init__(message)
        self.clashes = list(clashes)


class LossHistory:
    """The training loss at every step, kept in at most HISTORY_POINTS bins: bins of
    ``width`` steps, whose width doubles (neighbours merged) when they fill up. Each point
    is [last step of the bin, mean loss over it]. Bounded however long the run, and
    restored exactly on resume (the open bin's sum and count are saved with it)."""

    def __init__(self, points=None, width=1, open_sum=0.0, open_count=0):
        self.points = [list(p) for p in points or []]
        self.width, self.open_sum, self.open_count = int(width), float(open_sum), int(open_count)

    def append(self, step, loss):
        self.open_sum += loss
        self.open_count += 1
        if self.open_count < self.width:
            return
        self.points.append([step, self.open_sum / self.open_count])
        self.open_sum, self.open_count = 0.0, 0
        self._merge()

    def _merge(self):
        while len(self.points) >= HISTORY_POINTS:   # (an older checkpoint's may be longer)
            pts = self.points
            self.points = [[b[0], (a[1] + b[1]) / 2] for a, b in zip(pts[0::2], pts[1::2])]
            self.width *= 2

    def state(self):
        return {"history": self.points,
                "history_bins": [self.width, self.open_sum, self.open_count]}

    @classmethod
    def from_meta(cls, meta):
        width, s, c = meta.get("history_bins", (1, 0.0, 0))
        history = cls(meta["history"], width, s, c)
        history._merge()
        return history


class NonFiniteStop(RuntimeError):
    """A step met a NaN or infinite loss or gradient. ``consistent``: nothing was updated,
    so the run's state may be checkpointed; otherwise the update made parameters
    non-finite and must not be saved."""

    def __init__(self, message, consistent):
        super().__init__(message)
        self.consistent = consistent


class Trainer:
    """A model, its optimizer, the data lanes and the carried state of one run."""

    def __init__(self, cfg: TrainConfig, data: "Corpus | Series", *, state=None, comm=None):
        """comm: an elman.distributed.Comm for data-parallel training over MPI (each rank
        trains its share of the B lanes); None: this process alone (a LocalComm)."""
        self.cfg, self.data = cfg, data
        self.comm = comm = LocalComm() if comm is None else comm
        self.is_root = comm.is_root
        self.stop_requested = False   # set by run() on Ctrl-C; acted on by all ranks at once
        self.text = cfg.task == "text"
        V = data.vocab_size if self.text else 1
        # torch's U(-1/sqrt(H), 1/sqrt(H)): with N(0, 0.01^2) (min-char-rnn's) the layers
        # of a stack pass almost nothing up at the start, and a 2- or 3-layer model stayed
        # at the unigram entropy for thousands of steps
        self.model = ElmanRNN(V, cfg.hidden, V, num_layers=cfg.layers, dropout=cfg.dropout,
                              dtype=cfg.dtype, seed=cfg.seed, init="uniform",
                              compute_dtype=cfg.compute_dtype)
        lr = cfg.learning_rate()
        if cfg.optimizer == "adagrad" and cfg.lr is None and cfg.preset is None:
            # the default: per-parameter rates (default_lr)
            scales = default_lr_scales(self.model, cfg.layers)
            self.opt = Adagrad(self.model, lr=default_base_lr(cfg.hidden, cfg.layers),
                               max_grad_norm=cfg.clip, lr_scales=scales or None)
        elif cfg.optimizer == "adagrad":
            kw = {} if lr is None else {"lr": lr}
            self.opt = Adagrad(self.model, max_grad_norm=cfg.clip, preset=cfg.preset, **kw)
        elif cfg.optimizer == "sgd":
            self.opt = SGD(self.model, lr=default_lr(cfg.hidden, cfg.layers) if lr is None
                           else lr, max_grad_norm=cfg.clip)
        else:
            raise ValueError(f"optimizer must be 'adagrad' or 'sgd', got {cfg.optimizer!r}")
        self.lr = self.opt.lr              # the rate after warm-up
        self.warmup = cfg.warmup
        B, T = cfg.batch, cfg.seq_len
        series = data.train if self.text else data.train.astype(self.model.dtype)
        self.lane_len = len(series) // B
        self.lanes = series[:B * self.lane_len].reshape(B, self.lane_len)
        # this rank's lanes: an equal share of the global batch (all of it alone), with
        # the dropout masks numbered in the whole batch, as one process would draw them
        lo, hi = shard(B, comm.rank, comm.size)
        self.my_lanes = slice(lo, hi)
        self.lanes, B = self.lanes[lo:hi], hi - lo
        if comm.distributed:
            self.model.dropout_lanes = (cfg.batch, lo)
        self.windows_per_epoch = (self.lane_len - 1) // T
        if self.windows_per_epoch < 1:
            raise DataError(f"{data.name}: too short for {B} lanes of windows of {T}")
        self.total = cfg.total_steps(self.windows_per_epoch)
        self.h = np.zeros((cfg.layers, B, cfg.hidden), self.model.dtype)
        if self.text:
            self.x = np.empty((T, B), np.int64)
            self.y = np.empty((T, B), np.int64)
        else:
            self.x = np.empty((T, B, 1), self.model.dtype)
            self.y = np.empty((T, B, 1), self.model.dtype)
        self.step, self.epoch, self.window = 0, 0, 0
        self.skipped = 0         # steps skipped for a non-finite loss or gradient
        self.history = LossHistory()   # training loss (nats, or mse), binned
        self.evals = []          # [step, held-out metric]
        if state is not None:
            self._restore(*state)

    # ---- one step ------------------------------------------------------------------------

    def train_step(self) -> float:
        """One window of every lane: forward, loss, BPTT over T steps, one update."""
        T = self.cfg.seq_len
        if self.window >= self.windows_per_epoch:  # the lanes ran out: a new epoch
            self.epoch += 1
            self.window = 0
            self.h[...] = 0
        p = self.window * T
        block = self.lanes[:, p:p + T + 1].T                   # (T+1, B), a view
        try:
            if self.text:
                np.copyto(self.x, block[:-1])
                np.copyto(self.y, block[1:])
                loss = self._local_loss()
            else:
                np.copyto(self.x[..., 0], block[:-1])
                np.copyto(self.y[..., 0], block[1:])
                loss = self._local_loss(loss="mse")
            loss = self._combine(loss)
            if self.step < self.warmup:  # linear warm-up: lr * (k / warmup) at step k
                self.opt.lr = self.lr * (self.step + 1) / self.warmup
            elif self.opt.lr != self.lr:
                self.opt.lr = self.lr
            self.opt.step()
        except NonFiniteError as err:
            return self._non_finite(err)
        self.window += 1
        self.step += 1
        self.history.append(self.step, loss)
        return loss

    def _local_loss(self, **kw):
        """This process's forward_backward; with MPI a non-finite local loss is reported to
        the other ranks (as NaN) instead of raised here alone."""
        try:
            loss, _ = self.model.forward_backward(self.x, self.y, self.h, h_out=self.h, **kw)
        except NonFiniteError:
            if not self.comm.distributed:
                raise
            loss = math.nan
        return loss

    def _combine(self, loss):
        """The ranks agree on stopping and on a non-finite loss (all skip or stop together),
        then average the gradient and the loss (one Allreduce of the flat gradient buffer),
        and every rank applies the same update. Alone (a LocalComm) each is the identity."""
        comm = self.comm
        stop = int(self.stop_requested)
        total, terms, ints = comm.allreduce_scalars(
            loss, float(stop == signal.SIGTERM), float(stop == signal.SIGINT),
            what="the step's loss allreduce")
        # every rank stops at this step, for SIGTERM if any rank had it
        self.stop_requested = (signal.SIGTERM if terms > 0 else
                               signal.SIGINT if ints > 0 else 0)
        if not math.isfinite(total):
            raise NonFiniteError(f"the loss is not finite on some rank ({total / comm.size})")
        comm.allreduce_grads(self.model)
        if self.step % SYNC_CHECK_EVERY == 0:
            comm.check_in_sync(self.model)
        return total / comm.size

    def _non_finite(self, err):
        """A NaN/inf loss or gradient at this step: skip the step (when nothing was updated
        and the config says so) or raise NonFiniteStop."""
        consistent = all_finite(self.model.params)
        where = f"step {self.step + 1} (epoch {self.epoch}, window {self.window})"
        if consistent and self.cfg.on_nonfinite == "skip":
            self.skipped += 1
            self.window += 1
            self.step += 1
            return math.nan
        raise NonFiniteStop(f"{where}: {err}", consistent)

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.seq_len * self.cfg.batch

    def postfix(self, loss, steps_per_s) -> str:
        """The progress bar's text after a step."""
        metric = loss / LN2 if self.text else math.sqrt(loss) * self.data.std
        return (f"train {metric:.3f} {'bits/char' if self.text else 'RMSE'}, "
                f"{self.tokens_per_step * steps_per_s:,.0f} tokens/s")

    def report(self, metric) -> list:
        """The lines printed at each evaluation: the held-out metric, and a sample of text."""
        what = "held-out bits/char" if self.text else "held-out RMSE"
        lines = [f"step {self.step}/{self.total} (epoch {self.epoch}): {what} {metric:.3f}"]
        if self.text:
            lines.append("  " + self.sample(min(self.cfg.sample_len, 160)).replace(
                "\n", "\n  "))
        return lines

    # ---- evaluation ----------------------------------------------------------------------

    def evaluate(self) -> float:
        """Held-out bits per character (text) or RMSE in the data's units (series), over
        the first ``valid_chars`` held-out symbols read as one stream with carried state."""
        ids = self.data.valid[:self.cfg.valid_chars]
        chunk, total, count = 512, 0.0, 0
        h = None
        if self.text:
            for s in range(0, len(ids) - 1, chunk):
                x = ids[s:s + chunk + 1]
                Y, h = self.model.forward(x[:-1, None], h)
                loss, _ = kernels.softmax_cross_entropy(Y[:, 0], x[1:], reduction="sum")
                total += loss
                count += len(x) - 1
            return total / count / LN2
        v = ids.astype(self.model.dtype)
        sq = 0.0
        for s in range(0, len(v) - 1, chunk):
            x = v[s:s + chunk + 1]
            Y, h = self.model.forward(x[:-1, None, None], h)
            sq += float(np.sum((Y[:, 0, 0].astype(np.float64) - x[1:]) ** 2))
            count += len(x) - 1
        return math.sqrt(sq / count) * self.data.std

    def baseline(self) -> float:
        """What a trivial predictor scores on the same held-out data: the unigram entropy
        of the training text in bits (text), or the RMSE of "next = last" (series)."""
        if self.text:
            counts = np.bincount(self.data.train, minlength=self.data.vocab_size)
            p = counts[counts > 0] / counts.sum()
            return float(-(p * np.log2(p)).sum())
        errors = self.data.naive_errors[:self.cfg.valid_chars - 1]
        return float(np.sqrt(np.mean(errors ** 2)))

    def sample(self, n=None, *, prime=None, seed=None, temperature=None) -> str:
        """Text generated by the model (text task), from a prime string or a newline."""
        cfg = self.cfg
        n = cfg.sample_len if n is None else n
        prime = prime if prime is not None else ("\n" if "\n" in self.data.vocab else None)
        ids = self.data.encode(prime) if prime else np.array([0])
        h = None
        if len(ids) > 1:
            _, h = self.model.forward(ids[:-1, None])
        out = self.model.sample(n, start=int(ids[-1]), h0=h,
                                temperature=cfg.temperature if temperature is None
                                else temperature,
                                seed=self.step if seed is None else seed)
        return (prime or "") + self.data.decode(out)

    # ---- checkpoints ---------------------------------------------------------------------

    def save(self, location: str) -> "str | None":
        """Write a checkpoint; with MPI every rank calls this (the lanes' states are
        gathered) and the root alone writes. Returns the path (None on other ranks)."""
        return self.write(location, self.gather_state())

    def gather_state(self):
        """Every lane's hidden state (on the root; None elsewhere), after checking that the
        ranks' parameters agree. Collective: with MPI every rank calls it."""
        h = self.comm.gather_rows(self.h, "the state gather")
        self.comm.check_in_sync(self.model)
        return h

    def write(self, location, h):
        """The checkpoint of this step with the lanes' states h (the root writes it; the
        other ranks return None)."""
        if not self.is_root:
            return None
        arrays = {"params": self.model.params, "h": h}
        opt_state = self.opt.state_dict()
        if isinstance(self.opt, Adagrad):
            arrays["opt_state"] = opt_state["state"]
        elif opt_state["momentum_buffer"] is not None:
            arrays["opt_state"] = opt_state["momentum_buffer"]
        if not self.text:
            arrays["series_tail"] = self.data.tail
        meta = {
            "config": dataclasses.asdict(self.cfg),
            "vocab": None if not self.text else (list(self.data.vocab)),
            "data_name": self.data.name,
            "data_fingerprint": self.data.fingerprint,
            "python": PYTHON,
            "series": None if self.text else [self.data.mean, self.data.std],
            "series_transform": None if self.text else self.data.transform,
            "step": self.step, "epoch": self.epoch, "window": self.window,
            "opt_steps": opt_state["steps"], "total": self.total, "skipped": self.skipped,
            "evals": self.evals, **self.history.state(),
        }
        return checkpoint.save(location, arrays, meta)

    def _restore(self, arrays, meta):
        missing = {"step", "epoch", "window", "opt_steps", "history", "evals"} - set(meta)
        if missing or "params" not in arrays or "h" not in arrays:
            raise checkpoint.CheckpointError(
                f"not a checkpoint of elman train: lacks {sorted(missing) or 'arrays'}")
        _check_same_data(self.cfg, self.data, meta)
        if self.text and meta.get("vocab") != list(self.data.vocab):
            raise checkpoint.CheckpointError(
                "the checkpoint's vocabulary differs from this data's; resume with the data "
                "the run started with")
        try:
            self.model.params[...] = arrays["params"]
            self.h[...] = arrays["h"][:, self.my_lanes]
        except (KeyError, ValueError) as e:
            raise checkpoint.CheckpointError(f"the checkpoint does not fit this model: {e}") \
                from None
        restore_first_order(self.opt, arrays, meta)
        self.step, self.epoch, self.window = meta["step"], meta["epoch"], meta["window"]
        self.model.dropout_calls = self.step  # one training call per step: the same masks
        self.skipped = meta.get("skipped", 0)
        self.history, self.evals = LossHistory.from_meta(meta), meta["evals"]
        refuse_finished(self.step, self.total)


def restore_first_order(opt, arrays, meta):
    """An Adagrad's accumulator or an SGD's momentum buffer, and its step count, from a
    checkpoint's arrays and metadata."""
    if isinstance(opt, Adagrad):
        if "opt_state" not in arrays:
            raise checkpoint.CheckpointError("the checkpoint lacks the Adagrad state")
        opt.load_state_dict({"state": arrays["opt_state"], "steps": meta["opt_steps"]})
    else:
        opt.load_state_dict({"momentum_buffer": arrays.get("opt_state"),
                             "steps": meta["opt_steps"]})


def refuse_finished(step, total):
    """A resume of a run already at its total is refused, saying how to go on."""
    if step >= total:
        raise ResumeError(
            f"the run is already at step {step}, and its total is {total}: give a larger "
            f"total (--steps N with N > {step}) to train further")


def _check_same_data(cfg, data, meta):
    """Refuse data whose fingerprint differs from the one the run started with."""
    want = meta.get("data_fingerprint")
    if want is None or data.fingerprint is None or want == data.fingerprint:
        return
    if cfg.data is None:
        raise ResumeError(
            f"the built-in data differs from the run's ({data.fingerprint['bytes']:,} bytes "
            f"against {want['bytes']:,}): it is read from this Python's standard library "
            f"({PYTHON}; the run started on Python "
            f"{meta.get('python', 'unknown')}); resume with that Python")
    raise ResumeError(
        f"{cfg.data} is not the data the run started with (its fingerprint changed: "
        f"{data.fingerprint['bytes']:,} bytes, sha256 {data.fingerprint['sha256'][:12]}..., "
        f"against {want['bytes']:,} bytes, sha256 {want['sha256'][:12]}...); resume with "
        f"the file the run started with")


def _as_written(cfg, saved):
    """A config read from a checkpoint of an older elman, with the defaults it ran under:
    a series on its values (no transform), and one learning rate of 0.02 (before the
    size-aware default, which came with ``warmup``)."""
    if "transform" not in saved:
        cfg = dataclasses.replace(cfg, transform="none")
    if "warmup" not in saved and cfg.lr is None and cfg.preset is None:
        cfg = dataclasses.replace(cfg, lr=0.02)
    return cfg


def resume(location: str, *, comm=None, **given) -> Trainer:
    """A Trainer continuing the checkpoint at ``location``.

    ``given``: settings (TrainConfig fields, each one given; ``clip=None`` asks for no
    clipping). Those in
    ``TrainConfig.RESUMABLE`` change what the run does next; any other must agree with
    the checkpoint's, or ResumeError names it. ``data`` may name the run's file at another
    path when its content is unchanged (its fingerprint is checked). Raises ResumeError
    too when the total (``steps``) is not above the checkpoint's step."""
    arrays, meta = checkpoint.load(location)
    if not isinstance(meta.get("config"), dict):
        raise checkpoint.CheckpointError(f"{location}: not a checkpoint of elman train")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in meta["config"].items() if k in fields})
    cfg = _as_written(cfg, meta["config"])
    unknown = set(given) - fields
    if unknown:
        raise TypeError(f"resume: unknown settings {', '.join(sorted(unknown))}")
    data = given.pop("data", None)
    if data is not None and os.path.abspath(data) != (
            cfg.data and os.path.abspath(cfg.data)):
        if cfg.data is None:
            raise ResumeError(f"data {data}: the run trains on the built-in data",
                              [("data", data, "built-in data")])
        cfg = dataclasses.replace(cfg, data=os.path.abspath(data))  # checked by fingerprint
    clash = [(k, v, getattr(cfg, k)) for k, v in given.items()
             if k not in TrainConfig.RESUMABLE and v != getattr(cfg, k)]
    if clash:
        raise ResumeError("; ".join(f"{k} {v!r} contradicts the run's {old!r}"
                                    for k, v, old in clash), clash)
    if given.get("steps") is not None and given["steps"] <= meta.get("step", 0):
        raise ResumeError(f"a total of {given['steps']} steps is not beyond the run's step "
                          f"{meta.get('step')}: give a larger total (--steps)")
    if "steps" in given or "epochs" in given:   # one of them sets the run's length
        cfg = dataclasses.replace(cfg, steps=None, epochs=None)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if k in TrainConfig.RESUMABLE})
    if cfg.data is not None and not os.path.exists(cfg.data):
        raise ResumeError(f"the run's data file {cfg.data} is missing; pass --data with "
                          f"where it is now")
    return make_trainer(cfg, state=(arrays, meta), comm=comm)


def __getattr__(name):
    """The session's names, which lived here before elman.session held the loop."""
    if name in ("run", "plot", "Interrupted", "STOP_SIGNALS"):
        from . import session
        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
