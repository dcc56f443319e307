"""advkit's GPU check (see benchmarks/gpucheck/__init__.py): ``python benchmarks/gpu_check.py
[--cpu-smoke] [--out DIR] ...``; ``--help`` lists the options."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpucheck.cli import main

if __name__ == "__main__":
    sys.exit(main())
