"""The command line: ``elman <command>`` or ``python -m elman <command>``.

    elman bench [options]   the benchmark suite, quick sizes unless --full (python -m
                            elman.bench --help lists the options)
    elman info              version, compiler, kernel paths, BLAS and threads
"""
from __future__ import annotations

import argparse
import sys


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


COMMANDS = {"bench": _bench, "info": _info}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="elman", description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args, rest = parser.parse_known_args(argv[:1])
    return COMMANDS[args.command](argv[1:])
