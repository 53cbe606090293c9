"""The command line: ``elman <command>`` or ``python -m elman <command>``.

    elman train [options]   train a character language model on built-in text (or --data
                            FILE, or --task series); elman train --help lists the options
    elman sample --checkpoint DIR [--length N --temperature T --prime TEXT --seed S]
                            generate text from a trained model (one C call)
    elman bench [options]   the benchmark suite, quick sizes unless --full
    elman info              version, compiler, kernel paths, BLAS and threads
"""
from __future__ import annotations

import argparse
import math
import os
import sys


# ---- train --------------------------------------------------------------------------------

def _none_or_float(text):
    return None if text.lower() in ("none", "off", "0") else float(text)


def _train_parser():
    from .train import TrainConfig
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="elman train",
        description="Train an Elman RNN with stateful truncated BPTT: a character language "
                    "model on the Python standard library's sources by default (no download), "
                    "on --data FILE, or a next-value regressor with --task series.")
    g = p.add_argument_group("data")
    g.add_argument("--task", choices=("text", "series"), default=d.task,
                   help="next character (cross-entropy) or next value (mse); default text")
    g.add_argument("--data", metavar="PATH", help="a UTF-8 text file (a CSV file for "
                   "--task series); default: built-in data")
    g.add_argument("--bytes", dest="byte_level", action="store_true",
                   help="read --data as bytes (vocabulary 256), for non-UTF-8 files")
    g.add_argument("--column", help="the CSV column of a series")
    g = p.add_argument_group("model and optimizer")
    g.add_argument("--hidden", type=int, default=d.hidden, help=f"hidden units (default {d.hidden})")
    g.add_argument("--layers", type=int, default=d.layers,
                   help=f"stacked Elman layers (default {d.layers})")
    g.add_argument("--dropout", type=float, default=d.dropout,
                   help="dropout between layers while training, in [0, 1) (default 0)")
    g.add_argument("--seq-len", type=int, default=d.seq_len,
                   help=f"BPTT window T (default {d.seq_len})")
    g.add_argument("--batch", type=int, default=d.batch, help=f"lanes B (default {d.batch})")
    g.add_argument("--steps", type=int, help=f"total steps of the run (default "
                   f"{TrainConfig.DEFAULT_STEPS}, about two minutes on two cores)")
    g.add_argument("--epochs", type=float, help="run length in passes over the data instead")
    g.add_argument("--lr", type=float, help="learning rate (default 0.02, or the --preset's)")
    g.add_argument("--optimizer", choices=("adagrad", "sgd"), default=d.optimizer)
    g.add_argument("--preset", choices=("torch", "keras", "optax", "minchar"),
                   help="Adagrad preset for eps and accumulator (explicit --lr still wins)")
    g.add_argument("--clip", type=_none_or_float, default=d.clip, metavar="NORM",
                   help=f"global gradient-norm clip, or none (default {d.clip})")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype)
    g = p.add_argument_group("run")
    g.add_argument("--threads", type=int, help="elman's threads (default: all cores)")
    g.add_argument("--out", metavar="DIR",
                   help="checkpoint (and loss.png) directory (default elman-run, or the "
                        "--resume directory)")
    g.add_argument("--every", type=int, metavar="N",
                   help=f"evaluate, checkpoint and sample every N steps (default {d.every}, "
                        f"or the resumed run's)")
    g.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR")
    g.add_argument("--plot", action="store_true", help="write loss.png into --out "
                   "(needs matplotlib: pip install 'elman[plot]')")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--on-nonfinite", choices=("stop", "skip"),
                   help="a NaN or infinite loss or gradient: stop (checkpointing the last good "
                        "step) or skip that step (default stop, or the resumed run's)")
    return p


