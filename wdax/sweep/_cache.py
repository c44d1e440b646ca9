"""A small cache of the last few values made, for compiled programs and
traced descriptions, so that a repeated sweep reuses them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def hashable(*args: Any) -> bool:
  """Whether ``args`` can key a cache."""
  try:
    hash(args)
  except TypeError:
    return False
  return True


# Recent entries only: a long session of sweeps keeps the last few.
_KEEP = 8


def remember(cache: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
  """``cache[key]``, made by ``make()`` when missing; the cache keeps the
  last few keys, and an unhashable key is made afresh every time."""
  if not hashable(key):
    return make()
  if key not in cache:
    cache[key] = make()
    while len(cache) > _KEEP:
      del cache[next(iter(cache))]
  return cache[key]
