"""Masks: which parameters are decayed, selected by path.

A :class:`Mask` is a callable from params to a tree of bools with the params'
structure, so it works wherever optax takes a mask (``optax.masked``,
``optax.adamw(mask=...)``, ``optax.contrib.muon(weight_decay_mask=...)``).
Masks combine with ``&``, ``|`` and ``~``. Two masks built the same way are
equal and hash alike, so a program compiled for one is reused for the other.
Paths and patterns are described in :mod:`wdax.paths`.

**The typo guard.** Each pattern must name at least one parameter, so a typo
is an error rather than a mask that silently selects nothing. It names a
parameter if it matches the path of one in the tree the mask is given,
*counting the parameters that tree hides*: ``optax.masked`` and
``optax.partition`` (which ``optax.contrib.muon`` uses) show a transform only
part of the params, with ``optax.MaskedNode()`` where the others are. A
pattern that matches only hidden parameters selects nothing in that part and
is not an error; one that matches no parameter at all, hidden or shown, is.
So ``wdax.masks.exclude('bias', 'scale')`` works as muon's
``weight_decay_mask`` even though muon shows it only the matrices, while
``exclude('bais')`` still fails, at ``init``. A tree with no leaves and
nothing hidden (such as the placeholder ``optax.tree.map_params`` initialises
with) has nothing to check.

Every ``mask=`` argument of wdax also takes a plain optax mask: a bool tree, a
prefix of one, or a callable returning one. As in optax, a mask is a callable
exactly when its leaves are callables, so an Equinox-style module that is
both callable and a pytree of bools is a bool tree.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple
from typing import Union

import jax
import numpy as np
import optax

from wdax import _checks
from wdax import paths as _paths

MaskLike = Union[
    None,
    'Mask',
    bool,
    Callable[[optax.Params], Any],
    Mapping[Any, 'MaskLike'],
    Iterable['MaskLike'],
]
"""What every ``mask=`` of wdax accepts: ``None`` (every floating leaf), a
:class:`Mask`, or an optax mask (a bool tree or prefix of one, or a callable
from params to one)."""


class _View(NamedTuple):
  """The params as a mask sees them."""

  paths: list[str]
  leaves: list[Any]
  hidden: list[str]
  tree: Any

  @classmethod
  def of(cls, params: Any) -> _View:
    all_paths, leaves, _ = _paths.leaves_with_paths(params)
    return cls(all_paths, leaves, _paths.hidden_paths(params), params)

  @property
  def known(self) -> list[str]:
    return self.paths + self.hidden

  @property
  def empty(self) -> bool:
    return not self.paths and not self.hidden


class _Tree:
  """A bool tree (or prefix) given as a mask, compared by value."""

  def __init__(self, tree: Any):
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    self.tree = tree
    self.treedef = treedef
    self.values = tuple(
        _static_bool(v, _paths.path_str(kp), 'mask tree entry') for kp, v in with_path
    )

  def __eq__(self, other: object) -> bool:
    return (
        isinstance(other, _Tree)
        and self.values == other.values
        and self.treedef == other.treedef
    )

  def __hash__(self) -> int:
    try:
      return hash((self.treedef, self.values))
    except TypeError:  # a custom node whose auxiliary data is unhashable
      return hash(self.values)

  def select(self, view: _View) -> list[bool]:
    values = _paths.broadcast_prefix(
        self.tree, view.paths, name='mask', hidden=view.hidden
    )
    return [_static_bool(v, p, 'mask entry') for v, p in zip(values, view.paths)]

  def as_prefix(self, params: Any, chosen: list[bool]) -> Any:
    """The selection as a prefix of ``params`` shaped like this tree, if it can be.

    ``optax.masked`` given this tree masks a whole subtree with one
    ``optax.MaskedNode``; returning the same prefix keeps its state's tree
    structure. An entry is spelt out leaf by leaf where the selection under it
    is mixed (an integer leaf under a ``True``); ``None`` where the tree is not
    a prefix of the params' own containers (a dict against an ``nnx.State``).
    """
    try:
      subtrees = self.treedef.flatten_up_to(params)
    except (ValueError, TypeError):
      return None
    out, i = [], 0
    for value, subtree in zip(self.values, subtrees):
      leaves, subdef = jax.tree_util.tree_flatten(subtree)
      mine = chosen[i : i + len(leaves)]
      i += len(leaves)
      out.append(value if all(c == value for c in mine) else subdef.unflatten(mine))
    return self.treedef.unflatten(out) if i == len(chosen) else None


class Mask:
  """A composable selection of parameters by path.

  Calling a mask on params returns a bool tree of the same structure; inexact
  (floating) leaves only are ever ``True``. Masks are immutable values: equal
  when built from equal parts, and hashable.
  """

  __slots__ = ('_op', '_args', '_text')

  def __init__(self, op: str, args: tuple[Any, ...], text: str):
    self._op = op
    self._args = args
    self._text = text

  def select(self, params: optax.Params) -> list[bool]:
    """One bool per leaf of ``params``; integer and bool leaves never."""
    view = _View.of(params)
    chosen = self._choose(view)
    return [bool(c) and _paths.is_float(x) for c, x in zip(chosen, view.leaves)]

  def _choose(self, view: _View) -> list[bool]:
    op, args = self._op, self._args
    if op == 'everything':
      return [True] * len(view.paths)
    if op in ('include', 'exclude'):
      hits = _pattern_hits(args, view, op)
      return hits if op == 'include' else [not h for h in hits]
    if op == 'min_ndim':
      return [len(np.shape(x)) >= args[0] for x in view.leaves]
    if op == 'flax_default':
      return _flax_default(args[0], view)
    if op == 'and':
      a, b = (m._choose(view) for m in args)
      return [x and y for x, y in zip(a, b)]
    if op == 'or':
      a, b = (m._choose(view) for m in args)
      return [x or y for x, y in zip(a, b)]
    if op == 'not':
      return [not x for x in args[0]._choose(view)]
    if op == 'under':
      return [_under(path, args[0], args[1]) for path in view.paths]
    if op == 'function':
      return _Tree(args[0](view.tree)).select(view)
    return args[0].select(view)  # 'tree'

  def __call__(self, params: optax.Params) -> Any:
    chosen = self.select(params)
    if self._op == 'tree':
      prefix = self._args[0].as_prefix(params, chosen)
      if prefix is not None:
        return prefix
    treedef = jax.tree_util.tree_structure(params)
    return jax.tree_util.tree_unflatten(treedef, chosen)

  def __and__(self, other: MaskLike) -> Mask:
    other = as_mask(other)
    return Mask('and', (self, other), f'({self!r} & {other!r})')

  def __rand__(self, other: MaskLike) -> Mask:
    other = as_mask(other)
    return Mask('and', (other, self), f'({other!r} & {self!r})')

  def __or__(self, other: MaskLike) -> Mask:
    other = as_mask(other)
    return Mask('or', (self, other), f'({self!r} | {other!r})')

  def __ror__(self, other: MaskLike) -> Mask:
    other = as_mask(other)
    return Mask('or', (other, self), f'({other!r} | {self!r})')

  def __invert__(self) -> Mask:
    return Mask('not', (self,), f'~{self!r}')

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, Mask):
      return NotImplemented
    return (self._op, self._args) == (other._op, other._args)

  def __hash__(self) -> int:
    return hash((self._op, self._args))

  def __repr__(self) -> str:
    return self._text


def _check_patterns(patterns: Sequence[str], fn: str) -> tuple[str, ...]:
  if not patterns:
    raise ValueError(f'{fn}() needs at least one pattern.')
  for p in patterns:
    _paths.compile_pattern(p)
  return tuple(patterns)


def _pattern_hits(patterns: Sequence[str], view: _View, fn: str) -> list[bool]:
  hits = [False] * len(view.paths)
  for pattern in patterns:
    for i, path in enumerate(view.paths):
      if _paths.matches(pattern, path):
        hits[i] = True
    named = any(_paths.matches(pattern, p) for p in view.known)
    if not named and not view.empty:
      raise ValueError(
          f'{fn}(): pattern {pattern!r} matches no parameter; '
          f'{_checks.listing(view.known)}.'
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
    >>> masks.include('kernel') == masks.include('kernel')
    True
  """
  patterns = _check_patterns(patterns, 'include')
  return Mask('include', patterns, f'include({", ".join(map(repr, patterns))})')


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
  return Mask('exclude', patterns, f'exclude({", ".join(map(repr, patterns))})')


