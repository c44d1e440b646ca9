r"""The space of hyperparameters a sweep tries, and its points.

A space maps names to lists of values, ``{'rate': [0.0, 1e-2], 'lr': [1e-3,
3e-3]}``. Every combination is one point, a dict of one value per name, in the
order of ``itertools.product`` over the names as given: the last name varies
fastest.

Inside the compiled programs each name is a float32 scalar, traced, so one
program serves every point. The optimiser is called with the values of the
names it accepts; every name reaches the task's loss in ``hp``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import numpy as np

from wdax.sweep import _checks

# Names that mean one thing across wdax, with the values they allow.
_NON_NEGATIVE = ('rate', 'lr')
_FRACTIONS = ('dropout',)


@dataclasses.dataclass(frozen=True)
class Space:
  """A checked space: its names and, per name, its values as a tuple.

  Examples:
    >>> from wdax import sweep
    >>> space = sweep.Space.of({'rate': [0.0, 0.1], 'lr': [1e-3, 3e-3]})
    >>> space.points()[:3]
    [{'rate': 0.0, 'lr': 0.001}, {'rate': 0.0, 'lr': 0.003}, {'rate': 0.1, 'lr': 0.001}]
    >>> sweep.Space.of({'rate': []})
    Traceback (most recent call last):
      ...
    ValueError: space['rate'] is empty: give at least one value.
  """

  names: tuple[str, ...]
  values: tuple[tuple[float, ...], ...]

  @classmethod
  def of(cls, space: Mapping[str, Any]) -> Space:
    """Checks ``space`` (a mapping of names to lists of numbers).

    Every value must be a finite real number; ``rate`` and ``lr`` must be
    non-negative and ``dropout`` in :math:`[0, 1)`.
    """
    if isinstance(space, Space):
      return space
    if not isinstance(space, Mapping):
      raise ValueError(
          f'space must be a dict of names to lists of values; got {type(space).__name__}.'
      )
    if not space:
      raise ValueError('space is empty: give at least one name, e.g. {"rate": [...]}.')
    names, values = [], []
    for name, given in space.items():
      if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f'space: the name {name!r} is not a Python identifier.')
      items = _items(name, given)
      if not items:
        raise ValueError(f'space[{name!r}] is empty: give at least one value.')
      values.append(tuple(_number(name, v) for v in items))
      names.append(name)
    return cls(tuple(names), tuple(values))

  def points(self) -> list[dict[str, float]]:
    """Every combination, the last name fastest."""
    return [dict(zip(self.names, combo)) for combo in itertools.product(*self.values)]

  def __len__(self) -> int:
    return math.prod(len(v) for v in self.values)

  def columns(self) -> dict[str, np.ndarray]:
    """Each name's value at every point, float32 arrays in point order."""
    grids = np.meshgrid(*[np.asarray(v, np.float64) for v in self.values], indexing='ij')
    return {n: g.ravel().astype(np.float32) for n, g in zip(self.names, grids)}


def _items(name: str, given: Any) -> list[Any]:
  """The values of ``space[name]``: a list, a tuple, a vector or one number."""
  if hasattr(given, '__array__') and np.ndim(given) <= 1:
    return np.asarray(given).reshape(-1).tolist()
  if isinstance(given, (list, tuple)) and not any(
      isinstance(v, (list, tuple)) or getattr(v, 'ndim', 0) for v in given
  ):
    return list(given)
  if isinstance(given, (int, float, np.integer, np.floating)):
    return [given]
  raise ValueError(f'space[{name!r}] must be a list of numbers; got {given!r}.')


def _number(name: str, value: Any) -> float:
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)
  ):
    raise ValueError(f'space[{name!r}]: {value!r} is not a real number.')
  number = float(value)
  if not math.isfinite(number):
    raise ValueError(f'space[{name!r}]: {number!r} is not finite.')
  if name in _NON_NEGATIVE and number < 0:
    raise ValueError(f'space[{name!r}]: {number!r} is negative.')
  if name in _FRACTIONS and not 0 <= number < 1:
    raise ValueError(f'space[{name!r}]: {number!r} is outside [0, 1).')
  return number


def uses(
    space: Space, optimizer: Callable[..., Any], task_names: tuple[str, ...]
) -> tuple[str, ...]:
  """The names ``optimizer`` is called with, after checking that every name
  is used by it or by the task (``task_names``), and that the space gives
  every argument ``optimizer`` requires."""
  if not callable(optimizer):
    raise TypeError(
        'optimizer must be a callable returning an optax.GradientTransformation, '
        f'e.g. lambda rate: wdax.adamw(1e-3, weight_decay=rate); got {optimizer!r}.'
    )
  accepted, required, anything = _checks.keywords(optimizer, 'optimizer')
  missing = sorted(required - set(space.names))
  if missing:
    raise ValueError(
        f'optimizer requires {", ".join(map(repr, missing))}, which the space '
        f'does not give (it has {", ".join(map(repr, space.names))}).'
    )
  to_optimizer = tuple(n for n in space.names if anything or n in accepted)
  unused = [n for n in space.names if n not in to_optimizer and n not in task_names]
  if unused:
    listed = ', '.join(map(repr, sorted(accepted))) or 'no names'
    task = ', '.join(map(repr, task_names)) or 'no names'
    raise ValueError(
        f'space name {unused[0]!r} is used by neither the optimizer (it accepts '
        f'{listed}) nor the task (it declares {task}).'
    )
  return to_optimizer
