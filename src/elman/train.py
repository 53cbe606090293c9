"""The main job: train a character language model (or a next-value regressor) with stateful
truncated backprop through time, evaluate it on held-out data, checkpoint and resume.

Batching: the training ids are cut into B lanes, each a contiguous stretch of the text;
window k of lane b is ``lane_b[k*T : k*T + T + 1]``. The hidden state of each lane is carried
from one window to the next (the gradient is not: truncated BPTT) and reset to zero when the
lanes run out and a new epoch starts. So every window continues exactly where the previous
one stopped, and a resumed run sees the same windows with the same states as an
uninterrupted one.

The command line (``elman train``, ``elman sample``) is in elman.cli; this module is usable
from Python too::

    >>> from elman.train import TrainConfig, Trainer, load_data
    >>> cfg = TrainConfig(steps=100, hidden=64)            # doctest: +SKIP
    >>> trainer = Trainer(cfg, load_data(cfg))               # doctest: +SKIP
    >>> trainer.run()                                        # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time

import numpy as np

from . import _core, checkpoint, kernels
from ._config import set_num_threads
from .data import (BUILTIN_BUDGET, Corpus, DataError, Series, builtin_text, make_corpus,
                   make_series, read_series, read_text, synthetic_series)
from ._validate import NonFiniteError
from .model import ElmanRNN
from .optim import SGD, Adagrad

LN2 = math.log(2.0)
SYNC_CHECK_EVERY = 100   # data-parallel runs compare the ranks' parameters this often


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run (saved in its checkpoints)."""
    task: str = "text"            # "text": next character; "series": next value (mse)
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
    lr: "float | None" = None     # None: 0.02, or the --preset's learning rate
    optimizer: str = "adagrad"    # "adagrad" or "sgd"
    preset: "str | None" = None   # an Adagrad preset (elman.optim.PRESETS)
    clip: "float | None" = 5.0    # global gradient-norm clip; None: no clipping
    seed: int = 0
    dtype: str = "float32"
    every: int = 1000             # evaluate, checkpoint and print a sample every this many steps
    valid_chars: int = 100_000    # held-out symbols evaluated (the first of the split)
    sample_len: int = 200
    temperature: float = 0.8
    on_nonfinite: str = "stop"    # a NaN/inf loss or gradient: "stop" the run, or "skip" the step

    DEFAULT_STEPS = 12_000

    def total_steps(self, windows_per_epoch: int) -> int:
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return max(1, int(round(self.epochs * windows_per_epoch)))
        return self.DEFAULT_STEPS


