"""The command line: ``elman <command>`` or ``python -m elman <command>``.

    elman train [options]   train a character language model on built-in text (or --data
                            FILE, or --task series); elman train --help lists the options
    elman sample --checkpoint DIR [--length N --temperature T --prime TEXT --seed S]
                            generate text from a trained model (one C call)
    elman forecast --checkpoint DIR --horizon N [--data CSV --plot PNG]
                            continue a series with a model of --task series
    elman bench [options]   the benchmark suite, quick sizes unless --full
    elman info              version, compiler, kernel paths, BLAS and threads
"""
from __future__ import annotations

import argparse
import math
import os
import sys


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the message and where the options are listed,
    instead of the whole usage block (elman train has two dozen options)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n(the options: {self.prog} --help)\n")


# ---- train --------------------------------------------------------------------------------

RESUME_FLAGS = ("--steps", "--epochs", "--every", "--lr", "--on-nonfinite", "--threads",
                "--out", "--overwrite", "--plot", "--no-progress")
DEFAULT_OUT = "elman-run"


def _none_or_float(text):
    return None if text.lower() in ("none", "off", "0") else float(text)


def _train_parser():
    from .train import TrainConfig
    d = TrainConfig()
    p = _Parser(
        prog="elman train", argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an Elman RNN with stateful truncated BPTT: a character language "
                    "model on the Python standard library's sources by default (no download), "
                    "on --data FILE, or a next-value regressor with --task series.",
        epilog="A run lives in its --out directory (default elman-run): checkpoint.npz, and "
               "loss.png with --plot.\nA new run refuses a directory that already holds one: "
               "continue it with --resume DIR, choose\nanother --out, or replace it with "
               "--overwrite. SIGINT (Ctrl-C) and SIGTERM checkpoint between two\nsteps and "
               "stop (exit 130 and 143).\n\nWith --resume DIR only these may be given:\n  "
               + " ".join(RESUME_FLAGS) + "\nThe model, data and optimizer come from the "
               "checkpoint; any other flag must repeat its value.")
    g = p.add_argument_group("data")
    g.add_argument("--task", choices=("text", "series") + _long_range_tasks(),
                   help="next character (cross-entropy), next value (mse), or a long-range "
                        "problem of elman.tasks (adding, multiplication, xor, temporal_order, "
                        "...; see 'long-range tasks' below); default text")
    g.add_argument("--data", metavar="PATH", help="a UTF-8 text file (a CSV file for "
                   "--task series); default: built-in data")
    g.add_argument("--bytes", dest="byte_level", action="store_true",
                   help="read --data as bytes (vocabulary 256), for non-UTF-8 files")
    g.add_argument("--column", help="the CSV column of a --task series --data file")
    g.add_argument("--transform", choices=("auto", "none", "diff"),
                   help="--task series: model the values or their first differences; auto "
                        "(default) differences a series that wanders (a unit-root test)")
    g = p.add_argument_group("model and optimizer")
    g.add_argument("--hidden", type=int, help=f"hidden units (default {d.hidden})")
    g.add_argument("--layers", type=int, help=f"stacked Elman layers (default {d.layers})")
    g.add_argument("--dropout", type=float,
                   help="dropout between stacked layers while training, in [0, 1) (default 0; "
                        "needs --layers 2 or more)")
    g.add_argument("--seq-len", type=int, help=f"BPTT window T (default {d.seq_len})")
    g.add_argument("--batch", type=int, help=f"lanes B (default {d.batch})")
    g.add_argument("--steps", type=int, help=f"total steps of the run (default "
                   f"{TrainConfig.DEFAULT_STEPS})")
    g.add_argument("--epochs", type=float, help="run length in passes over the data, "
                   "instead of --steps")
    g.add_argument("--lr", type=float, help="one learning rate for every parameter (default, "
                   "Adagrad: min(0.1, 0.02 * 256 / hidden) / layers for the matrices, and at "
                   "least 0.02 for the embedding and biases; or the --preset's)")
    g.add_argument("--warmup", type=int, metavar="STEPS",
                   help="steps of linear learning-rate warm-up (default 0)")
    g.add_argument("--optimizer", choices=("adagrad", "sgd", "hf"),
                   help="default adagrad; hf: Hessian-free (the long-range tasks)")
    g.add_argument("--preset", choices=("torch", "keras", "optax", "minchar"),
                   help="Adagrad preset for eps and accumulator (explicit --lr still wins)")
    g.add_argument("--clip", type=_none_or_float, metavar="NORM",
                   help=f"global gradient-norm clip, or none (default {d.clip})")
    g.add_argument("--seed", type=int, help=f"default {d.seed}")
    g.add_argument("--dtype", choices=("float32", "float64"), help=f"default {d.dtype}")
    g.add_argument("--compute-dtype", choices=("float32", "bfloat16"),
                   help="the dtype of the matrix products (default: --dtype's); bfloat16 "
                        "(float32 only) rounds their operands to bfloat16 and sums in "
                        "float32: about twice as fast where the CPU has AVX512_BF16 (elman "
                        "info), emulated and slower elsewhere; may change on --resume")
    g = p.add_argument_group(
        "long-range tasks",
        "--task adding|multiplication|xor|temporal_order|temporal_order_3|permutation|"
        "memorization_5bit|copy: every step trains on a fresh batch of the task's sequences "
        "(--batch, default 1000 with hf, 100 otherwise) and every report scores "
        "--eval-sequences fresh test sequences (default 100 hidden units, reports every 10 "
        "steps with hf and 1000 otherwise; 500 hf steps, 50,000 otherwise)")
    g.add_argument("--length", type=int, metavar="T",
                   help="the task's T (default: the paper's, e.g. 100 for adding)")
    g.add_argument("--damping", type=float, metavar="LAMBDA",
                   help=f"hf: initial Tikhonov damping (default {d.damping})")
    g.add_argument("--structural-damping", type=float, metavar="MU",
                   help="hf: structural damping weight mu (default 1/30)")
    g.add_argument("--cg-iters", type=int, metavar="N",
                   help=f"hf: CG iterations at most per step (default {d.cg_iters})")
    g.add_argument("--curvature", type=float, metavar="FRACTION",
                   help=f"hf: the fraction of the batch the curvature uses "
                        f"(default {d.curvature})")
    g.add_argument("--spectral-radius", type=float, metavar="R",
                   help=f"W_hh's spectral radius after the sparse initialization "
                        f"(default {d.spectral_radius})")
    g.add_argument("--input-scale", type=float, metavar="S",
                   help=f"the sparse initialization's input weights times S "
                        f"(default {d.input_scale})")
    g.add_argument("--eval-sequences", type=int, metavar="N",
                   help=f"test sequences scored at each report (default {d.eval_sequences:,})")
    g = p.add_argument_group("run")
    g.add_argument("--threads", type=int, help="elman's threads (default: the cores this "
                   "process may use, shared among the MPI ranks of a node)")
    g.add_argument("--out", metavar="DIR",
                   help=f"the run's directory (default {DEFAULT_OUT}, or the --resume one)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out instead of refusing")
    g.add_argument("--every", type=int, metavar="N",
                   help=f"evaluate, checkpoint and sample every N steps (default {d.every}, "
                        f"or the resumed run's)")
    g.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR")
    g.add_argument("--plot", action="store_true", help="write loss.png into --out "
                   "(needs matplotlib: pip install '.[plot]')")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--on-nonfinite", choices=("stop", "skip"),
                   help="a NaN or infinite loss or gradient: stop (checkpointing the last good "
                        "step) or skip that step (default stop, or the resumed run's)")
    return p


