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
from wdax import _patterns
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

LrLike = Union[float, jax.Array, np.ndarray, optax.Schedule, 'Rates']
"""What every learning rate of wdax accepts: a number, a scalar array, an optax
schedule, or a :class:`Rates` of those (and of per-layer arrays) by path."""

# Validation of one static rate; traced values and schedules pass unchecked.
check_rate = _checks.rate
is_static_zero = _checks.is_static_zero


class Rates:
  """Per-group rates keyed on path patterns; build with :func:`rates`."""

  def __init__(
      self, spec: Mapping[str, Any], default: Any, *, has_default: bool = True
  ):
    if not isinstance(spec, Mapping) or not spec:
      raise ValueError('rates() needs a non-empty {pattern: rate} mapping.')
    checked = {}
    for pattern, value in spec.items():
      _paths.compile_pattern(pattern)
      checked[pattern] = _value(value, f'rates(): rate of pattern {pattern!r}')
    self.spec = checked
    self.default = _value(default, 'rates(): default')
    # Whether the default was given: a learning rate needs one to cover a leaf
    # no pattern matches (see :func:`resolve_lr`).
    self.has_default = has_default

  @property
  def has_schedule(self) -> bool:
    return any(callable(v) for v in [*self.spec.values(), self.default])

  def values(self) -> list[Any]:
    """Every value the spec holds, the default included."""
    return [*self.spec.values(), self.default]

  def resolve(
      self, all_paths: Sequence[str], hidden: Sequence[str] = ()
  ) -> list[Any]:
    """One rate per path: the first matching pattern's, else the default.

    ``hidden`` are the paths of parameters the tree hides
    (:func:`wdax.paths.hidden_paths`): a pattern that matches only those is
    not an error, as for masks.
    """
    values = list(self.spec.values())
    chosen = _patterns.first_match('rates()', list(self.spec), all_paths, hidden)
    return [self.default if k is None else values[k] for k in chosen]

  def __repr__(self) -> str:
    default = f'default={self.default!r}' if self.has_default else 'no default'
    return f'rates({self.spec!r}, {default})'


def _value(value: Any, name: str) -> Any:
  """A rate in a :func:`rates` spec: a scalar rate, or a 1-D per-layer array."""
  if (
      not callable(value)
      and not _checks.is_traced(value)
      and isinstance(value, (np.ndarray, jax.Array))
      and np.ndim(value) == 1
  ):
    per_layer = np.asarray(value, np.float64)
    if per_layer.size == 0:
      raise ValueError(f'{name}: a per-layer array needs at least one entry.')
    for i, v in enumerate(per_layer):
      check_rate(float(v), f'{name}, layer {i}')
    return per_layer
  value = check_rate(value, name)
  if isinstance(value, jax.Array) and not _checks.is_traced(value):
    if float(value) == 0.0:
      return 0.0  # a zero in a spec is static: it freezes (see is_frozen)
  return value


def rates(
    spec: Mapping[str, Any], default: Any = None
) -> Rates:
  """Per-group rates or learning rates, keyed on parameter-path patterns.

  Each leaf takes the value of the first pattern in ``spec`` that matches its
  path (see :mod:`wdax.paths`), or ``default`` when none does. A pattern that
  matches no parameter, or only parameters taken by earlier patterns, is an
  error when the transform is initialised.

  A value is a number, a scalar array, an optax schedule, or a 1-D array of
  per-layer values: entry :math:`l` applies to slice :math:`l` of the leading
  (layer) axis of every leaf the pattern matches, as for layers stacked by
  ``nn.scan`` or ``nnx.vmap``. A length other than that axis's is a
  ``ValueError`` at ``init`` naming the path.

  Given as a decay rate, a leaf no pattern matches takes ``default``, 0 when
  it is not given. Given as a learning rate (``lr=`` of the decays,
  ``learning_rate`` of the optimisers, :func:`wdax.scale_by_learning_rate`),
  a leaf no pattern matches without a ``default`` is a ``ValueError`` at
  ``init``: a learning rate of 0 freezes, and freezing is said explicitly.

  Args:
    spec: ordered mapping from path pattern to value.
    default: the value of leaves no pattern matches.

  Returns:
    A :class:`Rates`, accepted by every ``rate=`` and ``lr=`` of wdax.

  Examples:
    >>> import jax.numpy as jnp
    >>> import wdax
    >>> params = {'embed': {'embedding': jnp.ones((4, 2))},
    ...           'out': {'kernel': jnp.ones((2, 2))}}
    >>> wdax.rates({'embed': 1e-5}, default=1e-2).resolve(wdax.leaf_paths(params))
    [1e-05, 0.01]
  """
  if default is None:
    return Rates(spec, 0.0, has_default=False)
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
    return Rates(
        {k: fn(v) for k, v in rate.spec.items()},
        fn(rate.default),
        has_default=rate.has_default,
    )
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
  if np.ndim(value) == 1:
    v = np.asarray(value)
    return f'per layer {v[0]:.3g} .. {v[-1]:.3g}'
  return f'{float(np.asarray(value)):.3g}'