def load_data(cfg: TrainConfig) -> "Corpus | Series":
    """The corpus or series a config names; raises DataError with what is wrong."""
    if cfg.task == "series":
        need = 20 * cfg.seq_len * cfg.batch
        if cfg.data is None:
            return make_series(synthetic_series(max(60_000, 2 * need)), "sum of sines",
                               min_len=need)
        return make_series(read_series(cfg.data, cfg.column), cfg.data, min_len=need)
    need = 20 * (cfg.seq_len + 1) * cfg.batch
    if cfg.data is None:
        text = builtin_text(max(BUILTIN_BUDGET, need))
        return make_corpus(text, "Python standard library sources", min_chars=need)
    return make_corpus(read_text(cfg.data, byte_level=cfg.byte_level), cfg.data,
                       min_chars=need, byte_level=cfg.byte_level)


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
        trains its share of the B lanes; None: this process alone)."""
        self.cfg, self.data = cfg, data
        self.comm = comm
        self.is_root = comm is None or comm.is_root
        self.stop_requested = False   # set by run() on Ctrl-C; acted on by all ranks at once
        self.text = cfg.task == "text"
        V = data.vocab_size if self.text else 1
        self.model = ElmanRNN(V, cfg.hidden, V, num_layers=cfg.layers, dropout=cfg.dropout,
                              dtype=cfg.dtype, seed=cfg.seed,
                              init="normal0.01" if self.text else "uniform")
        lr = cfg.lr if cfg.lr is not None else (None if cfg.preset else 0.02)
        if cfg.optimizer == "adagrad":
            kw = {} if lr is None else {"lr": lr}
            self.opt = Adagrad(self.model, max_grad_norm=cfg.clip, preset=cfg.preset, **kw)
        elif cfg.optimizer == "sgd":
            self.opt = SGD(self.model, lr=0.02 if lr is None else lr, max_grad_norm=cfg.clip)
        else:
            raise ValueError(f"optimizer must be 'adagrad' or 'sgd', got {cfg.optimizer!r}")
        B, T = cfg.batch, cfg.seq_len
        series = data.train if self.text else data.train.astype(self.model.dtype)
        self.lane_len = len(series) // B
        self.lanes = series[:B * self.lane_len].reshape(B, self.lane_len)
        self.my_lanes = slice(0, B)
        if comm is not None:  # this rank's lanes: an equal share of the global batch
            from .distributed import shard
            lo, hi = shard(B, comm.rank, comm.size)
            self.my_lanes = slice(lo, hi)
            self.lanes, B = self.lanes[lo:hi], hi - lo
            # dropout masks numbered in the whole batch, as one process would draw them
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
        self.history = []        # [step, training loss (nats, or mse)] at every step
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
            if self.comm is not None:
                loss = self._combine(loss)
            self.opt.step()
        except NonFiniteError as err:
            return self._non_finite(err)
        self.window += 1
        self.step += 1
        self.history.append([self.step, loss])
        return loss

    def _local_loss(self, **kw):
        """This process's forward_backward; with MPI a non-finite local loss is reported to
        the other ranks (as NaN) instead of raised here alone."""
        try:
            loss, _ = self.model.forward_backward(self.x, self.y, self.h, h_out=self.h, **kw)
        except NonFiniteError:
            if self.comm is None:
                raise
            loss = math.nan
        return loss

    def _combine(self, loss):
        """Data-parallel step: the ranks agree on stopping and on a non-finite loss (all
        skip or stop together), then average the gradient and the loss (one Allreduce of
        the flat gradient buffer). Every rank then applies the same update."""
        comm = self.comm
        total, _, stops = comm.allreduce_scalars(loss, 0.0, float(self.stop_requested),
                                                 what="the step's loss allreduce")
        self.stop_requested = stops > 0
        if not math.isfinite(total):
            raise NonFiniteError(f"the loss is not finite on some rank ({total / comm.size})")
        comm.allreduce_grads(self.model)
        if self.step % SYNC_CHECK_EVERY == 0:
            comm.check_in_sync(self.model)
        return total / comm.size

    def _non_finite(self, err):
        """A NaN/inf loss or gradient at this step: skip the step (when nothing was updated
        and the config says so) or raise NonFiniteStop."""
        consistent = bool(_core.all_finite(self.model.params))
        where = f"step {self.step + 1} (epoch {self.epoch}, window {self.window})"
        if consistent and self.cfg.on_nonfinite == "skip":
            self.skipped += 1
            self.window += 1
            self.step += 1
            return math.nan
        raise NonFiniteStop(f"{where}: {err}", consistent)

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
        v = self.data.valid[:self.cfg.valid_chars]
        return float(np.sqrt(np.mean((v[1:] - v[:-1]) ** 2))) * self.data.std

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
        return self._write(location, self._gather_state())

    def _gather_state(self):
        """Every lane's hidden state (on the root; None elsewhere), after checking that the
        ranks' parameters agree."""
        if self.comm is None:
            return self.h
        h = self.comm.gather_rows(self.h, "the state gather")
        self.comm.check_in_sync(self.model)
        return h

    def _write(self, location, h):
        if not self.is_root:
            return None
        arrays = {"params": self.model.params, "h": h}
        opt_state = self.opt.state_dict()
        if isinstance(self.opt, Adagrad):
            arrays["opt_state"] = opt_state["state"]
        elif opt_state["momentum_buffer"] is not None:
            arrays["opt_state"] = opt_state["momentum_buffer"]
        meta = {
            "config": dataclasses.asdict(self.cfg),
            "vocab": None if not self.text else (list(self.data.vocab)),
            "data_name": self.data.name,
            "series": None if self.text else [self.data.mean, self.data.std],
            "step": self.step, "epoch": self.epoch, "window": self.window,
            "opt_steps": opt_state["steps"], "total": self.total, "skipped": self.skipped,
            "history": self.history, "evals": self.evals,
        }
        return checkpoint.save(location, arrays, meta)

    def _restore(self, arrays, meta):
        missing = {"step", "epoch", "window", "opt_steps", "history", "evals"} - set(meta)
        if missing or "params" not in arrays or "h" not in arrays:
            raise checkpoint.CheckpointError(
                f"not a checkpoint of elman train: lacks {sorted(missing) or 'arrays'}")
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
        if isinstance(self.opt, Adagrad):
            if "opt_state" not in arrays:
                raise checkpoint.CheckpointError("the checkpoint lacks the Adagrad state")
            self.opt.load_state_dict({"state": arrays["opt_state"], "steps": meta["opt_steps"]})
        else:
            self.opt.load_state_dict({"momentum_buffer": arrays.get("opt_state"),
                                      "steps": meta["opt_steps"]})
        self.step, self.epoch, self.window = meta["step"], meta["epoch"], meta["window"]
        self.model._dropout_calls = self.step  # one training call per step: the same masks
        self.skipped = meta.get("skipped", 0)
        self.history, self.evals = meta["history"], meta["evals"]


def resume(location: str, *, comm=None, **overrides) -> Trainer:
    """A Trainer continuing the checkpoint at ``location``; ``overrides`` may change steps,
    epochs and every (what the run does next), nothing that defines the model or data."""
    arrays, meta = checkpoint.load(location)
    if not isinstance(meta.get("config"), dict):
        raise checkpoint.CheckpointError(f"{location}: not a checkpoint of elman train")
    allowed = {"steps", "epochs", "every", "on_nonfinite"}
    bad = set(overrides) - allowed
    if bad:
        raise ValueError(f"resume: cannot change {', '.join(sorted(bad))} of a run")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in meta["config"].items() if k in fields})
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    return Trainer(cfg, load_data(cfg), state=(arrays, meta), comm=comm)


