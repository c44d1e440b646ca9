"""A report of what a decay does to each parameter, to read before training.

:func:`describe` builds a :class:`Report`: one :class:`Row` per leaf (path,
shape, dtype, size, whether it is decayed and at what rate) and the decayed
share. ``wdax.describe`` is this function.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from wdax import _checks
from wdax import masks as _masks
from wdax import paths as _paths
from wdax import rate as _rates

__all__ = ['Report', 'Row', 'describe']


@dataclasses.dataclass(frozen=True)
class Row:
  """One leaf of the report."""

  path: str
  shape: tuple[int, ...]
  dtype: str
  size: int
  decayed: bool
  rate: str


@dataclasses.dataclass(frozen=True)
class Report:
  """What a decay does to each leaf; ``str()`` is a plain-text table.

  In a terminal with ``rich`` installed, ``rich.print(report)`` renders it as
  a rich table.
  """

  rows: tuple[Row, ...]

  @property
  def total(self) -> int:
    return sum(r.size for r in self.rows)

  @property
  def decayed(self) -> int:
    return sum(r.size for r in self.rows if r.decayed)

  @property
  def share(self) -> float:
    return self.decayed / self.total if self.total else 0.0

  def _cells(self) -> list[tuple[str, ...]]:
    return [
        (
            r.path,
            str(r.shape),
            r.dtype,
            f'{r.size:,}',
            'yes' if r.decayed else 'no',
            r.rate,
        )
        for r in self.rows
    ]

  def _totals(self) -> str:
    return (
        f'decayed: {self.decayed:,} of {self.total:,} parameters '
        f'({100 * self.share:.1f}%)'
    )

  def __str__(self) -> str:
    header = ('path', 'shape', 'dtype', 'size', 'decayed', 'rate')
    cells = [header, *self._cells()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    right = {3}
    lines = []
    for n, row in enumerate(cells):
      lines.append(
          '  '.join(
              c.rjust(w) if i in right else c.ljust(w)
              for i, (c, w) in enumerate(zip(row, widths))
          ).rstrip()
      )
      if n == 0:
        lines.append('  '.join('-' * w for w in widths))
    lines.append(self._totals())
    return '\n'.join(lines)

  def __rich__(self) -> Any:
    from rich.table import Table  # Only reached when rich renders the report.

    table = Table(caption=self._totals())
    for name in ('path', 'shape', 'dtype', 'size', 'decayed', 'rate'):
      table.add_column(name, justify='right' if name == 'size' else 'left')
    for row, cells in zip(self.rows, self._cells()):
      table.add_row(*cells, style=None if row.decayed else 'dim')
    return table


def describe(
    params: Any,
    *,
    rate: _rates.RateLike | None = None,
    mask: _masks.MaskLike = None,
) -> Report:
  """Reports, leaf by leaf, whether and how strongly ``params`` are decayed.

  Args:
    params: the parameter tree (plain dicts, ``FrozenDict``, linen
      ``variables['params']`` or an ``nnx.State``).
    rate: the decay rate as given to a wdax transform, or ``None`` to show the
      mask alone.
    mask: the mask as given to a wdax transform.

  Returns:
    A :class:`Report`: one row per leaf with its path, shape, dtype, size,
    whether it is decayed and its rate, then the decayed total and share.

  Examples:
    >>> import jax.numpy as jnp
    >>> import wdax
    >>> params = {'Dense_0': {'bias': jnp.zeros(4), 'kernel': jnp.zeros((3, 4))}}
    >>> print(wdax.describe(params, rate=1e-4, mask=wdax.masks.flax_default()))
    path            shape   dtype    size  decayed  rate
    --------------  ------  -------  ----  -------  ------
    Dense_0/bias    (4,)    float32     4  no       0
    Dense_0/kernel  (3, 4)  float32    12  yes      0.0001
    decayed: 12 of 16 parameters (75.0%)
  """
  if rate is not None:
    rate = _rates.check(rate, 'describe(): rate')
  all_paths, leaves, _ = _paths.leaves_with_paths(params)
  leaves = _checks.leaves('describe()', 'params', all_paths, leaves)
  selected = _masks.resolve(mask, params)
  leaf_rates = (
      _rates.resolve(rate, all_paths, name='describe(): rate tree')
      if rate is not None
      else [None] * len(leaves)
  )
  rows = []
  for path, leaf, on, r in zip(all_paths, leaves, selected, leaf_rates):
    decayed = on and not (r is not None and _checks.is_static_zero(r))
    if r is None:
      shown = '-'
    elif not decayed:
      shown = '0'
    else:
      shown = _rates.describe_rate(r)
    shape = tuple(np.shape(leaf))
    rows.append(
        Row(path, shape, str(leaf.dtype), int(np.prod(shape)), decayed, shown)
    )
  return Report(tuple(rows))