def _train(argv) -> int:
    from . import train as tr
    from .checkpoint import CheckpointError
    from .data import DataError
    p = _train_parser()
    a = p.parse_args(argv)
    if a.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib: pip install 'elman[plot]' (or matplotlib)")
    if not 0 <= a.dropout < 1:
        p.error("--dropout must be in [0, 1)")
    for name in ("hidden", "layers", "seq_len", "batch"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.every is not None and a.every < 1:
        p.error("--every must be >= 1")
    if a.steps is not None and a.steps < 1:
        p.error("--steps must be >= 1")
    if a.epochs is not None and not 0 < a.epochs <= 1e6:
        p.error("--epochs must be in (0, 1e6]")
    if a.threads is not None and a.threads < 1:
        p.error("--threads must be >= 1")
    if a.lr is not None and not 0 < a.lr < math.inf:
        p.error("--lr must be a positive number")
    if a.clip is not None and not 0 < a.clip < math.inf:
        p.error("--clip must be a positive number, or none")
    comm = None
    from . import distributed
    if distributed.launched_by_mpi():  # mpiexec -n N elman train ...: data-parallel
        try:
            comm = distributed.init()
        except ImportError as e:
            p.error(str(e))
    try:
        if a.resume:
            trainer = tr.resume(a.resume, comm=comm, steps=a.steps, epochs=a.epochs,
                                every=a.every, on_nonfinite=a.on_nonfinite)
            out = a.out or (a.resume if os.path.isdir(a.resume)
                            else os.path.dirname(a.resume) or ".")
        else:
            cfg = tr.TrainConfig(task=a.task, data=a.data, byte_level=a.byte_level,
                                 column=a.column, hidden=a.hidden, layers=a.layers,
                                 dropout=a.dropout, seq_len=a.seq_len,
                                 batch=a.batch, steps=a.steps, epochs=a.epochs, lr=a.lr,
                                 optimizer=a.optimizer, preset=a.preset, clip=a.clip,
                                 seed=a.seed, dtype=a.dtype,
                                 every=a.every or tr.TrainConfig.every,
                                 on_nonfinite=a.on_nonfinite or "stop")
            trainer = tr.Trainer(cfg, tr.load_data(cfg), comm=comm)
            out = a.out or "elman-run"
    except (DataError, CheckpointError, ValueError, OSError) as e:
        p.error(str(e))
    if trainer.is_root:
        _describe(trainer, out, resumed=bool(a.resume))
    try:
        summary = tr.run(trainer, out, progress=not a.no_progress, threads=a.threads)
    except KeyboardInterrupt:
        return 130
    except tr.NonFiniteStop:
        return 3
    if not trainer.is_root:  # rank 0 reports for the job
        return 0
    unit = "bits/char" if trainer.text else "RMSE"
    base = "unigram entropy" if trainer.text else "naive last-value predictor"
    if trainer.skipped:
        print(f"\n{trainer.skipped} steps were skipped for a non-finite loss or gradient")
    print(f"\ndone: {summary['steps']} steps in {summary['seconds']:.1f} s "
          f"({summary['tokens_per_s']:,.0f} tokens/s); held-out {unit} "
          f"{summary['final']:.3f} (the {base}: {summary['baseline']:.3f})")
    if trainer.text:
        print("sample:\n" + trainer.sample(400, seed=1))
    print(f"checkpoint: {os.path.join(out, 'checkpoint.npz')} "
          f"(elman sample --checkpoint {out})")
    if a.plot:
        print(f"plot: {tr.plot(trainer, os.path.join(out, 'loss.png'))}")
    return 0


def _describe(trainer, out, resumed):
    cfg, data, m = trainer.cfg, trainer.data, trainer.model
    n_train = len(data.train)
    what = (f"{n_train:,} training / {len(data.valid):,} held-out symbols, vocabulary "
            f"{data.vocab_size}" if trainer.text else
            f"{n_train:,} training / {len(data.valid):,} held-out values")
    print(f"data: {data.name}: {what}")
    if trainer.comm is not None:
        print(f"data-parallel over {trainer.comm.size} MPI ranks: {cfg.batch // trainer.comm.size}"
              f" lanes each, one gradient Allreduce per step")
    print(f"model: Elman RNN, I={m.input_size} H={m.hidden_size} O={m.output_size}"
          + (f" L={m.num_layers} dropout={m.dropout}" if m.num_layers > 1 else "") + " "
          f"({m.num_params:,} parameters, {cfg.dtype}); {cfg.optimizer} lr {trainer.opt.lr}, "
          f"clip {cfg.clip}; T={cfg.seq_len} B={cfg.batch}, "
          f"{trainer.windows_per_epoch:,} windows per epoch")
    print(f"{'resuming at' if resumed else 'run:'} step {trainer.step} of {trainer.total}; "
          f"checkpoints in {out}/ every {cfg.every} steps")


# ---- sample -------------------------------------------------------------------------------

def _sample(argv) -> int:
    import numpy as np

    from .checkpoint import CheckpointError, load
    from .data import Corpus, DataError
    from .model import ElmanRNN
    p = argparse.ArgumentParser(prog="elman sample",
                                description="Generate text from a trained character model.")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="a run directory of elman train (or its checkpoint.npz)")
    p.add_argument("--length", type=int, default=500, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="< 1 sharper, > 1 more random, 0 the likeliest character")
    p.add_argument("--prime", default=None, help="text to start from (default a newline)")
    p.add_argument("--seed", type=int, default=None, help="seed for a reproducible draw")
    a = p.parse_args(argv)
    if a.length < 0 or not a.temperature >= 0:
        p.error("--length and --temperature must be >= 0")
    try:
        arrays, meta = load(a.checkpoint)
        cfg = meta["config"]
        if cfg.get("task") != "text":
            p.error(f"{a.checkpoint} holds a series model; elman sample generates text")
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
    out = m.sample(a.length, start=int(ids[-1]), h0=h, temperature=a.temperature,
                   seed=a.seed)
    sys.stdout.write((prime or "") + corpus.decode(out) + "\n")
    return 0


# ---- bench, info --------------------------------------------------------------------------

def _bench(rest) -> int:
    from . import bench
    if "--full" in rest:
        rest = [a for a in rest if a != "--full"]
    elif "--tiny" not in rest and "--quick" not in rest:
        rest = ["--quick", *rest]
    if not any(a == "--out" or a.startswith("--out=") for a in rest):
        rest = ["--out", "elman-bench", *rest]
    return bench.main(rest)


def _info(rest) -> int:
    argparse.ArgumentParser(prog="elman info",
                            description="Print elman's build and runtime configuration."
                            ).parse_args(rest)
    from . import show_config
    show_config()
    return 0


COMMANDS = {"train": _train, "sample": _sample, "bench": _bench, "info": _info}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="elman", description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args, _ = parser.parse_known_args(argv[:1])
    return COMMANDS[args.command](argv[1:])