def _long_range_tasks():
    from .tasks import TASKS
    return tuple(TASKS)


TASK_FLAGS = ("length", "damping", "structural_damping", "cg_iters", "curvature",
              "eval_sequences", "spectral_radius", "input_scale")
HF_FLAGS = ("damping", "structural_damping", "cg_iters", "curvature")


def _check_values(given, fail):
    """Ranges, and flags that would do nothing (an error saying why, never ignored)."""
    for name in ("hidden", "layers", "seq_len", "batch", "steps", "every", "threads",
                 "length", "cg_iters", "eval_sequences"):
        if name in given and given[name] < 1:
            fail(f"{_flag(name)} must be >= 1")
    if "dropout" in given and not 0 <= given["dropout"] < 1:
        fail("--dropout must be in [0, 1)")
    if "epochs" in given and not 0 < given["epochs"] <= 1e6:
        fail("--epochs must be in (0, 1e6]")
    if "lr" in given and not 0 < given["lr"] < math.inf:
        fail("--lr must be a positive number")
    if "warmup" in given and given["warmup"] < 0:
        fail("--warmup must be >= 0 steps")
    if given.get("clip") is not None and not 0 < given["clip"] < math.inf:
        fail("--clip must be a positive number, or none")
    if "damping" in given and not 0 < given["damping"] < math.inf:
        fail("--damping must be a positive number")
    if "structural_damping" in given and not 0 <= given["structural_damping"] < math.inf:
        fail("--structural-damping must be >= 0")
    for name in ("spectral_radius", "input_scale"):
        if name in given and not 0 < given[name] < math.inf:
            fail(f"{_flag(name)} must be a positive number")
    if "curvature" in given and not 0 < given["curvature"] <= 1:
        fail("--curvature is a fraction of the batch, in (0, 1]")
    if given.get("compute_dtype") == "bfloat16" and given.get("dtype") == "float64":
        fail("--compute-dtype bfloat16 needs --dtype float32")
    if "resume" in given:
        return
    long_range = given.get("task") in _long_range_tasks()
    if not long_range:
        for name in TASK_FLAGS:
            if name in given:
                fail(f"{_flag(name)} applies to the long-range tasks (--task adding, ...)")
        if given.get("optimizer") == "hf":
            fail("--optimizer hf trains the long-range tasks (--task adding, ...); text and "
                 "series train with adagrad or sgd")
    else:
        for name in ("data", "byte_level", "column", "transform", "seq_len", "epochs",
                     "warmup", "preset"):
            if name in given:
                fail(f"{_flag(name)} does not apply to --task {given['task']} (the task "
                     f"generates its sequences; --length sets T)")
        if given.get("layers", 1) != 1 or given.get("dropout", 0):
            fail("the long-range tasks train one layer without dropout")
        if given.get("optimizer") != "hf":
            for name in HF_FLAGS:
                if name in given:
                    fail(f"{_flag(name)} is a setting of --optimizer hf")
        elif "lr" in given or "clip" in given:
            fail("--lr and --clip are settings of the first-order optimizers; hf chooses its "
                 "steps by CG, damping and a line search")
    series = given.get("task") == "series"
    if given.get("dropout", 0) > 0 and given.get("layers", 1) == 1:
        fail("--dropout acts between stacked layers, and --layers 1 has none: add --layers 2 "
             "or more, or leave --dropout out")
    if given.get("byte_level") and "data" not in given:
        fail("--bytes reads a --data file as bytes; the built-in text needs no --bytes")
    if given.get("byte_level") and series:
        fail("--bytes is for text; a --task series file is read as CSV")
    if "column" in given and not series:
        fail("--column chooses the CSV column of --task series; text has no columns")
    if "column" in given and "data" not in given:
        fail("--column chooses a column of a --data CSV file; the built-in series has one")
    if "transform" in given and not series:
        fail("--transform applies to --task series only")
    if "epochs" in given and "steps" in given:
        fail("--steps and --epochs both set the run's length: give one of them")
    if "preset" in given and given.get("optimizer") == "sgd":
        fail("--preset chooses Adagrad conventions; --optimizer sgd has none")


