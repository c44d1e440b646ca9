"""The argument checks the sweep's modules share, each error naming the
argument."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np


def integer(value: Any, name: str, low: int) -> int:
  """``value`` as an int, or ``ValueError`` unless it is an int ``>= low``."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ValueError(f'{name} must be an int >= {low}; got {value!r}.')
  return int(value)


def seeds(value: int | Sequence[int]) -> tuple[int, ...]:
  """A count ``k`` (seeds ``0 .. k-1``) or a list of seeds, as a tuple."""
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    return tuple(range(integer(value, 'seeds', 1)))
  if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
    raise ValueError(f'seeds must be a count or a list of seeds; got {value!r}.')
  out = tuple(integer(s, 'seeds: each seed', 0) for s in value)
  if not out:
    raise ValueError('seeds is empty: give a count or at least one seed.')
  if len(set(out)) != len(out):
    raise ValueError(f'seeds has repeated entries: {list(out)}.')
  return out


def keywords(fn: Callable[..., Any], name: str) -> tuple[frozenset[str], frozenset[str], bool]:
  """``(accepted, required, any)``: the keyword names ``fn`` takes, those
  without a default, and whether it takes ``**kwargs``."""
  try:
    signature = inspect.signature(fn)
  except (TypeError, ValueError):
    raise TypeError(f'{name}: cannot read the signature of {fn!r}.') from None
  accepted, required, anything = set(), set(), False
  for p in signature.parameters.values():
    if p.kind is p.VAR_KEYWORD:
      anything = True
    elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
      accepted.add(p.name)
      if p.default is p.empty:
        required.add(p.name)
  return frozenset(accepted), frozenset(required), anything
