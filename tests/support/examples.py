"""How many examples a hypothesis test draws: its full count in the full
suite, at most :data:`FAST` in the fast loop (``pytest -m 'not slow'``).

``tests/conftest.py`` sets :data:`fast_loop` before any test module is
imported, from the marker expression. ``WDAX_FUZZ_EXAMPLES=N`` overrides
both, to search deeper (or less) than either.
"""

import os

FAST = 8
fast_loop = False


def examples(full: int) -> int:
  """The number of examples to draw for a test whose full count is ``full``."""
  forced = os.environ.get('WDAX_FUZZ_EXAMPLES')
  if forced:
    return int(forced)
  return min(full, FAST) if fast_loop else full
