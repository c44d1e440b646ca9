"""``python -m wdax``: the command line of :mod:`wdax.cli`."""

from wdax.cli import main

raise SystemExit(main())
