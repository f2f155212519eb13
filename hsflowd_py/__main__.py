"""``python -m hsflowd_py``: the agent."""

import sys

from .cli import main

sys.exit(main())