def min_ndim(n: int) -> Mask:
  """Selects the leaves with at least ``n`` dimensions.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import masks
    >>> masks.min_ndim(2)({'w': jnp.ones((2, 2)), 'b': jnp.ones(2)})
    {'b': False, 'w': True}
  """
  n = _checks.count(n, 'min_ndim(n): n')
  return Mask('min_ndim', (n,), f'min_ndim({n})')


def _flax_default(embeddings: bool, view: _View) -> list[bool]:
  names = ('kernel', 'embedding') if embeddings else ('kernel',)
  if not view.empty:
    known_last = {p.rsplit('/', 1)[-1] for p in view.known}
    for name in names:
      if name not in known_last:
        raise ValueError(
            f'flax_default(): no parameter is named {name!r}; '
            f'{_checks.listing(view.known)}.'
        )
  return [p.rsplit('/', 1)[-1] in names for p in view.paths]


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
  if not isinstance(embeddings, bool):
    raise ValueError(f'flax_default(embeddings): must be a bool; got {embeddings!r}.')
  return Mask('flax_default', (embeddings,), f'flax_default(embeddings={embeddings})')


def _under(path: str, prefixes: tuple[str, ...], in_collection: bool) -> bool:
  candidates = [path]
  if in_collection and '/' in path:
    candidates.append(path.split('/', 1)[1])  # params/Dense_0/... of variables
  return any(
      not pre or c == pre or c.startswith(pre + '/')
      for pre in prefixes
      for c in candidates
  )


