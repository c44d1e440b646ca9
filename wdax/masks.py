"""Masks: which parameters are decayed, selected by path.

A :class:`Mask` is a callable from params to a tree of bools with the params'
structure, so it works wherever optax takes a mask (``optax.masked``,
``optax.adamw(mask=...)``). Masks combine with ``&``, ``|`` and ``~``, and each
pattern must select at least one parameter: a typo is an error, not a mask
that silently selects nothing. Paths and patterns are described in
:mod:`wdax.paths`.

Every ``mask=`` argument of wdax also takes a plain optax mask: a bool tree, a
prefix of one, or a callable returning one.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from wdax import paths as _paths

# A selection maps (paths, leaves, params) to one bool per leaf.
_Select = Callable[[Sequence[str], Sequence[Any], Any], list[bool]]


class Mask:
  """A composable selection of parameters by path.

  Calling a mask on params returns a bool tree of the same structure; inexact
  (floating) leaves only are ever ``True``.
  """

  def __init__(self, select: _Select, description: str):
    self._select = select
    self._description = description

  def select(self, params: Any) -> list[bool]:
    """One bool per leaf of ``params``; integer and bool leaves never."""
    all_paths, leaves, _ = _paths.leaves_with_paths(params)
    chosen = self._select(all_paths, leaves, params)
    return [bool(c) and _paths.is_float(x) for c, x in zip(chosen, leaves)]

  def __call__(self, params: Any) -> Any:
    treedef = jax.tree_util.tree_structure(params)
    return jax.tree_util.tree_unflatten(treedef, self.select(params))

  def __and__(self, other: Any) -> Mask:
    other = as_mask(other)
    return Mask(
        lambda *a: [x and y for x, y in zip(self._select(*a), other._select(*a))],
        f'({self!r} & {other!r})',
    )

  def __or__(self, other: Any) -> Mask:
    other = as_mask(other)
    return Mask(
        lambda *a: [x or y for x, y in zip(self._select(*a), other._select(*a))],
        f'({self!r} | {other!r})',
    )

  __rand__ = __and__
  __ror__ = __or__

  def __invert__(self) -> Mask:
    return Mask(lambda *a: [not x for x in self._select(*a)], f'~{self!r}')

  def __repr__(self) -> str:
    return self._description


def _check_patterns(patterns: Sequence[str], fn: str) -> tuple[str, ...]:
  if not patterns:
    raise ValueError(f'{fn}() needs at least one pattern.')
  for p in patterns:
    _paths.compile_pattern(p)
  return tuple(patterns)


def _pattern_hits(
    patterns: Sequence[str], all_paths: Sequence[str], fn: str
) -> list[bool]:
  hits = [False] * len(all_paths)
  for pattern in patterns:
    found = False
    for i, path in enumerate(all_paths):
      if _paths.matches(pattern, path):
        hits[i] = found = True
    if not found:
      raise ValueError(
          f'{fn}(): pattern {pattern!r} matches no parameter; '
          f'{_paths.listing(list(all_paths))}.'
      )
  return hits


def include(*patterns: str) -> Mask:
  """Selects the leaves whose path matches any of ``patterns``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import masks
    >>> params = {'Dense_0': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> masks.include('kernel')(params)
    {'Dense_0': {'bias': False, 'kernel': True}}
  """
  patterns = _check_patterns(patterns, 'include')
  description = f'include({", ".join(map(repr, patterns))})'
  return Mask(lambda p, x, t: _pattern_hits(patterns, p, 'include'), description)


def exclude(*patterns: str) -> Mask:
  """Selects every leaf except those whose path matches any of ``patterns``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import masks
    >>> params = {'Dense_0': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> masks.exclude('bias')(params)
    {'Dense_0': {'bias': False, 'kernel': True}}
  """
  patterns = _check_patterns(patterns, 'exclude')
  description = f'exclude({", ".join(map(repr, patterns))})'
  return Mask(
      lambda p, x, t: [not h for h in _pattern_hits(patterns, p, 'exclude')],
      description,
  )


def min_ndim(n: int) -> Mask:
  """Selects the leaves with at least ``n`` dimensions.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import masks
    >>> masks.min_ndim(2)({'w': jnp.ones((2, 2)), 'b': jnp.ones(2)})
    {'b': False, 'w': True}
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
    raise ValueError(f'min_ndim(n): n must be a non-negative int, got {n!r}.')
  return Mask(
      lambda p, x, t: [len(np.shape(leaf)) >= n for leaf in x], f'min_ndim({n})'
  )


def flax_default(embeddings: bool = False) -> Mask:
  """Flax's usual rule: decay ``kernel`` leaves, never ``bias`` or ``scale``.

  A leaf is decayed when the last segment of its path is ``kernel``, or
  ``embedding`` when ``embeddings=True``. Rank plays no part, so 2-D attention
  biases and biases stacked by ``nn.scan`` stay undecayed, and LayerNorm or
  RMSNorm ``scale`` vectors are never touched.

  Raises ``ValueError`` at ``init`` if no leaf is named ``kernel``, or, with
  ``embeddings=True``, none is named ``embedding``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import masks
    >>> params = {'Embed_0': {'embedding': jnp.ones((5, 2))},
    ...           'Dense_0': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    >>> masks.flax_default()(params)
    {'Dense_0': {'bias': False, 'kernel': True}, 'Embed_0': {'embedding': False}}
  """
  names = ('kernel', 'embedding') if embeddings else ('kernel',)

  def select(all_paths, leaves, params):
    del leaves, params
    last = [p.rsplit('/', 1)[-1] for p in all_paths]
    for name in names:
      if name not in last:
        raise ValueError(
            f'flax_default(): no parameter is named {name!r}; '
            f'{_paths.listing(list(all_paths))}.'
        )
    return [segment in names for segment in last]

  return Mask(select, f'flax_default(embeddings={embeddings})')


def _static_bool(value: Any, path: str) -> bool:
  if isinstance(value, jax.core.Tracer):
    raise ValueError(
        f'mask entry for {path!r} is a traced value; masks must be static '
        'bools known when the transform is traced.'
    )
  if isinstance(value, (bool, np.bool_)) or (
      hasattr(value, 'dtype') and np.shape(value) == () and value.dtype == bool
  ):
    return bool(value)
  raise ValueError(
      f'mask entry for {path!r} must be a bool, got {type(value).__name__} '
      f'{value!r}.'
  )


def _tree_select(tree: Any, all_paths: Sequence[str]) -> list[bool]:
  values = _paths.broadcast_prefix(tree, all_paths, name='mask')
  return [_static_bool(v, p) for v, p in zip(values, all_paths)]


def as_mask(mask: Any) -> Mask:
  """Wraps ``None`` (everything) or an optax mask (bool tree, prefix, callable)."""
  if isinstance(mask, Mask):
    return mask
  if mask is None:
    return Mask(lambda p, x, t: [True] * len(p), 'everything')
  if callable(mask):
    name = getattr(mask, '__name__', repr(mask))
    return Mask(lambda p, x, t: _tree_select(mask(t), p), name)
  return Mask(lambda p, x, t: _tree_select(mask, p), 'bool tree')


def resolve(mask: Any, params: Any) -> list[bool]:
  """One bool per leaf of ``params``: whether ``mask`` selects it.

  Integer and bool leaves are never selected. Errors name the parameter path.
  """
  return as_mask(mask).select(params)
