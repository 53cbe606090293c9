"""python -m elman.bench: the benchmark suite (see elman.bench)."""
import sys

from . import main

sys.exit(main())
