"""How the output names things: metrics, their units, and paths.

Shared by the terminal's tables (:mod:`~wdax.cli.rendering`) and the plot
(:mod:`~wdax.cli.plotting`).
"""

from __future__ import annotations

import os

# How each metric is named in the table, the summary and the plot.
LABELS = {'accuracy': 'accuracy', 'r2': 'R²', 'loss': 'loss', 'perplexity': 'perplexity'}
UNITS = {
    'classification': {'loss': 'cross-entropy, nats', 'accuracy': 'fraction correct'},
    'regression': {'loss': 'mean squared error, standardised target', 'r2': 'R², 1 is perfect'},
    'language': {
        'loss': 'cross-entropy, nats per token', 'accuracy': 'next tokens predicted',
        'perplexity': 'exp(loss)',
    },
}


def shown(path: str) -> str:
  r"""``path`` as text any output can hold: a byte that is not UTF-8 (which
  Python keeps in a path as a lone surrogate) is shown as ``\xff``.

  Examples:
    >>> print(shown('data-\udcff.csv'))
    data-\xff.csv
  """
  return os.fsencode(path).decode('utf-8', 'backslashreplace')
