"""Argument checks and structure errors shared by every wdax module.

Internal: the public modules import it as ``from wdax import _checks`` and
re-export what users call (``wdax.rate.check_rate`` is :func:`rate`). Each
check raises a ``ValueError`` that names the argument (and the parameter path,
where there is one) and returns the value it was given, so a factory reads
``rate = _checks.rate(rate, 'decoupled(...): rate')``.

Values that are not known yet are let through unchecked: schedules, and
traced scalars (``vmap``, ``optax.inject_hyperparams`` under ``jit``), whose
values exist only when the program runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

_MAX_LISTED = 10


def is_traced(value: Any) -> bool:
  """Whether ``value`` is a tracer, whose value is unknown until run time."""
  return isinstance(value, jax.core.Tracer)


def is_static_zero(value: Any) -> bool:
  """Whether ``value`` is a Python zero, which a transform may skip.

  Only Python numbers count: an array zero may be a hyperparameter that
  ``optax.inject_hyperparams`` changes later, and a traced one is unknown.
  """
  return (
      isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0
  )


def _where(path: str | None) -> str:
  # The root path '' is the argument itself, named already.
  return f' for parameter path {path!r}' if path else ''


def _scalar(value: Any, name: str, path: str | None, kind: str) -> float:
  """The float value of a static scalar, or a ValueError naming ``name``."""
  if isinstance(value, bool) or not isinstance(
      value, (int, float, np.number, np.ndarray, jax.Array)
  ):
    raise ValueError(
        f'{name}{_where(path)} must be {kind}; got {type(value).__name__} '
        f'{value!r}.'
    )
  if np.ndim(value) != 0:
    raise ValueError(
        f'{name}{_where(path)} must be a scalar; got shape {np.shape(value)}.'
    )
  dtype = _dtype(value)
  if not jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(
      dtype, jnp.complexfloating
  ):
    raise ValueError(
        f'{name}{_where(path)} must be a real number; got dtype {dtype}.'
    )
  return float(np.asarray(value))


def rate(value: Any, name: str, path: str | None = None) -> Any:
  """A non-negative, finite rate: a number, scalar array or schedule.

  Schedules and traced values pass through unchecked. Returns ``value``.

  Examples:
    >>> from wdax import _checks
    >>> _checks.rate(0.1, 'rate')
    0.1
    >>> _checks.rate(-1.0, 'decoupled(...): rate')
    Traceback (most recent call last):
    ...
    ValueError: decoupled(...): rate must be finite and non-negative; got -1.0.
  """
  if callable(value) or is_traced(value):
    return value
  number = _scalar(value, name, path, 'a number, scalar array or schedule')
  if not math.isfinite(number) or number < 0:
    raise ValueError(
        f'{name}{_where(path)} must be finite and non-negative; got {number!r}.'
    )
  return value


def number(
    value: Any, name: str, *, minimum: float = 0.0, below: float | None = None
) -> Any:
  """A finite real number at least ``minimum`` (and below ``below``); traced passes.

  Not a schedule. For hyperparameters such as momentum or Adam's betas, which
  ``optax.inject_hyperparams`` may hand over as traced scalars.

  Examples:
    >>> from wdax import _checks
    >>> _checks.number(1.0, 'adamw(...): b1', below=1)
    Traceback (most recent call last):
    ...
    ValueError: adamw(...): b1 must be finite, at least 0 and below 1; got 1.0.
  """
  if is_traced(value):
    return value
  if callable(value):
    raise ValueError(f'{name} must be a number, not a schedule; got {value!r}.')
  number_ = _scalar(value, name, None, 'a number')
  if below is None:
    if not math.isfinite(number_) or number_ < minimum:
      raise ValueError(
          f'{name} must be finite and at least {minimum:g}; got {number_!r}.'
      )
  elif not (minimum <= number_ < below):
    raise ValueError(
        f'{name} must be finite, at least {minimum:g} and below {below:g}; got '
        f'{number_!r}.'
    )
  return value


def flag(value: Any, name: str) -> bool:
  """A bool (Python or NumPy), not merely something truthy."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f'{name} must be a bool; got {type(value).__name__} {value!r}.')
  return bool(value)


def inexact_dtype(value: Any, name: str) -> Any:
  """``None`` or a floating or complex dtype (a dtype, its name, or a scalar type)."""
  if value is None:
    return None
  dtype = None
  if not hasattr(value, 'shape'):  # jnp.dtype would take an array's dtype
    try:
      dtype = jnp.dtype(value)
    except (TypeError, ValueError):
      pass
  if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
    raise ValueError(
        f'{name} must be None or a floating or complex dtype such as '
        f'jnp.float32; got {value!r}.'
    )
  return value


