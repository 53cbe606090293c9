"""A training session around a Trainer (elman.train): the loop to the run's total steps,
with its signals (SIGINT and SIGTERM stop between two steps, checkpointed), its progress
bar, its periodic evaluation, sample and checkpoint, and the loss plot. ``elman train`` is
``run(Trainer(...), out)``; so is a Python caller's run."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np

from . import checkpoint
from ._config import set_num_threads
from .train import LN2, NonFiniteStop, Trainer

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)   # checkpoint between steps, then exit


class Interrupted(KeyboardInterrupt):
    """run() stopped between two steps for a signal (SIGINT, SIGTERM) and wrote a
    checkpoint first; a command line exits with 128 + signum."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def run(trainer: Trainer, out: str, *, log=print, progress=True, threads=None,
        resume_command=None) -> dict:
    """Train to ``trainer.total`` steps, evaluating, sampling and checkpointing every
    ``every`` steps and at the end. SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, a
    scheduler's preemption) stop the run between two steps: it checkpoints, says so and
    raises Interrupted (a KeyboardInterrupt) with the signal's number. Returns a summary.

    ``resume_command``: the command the interruption message tells the user to continue
    with (default ``elman train --resume OUT``)."""
    cfg = trainer.cfg
    if threads is not None:
        set_num_threads(threads)
    bar = _progress(trainer, progress and trainer.is_root)
    if not trainer.is_root:
        log = _silent
    tokens = trainer.tokens_per_step
    start, start_step = time.perf_counter(), trainer.step
    # A signal between two C calls of a step would leave a half-made step (parameters
    # updated, step count not): the handler only records the signal, and the loop stops
    # between steps.
    stop = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, lambda n, frame: stop.append(n))
    try:
        while trainer.step < trainer.total:
            if stop and not trainer.comm.distributed:
                raise Interrupted(stop[0])
            trainer.stop_requested = stop[0] if stop else 0   # with MPI: all stop at one step
            loss = trainer.train_step()
            if bar is not None:
                elapsed = time.perf_counter() - start
                bar.update(1)
                bar.set_postfix_str(
                    trainer.postfix(loss, (trainer.step - start_step) / max(elapsed, 1e-9)),
                    refresh=False)
            if trainer.step % cfg.every == 0 or trainer.step == trainer.total:
                _checkpoint_and_report(trainer, out, log, bar)
            if trainer.comm.distributed and trainer.stop_requested:
                raise Interrupted(trainer.stop_requested)
        if stop and not trainer.comm.distributed:  # a signal during the last step
            raise Interrupted(stop[0])
    except NonFiniteStop as err:
        if err.consistent:  # nothing was updated: the state before this step is whole
            path = trainer.save(out)
            log(f"\nstopped: {err}\ncheckpoint of the last good step written to {path}; "
                f"lower --lr or --clip, or pass --on-nonfinite skip")
        elif os.path.exists(checkpoint.path_of(out)):
            log(f"\nstopped: {err}\nthe update made parameters non-finite, so nothing was "
                f"saved; the last checkpoint in {out} is from before it")
        else:
            log(f"\nstopped: {err}\nthe update made parameters non-finite, so nothing was "
                f"saved, and no checkpoint had been written yet (the first was due at step "
                f"{cfg.every}); lower --lr or --clip")
        raise
    except KeyboardInterrupt as err:   # Interrupted, or a KeyboardInterrupt from elsewhere
        signum = getattr(err, "signum", signal.SIGINT)
        path = trainer.save(out)
        how = ("interrupted (Ctrl-C)" if signum == signal.SIGINT
               else f"stopped by {signal.Signals(signum).name}")
        command = resume_command or f"elman train --resume {out}"
        log(f"\n{how} at step {trainer.step}; checkpoint written to {path} "
            f"(continue with: {command})")
        if not isinstance(err, Interrupted):
            raise Interrupted(signum) from None
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if not trainer.is_root:
        return {"steps": trainer.step, "start_step": start_step, "seconds": seconds}
    final = trainer.evals[-1][1] if trainer.evals else trainer.evaluate()
    return {"steps": trainer.step, "start_step": start_step, "seconds": seconds,
            "final": final, "baseline": trainer.baseline(),
            "tokens_per_s": tokens * (trainer.step - start_step) / max(seconds, 1e-9)}


def _silent(*args, **kwargs):
    pass


def _checkpoint_and_report(trainer, out, log, bar):
    h = trainer.gather_state()    # with MPI: every rank, at once
    if trainer.is_root:           # then the root evaluates, writes and samples alone
        _report(trainer, out, log, bar, h)
    # the others wait for it, under the root-work timeout (alone: no one waits)
    trainer.comm.barrier("rank 0's evaluation and checkpoint", timeout=trainer.comm.root_timeout)


def _report(trainer, out, log, bar, h):
    metric = trainer.evaluate()
    trainer.evals.append([trainer.step, metric])
    trainer.write(out, h)
    text = "\n".join(trainer.report(metric))
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
    # A terminal that reports no width (0 columns: some CI consoles, serial lines, a pty
    # nobody sized) gets a one-cell bar: draw it 80 columns wide there instead.
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):   # not a terminal: tqdm's own choice
        columns = 80
    width = {"dynamic_ncols": True} if columns >= 10 else {"ncols": 80}
    return tqdm(total=trainer.total, initial=trainer.step, unit="step", desc="train",
                **width)


def plot(trainer: Trainer, path: str) -> str:
    """loss.png: training loss (smoothed) and held-out metric against steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    hist = np.array(trainer.history.points, dtype=np.float64).reshape(-1, 2)
    fig, ax = plt.subplots(figsize=(7, 4))
    if hasattr(trainer, "task"):   # a long-range task's run (elman.task_train)
        return _plot_task(trainer, path, fig, ax, hist, plt)
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


def _plot_task(trainer, path, fig, ax, hist, plt):
    """A long-range task's run: the training loss (log scale) and, on the right axis, the
    percentage of test sequences right."""
    if len(hist):
        ax.semilogy(hist[:, 0], np.maximum(hist[:, 1], 1e-12), lw=1, color="C0",
                    label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss ({trainer.task.loss})", color="C0")
    ax.grid(alpha=0.3)
    if trainer.evals:
        right = ax.twinx()
        ev = np.array(trainer.evals, dtype=np.float64)
        right.plot(ev[:, 0], 100 * ev[:, 1], "o-", color="C1", label="test sequences right")
        right.axhline(99, color="C1", lw=0.8, ls=":")
        right.set_ylabel("% of test sequences right (dotted: 99%)", color="C1")
        right.set_ylim(0, 100)
    ax.set_title(f"elman: {trainer.data.name}, H={trainer.cfg.hidden}, {trainer.cfg.optimizer}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