def is_frozen(value: Any) -> bool:
  """Whether a leaf's learning rate is the constant 0, which freezes the leaf.

  A Python or NumPy zero counts, and so does a zero JAX scalar inside a
  :func:`rates` spec (made a Python zero there); a JAX array given directly
  does not, since ``optax.inject_hyperparams`` passes its hyperparameters so,
  a value it may change later; nor does a schedule, a traced value or a
  per-layer array (see :func:`frozen_rows` for those).

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import rate
    >>> rate.is_frozen(0.0), rate.is_frozen(jnp.zeros([])), rate.is_frozen(1e-3)
    (True, False, False)
  """
  if isinstance(value, bool) or not isinstance(
      value, (int, float, np.number, np.ndarray)
  ):
    return False
  return np.ndim(value) == 0 and float(value) == 0.0


def frozen_rows(value: Any) -> np.ndarray | None:
  """The frozen layers of a per-layer learning rate (its zero entries), if any."""
  if isinstance(value, np.ndarray) and value.ndim == 1 and np.any(value == 0):
    return value == 0
  return None


def may_freeze(lr: Any) -> bool:
  """Whether a learning rate spec holds a constant 0, whole or per layer."""
  values = lr.values() if isinstance(lr, Rates) else [lr]
  return any(is_frozen(v) or frozen_rows(v) is not None for v in values)


def resolve_lr(
    lr: Any,
    all_paths: Sequence[str],
    hidden: Sequence[str] = (),
    *,
    fn: str,
) -> list[Any]:
  """One learning rate per path; a :class:`Rates` without default covers all.

  A leaf no pattern of a :class:`Rates` given without ``default`` matches is a
  ``ValueError`` naming it, since a silent default of 0 would freeze it.
  """
  if not isinstance(lr, Rates):
    return [lr] * len(all_paths)
  if lr.has_default:
    return lr.resolve(all_paths, hidden)
  values = list(lr.spec.values())
  patterns = list(lr.spec)
  hits = _patterns.first_match('rates()', patterns, all_paths, hidden)
  for path, k in zip(all_paths, hits):
    if k is None:
      raise ValueError(
          f'{fn}: no learning rate for parameter path {path!r}: no pattern '
          f'of {patterns} matches it and the rates() has no default. Give '
          'default=..., or a pattern for it (0 freezes it).'
      )
  return [values[k] for k in hits if k is not None]


def _layer_count(value: Any) -> int | None:
  """How many layers a per-layer value has (a schedule's is traced abstractly)."""
  if callable(value):
    try:
      out = jax.eval_shape(value, jax.ShapeDtypeStruct((), np.int32))
    except Exception:  # noqa: BLE001 - a schedule we cannot trace abstractly
      return None
    shape: tuple[int, ...] = tuple(getattr(out, 'shape', ()))
    return shape[0] if len(shape) == 1 else None
  if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 1:
    return int(np.shape(value)[0])
  return None


def check_layers(value: Any, shape: Sequence[int], path: str, name: str) -> None:
  """A per-layer value must have one entry per slice of the leaf's leading axis.

  Examples:
    >>> import numpy as np
    >>> from wdax import rate
    >>> rate.check_layers(np.ones(3), (2, 4), 'blocks/kernel', 'lr')
    Traceback (most recent call last):
    ...
    ValueError: lr: 3 per-layer values for parameter path 'blocks/kernel', whose leading (layer) axis has size 2.
  """
  n = _layer_count(value)
  if n is None:
    return
  if not shape:
    raise ValueError(
        f'{name}: {n} per-layer values for parameter path {path!r}, a scalar '
        'with no layer axis.'
    )
  if shape[0] != n:
    raise ValueError(
        f'{name}: {n} per-layer values for parameter path {path!r}, whose '
        f'leading (layer) axis has size {shape[0]}.'
    )


def along_layers(value: Any, ndim: int) -> Any:
  """A per-layer value reshaped to broadcast along a leaf's leading axis."""
  if np.ndim(value) != 1 or ndim <= 1:
    return value
  shape = (-1,) + (1,) * (ndim - 1)
  if isinstance(value, np.ndarray):
    return value.reshape(shape)
  return jax.numpy.reshape(value, shape)
