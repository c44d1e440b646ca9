"""pytest runs every guide's examples as a doctest (``--doctest-glob='*.md'``).

The guides that compile and train models are marked ``slow``, like the other
subprocess and training runs, so ``pytest -m 'not slow'`` stays fast. Sphinx's
configuration and extension are not test modules.
"""

from pathlib import Path

import pytest

collect_ignore = ['conf.py', '_ext']

_HERE = Path(__file__).resolve().parent
SLOW = {_HERE / 'guides' / 'training_flax.md', _HERE / 'guides' / 'choosing_decay.md'}


def pytest_collection_modifyitems(items):
  for item in items:
    if Path(item.path) in SLOW:
      item.add_marker(pytest.mark.slow)
