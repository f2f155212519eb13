"""``python -m hsflowd_py.collector``: the same as the ``sflowtool-py`` command."""

import sys

from .cli import main

sys.exit(main())