def run(trainer: Trainer, out: str, *, log=print, progress=True, threads=None) -> dict:
    """Train to ``trainer.total`` steps, evaluating, sampling and checkpointing every
    ``every`` steps and at the end; on Ctrl-C, checkpoint and re-raise. Returns a summary."""
    cfg = trainer.cfg
    if threads is not None:
        set_num_threads(threads)
    bar = _progress(trainer, progress and trainer.is_root)
    if not trainer.is_root:
        log = _silent
    tokens = cfg.seq_len * cfg.batch
    start, start_step = time.perf_counter(), trainer.step
    # Ctrl-C between two C calls of a step would leave a half-made step (parameters updated,
    # step count not): the signal only raises a flag, and the loop stops between steps.
    stop = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
    try:
        while trainer.step < trainer.total:
            if stop and trainer.comm is None:
                raise KeyboardInterrupt
            trainer.stop_requested = bool(stop)   # with MPI: all ranks stop at one step
            loss = trainer.train_step()
            if bar is not None:
                elapsed = time.perf_counter() - start
                bar.update(1)
                metric = loss / LN2 if trainer.text else math.sqrt(loss) * trainer.data.std
                bar.set_postfix_str(
                    f"loss {loss:.3f} {'bits/char' if trainer.text else 'rmse'} {metric:.3f} "
                    f"tok/s {tokens * (trainer.step - start_step) / elapsed:,.0f}", refresh=False)
            if trainer.step % cfg.every == 0 or trainer.step == trainer.total:
                _checkpoint_and_report(trainer, out, log, bar)
            if trainer.comm is not None and trainer.stop_requested:
                raise KeyboardInterrupt
        if stop and trainer.comm is None:  # interrupted during the last step
            raise KeyboardInterrupt
    except NonFiniteStop as err:
        if err.consistent:  # nothing was updated: the state before this step is whole
            path = trainer.save(out)
            log(f"\nstopped: {err}\ncheckpoint of the last good step written to {path}; "
                f"lower --lr or --clip, or pass --on-nonfinite skip")
        else:
            log(f"\nstopped: {err}\nthe update made parameters non-finite, so nothing was "
                f"saved; the last checkpoint in {out} is from before it")
        raise
    except KeyboardInterrupt:
        path = trainer.save(out)
        log(f"\ninterrupted at step {trainer.step}; checkpoint written to {path} "
            f"(continue with: elman train --resume {out})")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if not trainer.is_root:
        return {"steps": trainer.step, "seconds": seconds}
    final = trainer.evals[-1][1] if trainer.evals else trainer.evaluate()
    return {"steps": trainer.step, "seconds": seconds, "final": final,
            "baseline": trainer.baseline(),
            "tokens_per_s": tokens * (trainer.step - start_step) / max(seconds, 1e-9)}


def _silent(*args, **kwargs):
    pass


def _checkpoint_and_report(trainer, out, log, bar):
    h = trainer._gather_state()   # with MPI: every rank, at once
    if trainer.is_root:           # then the root evaluates, writes and samples alone
        _report(trainer, out, log, bar, h)
    if trainer.comm is not None:  # the others wait for it, under the root-work timeout
        trainer.comm.barrier("rank 0's evaluation and checkpoint",
                             timeout=trainer.comm.root_timeout)


def _report(trainer, out, log, bar, h):
    metric = trainer.evaluate()
    trainer.evals.append([trainer.step, metric])
    trainer._write(out, h)
    what = "held-out bits/char" if trainer.text else "held-out RMSE"
    lines = [f"step {trainer.step}/{trainer.total} (epoch {trainer.epoch}): {what} "
             f"{metric:.3f}"]
    if trainer.text:
        lines.append("  " + trainer.sample(min(trainer.cfg.sample_len, 160)).replace(
            "\n", "\n  "))
    text = "\n".join(lines)
    if bar is not None:
        bar.write(text)
    else:
        log(text)


def _progress(trainer, progress):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=trainer.total, initial=trainer.step, unit="step", dynamic_ncols=True,
                desc="train")


def plot(trainer: Trainer, path: str) -> str:
    """loss.png: training loss (smoothed) and held-out metric against steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    hist = np.array(trainer.history, dtype=np.float64).reshape(-1, 2)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(hist):
        y = hist[:, 1] / LN2 if trainer.text else np.sqrt(hist[:, 1]) * trainer.data.std
        k = max(1, len(y) // 200)
        smooth = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(hist[k - 1:, 0], smooth, lw=1, label="training (moving average)")
    if trainer.evals:
        ev = np.array(trainer.evals, dtype=np.float64)
        ax.plot(ev[:, 0], ev[:, 1], "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character" if trainer.text else "RMSE")
    ax.set_title(f"elman: {trainer.data.name}, H={trainer.cfg.hidden}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