def positive(value: Any, name: str, *, traced: bool = False) -> Any:
  """A finite, strictly positive number; a schedule is refused.

  Traced values pass through when ``traced`` (their sign is unknown); otherwise
  they are refused too, for places that need the value now.
  """
  if is_traced(value):
    if traced:
      return value
    raise ValueError(
        f'{name} must be a positive number known when it is given, not a traced '
        'value.'
    )
  if callable(value):
    raise ValueError(f'{name} must be a positive number, not a schedule.')
  number_ = _scalar(value, name, None, 'a positive number')
  if not math.isfinite(number_) or number_ <= 0:
    raise ValueError(f'{name} must be finite and positive; got {number_!r}.')
  return value


def count(value: Any, name: str, *, minimum: int = 0) -> int:
  """An int at least ``minimum`` (not a bool); returns it as a Python int."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f'{name} must be an int; got {type(value).__name__} {value!r}.')
  if value < minimum:
    raise ValueError(f'{name} must be at least {minimum}; got {value!r}.')
  return int(value)


def choice(
    value: Any, name: str, choices: Sequence[str], plural: str | None = None
) -> str:
  """One of ``choices``; the error lists them."""
  if not isinstance(value, str) or value not in choices:
    raise ValueError(
        f'unknown {name} {value!r}; valid {plural or name + "s"} are '
        f'{", ".join(map(repr, choices))}.'
    )
  return value


def listing(all_paths: Sequence[str]) -> str:
  """Formats up to ten paths for an error message."""
  shown = ', '.join(repr(p) for p in all_paths[:_MAX_LISTED])
  more = len(all_paths) - _MAX_LISTED
  if more > 0:
    shown += f', ... ({more} more)'
  return f'available paths: [{shown}]' if all_paths else 'the tree has no leaves'


def first_difference(
    paths: Sequence[str], expected: Sequence[str]
) -> tuple[str | None, str | None] | None:
  """The first pair of paths that differ, ``None`` standing for "no more"."""
  for a, b in zip([*paths, None], [*expected, None]):
    if a != b:
      return a, b
  return None


def same_paths(
    fn: str, what: str, paths: Sequence[str], expected: Sequence[str], than: str
) -> None:
  """Raises a ValueError naming the first path where ``paths`` differ.

  ``what`` and ``than`` name the two trees, e.g. ``'updates'`` and ``'params'``.
  """
  differ = first_difference(paths, expected)
  if differ is not None:
    raise ValueError(
        f'{fn}: {what} and {than} differ in structure: {what} path '
        f'{differ[0]!r} where {than} have {differ[1]!r}; {listing(list(expected))}.'
    )


def _array_like(x: Any) -> bool:
  """A JAX array, tracer or ``ShapeDtypeStruct``, or a NumPy array of numbers or bools.

  JAX arrays of any dtype count, PRNG keys included (never decayed); NumPy
  arrays may also hold strings or objects, which do not.
  """
  if isinstance(x, (jax.Array, jax.core.Tracer, jax.ShapeDtypeStruct)):
    return True
  dtype = getattr(x, 'dtype', None)
  if dtype is None or not hasattr(x, 'shape'):
    return False
  try:
    dtype = np.dtype(dtype)
  except TypeError:
    return False
  return bool(jnp.issubdtype(dtype, jnp.number) or dtype == np.bool_)


def leaf(fn: str, what: str, path: str, x: Any) -> Any:
  """An array leaf of ``what`` (params, updates, reference) at ``path``.

  A Python number becomes a 0-d array of JAX's default dtype for it, as
  ``jnp.asarray`` makes it (optax's own transforms accept numbers); anything
  else that is not an array of numbers or bools (a string, an object array,
  an arbitrary object) is a ValueError naming the path.
  """
  if isinstance(x, (bool, int, float, complex)):
    return jnp.asarray(x)
  if _array_like(x):
    return x
  shown = repr(x)
  shown = shown if len(shown) <= 60 else shown[:57] + '...'
  dtype = getattr(x, 'dtype', None)
  kind = f' of dtype {dtype}' if dtype is not None else ''
  raise ValueError(
      f'{fn}: {what} leaf at path {path!r} is {type(x).__name__}{kind} {shown}; '
      'every leaf must be an array of numbers (or a number).'
  )


def leaves(fn: str, what: str, paths: Sequence[str], xs: Sequence[Any]) -> list[Any]:
  """:func:`leaf` for each of ``xs``; ``None`` entries are kept as they are."""
  return [x if x is None else leaf(fn, what, p, x) for p, x in zip(paths, xs)]


def fits(fn: str, what: str, value: Any, dtype: Any, path: str) -> None:
  """A static coefficient must stay finite when cast to its leaf's ``dtype``.

  A rate of 1e5 is a number, but it is ``inf`` in float16, and so would be
  every decayed weight. Traced values and schedules are not known yet and
  pass.
  """
  if value is None or callable(value) or is_traced(value):
    return
  dtype = np.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.inexact):
    return
  with np.errstate(over='ignore', invalid='ignore'):
    cast = np.asarray(np.asarray(value, np.float64), dtype)
  if not np.all(np.isfinite(cast)):
    raise ValueError(
        f'{fn}: {what} {_first_overflow(value, cast)} for parameter path '
        f'{path!r} overflows its dtype {dtype} (largest finite '
        f'{float(jnp.finfo(dtype).max):.4g}).'
    )


def _first_overflow(value: Any, cast: np.ndarray) -> str:
  """The value that overflows; for a per-layer array, its first bad entry."""
  values = np.asarray(value, np.float64)
  if values.ndim == 0:
    return repr(float(values))
  i = int(np.argmin(np.isfinite(cast).ravel()))
  return f'{float(values.ravel()[i])!r} (per-layer entry {i} of {values.size})'


def vanishing_eps(
    fn: str, eps: tuple[Any, Any], dtype: Any, path: str
) -> str | None:
  """Why Adam's ``(eps, eps_root)`` are no guard in ``dtype``, or ``None``.

  Adam keeps its second moment in the parameter's dtype and adds eps there:
  in float16, whose smallest positive value is about 6e-8, the usual 1e-8 is
  0, and a coordinate whose gradients are all 0 gets the step 0/0 = NaN.
  Traced values are not known yet and pass.
  """
  dtype = np.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.floating) or any(is_traced(e) for e in eps):
    return None
  if any(float(np.asarray(np.asarray(e, np.float64), dtype)) != 0 for e in eps):
    return None
  tiny = float(jnp.finfo(dtype).smallest_subnormal)
  return (
      f'{fn}: eps={float(np.asarray(eps[0]))!r} (with eps_root='
      f'{float(np.asarray(eps[1]))!r}) is 0 in {dtype}, the dtype of parameter '
      f'path {path!r}, so Adam divides 0 by 0 (NaN) wherever the gradients so '
      f'far are all 0, as optax.adamw does; pass an eps of at least {tiny:.3g} '
      f"({dtype}'s smallest positive value; 1e-4 is usual for float16)."
  )


def _dtype(x: Any) -> Any:
  return x.dtype if hasattr(x, 'dtype') else np.result_type(x)


def _same_kind(u: Any, p: Any) -> bool:
  du, dp = _dtype(u), _dtype(p)
  if not jnp.issubdtype(dp, jnp.inexact):
    # Never decayed, so passed through whatever it is (optax's Adam gives an
    # integer parameter a float32 update).
    return True
  # A floating parameter may get a wider update (optax's Adam with mu_dtype,
  # or hyperparameters injected in float32, give bfloat16 params float32
  # updates), but not an integer one, nor a complex one for real weights.
  if jnp.issubdtype(dp, jnp.complexfloating):
    return bool(jnp.issubdtype(du, jnp.complexfloating))
  return bool(jnp.issubdtype(du, jnp.floating))


def _kind_message(u: Any, p: Any) -> str:
  return f'the update is {_dtype(u)} where the parameter is {_dtype(p)}'


def agree(
    fn: str,
    paths: Sequence[str],
    updates: Sequence[Any],
    params: Sequence[Any],
) -> None:
  """Checks with chex that each update has its parameter's shape and kind.

  ``None`` updates (passed through, as ``optax.add_decayed_weights`` does)
  are skipped. A floating parameter needs a floating update (possibly wider),
  a complex one a complex update; other parameters are never decayed and
  their updates pass as they are. Runs at trace time, so it costs nothing in
  a compiled step.
  """
  pairs = [(p, u, q) for p, u, q in zip(paths, updates, params) if u is not None]
  us = {p: u for p, u, _ in pairs}
  ps = {p: q for p, _, q in pairs}
  try:
    chex.assert_trees_all_equal_shapes(us, ps)
    chex.assert_trees_all_equal_comparator(_same_kind, _kind_message, us, ps)
  except AssertionError as e:
    raise ValueError(f'{fn}: updates and params disagree. {e}') from None


def callable_mask(mask: Any) -> bool:
  """optax's rule for a mask: a function exactly when its leaves are callables.

  An Equinox-style module that is both callable and a pytree of bools is a
  mask tree, as in ``optax.masked``.
  """
  leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(callable, mask))
  return bool(leaves) and all(leaves)

