"""A report of what a decay does to each parameter, to read before training.

:func:`describe` builds a :class:`Report`: one :class:`Row` per leaf (path,
shape, dtype, size, whether it is decayed and at what rate) and the decayed
share. ``wdax.describe`` is this function.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import NamedTuple

import numpy as np

from wdax import _checks
from wdax import masks as _masks
from wdax import paths as _paths
from wdax import precision as _precision
from wdax import rate as _rates
from wdax import schedules as _schedules

__all__ = ['Report', 'Row', 'StepDecay', 'describe', 'step_decays']

COUPLINGS = ('lr', 'schedule', 'none', 'corrected')


@dataclasses.dataclass(frozen=True)
class Row:
  """One leaf of the report."""

  path: str
  shape: tuple[int, ...]
  dtype: str
  size: int
  decayed: bool
  rate: str
  lr: str = ''
  per_step: str = ''
  frozen: bool = False
  lost: str = ''


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

  @property
  def with_lr(self) -> bool:
    """Whether a learning rate was given: then its columns are shown."""
    return any(r.lr for r in self.rows)

  @property
  def header(self) -> tuple[str, ...]:
    base = ('path', 'shape', 'dtype', 'size', 'decayed', 'rate')
    with_lr = (*base, 'lr', 'decay/step') if self.with_lr else base
    return (*with_lr, 'lost') if self.with_lost else with_lr

  @property
  def with_lost(self) -> bool:
    """Whether a low-precision leaf is decayed: then the ``lost`` column shows."""
    return any(r.lost for r in self.rows)

  def _cells(self) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in self.rows:
      decayed = 'frozen' if r.frozen else ('yes' if r.decayed else 'no')
      row = (r.path, str(r.shape), r.dtype, f'{r.size:,}', decayed, r.rate)
      cells: tuple[str, ...] = (*row, r.lr, r.per_step) if self.with_lr else row
      out.append((*cells, r.lost) if self.with_lost else cells)
    return out

  def _totals(self) -> str:
    text = (
        f'decayed: {self.decayed:,} of {self.total:,} parameters '
        f'({100 * self.share:.1f}%)'
    )
    frozen = sum(r.size for r in self.rows if r.frozen)
    return text + (f'; frozen: {frozen:,}' if frozen else '')

  def __str__(self) -> str:
    header = self.header
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
    for name in self.header:
      table.add_column(name, justify='right' if name == 'size' else 'left')
    for row, cells in zip(self.rows, self._cells()):
      table.add_row(*cells, style=None if row.decayed else 'dim')
    return table


class StepDecay(NamedTuple):
  """A leaf's decay per step :math:`c`: at step 0 and at its peak learning rate.

  Each is a float, or a float64 array of one value per layer for per-layer
  values.
  """

  start: Any
  peak: Any


def _at_zero(value: Any) -> Any:
  if callable(value):
    return np.asarray(value(np.int32(0)), np.float64)
  return np.asarray(value, np.float64)


def _peak_of(value: Any) -> Any:
  if isinstance(value, np.ndarray) or not callable(value):
    return np.asarray(value, np.float64)
  return np.asarray(_schedules.peak(value), np.float64)


def _coupled(coupling: str, r: Any, lr_t: Any, top: Any) -> Any:
  if coupling == 'none':
    return r
  if coupling == 'lr':
    return lr_t * r
  ratio = lr_t / np.where(top == 0, 1.0, top)
  return r * ratio if coupling == 'schedule' else lr_t * r * ratio


def step_decays(
    params: Any,
    *,
    rate: _rates.RateLike,
    lr: _rates.LrLike | None = None,
    mask: _masks.MaskLike = None,
    coupling: str = 'lr',
) -> list[StepDecay | None]:
  r"""Each leaf's decay per step :math:`c`, or ``None`` where nothing decays.

  .. math::

    c = \begin{cases} \eta_g \lambda_g & \texttt{'lr'} \\
    \lambda_g \eta_g/\eta_{g,\max} & \texttt{'schedule'} \\
    \lambda_g \eta_g^2/\eta_{g,\max} & \texttt{'corrected'} \\
    \lambda_g & \texttt{'none'} \end{cases}

  where :math:`\lambda_g` is the leaf's rate at step 0, :math:`\eta_g` its
  group's learning rate (at step 0 for ``start``, at its peak
  :math:`\eta_{g,\max}` for ``peak``). ``None`` where the mask or a zero
  rate rules the leaf out, or its learning rate is the constant 0 (frozen).
  Without ``lr``, :math:`c = \lambda_g`. What :func:`describe` shows.

  Examples:
    >>> import jax.numpy as jnp
    >>> import wdax
    >>> params = {'a': jnp.ones(2), 'b': jnp.ones(2)}
    >>> lr = wdax.rates({'a': 0.0}, default=1e-2)
    >>> wdax.report.step_decays(params, rate=0.1, lr=lr)
    [None, StepDecay(start=0.001, peak=0.001)]
  """
  _checks.choice(coupling, 'coupling', COUPLINGS)
  all_paths, leaves, _ = _paths.leaves_with_paths(params)
  selected = _masks.resolve(mask, params)
  leaf_rates = _rates.resolve(rate, all_paths, name='describe(): rate tree')
  lrs = _rates.resolve_lr(lr, all_paths, fn='describe()')
  out: list[StepDecay | None] = []
  for on, r, eta in zip(selected, leaf_rates, lrs):
    if not on or _checks.is_static_zero(r) or _rates.is_frozen(eta):
      out.append(None)
      continue
    r0 = _at_zero(r)
    if eta is None:
      c = float(r0) if r0.ndim == 0 else r0
      out.append(StepDecay(c, c))
      continue
    top = _peak_of(eta)
    both = [_coupled(coupling, r0, lr_t, top) for lr_t in (_at_zero(eta), top)]
    out.append(StepDecay(*[float(c) if c.ndim == 0 else c for c in both]))
  return out


def _shown(value: Any) -> str:
  v = np.asarray(value)
  if v.ndim == 0:
    return f'{float(v):.3g}'
  return f'per layer {v.flat[0]:.3g} .. {v.flat[-1]:.3g}'


def _per_step(c: StepDecay | None) -> str:
  if c is None:
    return '0'
  if np.array_equal(np.asarray(c.start), np.asarray(c.peak)):
    return _shown(c.start)
  return f'{_shown(c.start)} (peak {_shown(c.peak)})'


def _lost_cells(
    all_paths: list[str], leaves: list[Any], rates: list[Any], lrs: list[Any],
    coupling: str,
) -> list[str]:
  """Whether rounding erases each decayed low-precision leaf's decay.

  ``'all'`` (below eps/4: no weight decays), ``'some'`` (below eps/2),
  ``'layers i, j'`` (per-layer values), ``'no'``, ``'?'`` (a schedule whose
  peak cannot be read); ``''`` for other leaves.
  """
  narrow = [_precision.threshold(leaf.dtype) is not None for leaf in leaves]
  rates = [r if n else None for r, n in zip(rates, narrow)]
  cells = []
  for path, leaf, r, c in zip(
      all_paths, leaves, rates, _precision.peak_decays(rates, lrs, coupling=coupling)
  ):
    if r is None:
      cells.append('')
      continue
    found = None if c is None else _precision.lost_leaf(path, leaf, c)
    if c is None:
      cells.append('?')
    elif found is None:
      cells.append('no')
    elif found.layers is not None:
      cells.append('layers ' + ', '.join(map(str, found.layers)))
    else:
      cells.append('all' if found.everywhere else 'some')
  return cells


def describe(
    params: Any,
    *,
    rate: _rates.RateLike | None = None,
    mask: _masks.MaskLike = None,
    lr: _rates.LrLike | None = None,
    coupling: str = 'lr',
) -> Report:
  """Reports, leaf by leaf, whether and how strongly ``params`` are decayed.

  Args:
    params: the parameter tree (plain dicts, ``FrozenDict``, linen
      ``variables['params']`` or an ``nnx.State``).
    rate: the decay rate as given to a wdax transform, or ``None`` to show the
      mask alone.
    mask: the mask as given to a wdax transform.
    lr: the learning rate as given to the optimiser (a number, schedule or
      :func:`wdax.rates`): adds each leaf's learning rate and its decay per
      step (:func:`step_decays`), and marks frozen leaves (learning rate 0).
      For bfloat16 and float16 leaves that are decayed, a ``lost`` column
      says whether rounding erases the decay per step at its peak
      (:mod:`wdax.precision`): ``all`` of the weights keep their values
      (below eps/4), ``some`` (below eps/2), ``layers i, j`` (per-layer
      values), ``no``, or ``?`` (a schedule whose peak cannot be read).
    coupling: how the decay follows the learning rate, as in
      :func:`wdax.adamw`.

  Returns:
    A :class:`Report`: one row per leaf with its path, shape, dtype, size,
    whether it is decayed (or frozen) and its rate, with ``lr`` its learning
    rate and decay per step, then the decayed total and share.

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

    With per-group learning rates, each leaf's lr and its decay per step:

    >>> params = {'embed': jnp.zeros(4), 'head': jnp.zeros(4), 'body': jnp.zeros(4)}
    >>> lr = wdax.rates({'embed': 0.0, 'head': 1e-2}, default=1e-3)
    >>> print(wdax.describe(params, rate=0.1, lr=lr))
    path   shape  dtype    size  decayed  rate  lr          decay/step
    -----  -----  -------  ----  -------  ----  ----------  ----------
    body   (4,)   float32     4  yes      0.1   0.001       0.0001
    embed  (4,)   float32     4  frozen   0     0 (frozen)  0
    head   (4,)   float32     4  yes      0.1   0.01        0.001
    decayed: 8 of 12 parameters (66.7%); frozen: 4

    In bfloat16, AdamW's usual decay per step, 1e-4 * 0.1, is rounded away:

    >>> params = {'w': jnp.zeros(4, jnp.bfloat16), 'f': jnp.zeros(4)}
    >>> print(wdax.describe(params, rate=0.1, lr=1e-4))
    path  shape  dtype     size  decayed  rate  lr      decay/step  lost
    ----  -----  --------  ----  -------  ----  ------  ----------  ----
    f     (4,)   float32      4  yes      0.1   0.0001  1e-05
    w     (4,)   bfloat16     4  yes      0.1   0.0001  1e-05       all
    decayed: 8 of 8 parameters (100.0%)
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
  lrs = _rates.resolve_lr(lr, all_paths, fn='describe()')
  # As the transforms check at init: a per-layer value fits its leaf's
  # leading axis, else the path is named.
  for path, leaf, r, eta in zip(all_paths, leaves, leaf_rates, lrs):
    for value, name in ((r, 'rate'), (eta, 'lr')):
      if value is not None:
        _rates.check_layers(value, np.shape(leaf), path, f'describe(): {name}')
  per_step = (
      step_decays(
          params, rate=0.0 if rate is None else rate, lr=lr, mask=mask,
          coupling=coupling,
      )
      if lr is not None
      else [None] * len(leaves)
  )
  rows = []
  for path, leaf, on, r, eta, c in zip(
      all_paths, leaves, selected, leaf_rates, lrs, per_step
  ):
    frozen = _rates.is_frozen(eta)
    decayed = on and not frozen and not (
        r is not None and _checks.is_static_zero(r)
    )
    if r is None:
      shown = '-'
    elif not decayed:
      shown = '0'
    else:
      shown = _rates.describe_rate(r)
    shape = tuple(np.shape(leaf))
    row = Row(path, shape, str(leaf.dtype), int(np.prod(shape)), decayed, shown)
    if lr is not None:
      row = dataclasses.replace(
          row,
          lr='0 (frozen)' if frozen else _rates.describe_rate(eta),
          per_step=_per_step(c),
          frozen=frozen,
      )
    rows.append(row)
  if lr is not None and rate is not None:
    active = [r if row.decayed else None for r, row in zip(leaf_rates, rows)]
    lost = _lost_cells(all_paths, leaves, active, lrs, coupling)
    rows = [dataclasses.replace(row, lost=x) for row, x in zip(rows, lost)]
  return Report(tuple(rows))
