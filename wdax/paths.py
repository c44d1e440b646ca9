"""Parameter paths: the names masks and per-group rates are keyed on.

A leaf's path joins the keys on the way to it with ``/``: dict keys (plain
dicts, ``FrozenDict``, ``nnx.State``), attribute names and sequence indices,
e.g. ``params/Dense_0/kernel`` or ``layers/0/attn/query/kernel``. The trailing
``value`` attribute of an ``nnx.Variable`` is dropped, so a model's state reads
the same whether its leaves are variables or plain arrays.

Patterns are globs over these paths. ``*`` and ``?`` stay within one segment,
``**`` spans any number of segments, and ``[...]`` is a character class. A
pattern without ``/`` matches a leaf when it matches any one segment of its
path (``bias`` selects every bias, ``Embed_0`` everything under it). A pattern
with ``/`` is anchored at the root and matches a whole path or a prefix of
whole segments (``params/Dense_0`` selects the leaves below it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdax._checks import listing

__all__ = [
    'broadcast_prefix',
    'compile_pattern',
    'hidden_paths',
    'is_float',
    'leaf_paths',
    'leaves_with_paths',
    'listing',
    'matches',
    'path_str',
]


def _key_name(key: Any) -> str:
  if isinstance(key, jax.tree_util.DictKey):
    return str(key.key)
  if isinstance(key, jax.tree_util.GetAttrKey):
    return key.name
  if isinstance(key, jax.tree_util.SequenceKey):
    return str(key.idx)
  if isinstance(key, jax.tree_util.FlattenedIndexKey):
    return str(key.key)
  return str(key)


def path_str(keypath: Sequence[Any]) -> str:
  """Returns the ``/``-joined path of a JAX key path."""
  keys = list(keypath)
  if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and (
      keys[-1].name == 'value'
  ):
    keys = keys[:-1]
  return '/'.join(_key_name(k) for k in keys)


def leaves_with_paths(tree: Any) -> tuple[list[str], list[Any], Any]:
  """Flattens ``tree`` into its leaf paths, its leaves and its treedef."""
  with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
  paths = [path_str(kp) for kp, _ in with_path]
  leaves = [leaf for _, leaf in with_path]
  return paths, leaves, treedef


def leaf_paths(tree: Any) -> list[str]:
  """Lists the path of every leaf of ``tree``, in flattening order.

  Examples:
    >>> import jax.numpy as jnp
    >>> import wdax
    >>> wdax.leaf_paths({'Dense_0': {'bias': jnp.zeros(2), 'kernel': jnp.zeros((3, 2))}})
    ['Dense_0/bias', 'Dense_0/kernel']
  """
  return leaves_with_paths(tree)[0]


def _is_masked(x: Any) -> bool:
  return isinstance(x, optax.MaskedNode)


def hidden_paths(tree: Any) -> list[str]:
  """The paths of the ``optax.MaskedNode`` entries of ``tree``.

  ``optax.masked`` and ``optax.partition`` show a transform only part of the
  params, with ``optax.MaskedNode()`` where the rest is. Those parameters
  exist, hidden from this transform: a mask pattern that names one of them
  is not a typo (see :mod:`wdax.masks`).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from wdax import paths
    >>> paths.hidden_paths({'w': jnp.ones(2), 'b': optax.MaskedNode()})
    ['b']
  """
  with_path, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_masked)
  return [path_str(kp) for kp, x in with_path if _is_masked(x)]


def _segment_regex(segment: str) -> str:
  out, i = [], 0
  while i < len(segment):
    c = segment[i]
    if c == '*':
      out.append('[^/]*')
    elif c == '?':
      out.append('[^/]')
    elif c == '[':
      end = segment.find(']', i + 2 if segment[i + 1 : i + 2] in '!^' else i + 1)
      if end < 0:
        out.append(re.escape(c))
      else:
        body = segment[i + 1 : end]
        if body[:1] in ('!', '^'):
          body = '^' + body[1:]
        out.append('[' + body.replace('\\', '\\\\') + ']')
        i = end
    else:
      out.append(re.escape(c))
    i += 1
  return ''.join(out)


def compile_pattern(pattern: str) -> re.Pattern[str]:
  """Compiles a path glob (see the module docstring) into a regex."""
  # Checked before the cache, which would fail on an unhashable pattern.
  if not isinstance(pattern, str) or not pattern.strip('/'):
    raise ValueError(f'pattern must be a non-empty string, got {pattern!r}')
  return _compile(pattern)


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
  anchored = '/' in pattern.strip('/')
  segments = pattern.strip('/').split('/')
  while len(segments) > 1 and segments[-1] == '**':
    segments.pop()  # Descendants are matched anyway, as a path prefix.
  body = ''.join(
      '(?:[^/]+/)*' if s == '**' else _segment_regex(s) + '/' for s in segments
  )
  body = body[:-1] if body.endswith('/') else body + '[^/]+'
  if anchored:
    return re.compile(f'^{body}(?:/.*)?$')
  return re.compile(f'^(?:.*/)?{body}(?:/.*)?$')


def matches(pattern: str, path: str) -> bool:
  """Whether the glob ``pattern`` selects the leaf at ``path``.

  Examples:
    >>> from wdax.paths import matches
    >>> matches('bias', 'params/Dense_0/bias'), matches('*/kernel', 'a/b/kernel')
    (True, False)
    >>> matches('**/kernel', 'a/b/kernel'), matches('params/Dense_0', 'params/Dense_0/bias')
    (True, True)
  """
  return compile_pattern(pattern).match(path) is not None


def is_float(leaf: Any) -> bool:
  """Whether a leaf is an inexact array (floating, bfloat16 included, or complex)."""
  dtype = getattr(leaf, 'dtype', None)
  if dtype is None:
    if isinstance(leaf, bool) or not isinstance(leaf, (int, float, complex)):
      return False
    dtype = np.result_type(leaf)
  return bool(jnp.issubdtype(dtype, jnp.inexact))


def _entry(entries: dict[str, Any], path: str) -> str | None:
  parts = path.split('/') if path else []
  for cut in range(len(parts), -1, -1):
    key = '/'.join(parts[:cut])
    if key in entries:
      return key
  return None


def _related(a: str, b: str) -> bool:
  """Whether one path is the other or lies under it."""
  return a == b or a.startswith(b + '/') or b.startswith(a + '/') or not a or not b


def broadcast_prefix(
    prefix: Any,
    all_paths: Sequence[str],
    *,
    name: str,
    is_leaf: Callable[[Any], bool] | None = None,
    hidden: Sequence[str] = (),
) -> list[Any]:
  """Broadcasts a tree that is a prefix of the params to one value per path.

  Raises a ``ValueError`` naming the first parameter path the prefix has no
  entry for, or the first entry that names no parameter. An entry for one of
  the ``hidden`` paths (see :func:`hidden_paths`) names a parameter.
  """
  with_path, _ = jax.tree_util.tree_flatten_with_path(prefix, is_leaf=is_leaf)
  entries = {path_str(kp): value for kp, value in with_path}
  used: set[str] = set()
  out = []
  for path in all_paths:
    key = _entry(entries, path)
    if key is None:
      raise ValueError(
          f'{name} does not fit the params: it has no entry for parameter path '
          f'{path!r}; its entries are {sorted(entries)[:10]}.'
      )
    used.add(key)
    out.append(entries[key])
  for key in entries:
    if key not in used and not any(_related(key, h) for h in hidden):
      raise ValueError(
          f'{name} does not fit the params: its entry {key!r} names no '
          f'parameter; {listing(list(all_paths))}.'
      )
  return out
