"""Benchmark suite: elman against NumPy, PyTorch and JAX, and against the machine's own
limits, measured side by side in one run.

Sections (``--only``, in this order):

- ``limits``: bandwidth of Adagrad's access pattern, by a plain C loop that reads p, g, S and
  writes p, S (20 bytes per float32 element), and sgemm GFLOP/s through the BLAS elman calls
  (SciPy's) at the RNN's GEMM shapes and at a square reference size (the peak).
- ``adagrad``: one float32 Adagrad step (torch semantics, lr 0.01, eps 1e-10) over n
  parameters: elman's kernel, the NumPy reference, torch.optim.Adagrad (for-loop, foreach,
  fused).
- ``rnn``: one training step (forward, softmax cross-entropy on every step, full BPTT,
  Adagrad): elman, elman's model on the NumPy backend, PyTorch, JAX.
- ``generate``: characters per second sampled from a character model.
- ``scaling``: elman's training step against T, B and H.
- ``torch``: elman as a PyTorch backend: ``elman.torch.Adagrad`` against torch.optim.Adagrad
  on a list of torch tensors, and ``elman.torch.ElmanRNN`` against torch.nn.RNN inside an
  otherwise identical torch training step.
- ``sweep``: elman's training step over a grid of H, B, T and layer counts against torch and
  JAX, as a table and heatmaps (ratio to the best peer; share of the FMA peak); about an
  hour at the full sizes, so only with ``--only``.
- ``overhead``: what the Python layer costs per training step: the C work alone against a
  call of ``elman.TrainStep`` and of ``elman.train_step``.
- ``curvature``: one Gauss-Newton product (``ElmanRNN.gauss_newton``) against one
  ``forward_backward`` at the same shape.
- ``long-range``: the long-range problems (adding, multiplication, temporal order at
  T = 20 ... 200) trained to the papers' criterion by SGD and Adagrad with clipping and by
  Hessian-free optimization with and without structural damping, within a time budget per
  cell (``--long-range-budget``); hours at the full sizes, so only with ``--only``.

Each thread count runs in its own worker process (``python -m elman.bench --worker ...``)
whose thread variables are set before anything loads a BLAS. The driver writes
``bench.md``, ``bench.json`` and PNG plots into ``--out`` and prints the markdown; progress
goes to stderr. PyTorch, JAX (with optax) and matplotlib are optional.

    python bench/run.py --quick                  # about a minute on two cores
    python bench/run.py --threads 1 --only limits,adagrad

The code: elman.bench.suite (sizes, timing, the peers, the worker), elman.bench.report
(markdown and plots), and here the driver and the command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile

from .report import markdown, plots
from .suite import (  # noqa: F401  (the names tests and users reach as elman.bench.*)
    SECTIONS,
    DEFAULT_SECTIONS,
    PRESET_FLAGS,
    THREAD_VARS,
    OPENBLAS_VARS,
    XLA_ONE_THREAD,
    PRESETS,
    _cpu_model,
    run_worker,
    ADAGRAD_IMPLS,
    GENERATE_IMPLS,
    OPT_IN_SECTIONS,
    SWEEP_IMPLS,
    RNN_IMPLS,
    TORCH_ADAGRAD_IMPLS,
    TORCH_RNN_IMPLS,
    doubling_ratios,
    optional_module,
)

# ---- the driver: one worker process per thread count and OpenBLAS environment -------------

def _worker_env(threads, openblas):
    """The environment of a worker: thread counts set, OpenBLAS's variables kept or removed."""
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    env.setdefault("JAX_PLATFORMS", "cpu")
    if threads == 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {XLA_ONE_THREAD}".strip()
    if openblas == "unset":
        for var in OPENBLAS_VARS:
            env.pop(var, None)
    return env


def worker_args(path, preset, sections, threads, openblas, long_range=()):
    """Command-line arguments of a worker that writes its results to ``path``."""
    return ["--worker", path, "--threads", str(threads), "--only", ",".join(sections),
            "--openblas", openblas, *PRESET_FLAGS[preset], *long_range]


LONG_RANGE_OPTIONS = ("budget", "lengths", "tasks", "methods")


def _long_range(args):
    """The long-range grid's overrides given on the command line."""
    given = {k: getattr(args, f"long_range_{k}") for k in LONG_RANGE_OPTIONS}
    return {k: v for k, v in given.items() if v is not None}


def _long_range_flags(args):
    flags = []
    for key, value in _long_range(args).items():
        text = str(value) if key == "budget" else ",".join(map(str, value))
        flags += [f"--long-range-{key}", text]
    return flags


def _run_all(args, preset):
    """Every (OpenBLAS environment, thread count) pair, each in a fresh worker process
    (or in this one with --in-process). A worker that dies is reported, not fatal."""
    modes = ("as-is", "unset") if args.openblas == "both" else (args.openblas,)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for openblas, threads in itertools.product(modes, args.threads):
            if args.in_process:
                runs.append(run_worker(preset, args.only, threads, openblas,
                                       _long_range(args)))
                continue
            path = os.path.join(tmp, f"{openblas}-{threads}.json")
            cmd = [sys.executable, "-m", "elman.bench",
                   *worker_args(path, preset, args.only, threads, openblas,
                                _long_range_flags(args))]
            status = subprocess.run(cmd, env=_worker_env(threads, openblas)).returncode
            if status == 0:
                with open(path, encoding="utf-8") as f:
                    runs.append(json.load(f))
            else:
                runs.append({"threads": threads, "openblas": openblas,
                             "error": f"worker exited with status {status}"})
    return runs


