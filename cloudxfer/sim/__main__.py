"""``python -m cloudxfer.sim target|source ...``."""

import sys

from cloudxfer.sim.cli import main

sys.exit(main())
