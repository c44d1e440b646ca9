"""Leaf by leaf: the machinery the decay transforms and the optimisers share.

Internal. A decay is a rule applied to each selected leaf,
``rule(update, param, c_t) -> new update``, where ``c_t`` is the leaf's
coefficient at step ``t``. This module lines up updates and params by path
(checking with chex that they agree), resolves which leaves a mask and rates
select, evaluates schedules once per trace, and builds the
``optax.GradientTransformation`` around a rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from wdax import _checks
from wdax import masks as _masks
from wdax import paths as _paths
from wdax import rate as _rates

Rule = Callable[[jax.Array, jax.Array, Any], jax.Array]


class DecayState(NamedTuple):
  """Step count of a decay whose rate or learning rate is a schedule."""

  count: jax.Array  # shape=(), dtype=jnp.int32


class Leaves(NamedTuple):
  """Updates and params flattened side by side, one entry per path."""

  paths: list[str]
  hidden: list[str]
  updates: list[Any]  # None where the update is None
  params: list[Any]
  treedef: Any  # of the updates, None entries counted as leaves


def _is_none(x: Any) -> bool:
  return x is None


def no_params(fn: str) -> ValueError:
  return ValueError(f'{fn}: update needs params; call tx.update(updates, state, params).')


def line_up(fn: str, updates: optax.Updates, params: optax.Params | None) -> Leaves:
  """Flattens ``updates`` and ``params`` by path and checks that they agree.

  ``None`` updates, whole or per leaf, are kept as ``None`` (optax's
  ``add_decayed_weights`` passes them through). A structure mismatch names
  the first differing path; a shape or dtype-kind mismatch names the path
  too (checked with chex, at trace time).
  """
  if params is None:
    raise no_params(fn)
  u_with_path, treedef = jax.tree_util.tree_flatten_with_path(
      updates, is_leaf=_is_none
  )
  p_with_path, _ = jax.tree_util.tree_flatten_with_path(params)
  u_paths = [_paths.path_str(kp) for kp, _ in u_with_path]
  p_paths = [_paths.path_str(kp) for kp, _ in p_with_path]
  _checks.same_paths(fn, 'updates', u_paths, p_paths, 'params')
  u_leaves = [x for _, x in u_with_path]
  p_leaves = [x for _, x in p_with_path]
  _checks.agree(fn, p_paths, u_leaves, p_leaves)
  return Leaves(p_paths, _paths.hidden_paths(params), u_leaves, p_leaves, treedef)


def select(
    rate: _rates.RateLike, mask: _masks.Mask, params: optax.Params
) -> list[Any]:
  """Each leaf's rate, or ``None`` where the mask or a static zero rules it out.

  Raises the mask's and the rates' errors (a pattern that names no parameter,
  a tree that does not fit): called by ``init``, this is where they surface.
  """
  all_paths, _, _ = _paths.leaves_with_paths(params)
  hidden = _paths.hidden_paths(params)
  if not all_paths and not hidden:
    return []
  selected = mask.select(params)
  leaf_rates = _rates.resolve(rate, all_paths, hidden)
  return [
      r if on and not _checks.is_static_zero(r) else None
      for on, r in zip(selected, leaf_rates)
  ]


def at(value: Any, count: jax.Array | None, cache: dict[int, Any]) -> Any:
  """A rate or lr at ``count``; each schedule is evaluated once per trace."""
  if not callable(value):
    return value
  if id(value) not in cache:
    cache[id(value)] = value(count)
  return cache[id(value)]


def coefficients(
    active: list[Any], lr: optax.ScalarOrSchedule | None, count: jax.Array | None
) -> list[Any]:
  """Per-leaf decay coefficient ``c_t = lr_t * r_t`` (or ``r_t``), else ``None``."""
  cache: dict[int, Any] = {}
  lr_t = at(lr, count, cache)
  out = []
  for r in active:
    if r is None:
      out.append(None)
    else:
      r_t = at(r, count, cache)
      out.append(r_t if lr is None else lr_t * r_t)
  return out


def add(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  """``u + c p`` with ``c`` cast to the parameter's dtype; keeps ``u``'s dtype."""
  return (u + jnp.asarray(c, p.dtype) * p).astype(u.dtype)


def subtract(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  """``u - c p`` with ``c`` cast to the parameter's dtype; keeps ``u``'s dtype."""
  return (u - jnp.asarray(c, p.dtype) * p).astype(u.dtype)


def transform(
    fn: str,
    rate: _rates.RateLike,
    lr: optax.ScalarOrSchedule | None,
    mask: _masks.MaskLike,
    rule: Rule,
    *,
    state_class: Callable[[jax.Array], NamedTuple] = DecayState,
) -> optax.GradientTransformation:
  """A decay applying ``rule`` to each leaf ``mask`` and ``rate`` select.

  ``init`` resolves the mask and rates against the params, so their errors
  surface there; its state is ``optax.EmptyState()``, or,
  when ``rate`` or ``lr`` holds a schedule, ``state_class(count)``.
  """
  rate = _rates.check(rate, f'{fn}: rate')
  if lr is not None:
    lr = _checks.rate(lr, f'{fn}: lr')
  mask = _masks.as_mask(mask)
  needs_count = callable(lr) or _rates.has_schedule(rate)

  def init_fn(params: optax.Params) -> Any:
    select(rate, mask, params)
    if needs_count:
      return state_class(jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    new_state = state
    if needs_count:
      new_state = state_class(optax.safe_increment(state.count))
    if updates is None:
      return None, new_state
    leaves = line_up(fn, updates, params)
    count = state.count if needs_count else None
    coeffs = coefficients(select(rate, mask, params), lr, count)
    new = [
        u if c is None or u is None else rule(u, p, c)
        for u, p, c in zip(leaves.updates, leaves.params, coeffs)
    ]
    return jax.tree_util.tree_unflatten(leaves.treedef, new), new_state

  return optax.GradientTransformation(init_fn, update_fn)