def modules(
    model: Any, *types: type, init_args: Sequence[Any] | None = None
) -> Mask:
  """Selects the parameters owned by modules of the given types, at any depth.

  Names play no part: ``self.post``, ``self.gate_norm`` and ``self.ln_f``
  are found alike when they are instances of ``types``, so
  ``mask=~masks.modules(model, nnx.LayerNorm, nnx.RMSNorm)`` decays everything
  but the norms, whatever they are called. For an ``nnx.Module`` the
  modules are read from its graph (the mask then applies to
  ``nnx.state(model, nnx.Param)``); for a linen ``Module`` they are
  found by intercepting its ``init`` on ``init_args`` (abstractly, nothing
  is computed), and the mask applies to its ``variables`` or
  ``variables['params']``. Composes with ``~``, ``&`` and ``|``. A model
  with no module of ``types`` is a ``ValueError`` naming them.

  Examples:
    >>> from flax import nnx
    >>> from wdax import masks
    >>> class Block(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.dense = nnx.Linear(2, 2, rngs=rngs)
    ...     self.post = nnx.LayerNorm(2, rngs=rngs)
    >>> model = Block(nnx.Rngs(0))
    >>> m = masks.modules(model, nnx.LayerNorm)
    >>> m.select(nnx.state(model, nnx.Param))
    [False, False, True, True]
  """
  if not types or not all(isinstance(t, type) for t in types):
    raise ValueError(f'modules(): give one or more module types; got {types!r}.')
  from wdax import _modules  # Flax loads only here.

  found = _modules.paths_of(model, tuple(types), init_args)
  names = ', '.join(t.__name__ for t in types)
  if not found:
    raise ValueError(f'modules(): the model holds no module of type {names}.')
  return Mask(
      'under',
      (tuple(found), not _modules.is_nnx(model)),
      f'modules({names})',
  )


def _static_bool(value: Any, path: str, what: str) -> bool:
  # The root path '' is the mask itself, not an entry of a tree.
  where = f'{what} for {path!r}' if path else 'mask'
  if _checks.is_traced(value):
    raise ValueError(
        f'{where} is a traced value; masks must be static bools known when the '
        'transform is traced.'
    )
  if isinstance(value, (bool, np.bool_)) or (
      hasattr(value, 'dtype') and np.shape(value) == () and value.dtype == bool
  ):
    return bool(value)
  raise ValueError(
      f'{where} must be a bool, got {type(value).__name__} {value!r}.'
  )


_EVERYTHING = Mask('everything', (), 'everything')


def as_mask(mask: MaskLike) -> Mask:
  """Wraps ``None`` (everything) or an optax mask (bool tree, prefix, callable).

  Examples:
    >>> from wdax import masks
    >>> masks.as_mask({'w': True}) == masks.as_mask({'w': True})
    True
    >>> masks.as_mask(None)
    everything
  """
  if isinstance(mask, Mask):
    return mask
  if mask is None:
    return _EVERYTHING
  if isinstance(mask, str):
    raise ValueError(
        f'mask must be a Mask, a bool tree or a callable, not the string '
        f'{mask!r}; to select by path, use wdax.masks.include({mask!r}).'
    )
  if _checks.callable_mask(mask):
    name = getattr(mask, '__name__', repr(mask))
    return Mask('function', (mask,), name)
  return Mask('tree', (_Tree(mask),), 'bool tree')


def resolve(mask: MaskLike, params: optax.Params) -> list[bool]:
  """One bool per leaf of ``params``: whether ``mask`` selects it.

  Integer and bool leaves are never selected. Errors name the parameter path.
  """
  return as_mask(mask).select(params)
