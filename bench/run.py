"""Run elman's benchmark suite (``elman.bench``); results go to bench/results/ by default.

    python bench/run.py [--quick] [--threads 1,2] [--only limits,adagrad,rnn,generate,...]
                        [--out bench/results] [--openblas {as-is,unset,both}]

bench/README.md says what each section measures and how FLOPs and bytes are counted.
"""
import os
import sys

from elman.bench import main

if __name__ == "__main__":
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    sys.exit(main(["--out", results, *sys.argv[1:]]))  # a later --out wins
