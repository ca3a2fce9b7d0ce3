"""``python -m fastfd.cli``: the ``fastfd`` command."""

import sys

from . import main

sys.exit(main())
