"""Labels by path, for ``optax.partition`` and ``optax.multi_transform``.

:func:`labels` turns an ordered ``{pattern: label}`` mapping into the
``param_labels`` callable optax's partition takes, with the typo guard of
:func:`wdax.rates`: every pattern must match a parameter not taken by an
earlier one, checked when optax calls it (at ``init``).
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Mapping
from typing import Any

import jax
import optax

from wdax import _patterns
from wdax import paths as _paths

__all__ = ['Labels', 'labels']


class Labels:
  """Path patterns to labels; calling it on params gives the label tree."""

  def __init__(self, spec: Mapping[str, Hashable], default: Hashable | None):
    if not isinstance(spec, Mapping) or not spec:
      raise ValueError('labels() needs a non-empty {pattern: label} mapping.')
    for pattern, label in spec.items():
      _paths.compile_pattern(pattern)
      if label is None or not isinstance(label, Hashable):
        raise ValueError(
            f'labels(): the label of pattern {pattern!r} must be hashable and '
            f'not None; got {label!r}.'
        )
    self.spec = dict(spec)
    self.default = default

  def resolve(self, params: optax.Params) -> list[Hashable]:
    """One label per leaf of ``params``, in flattening order."""
    all_paths, _, _ = _paths.leaves_with_paths(params)
    hidden = _paths.hidden_paths(params)
    chosen = _patterns.first_match('labels()', list(self.spec), all_paths, hidden)
    values = list(self.spec.values())
    out = []
    for path, k in zip(all_paths, chosen):
      if k is not None:
        out.append(values[k])
      elif self.default is not None:
        out.append(self.default)
      else:
        raise ValueError(
            f'labels(): no pattern of {list(self.spec)} matches parameter path '
            f'{path!r} and there is no default; give default=... or a pattern.'
        )
    return out

  def __call__(self, params: optax.Params) -> Any:
    treedef = jax.tree_util.tree_structure(params)
    return jax.tree_util.tree_unflatten(treedef, self.resolve(params))

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, Labels):
      return NotImplemented
    return (list(self.spec.items()), self.default) == (
        list(other.spec.items()), other.default
    )

  def __hash__(self) -> int:
    return hash((tuple(self.spec.items()), self.default))

  def __repr__(self) -> str:
    return f'labels({self.spec!r}, default={self.default!r})'


def labels(
    spec: Mapping[str, Hashable], default: Hashable | None = None
) -> Labels:
  r"""The ``param_labels`` of ``optax.partition``, by parameter-path pattern.

  .. math::

    \ell(p) = \begin{cases} \ell_k & k = \min\{k : \text{pattern}_k
    \text{ matches } p\} \\ \ell_{\text{default}} & \text{no pattern
    matches } p \end{cases}

  where :math:`p` is a leaf's path (see :mod:`wdax.paths`) and
  :math:`\ell_k` the label of the :math:`k`-th pattern: the first match
  wins. Give it to ``optax.partition`` (or ``optax.multi_transform``) as
  ``param_labels``; it sits wherever that partition sits in the chain. A
  pattern that matches no parameter, or only parameters an earlier pattern
  took, is a ``ValueError`` naming it when optax calls it (``init``); so is
  a leaf no pattern matches when there is no ``default``. Unlike a
  hand-written label function, a typo cannot silently send a parameter to
  the wrong group. Parameter groups are PyTorch's (Paszke et al., "PyTorch:
  An Imperative Style, High-Performance Deep Learning Library", 2019,
  arXiv:1912.01703). Works on linen params and on ``nnx.State``.

  Args:
    spec: ordered mapping from path pattern to label (any hashable but None).
    default: the label of leaves no pattern matches, or ``None`` to require
      that every leaf is matched.

  Returns:
    A :class:`Labels`, a callable from params to a tree of labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> params = {'embed': jnp.ones(2), 'head': {'kernel': jnp.ones(2)}}
    >>> tx = optax.partition(
    ...     {'frozen': optax.set_to_zero(), 'train': optax.sgd(0.1)},
    ...     wdax.labels({'embed': 'frozen'}, default='train'))
    >>> updates, _ = tx.update({'embed': jnp.ones(2), 'head': {'kernel': jnp.ones(2)}},
    ...                        tx.init(params), params)
    >>> updates['embed'], updates['head']['kernel']
    (Array([0., 0.], dtype=float32), Array([-0.1, -0.1], dtype=float32))
  """
  return Labels(spec, default)
