"""``python -m fastfd``: the command line (see :mod:`fastfd.cli`)."""

from .cli import main

raise SystemExit(main())
