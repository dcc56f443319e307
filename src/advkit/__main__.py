"""``python -m advkit`` (and ``torchrun -m advkit``)."""

import sys

from advkit.cli import main

sys.exit(main())
