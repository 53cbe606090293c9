"""``python -m elman <command>``: see elman.cli."""
import sys

from .cli import main

sys.exit(main())