def _cores() -> int:
    """The cores this process may run on (its affinity mask, which a batch scheduler or
    taskset narrows), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _threads(asked, comm, warn):
    """elman's thread count for the run (None: leave OpenMP's), and a warning when the
    threads of this node's processes outnumber its cores."""
    cores = _cores()
    local = comm.local_size()
    share = max(1, cores // local)
    threads = asked
    if threads is None and not os.environ.get("OMP_NUM_THREADS"):
        threads = share   # all the cores alone; under mpiexec, this rank's share of them
    effective = threads if threads is not None else _omp_threads()
    if effective * local > cores:
        where = (f"{effective} threads per rank x {local} ranks on this node" if local > 1
                 else f"{effective} threads")
        warn(f"warning: {where} is more than the {cores} cores found; oversubscribed "
             f"threads wait for each other and train slower (--threads {share} fits)")
    return threads


def _omp_threads():
    from . import get_num_threads
    return get_num_threads()


def _same_run(out, resumed_from):
    """Whether ``out`` holds the checkpoint being resumed (the run continues in place)."""
    from . import checkpoint
    existing = os.path.join(out, checkpoint.FILENAME)
    source = checkpoint.path_of(resumed_from) if resumed_from is not None else None
    return (source is not None and os.path.exists(existing) and os.path.exists(source)
            and os.path.samefile(existing, source))


def _check_out(out, *, overwrite, resumed_from=None):
    """An error message if the run cannot write into ``out`` (None if it can): not a
    directory, not writable, or holding another run (without --overwrite)."""
    from . import checkpoint
    if os.path.exists(out) and not os.path.isdir(out):
        return f"--out {out}: exists and is not a directory"
    existing = os.path.join(out, checkpoint.FILENAME)
    if os.path.exists(existing) and not overwrite and not _same_run(out, resumed_from):
        try:
            _, meta = checkpoint.load(out)
            what = (f"a run at step {meta.get('step')} of {meta.get('total')} on "
                    f"{meta.get('data_name')}")
        except Exception:  # unreadable: still not ours to replace silently
            what = f"a {checkpoint.FILENAME}"
        return (f"--out {out} already holds {what}. Continue it with --resume {out}, write "
                f"this run elsewhere with --out DIR, or replace it with --overwrite")
    created = []   # the directories this check makes, removed after it (the run makes them)
    head = os.path.abspath(out)
    while not os.path.exists(head):
        created.append(head)
        head = os.path.dirname(head)
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".elman-write-test-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
    except OSError as e:
        return f"--out {out}: cannot write there ({e.strerror or e})"
    finally:
        for path in created:   # deepest first
            try:
                os.rmdir(path)
            except OSError:
                pass
    return None


def _train(argv) -> int:
    from . import session
    from . import train as tr
    from .checkpoint import CheckpointError
    from .data import DataError
    p = _train_parser()
    given = vars(p.parse_args(argv))
    from . import distributed
    comm = distributed.LocalComm()
    if distributed.launched_by_mpi():  # mpiexec -n N elman train ...: data-parallel
        try:
            comm = distributed.init()
        except ImportError as e:
            p.error(str(e))
    root = comm.is_root

    def fail(message):   # rank 0 says it; every rank exits 2
        if root:
            p.error(message)
        raise SystemExit(2)

    _check_values(given, fail)
    if given.get("plot"):
        _need_matplotlib(fail)
    resume = given.get("resume")
    if resume is not None:
        out = given.get("out") or (resume if os.path.isdir(resume)
                                   else os.path.dirname(resume) or ".")
    else:
        out = given.get("out", DEFAULT_OUT)
    overwrite = given.get("overwrite", False)
    problem = _check_out(out, overwrite=overwrite, resumed_from=resume) if root else None
    refused = problem is not None
    # rank 0 checked; every rank learns whether to stop
    refused = comm.allreduce_scalars(float(refused), what="the --out check")[0] > 0
    if refused:
        fail(problem)
    fields = set(tr.TrainConfig.__dataclass_fields__)
    settings = {k: v for k, v in given.items() if k in fields}
    if "data" in settings:
        settings["data"] = os.path.abspath(settings["data"])
    try:
        if resume is not None:
            trainer = tr.resume(resume, comm=comm, **settings)
        else:
            if tr.is_long_range(settings.get("task", "text")):
                _task_defaults(settings)
            cfg = tr.TrainConfig(**settings)
            trainer = tr.make_trainer(cfg, comm=comm)
    except tr.ResumeError as e:
        if e.clashes:
            fail(f"--resume {resume}: " + "; ".join(
                f"{_flag(k)} {v} contradicts the run's {old}" for k, v, old in e.clashes)
                + f". On --resume only {' '.join(RESUME_FLAGS)} may change")
        fail(f"--resume {resume}: {e}")
    except (DataError, CheckpointError, ValueError, OSError) as e:
        fail(str(e))

    def warn(message):
        if root:
            print(message, file=sys.stderr, flush=True)

    threads = _threads(given.get("threads"), comm, warn)
    if threads is not None:
        from . import set_num_threads
        set_num_threads(threads)
    if root:
        if overwrite and not _same_run(out, resume):
            _clear_run(out)
        _describe(trainer, out, resumed=resume is not None)
    ranks = f"mpiexec -n {comm.size} " if comm.size > 1 else ""
    try:
        summary = session.run(trainer, out, progress=not given.get("no_progress", False),
                         resume_command=f"{ranks}elman train --resume {out}")
    except session.Interrupted as e:
        return 128 + e.signum
    except tr.NonFiniteStop:
        return 3
    if not root:  # rank 0 reports for the job
        return 0
    _summarize(trainer, summary, out, given)
    return 0


def _task_defaults(settings):
    """The long-range tasks' defaults for what the command line did not give."""
    hf = settings.get("optimizer") == "hf"
    settings.setdefault("hidden", 100)     # Martens & Sutskever's, and Pascanu et al.'s 50
    settings.setdefault("batch", 1000 if hf else 100)
    settings.setdefault("every", 10 if hf else 1000)


def _need_matplotlib(fail):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail("--plot needs matplotlib: pip install '.[plot]' (or matplotlib)")


def _flag(field):
    return {"byte_level": "--bytes"}.get(field, "--" + field.replace("_", "-"))


def _clear_run(out):
    """--overwrite: remove the previous run's files, so that nothing of it outlives the
    new run's start (a new run that dies before its first checkpoint leaves no old one)."""
    from . import checkpoint
    for name in (checkpoint.FILENAME, "loss.png"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.unlink(path)


def _summarize(trainer, summary, out, given):
    from . import session
    if hasattr(trainer, "task"):
        _summarize_task(trainer, summary, out, given)
        return
    unit = "bits/char" if trainer.text else "RMSE"
    base = "unigram entropy" if trainer.text else "naive last-value predictor"
    if trainer.skipped:
        print(f"\n{trainer.skipped} steps were skipped for a non-finite loss or gradient")
    ran = summary["steps"] - summary["start_step"]
    span = (f"{ran} steps" if summary["start_step"] == 0 else
            f"steps {summary['start_step']}-{summary['steps']} ({ran} steps)")
    print(f"\ndone: {span} in {summary['seconds']:.1f} s "
          f"({summary['tokens_per_s']:,.0f} tokens/s); held-out {unit} "
          f"{summary['final']:.3f} (the {base}: {summary['baseline']:.3f})")
    if trainer.text:
        print("sample:\n" + trainer.sample(400, seed=1))
        then = f"elman sample --checkpoint {out}"
    else:
        if summary["final"] > summary["baseline"]:
            # differencing helps a series that wanders; the unit-root test said this one
            # does not unless --transform none overrode it
            forced = trainer.data.transform == "none" and trainer.cfg.transform == "none"
            hint = "--transform diff" if forced else "more --steps or a lower --lr"
            print(f"warning: the model's held-out RMSE {summary['final']:.4g} is worse than "
                  f"the naive last-value predictor's {summary['baseline']:.4g}; it has not "
                  f"learned this series (try {hint})", file=sys.stderr)
        then = f"elman forecast --checkpoint {out} --horizon 20"
    print(f"checkpoint: {os.path.join(out, 'checkpoint.npz')} ({then})")
    if given.get("plot"):
        print(f"plot: {session.plot(trainer, os.path.join(out, 'loss.png'))}")


def _summarize_task(trainer, summary, out, given):
    from . import session
    ran = summary["steps"] - summary["start_step"]
    right = summary["final"]
    print(f"\ndone: {ran} steps in {summary['seconds']:.1f} s, {trainer.sequences:,} "
          f"training sequences seen; {100 * right:.2f}% of {trainer.cfg.eval_sequences:,} "
          f"test sequences right ({'solved' if right > 0.99 else 'not solved'} by the "
          f"papers' rule, < 1% wrong; input-blind outputs: {100 * summary['baseline']:.2f}%)")
    print(f"checkpoint: {os.path.join(out, 'checkpoint.npz')}")
    if given.get("plot"):
        print(f"plot: {session.plot(trainer, os.path.join(out, 'loss.png'))}")


def _describe_task(trainer, out, resumed):
    cfg, m, t = trainer.cfg, trainer.model, trainer.task
    print(f"task: {trainer.data.name}: {t.source}; {t.loss}, "
          f"{'last step' if t.last_step_only else 'every step'} scored")
    if cfg.optimizer == "hf":
        hf = trainer.opt
        how = (f"hf: damping {hf.damping:g}, structural damping {hf.structural_damping:.4g}, "
               f"CG at most {hf.max_cg_iters} iterations, curvature on "
               f"{cfg.curvature:g} of the batch")
    else:
        how = f"{cfg.optimizer} lr {trainer.lr:g}, clip {cfg.clip}"
    print(f"model: Elman RNN, I={m.input_size} H={m.hidden_size} O={m.output_size} "
          f"({m.num_params:,} parameters, {_dtypes(m)}, sparse init: W_hh radius "
          f"{cfg.spectral_radius:g}, inputs x{cfg.input_scale:g}); {how}; "
          f"B={cfg.batch} fresh sequences per step")
    print(f"{'resuming at' if resumed else 'run:'} step {trainer.step} of {trainer.total}; "
          f"reports and checkpoints in {out}/ every {cfg.every} steps; threads "
          f"{_omp_threads()} ({_cores()} cores found)")


def _dtypes(m):
    """The model's dtype, and its products' when they differ."""
    from . import _core
    if m.compute_dtype == m.dtype.name:
        return m.dtype.name
    how = "" if _core.bf16_native() else ", emulated"
    return f"{m.dtype.name}, {m.compute_dtype} products{how}"


def _rates(trainer):
    scales = getattr(trainer.opt, "lr_scales", None)
    if not scales:
        return f"{trainer.lr:.4g}"
    matrices = trainer.lr * next(iter(scales.values()))
    return f"{trainer.lr:.4g} (embedding, biases) / {matrices:.4g} (matrices)"


def _describe(trainer, out, resumed):
    if hasattr(trainer, "task"):
        _describe_task(trainer, out, resumed)
        return
    cfg, data, m = trainer.cfg, trainer.data, trainer.model
    n_train = len(data.train)
    what = (f"{n_train:,} training / {len(data.valid):,} held-out symbols, vocabulary "
            f"{data.vocab_size}" if trainer.text else
            f"{n_train:,} training / {len(data.valid):,} held-out values")
    print(f"data: {data.name}: {what}")
    if not trainer.text:
        kind = "first differences" if data.transform == "diff" else "the values"
        print(f"series: the model predicts {kind} ({data.reason})")
    if trainer.comm.distributed:
        print(f"data-parallel over {trainer.comm.size} MPI ranks: {cfg.batch // trainer.comm.size}"
              f" lanes each, one gradient Allreduce per step")
    warm = f", warm-up {trainer.warmup} steps" if trainer.warmup else ""
    print(f"model: Elman RNN, I={m.input_size} H={m.hidden_size} O={m.output_size}"
          + (f" L={m.num_layers} dropout={m.dropout}" if m.num_layers > 1 else "") + " "
          f"({m.num_params:,} parameters, {_dtypes(m)}); {cfg.optimizer} lr {_rates(trainer)}"
          f"{warm}, clip {cfg.clip}; T={cfg.seq_len} B={cfg.batch}, "
          f"{trainer.windows_per_epoch:,} windows per epoch")
    per = " per rank" if trainer.comm.distributed else ""
    print(f"{'resuming at' if resumed else 'run:'} step {trainer.step} of {trainer.total}; "
          f"checkpoints in {out}/ every {cfg.every} steps; threads {_omp_threads()}{per} "
          f"({_cores()} cores found)")


# ---- sample -------------------------------------------------------------------------------

def _sample(argv) -> int:
    import numpy as np

    from .checkpoint import CheckpointError, load
    from .data import Corpus, DataError
    from .model import ElmanRNN
    p = _Parser(prog="elman sample",
                                description="Generate text from a trained character model.")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="a run directory of elman train (or its checkpoint.npz)")
    p.add_argument("--length", type=int, default=500, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="< 1 sharper, > 1 more random, 0 the likeliest character")
    p.add_argument("--prime", default=None, help="text to start from (default a newline)")
    p.add_argument("--seed", type=int, default=None, help="seed for a reproducible draw")
    p.add_argument("--samples", type=int, default=1, metavar="N",
                   help="N independent continuations of the prime, generated together in "
                        "one call (default 1)")
    a = p.parse_args(argv)
    if a.length < 0 or not a.temperature >= 0:
        p.error("--length and --temperature must be >= 0")
    if a.samples < 1:
        p.error("--samples must be >= 1")
    try:
        arrays, meta = load(a.checkpoint)
        cfg = meta["config"]
        if cfg.get("task") != "text":
            p.error(f"{a.checkpoint} holds a series model; elman sample generates text "
                    f"(elman forecast --checkpoint {a.checkpoint} --horizon N continues a "
                    f"series)")
        vocab = meta["vocab"]
        corpus = Corpus(meta["data_name"], vocab, np.empty(0, np.int64),
                        np.empty(0, np.int64), cfg["byte_level"])
        m = ElmanRNN(len(vocab), cfg["hidden"], len(vocab), num_layers=cfg.get("layers", 1),
                     dtype=cfg["dtype"])
        m.params[...] = arrays["params"]
    except CheckpointError as e:
        p.error(str(e))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        p.error(f"{a.checkpoint}: not a checkpoint of elman train ({type(e).__name__}: {e})")
    prime = a.prime if a.prime is not None else ("\n" if "\n" in vocab else None)
    try:
        ids = corpus.encode(prime) if prime else np.array([0])
    except DataError as e:
        p.error(f"--prime: {e}")
    h = m.forward(ids[:-1, None])[1] if len(ids) > 1 else None
    if a.samples == 1:
        out = m.sample(a.length, start=int(ids[-1]), h0=h, temperature=a.temperature,
                       seed=a.seed)
        sys.stdout.write((prime or "") + corpus.decode(out) + "\n")
        return 0
    h = None if h is None else np.repeat(h, a.samples, axis=1)  # (L, N, H): the prime's
    out = m.sample(a.length, start=int(ids[-1]), batch=a.samples, h0=h,
                   temperature=a.temperature, seed=a.seed)
    for k, row in enumerate(out):
        sys.stdout.write(f"--- sample {k + 1} of {a.samples}\n"
                         + (prime or "") + corpus.decode(row) + "\n")
    return 0


# ---- forecast -----------------------------------------------------------------------------

def _forecast(argv) -> int:
    import numpy as np

    from .checkpoint import CheckpointError
    from .data import DataError, read_series
    from .forecast import forecast, load
    p = _Parser(
        prog="elman forecast",
        description="Continue a series with a model of elman train --task series: the model "
                    "reads the history (the training data's last values, or --data), then "
                    "feeds back its own predictions. Prints step,forecast as CSV.")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="a run directory of elman train --task series (or its checkpoint.npz)")
    p.add_argument("--horizon", type=int, required=True, metavar="N", help="values to predict")
    p.add_argument("--data", metavar="CSV", help="the history to continue instead (a CSV "
                   "file with a header row; the whole column is read)")
    p.add_argument("--column", help="the --data column (needed when it has several)")
    p.add_argument("--out", metavar="CSV", help="write the forecast here instead of stdout")
    p.add_argument("--plot", metavar="PNG", help="draw the history's end and the forecast")
    a = p.parse_args(argv)
    if a.horizon < 1:
        p.error("--horizon must be >= 1")
    if a.column is not None and a.data is None:
        p.error("--column chooses a column of --data; without --data the run's own history "
                "is used")
    if a.plot:
        _need_matplotlib(p.error)
    try:
        model, series = load(a.checkpoint)
        history = read_series(a.data, a.column) if a.data else series.tail
        values = forecast(model, series, history, a.horizon)
    except (CheckpointError, DataError, ValueError) as e:
        p.error(str(e))
    lines = ["step,forecast"] + [f"{k},{v:.10g}" for k, v in enumerate(values, 1)]
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"forecast of {a.horizon} values written to {a.out}")
    else:
        sys.stdout.write("\n".join(lines) + "\n")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        shown = np.asarray(history, np.float64)[-max(5 * a.horizon, 100):]
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(np.arange(-len(shown) + 1, 1), shown, lw=1, label="history")
        ax.plot(np.arange(0, a.horizon + 1), np.r_[shown[-1], values], lw=1.5,
                label=f"forecast ({a.horizon} steps)")
        ax.axvline(0, color="gray", lw=0.5)
        ax.set_xlabel("steps from the last known value")
        ax.set_title(f"elman forecast: {series.name}")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        plt.close(fig)
        print(f"plot: {a.plot}", file=sys.stderr if not a.out else sys.stdout)
    return 0


# ---- bench, info --------------------------------------------------------------------------

def _bench(rest) -> int:
    from . import bench
    return bench.main(rest, prog="elman bench", preset="quick", out="elman-bench")


def _info(rest) -> int:
    argparse.ArgumentParser(prog="elman info",
                            description="Print elman's build and runtime configuration."
                            ).parse_args(rest)
    from . import show_config
    show_config()
    return 0


COMMANDS = {"train": _train, "sample": _sample, "forecast": _forecast, "bench": _bench,
            "info": _info}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="elman", description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version")
    parser.add_argument("command", choices=sorted(COMMANDS))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        from . import __version__
        print(f"elman {__version__}")
        return 0
    args, _ = parser.parse_known_args(argv[:1])
    try:
        return COMMANDS[args.command](argv[1:])
    except KeyboardInterrupt:   # Ctrl-C before a command's own handling starts (imports,
        print(f"elman {args.command}: interrupted", file=sys.stderr)   # reading data)
        return 130
