"""Decay rates: validation, schedules and per-group rates by parameter path.

A rate is a Python number, a scalar array, an optax schedule (a callable from
the step count, counted from 0 as optax's learning-rate schedules are), a
:class:`Rates` built by :func:`rates`, or a tree of those that is a prefix of
the params.

**What is checked, and when.** A static rate is checked when the transform is
built (negative, NaN or infinite is a ``ValueError`` naming it) and at
``init`` against each leaf it decays (a coefficient that overflows the leaf's
dtype, such as 1e5 for float16, is a ``ValueError`` naming the path). A
schedule's values exist only inside the running step, where checking them
would cost a round trip to the host every step, so wdax does not. A schedule
that returns NaN or infinity at some step makes that step's update NaN on
exactly the leaves it decays, and changes nothing else (the other leaves and
the step count are as usual); one that returns a negative value grows the
weights. That is the caller's responsibility, and these find it:
:func:`wdax.describe` shows each schedule's value at step 0;
``jax.experimental.checkify.checkify(step, errors=checkify.float_checks)``
returns an error naming the primitive that made the NaN; and under
``jax.debug_nans(True)`` the step raises ``FloatingPointError``.
``optax.apply_if_finite`` does not help here: it checks the gradients it is
given, before any decay runs.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Union

import jax
import numpy as np
import optax

from wdax import _checks
from wdax import paths as _paths

RateLike = Union[
    float,
    jax.Array,
    np.ndarray,
    optax.Schedule,
    'Rates',
    Mapping[Any, 'RateLike'],
    Iterable['RateLike'],
]
"""What every ``rate=`` of wdax accepts: a number, a scalar array, an optax
schedule, a :class:`Rates`, or a tree of numbers, arrays and schedules that is
a prefix of the params."""

# Validation of one static rate; traced values and schedules pass unchecked.
check_rate = _checks.rate
is_static_zero = _checks.is_static_zero


class Rates:
  """Per-group rates keyed on path patterns; build with :func:`rates`."""

  def __init__(self, spec: Mapping[str, optax.ScalarOrSchedule], default: Any):
    if not isinstance(spec, Mapping) or not spec:
      raise ValueError('rates() needs a non-empty {pattern: rate} mapping.')
    for pattern, value in spec.items():
      _paths.compile_pattern(pattern)
      check_rate(value, f'rates(): rate of pattern {pattern!r}')
    self.spec = dict(spec)
    self.default = check_rate(default, 'rates(): default')

  @property
  def has_schedule(self) -> bool:
    return any(callable(v) for v in [*self.spec.values(), self.default])

  def resolve(
      self, all_paths: Sequence[str], hidden: Sequence[str] = ()
  ) -> list[Any]:
    """One rate per path: the first matching pattern's, else the default.

    ``hidden`` are the paths of parameters the tree hides
    (:func:`wdax.paths.hidden_paths`): a pattern that matches only those is
    not an error, as for masks.
    """
    out: list[Any] = [None] * len(all_paths)
    for pattern, value in self.spec.items():
      matched = taken = 0
      for i, path in enumerate(all_paths):
        if _paths.matches(pattern, path):
          matched += 1
          if out[i] is None:
            out[i] = value
            taken += 1
      elsewhere = any(_paths.matches(pattern, p) for p in hidden)
      if not (all_paths or hidden) or elsewhere:
        continue
      if not matched:
        raise ValueError(
            f'rates(): pattern {pattern!r} matches no parameter; '
            f'{_checks.listing(list(all_paths))}.'
        )
      if not taken:
        raise ValueError(
            f'rates(): pattern {pattern!r} has no effect: every parameter it '
            'matches is taken by an earlier pattern. Reorder or remove it.'
        )
    return [self.default if v is None else v for v in out]

  def __repr__(self) -> str:
    return f'rates({self.spec!r}, default={self.default!r})'


def rates(
    spec: Mapping[str, optax.ScalarOrSchedule], default: optax.ScalarOrSchedule = 0.0
) -> Rates:
  """Per-group decay rates, keyed on parameter-path patterns.

  Each leaf takes the rate of the first pattern in ``spec`` that matches its
  path (see :mod:`wdax.paths`), or ``default`` when none does. A pattern that
  matches no parameter, or only parameters taken by earlier patterns, is an
  error when the transform is initialised.

  Args:
    spec: ordered mapping from path pattern to rate or schedule.
    default: the rate of leaves no pattern matches.

  Returns:
    A :class:`Rates`, accepted by every ``rate=`` argument of wdax.

  Examples:
    >>> import jax.numpy as jnp
    >>> import wdax
    >>> params = {'embed': {'embedding': jnp.ones((4, 2))},
    ...           'out': {'kernel': jnp.ones((2, 2))}}
    >>> wdax.rates({'embed': 1e-5}, default=1e-2).resolve(wdax.leaf_paths(params))
    [1e-05, 0.01]
  """
  return Rates(spec, default)


def is_rate_leaf(x: Any) -> bool:
  """Whether ``x`` is one rate rather than a tree of them.

  Examples:
    >>> from wdax import rate
    >>> rate.is_rate_leaf(0.1), rate.is_rate_leaf({'a': 0.1})
    (True, False)
  """
  return callable(x) or isinstance(
      x, (Rates, int, float, np.number, np.ndarray, jax.Array, jax.core.Tracer)
  )


def check(rate: RateLike, name: str = 'rate') -> RateLike:
  """Validates a rate argument at construction time; returns it."""
  if isinstance(rate, Rates):
    return rate
  if is_rate_leaf(rate):
    return check_rate(rate, name)
  with_path, _ = jax.tree_util.tree_flatten_with_path(rate, is_leaf=is_rate_leaf)
  if not with_path:
    raise ValueError(f'{name} must be a number, schedule or tree of them.')
  for kp, value in with_path:
    if isinstance(value, Rates):
      raise ValueError(f'{name}: rates() cannot sit inside a rate tree.')
    check_rate(value, name, _paths.path_str(kp))
  return rate


def has_schedule(rate: RateLike) -> bool:
  """Whether any rate in ``rate`` is a schedule, so a step count is needed."""
  if isinstance(rate, Rates):
    return rate.has_schedule
  leaves = jax.tree_util.tree_leaves(rate, is_leaf=is_rate_leaf)
  return any(callable(x) for x in leaves)


def resolve(
    rate: RateLike,
    all_paths: Sequence[str],
    hidden: Sequence[str] = (),
    *,
    name: str = 'rate tree',
) -> list[Any]:
  """One rate (number, array or schedule) per parameter path.

  ``name`` is how a rate tree that does not fit is called in the error.
  """
  if isinstance(rate, Rates):
    return rate.resolve(all_paths, hidden)
  if is_rate_leaf(rate):
    return [rate] * len(all_paths)
  return _paths.broadcast_prefix(
      rate, all_paths, name=name, is_leaf=is_rate_leaf, hidden=hidden
  )


def map_rates(fn: Callable[[Any], Any], rate: RateLike) -> RateLike:
  """Applies ``fn`` to every rate in a rate spec, keeping its form.

  Examples:
    >>> from wdax import rate
    >>> rate.map_rates(lambda r: 2 * r, {'a': 0.5, 'b': 1.0})
    {'a': 1.0, 'b': 2.0}
  """
  if isinstance(rate, Rates):
    return rates({k: fn(v) for k, v in rate.spec.items()}, default=fn(rate.default))
  if is_rate_leaf(rate):
    return fn(rate)
  return jax.tree.map(fn, rate, is_leaf=is_rate_leaf)


def describe_rate(value: Any) -> str:
  """A short human-readable form of one leaf's rate."""
  if callable(value):
    try:
      return f'schedule ({float(value(0)):.3g} at step 0)'
    except Exception:  # noqa: BLE001 - a schedule we cannot evaluate eagerly
      return 'schedule'
  return f'{float(np.asarray(value)):.3g}'
