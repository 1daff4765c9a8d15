"""``python -m edgehmr``: the same command line as the ``edgehmr`` script (for environments without it on PATH)."""

import sys

from edgehmr.cli import main

sys.exit(main())