# ---- command line -------------------------------------------------------------------------

def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _names(kind, known):
    """An argparse type: a comma-separated list of names from ``known()``."""
    def parse(text):
        names = [v.strip() for v in text.split(",") if v.strip()]
        choices = known()
        if not names or set(names) - set(choices):
            raise argparse.ArgumentTypeError(f"{kind} are {', '.join(choices)}; got {text!r}")
        return names
    return parse


def _methods():
    from .second_order import METHODS
    return tuple(METHODS)


def _tasks():
    from ..tasks import TASKS
    return tuple(TASKS)


def _sections(text):
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}; got {text!r}")
    return [s for s in SECTIONS if s in names]


def _parser(prog="python -m elman.bench", preset="full", out=os.path.join("bench", "results")):
    p = argparse.ArgumentParser(
        prog=prog,
        description="elman's benchmark suite: Adagrad, RNN training step, generation and "
                    "scaling against NumPy, PyTorch, JAX and the machine's limits.")
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--quick", dest="preset", action="store_const", const="quick",
                       help="small sizes and short timings (a minute or two)"
                            + (" (the default)" if preset == "quick" else ""))
    sizes.add_argument("--full", dest="preset", action="store_const", const="full",
                       help="the full sizes and timings (about an hour)"
                            + (" (the default)" if preset == "full" else ""))
    sizes.add_argument("--tiny", dest="preset", action="store_const", const="tiny",
                       help=argparse.SUPPRESS)  # the tests' sizes
    p.set_defaults(preset=preset)
    p.add_argument("--threads", type=_int_list, default=[1, 2], metavar="N,N",
                   help="thread counts, each in its own worker process (default 1,2)")
    p.add_argument("--only", type=_sections, default=list(DEFAULT_SECTIONS),
                   metavar="SECTIONS",
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default all but "
                        f"sweep and long-range)")
    p.add_argument("--long-range-budget", type=float, metavar="SECONDS",
                   help="long-range: seconds of training per cell (default: the preset's, "
                        "1800 full, 120 quick)")
    p.add_argument("--long-range-lengths", type=_int_list, metavar="T,T",
                   help="long-range: the T of each task (default 20,50,100,200 full)")
    p.add_argument("--long-range-tasks", type=_names("tasks", _tasks),
                   metavar="TASK,TASK",
                   help="long-range: the problems (default adding,multiplication,"
                        "temporal_order full)")
    p.add_argument("--long-range-methods", type=_names("methods", _methods),
                   metavar="METHOD,METHOD",
                   help="long-range: the optimizers (default sgd,adagrad,hf,hf_sd)")
    p.add_argument("--out", default=out,
                   help=f"directory for bench.md, bench.json and the plots (default {out})")
    p.add_argument("--openblas", choices=("as-is", "unset", "both"), default="as-is",
                   help="workers' OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: as in this "
                        "environment, removed, or one run of each (default as-is)")
    p.add_argument("--in-process", action="store_true",
                   help="run every thread count in this process (for profilers and "
                        "debuggers); thread variables cannot then be set before BLAS loads")
    p.add_argument("--worker", metavar="RESULT_JSON", help=argparse.SUPPRESS)
    return p


def main(argv=None, *, prog="python -m elman.bench", preset="full",
         out=os.path.join("bench", "results")) -> int:
    """Run the suite; ``argv`` as on the command line (``python -m elman.bench --help``).
    ``prog``, ``preset`` and ``out``: the program name and defaults its help shows
    (``elman bench``: quick sizes into elman-bench). Returns 0, or 1 when a worker process
    failed."""
    parser = _parser(prog, preset, out)
    args = parser.parse_args(argv)
    preset = args.preset
    if args.worker:
        run = run_worker(preset, args.only, args.threads[0], args.openblas,
                         _long_range(args))
        with open(args.worker, "w", encoding="utf-8") as f:
            json.dump(run, f)
        return 0
    if args.in_process and args.openblas != "as-is":
        parser.error("--in-process cannot change OpenBLAS's environment: use --openblas as-is")
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform()},
        "settings": {"preset": preset, "threads": args.threads, "sections": args.only,
                     "openblas": args.openblas, "in_process": args.in_process,
                     "sizes": dataclasses.asdict(PRESETS[preset])},
        "runs": _run_all(args, preset),
    }
    os.makedirs(args.out, exist_ok=True)
    written = plots(result, args.out)
    report = markdown(result, written)
    with open(os.path.join(args.out, "bench.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(args.out, "bench.md"), "w", encoding="utf-8") as f:
        f.write(report + "\n")
    print(report)
    return 1 if any("error" in run for run in result["runs"]) else 0
